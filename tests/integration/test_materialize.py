"""Materialization into the real online store: same state as Feast, online equals offline."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
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

from components.errors import ConfigurationError
from components.features.materialize import materialize, materialize_incremental
from components.features.online import lookup

pytestmark = pytest.mark.integration

FEATURE_REFS = [f"{view}:{f}" for view, features in VIEW_FEATURES.items() for f in features]
ALL_FEATURES = STORED_FEATURES
SERVICE_FEATURES = [*STORED_FEATURES, *ON_DEMAND_FEATURES]
REQUEST = {"amount": 250.0, "merchant_category": "electronics"}


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


def test_same_online_state_as_feast_materialize(workspace, fresh_workspace, tmp_path):
    from conftest import BIN, make_workspace, run_cli
    from feast import FeatureStore

    feast_ws = make_workspace(tmp_path / "feast", sources=workspace.sources)
    run_cli([str(BIN / "feast"), "apply"], cwd=feast_ws.repo)
    start, end = DATA_END - timedelta(days=40), DATA_END - timedelta(days=3)
    FeatureStore(repo_path=str(feast_ws.repo)).materialize(start, end)
    materialize(fresh_workspace.repo, start, end, progress=False, mode="feast")
    users = _users(workspace, n=400)
    ours, theirs = online(fresh_workspace.repo, users), online(feast_ws.repo, users)
    assert_same_values(ours, theirs, ALL_FEATURES)
    assert ours["txn_count_30d"].notna().sum() > 0


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
    from components.features.run import TRAINING_SET_FILE
    from components.features.run import run as build_training_set

    rows = pd.DataFrame({"user_id": users, "event_timestamp": [moment] * len(users)})
    rows = rows.assign(is_fraud=0, **REQUEST)
    rows.to_parquet(tmp_path / "rows.parquet", index=False)
    out = tmp_path / "training_set"
    build_training_set(str(tmp_path / "rows.parquet"), str(out), feature_repo=str(repo), **EXAMPLE)
    return pd.read_parquet(out / TRAINING_SET_FILE)


def _served(repo, users: list[int], moment) -> pd.DataFrame:
    return lookup(repo, FEATURE_SERVICE, [{"user_id": u, **REQUEST} for u in users], now=moment)


def test_late_and_backfilled_rows_reach_the_online_store(workspace, fresh_workspace, tmp_path):
    t1, t2 = DATA_END - timedelta(days=12), DATA_END - timedelta(days=9)
    aggregates = pd.read_parquet(workspace.sources / "user_daily_aggregates.parquet")
    landed_late = (aggregates["event_timestamp"] < t1) & aggregates["created_timestamp"].between(
        t1, t2
    )
    assert landed_late.sum() > 20  # rows that happened before t1 but landed after it

    feast_ws = make_workspace(tmp_path / "feast", sources=workspace.sources)
    run_cli([str(BIN / "feast"), "apply"], cwd=feast_ws.repo)
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


def test_a_late_row_never_replaces_a_newer_one(fresh_workspace):
    """Materializing an earlier interval after a later one leaves the newer rows in place."""
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
