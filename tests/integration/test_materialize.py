"""Materialization into the real online store: same state as Feast, online equals offline."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from conftest import DATA_END, assert_same_values

from components.errors import ConfigurationError
from components.features.materialize import materialize, materialize_incremental

pytestmark = pytest.mark.integration

VIEW_FEATURES = {
    "user_profile": ["account_age_days", "credit_limit", "country"],
    "user_daily_aggregates": [
        "txn_count_1d",
        "txn_amount_1d",
        "txn_count_7d",
        "txn_amount_7d",
        "txn_count_30d",
        "txn_amount_30d",
        "avg_amount_30d",
    ],
}
FEATURE_REFS = [f"{view}:{f}" for view, features in VIEW_FEATURES.items() for f in features]
ALL_FEATURES = [f for features in VIEW_FEATURES.values() for f in features]


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
    done = materialize_incremental(fresh_workspace.repo, moment, progress=False)
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
    materialize(fresh_workspace.repo, start, end, progress=False)
    users = _users(workspace, n=400)
    ours, theirs = online(fresh_workspace.repo, users), online(feast_ws.repo, users)
    assert_same_values(ours, theirs, ALL_FEATURES)
    assert ours["txn_count_30d"].notna().sum() > 0


def test_materialize_is_idempotent_and_incremental_continues(fresh_workspace):
    from feast import FeatureStore

    start, end = DATA_END - timedelta(days=30), DATA_END - timedelta(days=20)
    first = materialize(fresh_workspace.repo, start, end, progress=False)
    users = _users(fresh_workspace)
    before = online(fresh_workspace.repo, users)
    again = materialize(fresh_workspace.repo, start, end, progress=False)
    assert [v.rows for v in again] == [v.rows for v in first]
    assert_same_values(online(fresh_workspace.repo, users), before, ALL_FEATURES)

    # The registry recorded the interval: incremental continues from `end`.
    view = FeatureStore(repo_path=str(fresh_workspace.repo)).get_feature_view("user_profile")
    assert view.most_recent_end_time == end
    later = DATA_END
    done = materialize_incremental(fresh_workspace.repo, later, progress=False)
    assert {v.start for v in done} == {end}
    assert materialize_incremental(fresh_workspace.repo, later, progress=False) == []
    # Users whose profile was seen in the materialized intervals are served what training
    # would see at `later`; older profiles were never materialized and stay absent.
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
