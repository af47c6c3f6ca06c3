"""deploy/feast/feature_store.yaml against the local PostgreSQL (SQL registry) and Redis."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import pytest
from conftest import BIN, DATA_END, ROOT, assert_same_values, make_workspace, run_cli
from test_materialize import ALL_FEATURES, _users, offline_at, online

from components.features.materialize import materialize_incremental

pytestmark = pytest.mark.integration
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture
def production_workspace(workspace, tmp_path, monkeypatch):
    import psycopg
    import redis

    name = f"portside_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    ws = make_workspace(tmp_path, sources=workspace.sources)
    config = (ROOT / "deploy" / "feast" / "feature_store.yaml").read_text()
    # A project of its own keeps the test's Redis keys apart from anything else.
    (ws.repo / "feature_store.yaml").write_text(
        config.replace("project: portside", f"project: {name}")
    )
    monkeypatch.setenv("FEAST_REGISTRY_URL", f"{POSTGRES}/{name}")
    monkeypatch.setenv("FEAST_REDIS_CONNECTION", "127.0.0.1:6379")
    yield ws
    client = redis.Redis(host="127.0.0.1", port=6379)
    for key in client.scan_iter(match=f"*{name}*".encode()):
        client.delete(key)
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_production_config_applies_materializes_and_serves(production_workspace):
    import psycopg

    ws = production_workspace
    run_cli([str(BIN / "feast"), "apply"], cwd=ws.repo, env=dict(os.environ))
    registry_db = os.environ["FEAST_REGISTRY_URL"].rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={registry_db}") as db:
        (views,) = db.execute("SELECT count(*) FROM feature_views").fetchone()
    assert views == 2  # the registry really is in PostgreSQL

    moment = DATA_END - timedelta(days=6)
    done = materialize_incremental(ws.repo, moment, progress=False)
    assert all(v.rows > 0 for v in done)
    users = _users(ws, n=200)
    served = online(ws.repo, users)  # from Redis
    assert_same_values(served, offline_at(ws.repo, users, moment), ALL_FEATURES)
    assert served["credit_limit"].notna().sum() > 100
