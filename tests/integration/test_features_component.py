"""The `features` component against the real Feast repo, real DuckDB and Feast's own store."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import (
    BIN,
    EXAMPLE,
    EXAMPLE_ARGS,
    FEATURE_SERVICE,
    LABEL,
    ON_DEMAND_FEATURES,
    STORED_FEATURES,
    assert_same_values,
    run_cli,
    run_component,
)

from portside.components.errors import ConfigurationError, InputDataError
from portside.components.features.run import MANIFEST_FILE, TRAINING_SET_FILE, content_fingerprint
from portside.components.features.run import run as build

pytestmark = pytest.mark.integration

VIEW_FEATURES = STORED_FEATURES
ON_DEMAND = ON_DEMAND_FEATURES


def run(*args, **kwargs):
    """The component with the worked example's feature service and label."""
    return build(*args, **{**EXAMPLE, **kwargs})


def _entity_rows(workspace, n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rows = pd.read_parquet(workspace.sources / "transactions.parquet")
    return rows.sample(n, random_state=seed).reset_index(drop=True)


def _write(frame: pd.DataFrame | pa.Table, path):
    table = (
        frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    )
    pq.write_table(table, path)
    return str(path)


def test_feast_apply_then_plan_is_clean(workspace):
    out = run_cli([str(BIN / "feast"), "plan"], cwd=workspace.repo)
    assert "No changes to infrastructure" in out
    assert "Created " not in out and "Deleted " not in out
    # Feast re-stamps the file sources' meta timestamps on every plan; that is the only
    # "update" it may report for an unchanged repo.
    updated_properties = {
        line.split(":")[0].strip() for line in out.splitlines() if line.startswith("\t")
    }
    assert updated_properties <= {"batch_source"}, out


def test_training_set_equals_feast_duckdb_offline_store(workspace, tmp_path):
    from feast import FeatureStore

    entity = _entity_rows(workspace)
    manifest = run(
        _write(entity, tmp_path / "entities.parquet"),
        str(tmp_path / "out"),
        feature_repo=str(workspace.repo),
        point_in_time="feast",
    )
    ours = pd.read_parquet(tmp_path / "out" / TRAINING_SET_FILE)
    store = FeatureStore(repo_path=str(workspace.repo))
    reference = store.get_historical_features(
        entity_df=entity, features=store.get_feature_service("fraud_model_v1")
    ).to_df()
    reference = reference.set_index("transaction_id").loc[ours["transaction_id"]].reset_index()
    assert len(ours) == len(entity) == len(reference)
    assert ours["transaction_id"].tolist() == entity["transaction_id"].tolist()  # input order
    assert_same_values(ours, reference, manifest.features)
    # the comparison is not vacuous: most rows found history, some did not
    assert 0 < manifest.null_counts["txn_count_7d"] < len(entity) / 2


def test_as_known_never_uses_rows_created_after_the_event(workspace, tmp_path):
    entity = _entity_rows(workspace, n=5000, seed=1)
    path = _write(entity, tmp_path / "entities.parquet")
    as_known = run(path, str(tmp_path / "a"), feature_repo=str(workspace.repo))
    feast_like = run(
        path, str(tmp_path / "f"), feature_repo=str(workspace.repo), point_in_time="feast"
    )
    assert as_known.feature_service_hash == feast_like.feature_service_hash
    a = pd.read_parquet(tmp_path / "a" / TRAINING_SET_FILE)
    f = pd.read_parquet(tmp_path / "f" / TRAINING_SET_FILE)
    # Daily aggregates land hours after their event time, so as_known sees them later.
    assert a["txn_count_7d"].isna().sum() > f["txn_count_7d"].isna().sum()
    aggregates = pd.read_parquet(workspace.sources / "user_daily_aggregates.parquet")
    joined = a.merge(
        aggregates,
        left_on=["user_id", "txn_amount_30d", "txn_count_30d", "txn_amount_7d"],
        right_on=["user_id", "txn_amount_30d", "txn_count_30d", "txn_amount_7d"],
        suffixes=("", "_feature"),
    )
    assert len(joined) > 0
    # every value came from a row that existed and had landed at the entity's time
    used = joined.groupby("transaction_id").apply(
        lambda g: (
            (g["event_timestamp_feature"] <= g["event_timestamp"])
            & (g["created_timestamp"] <= g["event_timestamp"])
        ).any(),
        include_groups=False,
    )
    assert used.all()


def test_entrypoint_writes_training_set_and_manifest(workspace, tmp_path):
    entity = _entity_rows(workspace, n=2000, seed=2)
    entity = pd.concat([entity, entity.iloc[:5]], ignore_index=True)  # 5 duplicated rows
    path = _write(entity, tmp_path / "entities.parquet")
    out = tmp_path / "training_set"
    done = run_component(
        "features",
        "--entity-rows",
        path,
        "--training-set",
        str(out),
        "--feature-repo",
        str(workspace.repo),
        *EXAMPLE_ARGS,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    table = pq.read_table(out / TRAINING_SET_FILE)
    assert manifest["rows_in"] == manifest["rows_out"] == table.num_rows == 2005
    assert manifest["duplicate_entity_rows"] == 5
    assert manifest["content_fingerprint"] == content_fingerprint(table)
    assert manifest["feature_service"] == "fraud_model_v1"
    assert len(manifest["feature_service_hash"]) == 64
    for feature, nulls in manifest["null_counts"].items():
        assert table.column(feature).null_count == nulls
    # The training set's schema, from the FeatureService: what train takes as model inputs.
    assert manifest["entity_keys"] == ["user_id"]
    assert manifest["timestamp_column"] == "event_timestamp"
    assert manifest["label_column"] == LABEL
    assert manifest["features"] == VIEW_FEATURES + ON_DEMAND
    assert manifest["request_fields"] == ["amount", "merchant_category"]
    assert manifest["time_range"][0] == str(entity["event_timestamp"].min())
    assert abs(manifest["label_rate"] - entity["is_fraud"].mean()) < 1e-12


def test_unknown_users_keep_their_rows_with_nulls(workspace, tmp_path):
    entity = _entity_rows(workspace, n=50)
    entity.loc[:9, "user_id"] = 10_000_000 + entity.index[:10]
    manifest = run(
        _write(entity, tmp_path / "e.parquet"),
        str(tmp_path / "o"),
        feature_repo=str(workspace.repo),
    )
    out = pd.read_parquet(tmp_path / "o" / TRAINING_SET_FILE)
    assert len(out) == 50
    assert out.loc[:9, "credit_limit"].isna().all()
    assert manifest.rows_without_history["user_profile"] >= 10


def test_naive_aware_and_nanosecond_timestamps_give_the_same_training_set(workspace, tmp_path):
    entity = _entity_rows(workspace, n=500)
    aware = entity.copy()
    naive = entity.copy()
    naive["event_timestamp"] = naive["event_timestamp"].dt.tz_localize(None)
    other_zone = entity.copy()
    other_zone["event_timestamp"] = other_zone["event_timestamp"].dt.tz_convert("America/New_York")
    nanos = entity.copy()
    nanos["event_timestamp"] = nanos["event_timestamp"].astype(
        "datetime64[ns, UTC]"
    ) + pd.Timedelta(1, "ns")
    fingerprints = set()
    for name, frame in [("aware", aware), ("naive", naive), ("zone", other_zone), ("ns", nanos)]:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if name == "ns":
            table = table.set_column(
                table.column_names.index("event_timestamp"),
                "event_timestamp",
                pa.array(frame["event_timestamp"], pa.timestamp("ns", tz="UTC")),
            )
        m = run(
            _write(table, tmp_path / f"{name}.parquet"),
            str(tmp_path / name),
            feature_repo=str(workspace.repo),
        )
        fingerprints.add(m.content_fingerprint)
    assert len(fingerprints) == 1


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda df: df.drop(columns=["user_id"]), "missing column(s) 'user_id'"),
        (lambda df: df.drop(columns=["amount"]), "missing column(s) 'amount'"),
        (lambda df: df.drop(columns=["is_fraud"]), "missing column(s) 'is_fraud'"),
        (
            lambda df: df.assign(user_id=df["user_id"].astype(str)),
            "column 'user_id' has type string",
        ),
        (
            lambda df: df.assign(event_timestamp=df["event_timestamp"].astype(str)),
            "column 'event_timestamp' has type string",
        ),
        (
            lambda df: df.assign(event_timestamp=df["event_timestamp"].where(df.index > 2)),
            "column 'event_timestamp' has 3 null timestamp(s)",
        ),
        (lambda df: df.iloc[:0], "no entity rows"),
    ],
    ids=[
        "no-key",
        "no-request-field",
        "no-label",
        "string-key",
        "string-time",
        "null-time",
        "empty",
    ],
)
def test_bad_entity_rows_get_a_clear_error(workspace, tmp_path, corrupt, message):
    path = _write(corrupt(_entity_rows(workspace, n=20)), tmp_path / "bad.parquet")
    with pytest.raises(InputDataError) as error:
        run(path, str(tmp_path / "out"), feature_repo=str(workspace.repo))
    assert message in str(error.value)
    assert "bad.parquet" in str(error.value)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_entrypoint_reports_bad_input_on_one_line_with_exit_code_1(workspace, tmp_path):
    path = _write(_entity_rows(workspace, n=5).drop(columns=["user_id"]), tmp_path / "bad.parquet")
    done = run_component(
        "features",
        "--entity-rows",
        path,
        "--training-set",
        str(tmp_path / "o"),
        "--feature-repo",
        str(workspace.repo),
        *EXAMPLE_ARGS,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("features: InputDataError:") and "'user_id'" in last


def test_feature_service_and_label_have_no_default(workspace, tmp_path):
    path = _write(_entity_rows(workspace, n=5), tmp_path / "e.parquet")
    repo = str(workspace.repo)
    with pytest.raises(ConfigurationError, match="--feature-service, --label-column: required"):
        build(path, str(tmp_path / "o"), "", "", feature_repo=repo)
    with pytest.raises(ConfigurationError, match="^--label-column: required"):
        build(path, str(tmp_path / "o"), FEATURE_SERVICE, "", feature_repo=repo)
    args = ["--entity-rows", path, "--training-set", str(tmp_path / "o")]
    done = run_component("features", *args, "--feature-repo", repo)
    assert done.returncode == 2  # a usage error: the entrypoint has no value to fall back on
    assert "required: --feature-service, --label-column" in done.stderr
    assert not (tmp_path / "o" / TRAINING_SET_FILE).exists()


def test_extra_entity_row_columns_are_kept_but_are_not_features(workspace, tmp_path):
    entity = _entity_rows(workspace, n=200).assign(merchant_id=7, channel="web")
    manifest = run(
        _write(entity, tmp_path / "e.parquet"),
        str(tmp_path / "o"),
        feature_repo=str(workspace.repo),
    )
    out = pd.read_parquet(tmp_path / "o" / TRAINING_SET_FILE)
    assert {"merchant_id", "channel"} <= set(out.columns)
    assert manifest.features == VIEW_FEATURES + ON_DEMAND
    assert manifest.request_fields == ["amount", "merchant_category"]


def test_missing_file_and_unknown_service_are_clear(workspace, tmp_path):
    with pytest.raises(InputDataError, match="not found"):
        run(str(tmp_path / "nope.parquet"), str(tmp_path / "o"), feature_repo=str(workspace.repo))
    path = _write(_entity_rows(workspace, n=5), tmp_path / "e.parquet")
    with pytest.raises(ConfigurationError, match="feast apply"):
        run(path, str(tmp_path / "o"), feature_service="nope", feature_repo=str(workspace.repo))
    with pytest.raises(ConfigurationError, match="feature_store.yaml"):
        run(path, str(tmp_path / "o"), feature_repo=str(tmp_path))


def test_feast_engine_gives_the_same_training_set_as_duckdb_in_feast_semantics(workspace, tmp_path):
    path = _write(_entity_rows(workspace, n=2000, seed=5), tmp_path / "e.parquet")
    ours = run(path, str(tmp_path / "d"), feature_repo=str(workspace.repo), point_in_time="feast")
    feast_store = run(
        path,
        str(tmp_path / "f"),
        feature_repo=str(workspace.repo),
        point_in_time="feast",
        engine="feast",
    )
    assert (ours.engine, feast_store.engine) == ("duckdb", "feast")
    a = pd.read_parquet(tmp_path / "d" / TRAINING_SET_FILE)
    b = pd.read_parquet(tmp_path / "f" / TRAINING_SET_FILE)
    assert a["transaction_id"].tolist() == b["transaction_id"].tolist()
    assert_same_values(a, b, ours.features)
    assert ours.rows_without_history == feast_store.rows_without_history


def test_full_feature_names_give_the_same_schema_on_both_engines(workspace, tmp_path):
    path = _write(_entity_rows(workspace, n=1000, seed=6), tmp_path / "e.parquet")
    common = {"feature_repo": str(workspace.repo), "point_in_time": "feast"}
    ours = run(path, str(tmp_path / "d"), full_feature_names=True, **common)
    theirs = run(path, str(tmp_path / "f"), full_feature_names=True, engine="feast", **common)
    a = pq.read_table(tmp_path / "d" / TRAINING_SET_FILE)
    b = pq.read_table(tmp_path / "f" / TRAINING_SET_FILE)
    assert a.column_names == b.column_names
    assert "transaction_ratios__amount_to_avg_30d" in a.column_names
    assert "user_profile__credit_limit" in a.column_names
    assert "amount_to_avg_30d" not in a.column_names
    assert ours.features == theirs.features
    assert all("__" in name for name in ours.features)
    assert_same_values(a.to_pandas(), b.to_pandas(), ours.features)
    assert a.to_pandas()["transaction_ratios__amount_to_avg_30d"].notna().sum() > 0


def test_feast_engine_refuses_as_known_semantics(workspace, tmp_path):
    path = _write(_entity_rows(workspace, n=10), tmp_path / "e.parquet")
    with pytest.raises(ConfigurationError, match="--point-in-time feast"):
        run(path, str(tmp_path / "o"), feature_repo=str(workspace.repo), engine="feast")


def test_cached_training_set_is_reused_until_a_source_changes(workspace, tmp_path):
    from conftest import make_workspace

    from portside.components.registry import get_spec
    from portside.components.runtime import execute

    ws = make_workspace(tmp_path / "ws")
    run_cli([str(BIN / "feast"), "apply"], cwd=ws.repo)
    args = {
        "entity_rows": str(ws.sources / "transactions.parquet"),
        "training_set": str(tmp_path / "out"),
        "feature_repo": str(ws.repo),
        **EXAMPLE,
    }
    spec = get_spec("features")
    cache = tmp_path / "cache"
    assert execute(spec, args, cache_dir=cache).status == "succeeded"
    assert execute(spec, args, cache_dir=cache).status == "cached"
    profiles = ws.sources / "user_profiles.parquet"
    table = pq.read_table(profiles)
    limits = table.column("credit_limit").to_pylist()
    limits[0] += 1.0  # one corrected value in the offline store
    table = table.set_column(
        table.column_names.index("credit_limit"), "credit_limit", pa.array(limits)
    )
    pq.write_table(table, profiles)
    assert execute(spec, args, cache_dir=cache).status == "succeeded"
