"""The monitor component on real pipeline outputs: a generated data set whose last two weeks
drift (`portside data generate --drift-days 14`), its training set built by Feast (features),
the baseline written by validate (Great Expectations) on the weeks before, and the monitor run
through the container entrypoint on a window before the drift and on the drifted one."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    BIN,
    DATA_END,
    EXAMPLE,
    EXPECTATION_SUITE,
    ROOT,
    copy_training_set,
    make_workspace,
    prediction_log_rows,
    run_cli,
    run_command,
    run_component,
    write_prediction_log,
)

pytestmark = pytest.mark.integration
DRIFT_START = DATA_END - timedelta(days=14)
HOLDOUT_START = DRIFT_START - timedelta(days=14)
# The data starts 90 days before its end: the 30-day aggregates of its first month are still
# filling up, a real difference from later months that the monitor rightly flags. The baseline
# starts after it.
BASELINE_START = DATA_END - timedelta(days=60)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """The data, its training set and validate's baseline on [BASELINE_START, HOLDOUT_START)."""
    from portside.components.features.run import run as build_training_set
    from portside.components.validate.run import run as validate

    root = tmp_path_factory.mktemp("drift")
    sources = root / "sources"
    run_cli(
        [str(BIN / "portside"), "data", "generate", "--transactions", "20000", "--users", "400",
         "--seed", "11", "--end", DATA_END.isoformat(), "--drift-days", "14", "--quiet",
         "--out", str(sources)],
        cwd=root,
    )  # fmt: skip
    ws = make_workspace(root / "ws", sources=sources)
    run_cli([str(BIN / "feast"), "apply"], cwd=ws.repo)
    training_set = root / "training_set"
    build_training_set(
        entity_rows=str(sources / "transactions.parquet"),
        training_set=str(training_set),
        feature_repo=str(ws.repo),
        **EXAMPLE,
    )
    # nullable dtypes: an integer column with missing values stays an integer column
    frame = pd.read_parquet(training_set / "training_set.parquet", dtype_backend="numpy_nullable")
    times = frame["event_timestamp"]
    early = frame[(times >= BASELINE_START) & (times < HOLDOUT_START)]
    baseline_set = copy_training_set(training_set, root / "baseline_set", early)
    validation = root / "validation"
    validate(str(baseline_set), str(validation), str(EXPECTATION_SUITE), HOLDOUT_START.isoformat())
    return root, training_set, validation, ws


def _monitor(validation, training_set, out, start, end=""):
    args = ["--baseline", str(validation), "--window", str(training_set)]
    args += ["--monitoring", str(out), "--window-start", start.isoformat()]
    if end:
        args += ["--window-end", end.isoformat()]
    done = run_component("monitor", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "verdict.json").read_text())


def test_the_weeks_before_the_drift_look_like_the_baseline(drifted):
    root, training_set, validation, _ = drifted
    verdict = _monitor(validation, training_set, root / "holdout", HOLDOUT_START, DRIFT_START)
    assert verdict["verdict"] == "ok", verdict["reasons"]
    assert verdict["window"]["rows"] > 2_000


def test_the_drifted_weeks_are_flagged_with_the_features_that_moved(drifted):
    root, training_set, validation, _ = drifted
    verdict = _monitor(validation, training_set, root / "drifted", DRIFT_START)
    assert verdict["verdict"] == "drift"
    assert {"amount", "merchant_category"} <= set(verdict["drifted"])
    assert not {"account_age_days", "country"} & set(verdict["drifted"])  # these did not move
    reason = next(r for r in verdict["reasons"] if r.startswith("merchant_category"))
    assert "crypto_exchange" in reason
    metrics = json.loads((root / "drifted" / "metrics.json").read_text())
    amount = next(f for f in metrics["features"] if f["feature"] == "amount")
    assert amount["psi"] > 0.2 and amount["js_distance"] > 0.1
    report = (root / "drifted" / "report.html").read_text()
    assert "Monitoring: <span" in report and 'alt="merchant_category"' in report


