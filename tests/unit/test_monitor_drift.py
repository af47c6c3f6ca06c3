"""The monitor component on generated frames: distances, the verdict's false-alarm rate on
windows from the baseline's own distribution, detection of each injected shift with the right
feature named, the minimum sample size, and bad input refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from portside.components.common.artifacts import MONITOR_METRICS_FILE as METRICS_FILE
from portside.components.common.artifacts import MONITOR_REPORT_FILE as REPORT_FILE
from portside.components.common.artifacts import VERDICT_FILE
from portside.components.errors import ConfigurationError, InputDataError
from portside.components.monitor.drift import jensen_shannon_distance, population_stability_index
from portside.components.monitor.run import run
from portside.components.validate.statistics import column_statistics
from portside.components.validate.suite import Roles

ROLES = Roles(keys=("user_id",), label="is_fraud", timestamp="event_timestamp")
CATEGORIES = ["grocery", "fuel", "travel", "online", "restaurants"]
START = pd.Timestamp("2026-10-01", tz="UTC")
SEEDS = range(30)


def frame(rows: int, seed: int, amount_scale: float = 1.0, categories=CATEGORIES,
          missing_rate: float = 0.05) -> pd.DataFrame:  # fmt: skip
    rng = np.random.default_rng(seed)
    amount = np.exp(rng.normal(np.log(35.0), 0.8, rows)) * amount_scale
    counts = rng.poisson(3.0, rows).astype("float64")
    counts[rng.random(rows) < missing_rate] = np.nan
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, 1000, rows),
            "event_timestamp": START + pd.to_timedelta(rng.integers(0, 86_400, rows), unit="s"),
            "amount": amount,
            "txn_count_7d": pd.array(counts, dtype="Float64").astype("Int64"),
            "merchant_category": rng.choice(categories, rows),
            "card_present": rng.random(rows) < 0.7,  # a boolean is a category
            "is_fraud": (rng.random(rows) < 0.03).astype("int64"),
        }
    )


def baseline(
    folder: Path, rows: int = 20_000, seed: int = 1_000, service: dict | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    statistics = column_statistics(frame(rows, seed), ROLES)
    statistics["feature_service"] = service
    (folder / "statistics.json").write_text(json.dumps(statistics))
    return folder


def window(path: Path, data: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data.to_parquet(path)
    return path


def test_the_distances_are_zero_for_equal_distributions_and_finite_for_unseen_bins():
    same = np.array([10, 20, 30, 40])
    assert population_stability_index(same, same * 3) == pytest.approx(0.0)
    assert jensen_shannon_distance(same, same * 3) == pytest.approx(0.0, abs=1e-7)
    unseen = np.array([0, 20, 30, 40])  # the empty bin's share is floored at 1e-4
    assert population_stability_index(same, unseen) == pytest.approx(0.70062, abs=1e-5)
    assert jensen_shannon_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)


def test_the_baseline_itself_as_window_has_no_drift_at_all(tmp_path):
    """DuckDB's binning of the window equals numpy's of the baseline: identical counts."""
    base = tmp_path / "validation"
    base.mkdir()
    data = frame(5_000, 3)
    statistics = column_statistics(data, ROLES)
    (base / "statistics.json").write_text(json.dumps(statistics))
    verdict = run(str(base), str(window(tmp_path / "w.parquet", data)), str(tmp_path / "out"))
    metrics = json.loads((tmp_path / "out" / METRICS_FILE).read_text())
    assert verdict.verdict == "ok"
    assert {f["feature"]: f["psi"] for f in metrics["features"]} == pytest.approx(
        {"amount": 0.0, "txn_count_7d": 0.0, "merchant_category": 0.0, "card_present": 0.0},
        abs=1e-9,
    )


def test_windows_from_the_same_distribution_raise_no_alarm_across_seeds(tmp_path):
    base = baseline(tmp_path / "validation")
    alarms = []
    for seed in SEEDS:
        data = window(tmp_path / f"w{seed}.parquet", frame(1_000, seed))
        verdict = run(str(base), str(data), str(tmp_path / f"out{seed}"))
        alarms += verdict.drifted
    assert alarms == []


@pytest.mark.parametrize(
    ("shift", "feature", "reason"),
    [
        ({"amount_scale": 1.6}, "amount", "amount: PSI"),
        ({"categories": [*CATEGORIES, "crypto_exchange"]}, "merchant_category", "crypto_exchange"),
        ({"missing_rate": 0.4}, "txn_count_7d", "; missing 5.0% -> "),
    ],
)
def test_each_injected_shift_is_detected_with_the_feature_named(tmp_path, shift, feature, reason):
    base = baseline(tmp_path / "validation")
    for seed in SEEDS[:5]:
        data = window(tmp_path / f"w{seed}.parquet", frame(2_000, seed, **shift))
        verdict = run(str(base), str(data), str(tmp_path / f"out{seed}"))
        assert verdict.verdict == "drift"
        assert verdict.drifted == [feature]
        assert reason in verdict.reasons[0]
    report = (tmp_path / f"out{seed}" / REPORT_FILE).read_text()
    assert f'<img alt="{feature}" src="data:image/svg+xml;base64,' in report
    assert (tmp_path / f"out{seed}" / "plots" / f"{feature}.svg").stat().st_size > 1000


def test_a_feature_gone_missing_is_drift_not_a_lack_of_data(tmp_path):
    base = baseline(tmp_path / "validation")
    data = frame(2_000, 1)
    data["txn_count_7d"] = pd.array([None] * len(data), dtype="Int64")
    verdict = run(str(base), str(window(tmp_path / "w.parquet", data)), str(tmp_path / "out"))
    assert verdict.drifted == ["txn_count_7d"]
    assert "missing 5.0% -> 100.0%" in verdict.reasons[0]


def test_nan_in_a_parquet_file_written_by_pyarrow_counts_as_missing(tmp_path):
    """pyarrow keeps NaN (not null) from numpy and leaves it out of the column's min/max; the
    window must still count it as missing, not as a value above every bin (duckdb#25521)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = baseline(tmp_path / "validation")
    data = frame(2_000, 1)
    counts = data["txn_count_7d"].to_numpy(dtype="float64", na_value=np.nan)
    table = pa.Table.from_pandas(data.drop(columns=["txn_count_7d"]), preserve_index=False)
    table = table.append_column("txn_count_7d", pa.array(counts, from_pandas=False))
    assert table.column("txn_count_7d").null_count == 0  # NaN, not null
    pq.write_table(table, tmp_path / "w.parquet")
    verdict = run(str(base), str(tmp_path / "w.parquet"), str(tmp_path / "out"))
    assert verdict.verdict == "ok", verdict.reasons
    metrics = json.loads((tmp_path / "out" / METRICS_FILE).read_text())
    (feature,) = [f for f in metrics["features"] if f["feature"] == "txn_count_7d"]
    assert feature["window_missing_rate"] == pytest.approx(np.isnan(counts).mean())


def test_a_small_window_is_not_enough_data_never_drift(tmp_path):
    base = baseline(tmp_path / "validation")
    data = window(tmp_path / "w.parquet", frame(200, 1, amount_scale=3.0))
    verdict = run(str(base), str(data), str(tmp_path / "out"), min_samples=500)
    assert verdict.verdict == "not enough data"
    assert verdict.drifted == []
    judged = run(str(base), str(data), str(tmp_path / "out2"), min_samples=100)
    assert judged.drifted == ["amount"]


def test_per_feature_thresholds_and_the_js_metric(tmp_path):
    base = baseline(tmp_path / "validation")
    data = window(tmp_path / "w.parquet", frame(2_000, 1, amount_scale=1.6))
    loose = run(str(base), str(data), str(tmp_path / "a"), feature_thresholds='{"amount": 50}')
    assert loose.verdict == "ok"
    js = run(str(base), str(data), str(tmp_path / "b"), drift_metric="js", drift_threshold=0.1)
    assert js.drifted == ["amount"] and "JS distance" in js.reasons[0]
    with pytest.raises(ConfigurationError, match="amout not in the baseline"):
        run(str(base), str(data), str(tmp_path / "c"), feature_thresholds='{"amout": 0.1}')


def test_the_time_window_selects_rows(tmp_path):
    base = baseline(tmp_path / "validation")
    data = frame(4_000, 1)
    late = data["event_timestamp"] >= START + pd.Timedelta(hours=12)
    data.loc[late, "amount"] *= 3.0  # only the second half of the day drifted
    path = window(tmp_path / "w.parquet", data)
    early = run(str(base), str(path), str(tmp_path / "a"), window_end="2026-10-01T12:00:00Z")
    later = run(str(base), str(path), str(tmp_path / "b"), window_start="2026-10-01T12:00:00Z")
    assert (early.verdict, later.drifted) == ("ok", ["amount"])
    assert early.window["rows"] + later.window["rows"] == 4_000


def _nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def test_an_empty_window_is_an_error_and_writes_no_verdict(tmp_path):
    base = baseline(tmp_path / "validation")
    path = window(tmp_path / "w.parquet", frame(1_000, 1))
    out = tmp_path / "out"
    with pytest.raises(InputDataError, match="holds no rows between 2027-01-01"):
        run(str(base), str(path), str(out), window_start="2027-01-01")
    assert _nothing_written(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputDataError, match="no Parquet files"):
        run(str(base), str(empty), str(out))
    assert _nothing_written(out)


def test_a_window_without_a_baseline_column_is_an_error_naming_it(tmp_path):
    base = baseline(tmp_path / "validation")
    path = window(tmp_path / "w.parquet", frame(1_000, 1).drop(columns=["txn_count_7d"]))
    with pytest.raises(InputDataError, match="lacks column\\(s\\) txn_count_7d"):
        run(str(base), str(path), str(tmp_path / "out"))
    assert _nothing_written(tmp_path / "out")


def test_a_window_of_another_feature_service_version_is_refused(tmp_path):
    base = baseline(tmp_path / "validation", service={"name": "fraud_v1", "hash": "a" * 64})
    built = tmp_path / "training_set"
    window(built / "training_set.parquet", frame(1_000, 1))
    manifest = {"feature_service": "fraud_v1", "feature_service_hash": "b" * 64}
    (built / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputDataError, match="version bbbbbbbbbbbb, but the baseline"):
        run(str(base), str(built), str(tmp_path / "out"))
    assert _nothing_written(tmp_path / "out")
    manifest["feature_service_hash"] = "a" * 64
    (built / "manifest.json").write_text(json.dumps(manifest))
    assert run(str(base), str(built), str(tmp_path / "out")).verdict == "ok"
    assert (tmp_path / "out" / VERDICT_FILE).is_file()


def test_a_baseline_without_drift_bins_asks_for_validate_again(tmp_path):
    base = baseline(tmp_path / "validation")
    statistics = json.loads((base / "statistics.json").read_text())
    del statistics["numeric"]["amount"]["drift_bins"]
    (base / "statistics.json").write_text(json.dumps(statistics))
    path = window(tmp_path / "w.parquet", frame(1_000, 1))
    with pytest.raises(InputDataError, match="'amount' has no drift_bins.*run validate again"):
        run(str(base), str(path), str(tmp_path / "out"))


def test_delong_auc_is_sklearns_and_its_interval_covers_like_a_95_percent_one():
    """Ties included (scores rounded); over repeated samples the interval holds the AUC of the
    population about 95% of the time."""
    from sklearn.metrics import roc_auc_score

    from portside.components.monitor.quality import Z_95, delong_auc

    rng = np.random.default_rng(0)
    labels = rng.random(2_000) < 0.1
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)
    auc, variance = delong_auc(labels, scores)
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    population = 0.7602  # Phi(1 / sqrt(2)): two unit normals one apart
    covered = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        labels = rng.random(1_000) < 0.2
        auc, variance = delong_auc(labels, rng.normal(labels * 1.0, 1.0))
        covered += abs(auc - population) <= Z_95 * np.sqrt(variance)
    assert 0.91 <= covered / 200 <= 0.99


