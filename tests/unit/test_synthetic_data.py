"""Tests for the synthetic card-transaction generator (small data, seconds each)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from portside.synthetic_data import GeneratedData, SyntheticDataConfig, generate

N = 20_000
TS = pa.timestamp("us", tz="UTC")
CONFIG = SyntheticDataConfig(transactions=N)
FILES = ("transactions", "user_profiles", "user_daily_aggregates", "labels")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> GeneratedData:
    return generate(CONFIG, tmp_path_factory.mktemp("synthetic"), progress=False)


@pytest.fixture(scope="module")
def tx(data: GeneratedData) -> pd.DataFrame:
    return pd.read_parquet(data.transactions)


@pytest.fixture(scope="module")
def profiles(data: GeneratedData) -> pd.DataFrame:
    return pd.read_parquet(data.user_profiles)


@pytest.fixture(scope="module")
def aggregates(data: GeneratedData) -> pd.DataFrame:
    return pd.read_parquet(data.user_daily_aggregates)


def _tables(data: GeneratedData) -> dict[str, pa.Table]:
    return {name: pq.read_table(getattr(data, name)) for name in FILES}


def test_schemas_are_exact(data: GeneratedData) -> None:
    expected = {
        "transactions": [
            ("transaction_id", pa.int64()),
            ("user_id", pa.int64()),
            ("merchant_category", pa.string()),
            ("amount", pa.float64()),
            ("event_timestamp", TS),
            ("is_fraud", pa.int64()),
        ],
        "user_profiles": [
            ("user_id", pa.int64()),
            ("account_age_days", pa.int64()),
            ("credit_limit", pa.float64()),
            ("country", pa.string()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
        ],
        "user_daily_aggregates": [
            ("user_id", pa.int64()),
            ("txn_count_1d", pa.int64()),
            ("txn_amount_1d", pa.float64()),
            ("txn_count_7d", pa.int64()),
            ("txn_amount_7d", pa.float64()),
            ("txn_count_30d", pa.int64()),
            ("txn_amount_30d", pa.float64()),
            ("avg_amount_30d", pa.float64()),
            ("event_timestamp", TS),
            ("created_timestamp", TS),
        ],
        "labels": [
            ("transaction_id", pa.int64()),
            ("is_fraud", pa.int64()),
            ("labelled_at", TS),
        ],
    }
    for name, table in _tables(data).items():
        actual = [(f.name, f.type) for f in table.schema]
        assert actual == expected[name], name
        assert data.rows[name] == table.num_rows > 0
    assert data.out_dir.is_dir()


def test_transactions_shape(tx: pd.DataFrame) -> None:
    assert len(tx) == N
    assert (tx["transaction_id"].to_numpy() == np.arange(N)).all()
    assert tx["event_timestamp"].is_monotonic_increasing
    end = pd.Timestamp(CONFIG.end)
    assert tx["event_timestamp"].min() >= end - pd.Timedelta(days=CONFIG.days)
    assert tx["event_timestamp"].max() < end
    assert (tx["amount"] > 0).all()
    assert np.allclose(tx["amount"], tx["amount"].round(2))
    assert set(tx["is_fraud"].unique()) == {0, 1}
    shares = tx["merchant_category"].value_counts(normalize=True)
    assert {"grocery", "gift_cards", "electronics", "travel"} <= set(shares.index)
    assert shares["grocery"] > shares["gift_cards"]
    # Daytime is busier than the small hours.
    hours = tx["event_timestamp"].dt.hour
    assert hours.between(12, 20).mean() > 3 * hours.between(1, 4).mean()


def test_same_seed_same_tables_other_seed_differs(data: GeneratedData, tmp_path: Path) -> None:
    again = _tables(generate(CONFIG, tmp_path / "again", progress=False))
    first = _tables(data)
    for name in FILES:
        assert again[name].equals(first[name]), name
    other_config = SyntheticDataConfig(transactions=N, seed=CONFIG.seed + 1)
    other = _tables(generate(other_config, tmp_path / "other", progress=False))
    for name in FILES:
        assert not other[name].equals(first[name]), name


def test_fraud_rate_near_target(data: GeneratedData, tx: pd.DataFrame) -> None:
    rate = tx["is_fraud"].mean()
    assert 0.02 <= rate <= 0.05
    assert abs(rate - CONFIG.fraud_rate) <= 0.005
    assert data.fraud_rate == pytest.approx(rate)


def _rank_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos * n_neg), with average ranks for ties."""
    ranks = pd.Series(score).rank(method="average").to_numpy()
    pos = label == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_fraud_signal_is_learnable(tx: pd.DataFrame) -> None:
    relative = tx["amount"] / tx.groupby("user_id")["amount"].transform("median")
    label = tx["is_fraud"].to_numpy()
    assert _rank_auc(relative.to_numpy(), label) > 0.65
    assert _rank_auc(np.random.default_rng(0).random(len(label)), label) < 0.6
    by_category = tx.groupby("merchant_category")["is_fraud"].mean()
    assert by_category["gift_cards"] > by_category["grocery"]
    assert by_category["electronics"] > by_category["grocery"]