def test_portside_monitor_builds_the_window_and_prints_the_verdict(drifted):
    """The CLI as a user runs it, in the folder holding the feature repo."""
    root, _, validation, ws = drifted
    command = [str(BIN / "portside"), "monitor", "--baseline", str(validation)]
    command += ["--entity-rows", str(ws.sources / "transactions.parquet")]
    command += ["--from", DRIFT_START.isoformat(), "--out", str(root / "cli")]
    settings = ["--param", "drift_metric=js", "--param", "drift_threshold=0.15"]
    out = run_cli([*command, *settings], cwd=ws.root)
    assert "monitor: drift over" in out
    assert "merchant_category: JS distance" in out and "> 0.15" in out
    assert str(root / "cli" / "monitoring" / "report.html") in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) <= 20, out
    done = run_command([*command, "--param", "drift_treshold=0.1"], cwd=ws.root)
    assert done.returncode == 1 and "drift_threshold" in done.stderr


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "data" / "test-artifacts" / "monitoring"


@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} missing (.ci/run installs it)")
def test_the_drift_report_renders_in_a_browser(drifted):
    """The self-contained report in headless Chromium: the verdict, the table and every plot
    drawn (the screenshot is kept under data/test-artifacts/monitoring/)."""
    from playwright.sync_api import sync_playwright

    root, training_set, validation, _ = drifted
    out = root / "rendered"
    _monitor(validation, training_set, out, DRIFT_START)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "drift_report.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto((out / "report.html").as_uri())
            assert page.locator("h1").inner_text().startswith("Monitoring: drift")
            images = page.locator("img")
            assert images.count() == len(json.loads((out / "verdict.json").read_text())["drifted"])
            widths = images.evaluate_all("els => els.map(e => e.naturalWidth)")
            assert all(width > 100 for width in widths)  # decoded, not broken
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def _serving_monitor(baseline: Path, log: Path, out: Path, ws, *more: str) -> dict:
    args = ["--baseline", str(baseline), "--window", str(log), "--monitoring", str(out)]
    args += ["--timestamp-column", "timestamp", "--feature-repo", str(ws.repo), *more]
    done = run_component("monitor", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "metrics.json").read_text())


def test_skew_names_the_feature_the_server_got_wrong(drifted, tmp_path):
    """The served values equal the offline point-in-time values: no feature skews; a log
    where a tenth of txn_count_7d values are off (a stale online store) skews on it alone."""
    root, training_set, validation, ws = drifted
    log = prediction_log_rows(training_set, HOLDOUT_START, DRIFT_START)
    good = write_prediction_log(log, tmp_path / "good")
    metrics = _serving_monitor(validation, good, tmp_path / "out-good", ws)
    skew = {s["feature"]: s for s in metrics["skew"]["features"]}
    assert metrics["skew"]["rows"] == len(log)
    assert "txn_count_7d" in skew and "amount" not in skew  # a request field: not compared
    assert all(s["mismatched"] == 0 for s in skew.values()), skew
    verdict = json.loads((tmp_path / "out-good" / "verdict.json").read_text())
    assert "skew" not in verdict["findings"]

    stale = log.copy()
    wrong = np.random.default_rng(1).random(len(stale)) < 0.1
    stale.loc[wrong, "txn_count_7d"] = stale.loc[wrong, "txn_count_7d"].fillna(0) + 3
    metrics = _serving_monitor(validation, write_prediction_log(stale, tmp_path / "stale"),
                               tmp_path / "out-stale", ws)  # fmt: skip
    verdict = json.loads((tmp_path / "out-stale" / "verdict.json").read_text())
    assert verdict["verdict"] == "skew" and verdict["skewed"] == ["txn_count_7d"], verdict
    skewed = next(s for s in metrics["skew"]["features"] if s["feature"] == "txn_count_7d")
    assert skewed["mismatched"] == int(wrong.sum())
    assert skewed["examples"][0]["served"] == skewed["examples"][0]["offline"] + 3
    report = (tmp_path / "out-stale" / "report.html").read_text()
    assert "Training/serving skew" in report