def test_the_history_keeps_a_line_per_window_and_the_report_draws_the_trend(tmp_path):
    """Four daily windows, the amount drifting more each day: four history lines in window
    order; re-running a day replaces its line; the report draws the trend; a corrupt history
    is an error before anything is written."""
    from portside.components.monitor.history import read_history

    base = baseline(tmp_path / "validation")
    history = tmp_path / "history.jsonl"

    def day(n: int, scale: float, out: str):
        data = frame(2_000, n, amount_scale=scale)
        data["event_timestamp"] += pd.Timedelta(days=n)
        start, end = START + pd.Timedelta(days=n), START + pd.Timedelta(days=n + 1)
        return run(str(base), str(window(tmp_path / f"d{n}.parquet", data)), str(tmp_path / out),
                   window_start=start.isoformat(), window_end=end.isoformat(),
                   history=str(history))  # fmt: skip

    for n, scale in enumerate([1.0, 1.0, 1.3, 1.6]):
        day(n, scale, f"out{n}")
    day(1, 1.0, "again")  # a re-run of the second day
    records = read_history(history)
    assert len(records) == 4 and [r.window_start[:10] for r in records] == [
        "2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"
    ]  # fmt: skip
    amount = [r.scores["amount"] for r in records]
    assert amount[3] > amount[2] > max(amount[:2]) and records[3].verdict == "drift"
    report = (tmp_path / "out3" / REPORT_FILE).read_text()
    assert "Trend over the past 4 windows" in report and 'alt="trend"' in report
    assert "Trend over" not in (tmp_path / "out0" / REPORT_FILE).read_text()  # one window only

    history.write_text("not json\n")
    with pytest.raises(InputDataError, match="history.jsonl:1: not a monitoring history line"):
        day(5, 1.0, "bad")
    assert not (tmp_path / "bad" / VERDICT_FILE).exists()