def test_rank_auc_helper() -> None:
    assert _rank_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert _rank_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert _rank_auc(np.ones(4), np.array([0, 1, 0, 1])) == 0.5


def _first_versions(aggregates: pd.DataFrame) -> pd.DataFrame:
    ordered = aggregates.sort_values(["user_id", "event_timestamp", "created_timestamp"])
    return ordered.drop_duplicates(["user_id", "event_timestamp"], keep="first")


def test_daily_aggregates_match_transactions_without_leakage(
    tx: pd.DataFrame, aggregates: pd.DataFrame
) -> None:
    first = _first_versions(aggregates)
    sample = first.sample(300, random_state=0)
    by_user = {u: g for u, g in tx.groupby("user_id")}
    for row in sample.itertuples():
        times = by_user[row.user_id]["event_timestamp"]
        amounts = by_user[row.user_id]["amount"]
        for days in (1, 7, 30):
            inside = (times >= row.event_timestamp - pd.Timedelta(days=days)) & (
                times < row.event_timestamp
            )
            assert getattr(row, f"txn_count_{days}d") == inside.sum(), (row, days)
            expected_amount = amounts[inside].sum()
            assert getattr(row, f"txn_amount_{days}d") == pytest.approx(expected_amount, abs=0.01)
    average = first["txn_amount_30d"] / first["txn_count_30d"]
    assert np.allclose(first["avg_amount_30d"], average, rtol=0, atol=0.0051)  # cents
    # Event timestamps are midnights: the end of the aggregated day.
    stamps = first["event_timestamp"]
    assert (stamps == stamps.dt.floor("D")).all()


def test_daily_aggregates_rows_exactly_for_active_users(
    tx: pd.DataFrame, aggregates: pd.DataFrame
) -> None:
    start = pd.Timestamp(CONFIG.end) - pd.Timedelta(days=CONFIG.days)
    day = (tx["event_timestamp"] - start).dt.days
    active = {(u, d + k) for u, d in zip(tx["user_id"], day, strict=True) for k in range(7)}
    active = {(u, d) for u, d in active if d < CONFIG.days}
    first = _first_versions(aggregates)
    emitted = set(
        zip(first["user_id"], (first["event_timestamp"] - start).dt.days - 1, strict=True)
    )
    assert emitted == active
    assert (first["txn_count_7d"] >= 1).all()


def test_daily_aggregates_have_late_and_backfilled_rows(aggregates: pd.DataFrame) -> None:
    delay = aggregates["created_timestamp"] - aggregates["event_timestamp"]
    assert (delay > pd.Timedelta(0)).all()
    late = delay > pd.Timedelta(days=1)
    assert 0.005 < late.mean() < 0.06
    assert (delay[~late] <= pd.Timedelta(hours=4)).all()

    keys = ["user_id", "event_timestamp"]
    dup = aggregates[aggregates.duplicated(keys, keep=False)]
    assert 0.003 < dup[keys].drop_duplicates().shape[0] / len(aggregates) < 0.03
    for _, versions in dup.groupby(keys):
        versions = versions.sort_values("created_timestamp")
        assert len(versions) == 2
        original, corrected = versions.iloc[0], versions.iloc[1]
        assert corrected["created_timestamp"] - original["created_timestamp"] >= pd.Timedelta(
            days=1
        )
        assert corrected["txn_count_7d"] == original["txn_count_7d"]
    corrected_amounts = dup.groupby(keys)["txn_amount_30d"].nunique()
    assert (corrected_amounts == 2).mean() > 0.9