def test_realized_quality_per_arm_with_the_ab_readout(drifted, tmp_path):
    """The generator's delayed labels joined to the log by request id: the champion's ROC AUC
    is the one sklearn computes on the same pairs, inside its interval; a canary scoring at
    random is read out as worse; a champion scoring at random is a quality drop against the
    baseline's validation AUC. (Weeks old enough that the legitimate transactions are labelled
    too: the last 45 days' labels are frauds only.)"""
    from sklearn.metrics import roc_auc_score

    root, training_set, validation, ws = drifted
    start = DATA_END - timedelta(days=60)
    log = prediction_log_rows(training_set, start, start + timedelta(days=14))
    canary = np.random.default_rng(2).random(len(log)) < 0.3
    log.loc[canary, ["arm", "model_version"]] = ["canary", "2"]
    log.loc[canary, "score"] = np.random.default_rng(4).random(int(canary.sum()))
    write_prediction_log(log, tmp_path / "ab")
    baseline = tmp_path / "baseline"  # validate's statistics and a model's validation scores
    baseline.mkdir()
    (baseline / "statistics.json").write_text((validation / "statistics.json").read_text())
    bins = {"edges": [0.1, 0.3, 0.6], "counts": [70, 20, 6, 4]}
    (baseline / "reference_scores.json").write_text(
        json.dumps({"roc_auc": 0.9, "drift_bins": bins})
    )
    labels = ws.sources / "labels.parquet"
    more = ["--labels", str(labels), "--labels-key", "transaction_id"]
    more += ["--label-column", "is_fraud", "--min-labels", "100"]
    metrics = _serving_monitor(baseline, tmp_path / "ab", tmp_path / "out", ws, *more)
    assert metrics["window"]["rows"] == (~canary).sum()  # drift reads the champion's rows only
    arms = {a["arm"]: a for a in metrics["quality"]["arms"]}
    known = pd.read_parquet(labels).set_index("transaction_id")["is_fraud"]
    champion = log[~canary]
    labelled = champion[champion["request_id"].astype(int).isin(known.index)]
    truth = known.loc[labelled["request_id"].astype(int)].to_numpy()
    reported = arms["champion"]
    assert reported["labelled"] == len(labelled) and reported["positives"] == truth.sum()
    assert reported["roc_auc"] == pytest.approx(roc_auc_score(truth, labelled["score"]))
    assert reported["roc_auc_low"] < reported["roc_auc"] < reported["roc_auc_high"]
    assert reported["status"] == "ok" and arms["canary"]["model_version"] == "2"
    (readout,) = metrics["quality"]["ab"]
    assert readout["high"] < 0 and "worse" in readout["conclusion"], readout
    verdict = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert "quality-drop" not in verdict["findings"]  # the canary's quality is a readout

    log["score"] = np.random.default_rng(5).random(len(log))  # the champion broke
    write_prediction_log(log, tmp_path / "broken")
    _serving_monitor(baseline, tmp_path / "broken", tmp_path / "out-broken", ws, *more)
    verdict = json.loads((tmp_path / "out-broken" / "verdict.json").read_text())
    assert verdict["verdict"] == "quality-drop", verdict
    assert verdict["reasons"][0].startswith("quality drop: champion v1: ROC AUC 0.")


def test_portside_monitor_reads_a_prediction_log(drifted, tmp_path):
    """`portside monitor --prediction-log`: the log's window, the skew against the profile's
    feature repo, the delayed labels; either entity rows or a log, never both."""
    root, training_set, validation, ws = drifted
    start = DATA_END - timedelta(days=60)
    log = write_prediction_log(prediction_log_rows(training_set, start, DATA_END), tmp_path / "log")
    command = [str(BIN / "portside"), "monitor", "--baseline", str(validation)]
    command += ["--prediction-log", str(log), "--out", str(tmp_path / "out")]
    command += ["--from", (start + timedelta(days=7)).isoformat()]
    command += ["--until", (start + timedelta(days=14)).isoformat()]
    command += ["--labels", str(ws.sources / "labels.parquet")]
    command += ["--param", "labels_key=transaction_id", "--param", "label_column=is_fraud"]
    out = run_cli([*command, "--param", "min_labels=50"], cwd=ws.root)
    assert out.splitlines()[0].startswith("monitor: ") and "report " in out
    metrics = json.loads((tmp_path / "out" / "monitoring" / "metrics.json").read_text())
    rows, logged = metrics["window"]["rows"], len(pd.read_parquet(log))
    assert 0 < rows < logged and metrics["skew"]["rows"] == rows  # the week asked for only
    assert metrics["quality"]["arms"][0]["predictions"] == rows
    both = run_command([*command, "--entity-rows", str(ws.sources / "transactions.parquet")],
                       cwd=ws.root)  # fmt: skip
    assert both.returncode == 1 and "either --entity-rows or --prediction-log" in both.stderr
