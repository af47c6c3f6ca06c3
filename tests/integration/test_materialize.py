"""Materialization into the real online store: same state as Feast, online equals offline."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import timedelta
from typing import Literal

import pandas as pd
import pytest
import yaml
from conftest import (
    BIN,
    DATA_END,
    EXAMPLE,
    FEATURE_SERVICE,
    ON_DEMAND_FEATURES,
    STORED_FEATURES,
    VIEW_FEATURES,
    assert_same_values,
    make_workspace,
    run_cli,
)
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig

from portside.components.errors import ConfigurationError
from portside.components.features.materialize import materialize, materialize_incremental
from portside.components.features.online import lookup
from portside.components.features.online_values import encode_column, serialize_entity_keys

pytestmark = pytest.mark.integration

FEATURE_REFS = [f"{view}:{f}" for view, features in VIEW_FEATURES.items() for f in features]
ALL_FEATURES = STORED_FEATURES
SERVICE_FEATURES = [*STORED_FEATURES, *ON_DEMAND_FEATURES]
REQUEST = {"amount": 250.0, "merchant_category": "electronics"}
REDIS = "127.0.0.1:6379"
ONLINE_STORES = ["sqlite", "redis"]


@pytest.fixture
def new_workspace(workspace, tmp_path):
    """Factory: a fresh, applied workspace over the session's data on the given online store.
    Each Redis one has a project of its own (Feast's keys end with the project name), so
    tests running at the same time never share keys; they are deleted afterwards."""
    projects = []

    def make(name: str, online_store: str):
        ws = make_workspace(tmp_path / name, sources=workspace.sources)
        if online_store == "redis":
            projects.append(f"portside_mat_{uuid.uuid4().hex[:12]}")
            _configure(ws.repo, project=projects[-1], online_store=_redis_config())
        run_cli([str(BIN / "feast"), "apply"], cwd=ws.repo)
        return ws

    yield make
    if projects:
        import redis

        client = redis.Redis.from_url(f"redis://{REDIS}")
        for project in projects:
            for key in client.scan_iter(match=b"*" + project.encode(), count=10_000):
                client.delete(key)


def _redis_config() -> dict:
    return {"type": "redis", "connection_string": REDIS}


def _configure(repo, **settings) -> None:
    path = repo / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config.update(settings)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def _users(workspace, n: int = 300) -> list[int]:
    users = pd.read_parquet(workspace.sources / "user_profiles.parquet")["user_id"].unique()
    return sorted(int(u) for u in users[:n]) + [99_999_999]  # plus one unknown user


def online(repo, users: list[int]) -> pd.DataFrame:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    rows = [{"user_id": u} for u in users]
    return store.get_online_features(features=FEATURE_REFS, entity_rows=rows).to_df()


def offline_at(repo, users: list[int], moment) -> pd.DataFrame:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    entity = pd.DataFrame({"user_id": users, "event_timestamp": [moment] * len(users)})
    frame = store.get_historical_features(entity_df=entity, features=FEATURE_REFS).to_df()
    return frame.set_index("user_id").loc[users].reset_index()


def test_online_equals_offline_at_materialization_time(fresh_workspace):
    moment = DATA_END - timedelta(days=10, hours=5)
    # First incremental run: each view from moment - ttl, as Feast does.
    done = materialize_incremental(fresh_workspace.repo, moment, progress=False, mode="feast")
    assert {v.name for v in done} == set(VIEW_FEATURES)
    assert all(v.rows > 0 for v in done)
    users = _users(fresh_workspace)
    served = online(fresh_workspace.repo, users)
    historical = offline_at(fresh_workspace.repo, users, moment)
    assert served["user_id"].tolist() == users
    assert_same_values(served, historical, ALL_FEATURES)
    assert served["credit_limit"].notna().sum() > len(users) // 2  # not vacuous
    assert served.iloc[-1][ALL_FEATURES].isna().all()  # the unknown user


def stored_state(repo) -> dict:
    """Everything Feast's online store holds for the repo's project, as stored: SQLite rows
    of every view table; Redis hashes by entity key (the project suffix cut off)."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    config, project = store.config.online_store, store.project
    if config.type == "redis":
        import redis

        client = redis.Redis.from_url(f"redis://{config.connection_string}")
        keys = client.scan_iter(match=b"*" + project.encode(), count=10_000)
        return {key[: -len(project)]: client.hgetall(key) for key in keys}
    with sqlite3.connect(SqliteOnlineStore._get_db_path(store.config)) as db:
        return {
            view.name: db.execute(
                "SELECT entity_key, feature_name, value, value_text, event_ts, created_ts "
                f'FROM "{project}_{view.name}" ORDER BY entity_key, feature_name'
            ).fetchall()
            for view in store.list_feature_views()
        }


@pytest.mark.parametrize("online_store", ONLINE_STORES)
def test_same_online_state_as_feast_materialize(workspace, new_workspace, online_store):
    """Portside's bulk write stores what `feast materialize` stores, byte for byte; plain
    Feast reads it back the same, timestamps (and so the TTL rule) included."""
    from feast import FeatureStore

    feast_ws, ours_ws = new_workspace("feast", online_store), new_workspace("ours", online_store)
    start, end = DATA_END - timedelta(days=40), DATA_END - timedelta(days=3)
    FeatureStore(repo_path=str(feast_ws.repo)).materialize(start, end)
    done = materialize(ours_ws.repo, start, end, progress=False, mode="feast")
    ours, theirs = stored_state(ours_ws.repo), stored_state(feast_ws.repo)
    assert ours == theirs
    assert sum(v.rows for v in done) > 0 and len(ours) > 0  # not vacuous

    users = _users(workspace, n=400)  # plus an unknown user
    served, expected = online(ours_ws.repo, users), online(feast_ws.repo, users)
    assert_same_values(served, expected, ALL_FEATURES)
    assert served["txn_count_30d"].notna().sum() > 0
    assert served.iloc[-1][ALL_FEATURES].isna().all()
    assert _event_times(ours_ws.repo, users) == _event_times(feast_ws.repo, users)
    # Looked up after the aggregates' TTL: the same features expire on both.
    later = end + timedelta(days=5)
    fresh, feast_fresh = _served(ours_ws.repo, users, later), _served(feast_ws.repo, users, later)
    assert_same_values(fresh, feast_fresh, SERVICE_FEATURES)
    assert 0 < fresh["txn_count_7d"].notna().sum() < served["txn_count_7d"].notna().sum()


def _event_times(repo, users: list[int]) -> dict[str, list[int]]:
    """The event time Feast's read reports per feature and user (what the TTL rule uses)."""
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    rows = [{"user_id": u} for u in users]
    response = store.get_online_features(features=FEATURE_REFS, entity_rows=rows)
    return {
        name: [ts.ToMicroseconds() for ts in result.event_timestamps]
        for name, result in zip(
            response.proto.metadata.feature_names.val, response.proto.results, strict=True
        )
    }


@pytest.mark.parametrize("mode", ["landed", "feast"])
def test_materialize_is_idempotent_and_incremental_continues(fresh_workspace, mode):
    from feast import FeatureStore

    start, end = DATA_END - timedelta(days=30), DATA_END - timedelta(days=20)
    first = materialize(fresh_workspace.repo, start, end, progress=False, mode=mode)
    users = _users(fresh_workspace)
    before = online(fresh_workspace.repo, users)
    again = materialize(fresh_workspace.repo, start, end, progress=False, mode=mode)
    assert [v.rows for v in again] == [v.rows for v in first]
    assert_same_values(online(fresh_workspace.repo, users), before, ALL_FEATURES)

    # The registry recorded the interval: incremental continues from `end`.
    view = FeatureStore(repo_path=str(fresh_workspace.repo)).get_feature_view("user_profile")
    assert view.most_recent_end_time == end
    later = DATA_END
    done = materialize_incremental(fresh_workspace.repo, later, progress=False, mode=mode)
    assert {v.start for v in done} == {end}
    assert materialize_incremental(fresh_workspace.repo, later, progress=False, mode=mode) == []
    # Users whose profile was seen in the materialized intervals are served what training
    # would see at `later` (profiles land minutes after their event, none after `later`);
    # older profiles were never materialized and stay absent.
    served = online(fresh_workspace.repo, users)
    historical = offline_at(fresh_workspace.repo, users, later)
    seen = served["credit_limit"].notna()
    assert 0 < seen.sum() < len(users)
    assert_same_values(served[seen], historical[seen], VIEW_FEATURES["user_profile"])


def test_bad_materialize_arguments_are_clear(workspace):
    with pytest.raises(ConfigurationError, match="must be before"):
        materialize(workspace.repo, DATA_END, DATA_END - timedelta(days=1), progress=False)
    with pytest.raises(ConfigurationError, match="not an online feature view: nope"):
        materialize(
            workspace.repo, DATA_END - timedelta(days=1), DATA_END, ["nope"], progress=False
        )


def _as_known_training_features(repo, users: list[int], moment, tmp_path) -> pd.DataFrame:
    """What the features component (as_known) gives each user at `moment`."""
    from portside.components.features.run import TRAINING_SET_FILE
    from portside.components.features.run import run as build_training_set

    rows = pd.DataFrame({"user_id": users, "event_timestamp": [moment] * len(users)})
    rows = rows.assign(is_fraud=0, **REQUEST)
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    out = tmp_path / "training_set"
    build_training_set(str(tmp_path / "rows.parquet"), str(out), feature_repo=str(repo), **EXAMPLE)
    return pd.read_parquet(out / TRAINING_SET_FILE)


def _served(repo, users: list[int], moment) -> pd.DataFrame:
    return lookup(repo, FEATURE_SERVICE, [{"user_id": u, **REQUEST} for u in users], now=moment)


@pytest.mark.parametrize("online_store", ONLINE_STORES)
def test_late_and_backfilled_rows_reach_the_online_store(
    workspace, new_workspace, tmp_path, online_store
):
    fresh_workspace = new_workspace("ours", online_store)
    t1, t2 = DATA_END - timedelta(days=12), DATA_END - timedelta(days=9)
    aggregates = pd.read_parquet(workspace.sources / "user_daily_aggregates.parquet")
    landed_late = (aggregates["event_timestamp"] < t1) & aggregates["created_timestamp"].between(
        t1, t2
    )
    assert landed_late.sum() > 20  # rows that happened before t1 but landed after it

    feast_ws = new_workspace("feast", online_store)
    for moment in (t1, t2):
        materialize_incremental(fresh_workspace.repo, moment, progress=False)
        materialize_incremental(feast_ws.repo, moment, progress=False, mode="feast")

    users = _users(workspace, n=400)
    expected = _as_known_training_features(fresh_workspace.repo, users, t2, tmp_path)
    served = _served(fresh_workspace.repo, users, t2)
    assert served["user_id"].tolist() == users
    assert_same_values(served, expected, SERVICE_FEATURES)
    assert served["txn_count_7d"].notna().sum() > len(users) // 2  # not vacuous
    # Selecting by event time (feast materialize) misses what landed late: it differs.
    by_event_time = _served(feast_ws.repo, users, t2)
    with pytest.raises(AssertionError):
        assert_same_values(by_event_time, expected, SERVICE_FEATURES)


@pytest.mark.parametrize("online_store", ONLINE_STORES)
def test_a_late_row_never_replaces_a_newer_one(new_workspace, online_store):
    """Materializing an earlier interval after a later one leaves the newer rows in place."""
    fresh_workspace = new_workspace("ours", online_store)
    t1, t2 = DATA_END - timedelta(days=20), DATA_END - timedelta(days=10)
    materialize(fresh_workspace.repo, t1, t2, progress=False)
    users = _users(fresh_workspace)
    newer = online(fresh_workspace.repo, users)
    materialize(fresh_workspace.repo, t1 - timedelta(days=30), t1, progress=False)
    after = online(fresh_workspace.repo, users)
    # Users with aggregates from the later interval keep exactly those; the earlier run
    # only adds users the later one had not seen.
    aggregates = VIEW_FEATURES["user_daily_aggregates"]
    had = newer["txn_count_30d"].notna()
    assert 0 < had.sum() <= after["txn_count_30d"].notna().sum()
    assert_same_values(after[had], newer[had], aggregates)


def test_lookup_nulls_features_older_than_their_ttl(fresh_workspace):
    moment = DATA_END - timedelta(days=20)
    materialize(fresh_workspace.repo, moment - timedelta(days=400), moment, progress=False)
    users = _users(fresh_workspace)
    fresh = _served(fresh_workspace.repo, users, moment)
    assert fresh["txn_count_7d"].notna().sum() > len(users) // 2
    # 8 days later every aggregate (TTL 7 days) has expired; profiles (365 days) have not.
    later = _served(fresh_workspace.repo, users, moment + timedelta(days=8))
    aggregates = [*VIEW_FEATURES["user_daily_aggregates"], "amount_to_avg_30d"]
    assert later[aggregates].isna().all().all()
    profile = [*VIEW_FEATURES["user_profile"], "amount_to_credit_limit"]
    assert_same_values(later, fresh, profile)
    assert later["credit_limit"].notna().sum() > len(users) // 2
    # Feast's own read still returns the expired values: the rule is Portside's lookup.
    assert online(fresh_workspace.repo, users)["txn_count_7d"].notna().sum() > 0


class CountingSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite store under another class: Portside's bulk writer must not take it
    (a subclass may write differently), so materialize goes through `online_write_batch`."""

    rows_written = 0

    def online_write_batch(self, config, table, data, progress) -> None:
        type(self).rows_written += len(data)
        super().online_write_batch(config, table, data, progress)


class CountingSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal["test_materialize.CountingSqliteOnlineStore"] = (
        "test_materialize.CountingSqliteOnlineStore"
    )


def test_other_online_stores_go_through_feasts_writer(new_workspace):
    bulk, other = new_workspace("bulk", "sqlite"), new_workspace("other", "sqlite")
    settings = yaml.safe_load((other.repo / "feature_store.yaml").read_text())["online_store"]
    settings["type"] = f"{__name__}.CountingSqliteOnlineStore"
    _configure(other.repo, online_store=settings)
    CountingSqliteOnlineStore.rows_written = 0
    t1, t2 = DATA_END - timedelta(days=20), DATA_END - timedelta(days=10)
    written = 0
    for start, end in ((t1, t2), (t1 - timedelta(days=30), t1)):  # the later interval first
        ours = materialize(bulk.repo, start, end, progress=False)
        theirs = materialize(other.repo, start, end, progress=False)
        assert {v.name: v.rows for v in ours} == {v.name: v.rows for v in theirs}
        written += sum(v.rows for v in theirs)
    assert CountingSqliteOnlineStore.rows_written == written > 0
    assert stored_state(bulk.repo) == stored_state(other.repo)


def test_values_and_keys_are_encoded_as_feast_encodes_them():
    import pyarrow as pa
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.type_map import python_values_to_proto_values
    from feast.utils import _columns_to_proto_values
    from feast.value_type import ValueType as T

    nan, inf = float("nan"), float("inf")
    columns = {
        "double": (pa.array([1.5, None, nan, -0.0, inf, 1e-310, 0.1]), T.DOUBLE),
        "float": (pa.array([1.1, None, nan, 0.0, -2.5, 3e38, 7.0], pa.float32()), T.FLOAT),
        "int64": (pa.array([0, None, -1, 2**62, -(2**63), 7, 7]), T.INT64),
        "int32": (pa.array([0, None, -1, 2**31 - 1, 5, 5, 3], pa.int32()), T.INT32),
        "string": (pa.array(["DE", None, "", "ünï", "DE", "x" * 300, "US"]), T.STRING),
        "bool": (pa.array([True, None, False, True, False, True, True]), T.BOOL),
        "all_null": (pa.array([None] * 7, pa.float64()), T.DOUBLE),
    }
    batch = pa.record_batch({name: array for name, (array, _) in columns.items()})
    expected = _columns_to_proto_values(
        batch, [(name, value_type) for name, (_, value_type) in columns.items()]
    )
    for name, (array, value_type) in columns.items():
        values, texts = encode_column(array, value_type, with_text=True)
        assert values == [p.SerializeToString() for p in expected[name]], name
        assert texts == [extract_text_and_num(p, False)[0] for p in expected[name]], name

    def feast_keys(batch, join_keys):
        protos = {
            n: python_values_to_proto_values(batch.column(n).to_pylist(), t)
            for n, t in join_keys.items()
        }
        return [
            serialize_entity_key(EntityKey(join_keys=list(join_keys), entity_values=list(v)), 3)
            for v in zip(*protos.values(), strict=True)
        ]

    keys = pa.record_batch(
        {"user_id": pa.array([0, 1, -5, 2**40, -(2**63)]), "shop": pa.array(list("abcde"))}
    )
    for join_keys in (
        {"user_id": T.INT64},
        {"shop": T.STRING},
        {"user_id": T.INT64, "shop": T.STRING},
    ):
        assert serialize_entity_keys(keys, join_keys, "view") == feast_keys(keys, join_keys)
