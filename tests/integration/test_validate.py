"""The `validate` component with real Great Expectations on a training set built by `features`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_END, EXPECTATION_SUITE, NUMERIC_FEATURES, run_component
from corruptions import CORRUPTIONS, SCALINGS, write_training_set

from portside.components.common.artifacts import (
    STATISTICS_FILE,
    VALIDATION_REPORT_FILE,
    VALIDATION_RESULT_FILE,
    VALIDATION_SUMMARY_FILE,
)
from portside.components.errors import ConfigurationError, GateFailed, InputDataError
from portside.components.validate.run import read_training_set, run
from portside.components.validate.statistics import numeric_columns
from portside.components.validate.suite import load_suite

pytestmark = pytest.mark.integration

AS_OF = DATA_END.isoformat()  # the generated data ends here: fresh
OUTPUTS = (VALIDATION_RESULT_FILE, VALIDATION_REPORT_FILE, STATISTICS_FILE, VALIDATION_SUMMARY_FILE)


def _validate(training_set: Path, out: Path, **options):
    return run(str(training_set), str(out), suite=str(EXPECTATION_SUITE), as_of=AS_OF, **options)


@pytest.fixture(scope="module")
def good_training_set(training_set: Path) -> Path:
    return training_set


@pytest.fixture(scope="module")
def good_validation(good_training_set, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("validation") / "good"
    _validate(good_training_set, out)
    return out


def test_good_training_set_passes(good_training_set, good_validation):
    summary = json.loads((good_validation / VALIDATION_SUMMARY_FILE).read_text())
    assert summary["passed"] is True and summary["failures"] == []
    assert summary["evaluated"] == len(json.loads(EXPECTATION_SUITE.read_text())["expectations"])
    assert json.loads((good_validation / VALIDATION_RESULT_FILE).read_text())["success"] is True
    assert "PASSED" in (good_validation / VALIDATION_REPORT_FILE).read_text()


def test_outputs_are_deterministic(good_training_set, good_validation, tmp_path):
    """train caches on the content of this output: same input, same bytes."""
    _validate(good_training_set, tmp_path / "again")
    for name in OUTPUTS:
        assert (tmp_path / "again" / name).read_bytes() == (good_validation / name).read_bytes()


def test_statistics_are_a_sane_baseline(good_training_set, good_validation):
    frame = read_training_set(good_training_set / "training_set.parquet")
    stats = json.loads((good_validation / STATISTICS_FILE).read_text())
    assert stats["rows"] == len(frame)
    assert stats["label"]["rate"] == pytest.approx(frame["is_fraud"].mean())
    assert stats["time_range"]["max"] == frame["event_timestamp"].max().isoformat()
    assert "transaction_id" not in stats["numeric"]  # keys are not a distribution
    for name, column in stats["numeric"].items():
        assert column["count"] + column["null_count"] == len(frame), name
        quantiles = list(column["quantiles"].values())
        assert column["min"] <= quantiles[0] and quantiles[-1] <= column["max"], name
        assert np.all(np.diff(quantiles) >= 0), name
        histogram = column["histogram"]
        assert len(histogram["edges"]) == len(histogram["counts"]) + 1
        assert np.all(np.diff(histogram["edges"]) > 0), name
        binned = sum(histogram["counts"]) + histogram["below"] + histogram["above"]
        assert binned == column["count"], name
    assert stats["numeric"]["amount"]["mean"] == pytest.approx(frame["amount"].mean())
    assert set(stats["categorical"]) == {"merchant_category", "country"}
    for name, column in stats["categorical"].items():
        total = sum(column["frequencies"].values()) + column["other_frequency"]
        assert total == pytest.approx(1.0), name


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_fails_the_gate_naming_column_and_rule(name, good_training_set, tmp_path):
    corruption = CORRUPTIONS[name]
    frame = read_training_set(good_training_set / "training_set.parquet")
    corrupted = write_training_set(corruption.apply(frame), tmp_path / "training_set")
    with pytest.raises(GateFailed) as caught:
        _validate(corrupted, tmp_path / "validation")
    message = str(caught.value)
    assert corruption.rule in message and "\n" not in message
    if corruption.column is not None:
        assert repr(corruption.column) in message
    assert f"see {tmp_path / 'validation' / VALIDATION_REPORT_FILE}" in message
    for output in OUTPUTS:  # written before the gate closed
        assert (tmp_path / "validation" / output).is_file(), output
    summary = json.loads((tmp_path / "validation" / VALIDATION_SUMMARY_FILE).read_text())
    assert summary["passed"] is False
    assert summary["failures"][0]["rule"] == corruption.rule
    assert summary["failures"][0]["message"] in message
    assert "FAILED" in (tmp_path / "validation" / VALIDATION_REPORT_FILE).read_text()


def test_every_numeric_feature_is_scaled_by_a_corruption(good_training_set):
    frame = read_training_set(good_training_set / "training_set.parquet")
    assert numeric_columns(frame, load_suite(EXPECTATION_SUITE).roles) == list(NUMERIC_FEATURES)


@pytest.mark.parametrize("name", sorted(SCALINGS))
def test_scaled_feature_fails_the_gate_naming_column_and_rule(name, good_training_set, tmp_path):
    """x1000 and shifted, or x10: each numeric feature, alone, stops the gate on its own rules."""
    corruption = SCALINGS[name]
    frame = read_training_set(good_training_set / "training_set.parquet")
    corrupted = write_training_set(corruption.apply(frame), tmp_path / "training_set")
    with pytest.raises(GateFailed) as caught:
        _validate(corrupted, tmp_path / "validation")
    assert str(caught.value).startswith(f"column {corruption.column!r}: ")
    summary = json.loads((tmp_path / "validation" / VALIDATION_SUMMARY_FILE).read_text())
    assert {f["column"] for f in summary["failures"]} == {corruption.column}
    failed = {f["rule"]: f["message"] for f in summary["failures"]}
    assert "expect_column_values_to_be_of_type" not in failed  # the scaling keeps the type
    for rule in (corruption.rule, *corruption.also):
        assert rule in failed, (rule, failed)
        assert failed[rule].startswith(f"column {corruption.column!r}: ") and rule in failed[rule]
    if corruption.rule == "expect_column_quantile_values_to_be_between":
        assert "quantile 0.5 " in failed[corruption.rule]  # names the quantile and its range


def _cli_args(training_set: Path, out: Path) -> list[str]:
    return [
        "validate",
        *("--training-set", str(training_set), "--validation", str(out)),
        *("--suite", str(EXPECTATION_SUITE), "--as-of", AS_OF),
    ]


def test_entrypoint_exit_codes(good_training_set, tmp_path):
    from portside.components.__main__ import main

    # Exit 0 in-process (GX is imported already); exit 3 as a real process, which shows that
    # stderr holds just the one-line reason.
    assert main(_cli_args(good_training_set, tmp_path / "good")) == 0
    frame = read_training_set(good_training_set / "training_set.parquet")
    corruption = CORRUPTIONS["unseen_categories"]
    corrupted = write_training_set(corruption.apply(frame), tmp_path / "corrupted")
    done = run_component(*_cli_args(corrupted, tmp_path / "bad"))
    assert done.returncode == 3, done.stderr
    reason = done.stderr.strip().splitlines()
    assert len(reason) == 1, reason
    assert reason[0].startswith("validate: GateFailed: column 'merchant_category'")
    assert corruption.rule in reason[0]


def test_missing_training_set_names_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="training_set.parquet"):
        _validate(tmp_path / "empty", tmp_path / "validation")


def test_invalid_expectation_in_suite_is_a_configuration_error(good_training_set, tmp_path):
    suite = json.loads(EXPECTATION_SUITE.read_text())
    suite["expectations"].append({"type": "expect_column_values_to_be_between", "kwargs": {}})
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))
    index = len(suite["expectations"]) - 1
    with pytest.raises(ConfigurationError, match=f"expectation {index}"):
        run(str(good_training_set), str(tmp_path / "validation"), suite=str(path), as_of=AS_OF)
