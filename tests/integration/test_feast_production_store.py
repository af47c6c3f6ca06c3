"""The production feature store (deploy/feast/feature_store.yaml) on the real servers: the SQL
registry in PostgreSQL, the online store in Redis. Two feature views materialized at the same
time by two processes, twice (a window, then incrementally): the registry keeps every
materialization of both views (none overwritten by the other process's write), and Redis
answers both views' features."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import BIN, DATA_END, ROOT, run_cli
from mlflow_server import create_database, drop_database

pytestmark = pytest.mark.integration

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS = "127.0.0.1:6379"
VIEWS = ("user_profile", "user_daily_aggregates")


@pytest.fixture
def production_repo(workspace, tmp_path: Path):
    """The feature repo with the production feature_store.yaml, a registry database and a
    Feast project of its own (its Redis keys apart), applied; removed afterwards."""
    import shutil

    import redis

    database = create_database("feast_concurrent")
    repo = tmp_path / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("__pycache__"))
    config = (ROOT / "deploy" / "feast" / "feature_store.yaml").read_text()
    (repo / "feature_store.yaml").write_text(
        config.replace("project: portside", f"project: {database}")
    )
    env = {
        **os.environ,
        "FEAST_REGISTRY_URL": f"{POSTGRES}/{database}",
        "FEAST_REDIS_CONNECTION": REDIS,
        "PORTSIDE_FEATURE_SOURCES": str(workspace.sources),
    }
    run_cli([str(BIN / "feast"), "apply"], cwd=repo, env=env)
    try:
        yield repo, env
    finally:
        client = redis.Redis(host="127.0.0.1", port=6379)
        for key in client.scan_iter(match=f"*{database}*".encode()):
            client.delete(key)
        drop_database(database)


def _materialize_both_at_once(repo: Path, env: dict[str, str], *window: str) -> None:
    """One `portside features materialize --views VIEW` process per view, started together."""
    command = [str(BIN / "portside"), "features", "materialize", "--repo", str(repo), "--quiet"]
    processes = [
        subprocess.Popen(
            [*command, "--views", view, *window],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for view in VIEWS
    ]
    for view, process in zip(VIEWS, processes, strict=True):
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, f"{view}:\n{output[-4000:]}"


def _intervals(repo: Path) -> dict[str, list[tuple[str, str]]]:
    """Each view's materialization intervals as the registry in PostgreSQL holds them now."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    views = {v.name: v for v in store.list_feature_views(allow_cache=False)}
    return {
        name: [(s.isoformat(), e.isoformat()) for s, e in views[name].materialization_intervals]
        for name in VIEWS
    }


def test_two_views_materialized_concurrently_keep_both_registry_updates(
    production_repo, workspace, monkeypatch
):
    repo, env = production_repo
    for name in ("FEAST_REGISTRY_URL", "FEAST_REDIS_CONNECTION"):  # what the yaml expands
        monkeypatch.setenv(name, env[name])
    first_end = DATA_END - timedelta(days=2)
    start = (DATA_END - timedelta(days=400)).isoformat()
    _materialize_both_at_once(repo, env, "--start", start, "--end", first_end.isoformat())
    after_first = _intervals(repo)
    assert {name: len(found) for name, found in after_first.items()} == dict.fromkeys(VIEWS, 1)
    assert all(found[0][1] == first_end.isoformat() for found in after_first.values())

    _materialize_both_at_once(repo, env, "--incremental", "--end", DATA_END.isoformat())
    after_second = _intervals(repo)
    for name in VIEWS:  # the first interval kept, the incremental one added, for each view
        assert after_second[name][0] == after_first[name][0], after_second
        assert len(after_second[name]) == 2 and after_second[name][1][1] == DATA_END.isoformat()

    # Redis holds both views' rows (read as stored: the daily view's 7-day TTL has passed for
    # this data by the clock, which a lookup would apply).
    assert _stored_in_redis(repo, workspace) == dict.fromkeys(VIEWS, True)


def _stored_in_redis(repo: Path, workspace) -> dict[str, bool]:
    """For five users of the data: whether Redis has a row of each view for every one."""
    import pandas as pd
    from feast import FeatureStore
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    profiles = pd.read_parquet(workspace.sources / "user_profiles.parquet")
    users = [int(u) for u in profiles["user_id"].unique()[:5]]
    keys = [EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=u)]) for u in users]
    store = FeatureStore(repo_path=str(repo))
    online = store._get_provider().online_store
    stored = {}
    for name in VIEWS:
        rows = online.online_read(store.config, store.get_feature_view(name), keys)
        stored[name] = all(values for _, values in rows)
    return stored
