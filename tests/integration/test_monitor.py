"""The monitor component on real pipeline outputs: a generated data set whose last two weeks
drift (`portside data generate --drift-days 14`), its training set built by Feast (features),
the baseline written by validate (Great Expectations) on the weeks before, and the monitor run
through the container entrypoint on a window before the drift and on the drifted one."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

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
    run_cli,
    run_command,
    run_component,
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
    from components.features.run import run as build_training_set
    from components.validate.run import run as validate

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