def test_profiles_history(tx: pd.DataFrame, profiles: pd.DataFrame) -> None:
    n_users = CONFIG.n_users
    assert set(profiles["user_id"]) == set(range(n_users))
    assert (profiles["created_timestamp"] > profiles["event_timestamp"]).all()
    assert (profiles["created_timestamp"] - profiles["event_timestamp"]).max() < pd.Timedelta(
        days=1
    )
    assert (profiles["credit_limit"] > 0).all()
    countries = profiles.drop_duplicates("user_id")["country"].value_counts(normalize=True)
    assert 5 <= len(countries) <= 12 and countries.iloc[0] > 2 * countries.iloc[-1]

    first_profile = profiles.groupby("user_id")["event_timestamp"].min()
    first_txn = tx.groupby("user_id")["event_timestamp"].min()
    # Nobody transacts before their first profile version exists.
    assert (first_txn >= first_profile.loc[first_txn.index]).all()
    start = pd.Timestamp(CONFIG.end) - pd.Timedelta(days=CONFIG.days)
    signed_up_inside = first_profile[first_profile > start]
    assert 0.01 < len(signed_up_inside) / n_users < 0.12
    # Those users appear inside the window with no earlier history at all.
    assert len(signed_up_inside.index.intersection(first_txn.index)) > 0
    first_rows = profiles.sort_values("event_timestamp").drop_duplicates("user_id")
    new_users = first_rows[first_rows["user_id"].isin(signed_up_inside.index)]
    assert (new_users["account_age_days"] == 0).all()

    versions = profiles.groupby("user_id").size()
    assert 0.15 < (versions > 1).mean() < 0.45
    assert versions.max() <= 4
    updates = profiles.sort_values(["user_id", "event_timestamp"])
    updates = updates[updates.duplicated("user_id", keep="first")]
    assert (updates["event_timestamp"] >= start).all()
    # account_age_days advances with event time (same signup date across versions).
    ordered = profiles.sort_values(["user_id", "event_timestamp"])
    age_step = ordered.groupby("user_id")["account_age_days"].diff().dropna()
    time_step = ordered.groupby("user_id")["event_timestamp"].diff().dropna().dt.total_seconds()
    assert (np.abs(age_step - time_step / 86_400) <= 1).all()
    limit_changed = ordered.groupby("user_id")["credit_limit"].nunique() > 1
    assert limit_changed.any()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"transactions": 0}, "transactions"),
        ({"users": 0}, "users"),
        ({"days": 1}, "days"),
        ({"fraud_rate": 0.0}, "fraud_rate"),
        ({"fraud_rate": 0.5}, "fraud_rate"),
        ({"end": datetime(2026, 11, 1)}, "end"),
    ],
)
def test_config_validation_names_the_field(
    kwargs: dict[str, object], field: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        generate(SyntheticDataConfig(**kwargs), tmp_path, progress=False)  # type: ignore[arg-type]
    assert not list(tmp_path.iterdir())


def test_default_users_and_non_utc_end(tmp_path: Path) -> None:
    assert SyntheticDataConfig(transactions=1_000).n_users == 200
    assert SyntheticDataConfig(transactions=1_000_000).n_users == 10_000
    # A non-UTC but aware end is the same instant; tiny configs still work.
    cet = timezone(timedelta(hours=1))
    config = SyntheticDataConfig(
        transactions=50, users=3, days=2, end=datetime(2026, 1, 1, 1, tzinfo=cet)
    )
    result = generate(config, tmp_path, progress=False)
    tx = pd.read_parquet(result.transactions)
    assert len(tx) == 50 and tx["user_id"].between(0, 2).all()
    assert tx["event_timestamp"].max() < pd.Timestamp("2026-01-01", tz="UTC")


def test_a_drift_scenario_changes_only_the_drifted_period(tx, tmp_path):
    from portside.synthetic_data import DriftScenario

    start = CONFIG.end - timedelta(days=14)
    drifted = generate(
        SyntheticDataConfig(transactions=N, drift=DriftScenario(start=start)), tmp_path, False
    )
    after = pd.read_parquet(drifted.transactions)
    before_start = tx["event_timestamp"] < start
    pd.testing.assert_frame_equal(after[before_start], tx[before_start])
    late, plain = after[~before_start], tx[~before_start]
    assert (late["merchant_category"] == "crypto_exchange").mean() == pytest.approx(0.08, abs=0.02)
    assert "crypto_exchange" not in set(tx["merchant_category"])
    assert late["amount"].median() > 1.4 * plain["amount"].median()
    # the changed fraud pattern: the new category is where the fraud went
    new = late["merchant_category"] == "crypto_exchange"
    assert late.loc[new, "is_fraud"].mean() > 3 * late.loc[~new, "is_fraud"].mean()


def test_a_drift_start_outside_the_window_names_the_field():
    from portside.synthetic_data import DriftScenario

    config = SyntheticDataConfig(drift=DriftScenario(start=CONFIG.end + timedelta(days=1)))
    with pytest.raises(ValueError, match="drift start .* is outside the data's window"):
        config.validate()


def test_delayed_labels_are_the_ones_arrived_by_the_end(data: GeneratedData, tx) -> None:
    """A fraud is labelled by its chargeback (1-40 days on), a legitimate transaction once its
    45-day dispute window closed; only labels arrived by the window's end are in the feed."""
    from portside.synthetic_data.transactions import CHARGEBACK_DAYS, LEGIT_CONFIRMED_DAYS

    labels = pd.read_parquet(data.labels)
    assert labels["labelled_at"].max() <= CONFIG.end
    joined = labels.merge(tx, on="transaction_id", suffixes=("", "_tx"))
    assert len(joined) == len(labels) and (joined["is_fraud"] == joined["is_fraud_tx"]).all()
    delay = (joined["labelled_at"] - joined["event_timestamp"]).dt.total_seconds() / 86_400
    fraud = joined["is_fraud"] == 1
    assert (delay[~fraud] == LEGIT_CONFIRMED_DAYS).all()
    assert delay[fraud].between(*CHARGEBACK_DAYS).all()
    legit_cutoff = CONFIG.end - timedelta(days=LEGIT_CONFIRMED_DAYS)
    old = tx[tx["event_timestamp"] <= legit_cutoff - timedelta(days=CHARGEBACK_DAYS[1])]
    assert set(old["transaction_id"]) <= set(labels["transaction_id"])  # all known by now
    recent = joined[joined["event_timestamp"] > legit_cutoff]
    assert recent["is_fraud"].all() and len(recent) > 0  # the last weeks: frauds only
