"""The local run's report, rendered from fixture lineage records and run manifests."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from portside.components.lineage import RUN_MANIFEST_FILE
from portside.components.registry import PIPELINE_ORDER
from portside.pipelines.feast_apply import AppliedChanges, Change
from portside.pipelines.pipeline_commands import RunningStep
from portside.pipelines.progress import Ticker
from portside.pipelines.run_report import render

RESULTS = {
    "features": {
        "rows_out": 20_000,
        "null_counts": {"credit_limit": 0, "txn_count_1d": 396, "avg_amount_30d": 400},
        "label_column": "is_fraud",
        "label_rate": 0.029,
    },
    "validate": {"passed": True, "evaluated": 92, "failures": []},
    "train": {"validation_roc_auc": 0.92084, "best_epoch": 7, "epochs_run": 8},
    "evaluate": {
        "blessed": True,
        "reasons": ["PASS roc_auc 0.8649 >= minimum 0.7500"],
        "metrics": {"roc_auc": 0.86493},
        "champion": {"version": "3"},
    },
    "push": {"model_name": "fraud_model", "version": "4", "reused": False,
             "previous_champion": "3"},
}  # fmt: skip
OUTPUT = {"features": "training_set", "validate": "validation", "train": "model",
          "evaluate": "evaluation", "push": "pushed"}  # fmt: skip


def _task(run_dir: Path, component: str, status: str, result=None, error=None, seconds=1.5):
    """One task as local_run records it, with its run manifest and log in `run_dir`."""
    out = run_dir / component / OUTPUT[component]
    out.mkdir(parents=True)
    manifest = {
        "component": component,
        "status": status,
        "result": result,
        "error": error,
        "outputs": {OUTPUT[component]: {"path": str(out), "sha256": "0" * 64}},
    }
    (out / RUN_MANIFEST_FILE).write_text(json.dumps(manifest))
    log = run_dir / "logs" / f"{component}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text(f"{component} output\n")
    return {"component": component, "status": status, "seconds": seconds,
            "process_s": seconds + 4, "manifest": str(out / RUN_MANIFEST_FILE),
            "error": error, "log": str(log)}  # fmt: skip


def _run(run_dir: Path, tasks: list[dict], status: str, error=None):
    return SimpleNamespace(status=status, run_dir=str(run_dir), seconds=42.25, tasks=tasks,
                           error=error, logs=str(run_dir / "logs"))  # fmt: skip


def _lines(run) -> list[str]:
    return render(run, PIPELINE_ORDER, "pipeline_run.json", "sqlite:////x/mlflow.db")


def _line(lines: list[str], step: str) -> str:
    (found,) = [line for line in lines if line.split()[:1] == [step]]
    return found


def test_a_succeeded_run_has_one_line_per_step_with_its_key_figure(tmp_path):
    tasks = [_task(tmp_path, name, "succeeded", RESULTS[name]) for name in PIPELINE_ORDER]
    tasks[1]["status"] = "cached"  # validate served from the cache
    (tmp_path / "validate" / "validation" / "report.html").write_text("<html>")
    for plot in ("roc.png", "pr.png"):
        (tmp_path / "evaluate" / "evaluation" / plot).write_bytes(b"png")
    lines = _lines(_run(tmp_path, tasks, "succeeded"))

    assert [line.split()[0] for line in lines[:5]] == list(PIPELINE_ORDER)
    features = _line(lines, "features")
    assert "succeeded" in features and "ran" in features and "5.5 s" in features
    assert "20,000 rows, 796 nulls in 2 of 3 features, is_fraud rate 2.90%" in features
    validate = _line(lines, "validate")
    assert "cache hit" in validate and "0 of 92 expectations failed" in validate
    assert "validation ROC AUC 0.921 (best epoch 7 of 8)" in _line(lines, "train")
    assert "ROC AUC 0.865; blessed against champion v3" in _line(lines, "evaluate")
    assert "fraud_model v4 is the champion (was v3)" in _line(lines, "push")
    assert lines[5] == "pipeline succeeded in 42.2 s"
    assert f"  lineage  {tmp_path / 'pipeline_run.json'}" in lines
    assert f"  report   {tmp_path / 'validate' / 'validation' / 'report.html'}" in lines
    assert f"  plots    {tmp_path / 'evaluate' / 'evaluation'}/ pr.png, roc.png" in lines
    assert "  mlflow   sqlite:////x/mlflow.db" in lines
    assert not any("failed at" in line for line in lines)


def test_a_failed_run_names_the_step_its_reason_and_the_report_to_open(tmp_path):
    reason = "GateFailed: column amount: max 9e6 above 1e5 (3 failed; see report.html)"
    tasks = [
        _task(tmp_path, "features", "succeeded", RESULTS["features"]),
        _task(tmp_path, "validate", "gate_failed", error=reason),
    ]
    report = tmp_path / "validate" / "validation" / "report.html"
    report.write_text("<html>")
    lines = _lines(_run(tmp_path, tasks, "failed", error="validate gate_failed: ..."))

    assert f"pipeline failed at validate after 42.2 s: {reason}" in lines
    assert f"  open     {report}" in lines
    assert f"  log      {tmp_path / 'logs' / 'validate.log'}" in lines
    assert "gate failed" in _line(lines, "validate")
    for later in ("train", "evaluate", "push"):
        assert _line(lines, later).split()[1:] == ["not", "run", "the", "pipeline", "stopped",
                                                   "earlier"]  # fmt: skip
    assert not any(line.startswith("  report") for line in lines)  # named once, as "open"


def test_a_task_that_died_without_a_manifest_shows_its_log_tail(tmp_path):
    log = tmp_path / "logs" / "train.log"
    tasks = [_task(tmp_path, "features", "succeeded", RESULTS["features"])]
    log.write_text("Epoch 1/8\nTraceback (most recent call last):\nMemoryError\n")
    tasks.append({"component": "train", "status": "failed", "log": str(log),
                  "error": "killed by SIGKILL"})  # fmt: skip
    lines = _lines(_run(tmp_path, tasks, "failed"))
    assert "pipeline failed at train after 42.2 s: killed by SIGKILL" in lines
    at = lines.index(f"  log      {log}")
    assert lines[at + 1 : at + 4] == [
        "    Epoch 1/8",
        "    Traceback (most recent call last):",
        "    MemoryError",
    ]


def test_a_model_that_was_not_blessed_skips_push_and_says_why(tmp_path):
    evaluation = {**RESULTS["evaluate"], "blessed": False, "champion": None,
                  "reasons": ["PASS pr_auc", "FAIL roc_auc 0.6100 < minimum 0.7500"]}  # fmt: skip
    tasks = [_task(tmp_path, n, "succeeded", RESULTS[n]) for n in PIPELINE_ORDER[:3]]
    tasks.append(_task(tmp_path, "evaluate", "succeeded", evaluation))
    lines = _lines(_run(tmp_path, tasks, "succeeded"))
    assert "not blessed: roc_auc 0.6100 < minimum 0.7500" in _line(lines, "evaluate")
    assert _line(lines, "push").split() == ["push", "skipped", "not", "blessed"]
    assert "pipeline succeeded in 42.2 s" in lines


def test_the_live_line_names_the_running_step(tmp_path):
    watch = RunningStep(tmp_path)
    assert watch.describe() == "starting the pipeline"
    run_dir = tmp_path / "portside-training-1"
    _task(run_dir, "features", "succeeded", RESULTS["features"])
    _task(run_dir, "validate", "running")
    assert watch.describe() == "pipeline: validate running, 1 of 5 done"


def test_ticker_off_a_terminal_prints_a_heartbeat_and_no_carriage_returns():
    stream = io.StringIO()
    with Ticker(lambda: "train running", stream, heartbeat_s=0.05, terminal=False):
        time.sleep(0.18)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and "\r" not in stream.getvalue()
    assert all(line.startswith("  ... train running (") for line in lines)


def test_ticker_on_a_terminal_redraws_one_line_and_erases_it():
    stream = io.StringIO()
    with Ticker(lambda: 1 / 0, stream, terminal=True, redraw_s=0.02):
        time.sleep(0.1)
    text = stream.getvalue()
    assert "\n" not in text and "working" in text  # a failing description never stops it
    assert text.endswith("\r\033[K")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            [Change("project", "p", "created"), Change("feature view", "a", "created"),
             Change("feature view", "b", "created"), Change("entity", "user", "created")],
            ["feast apply repo: created 1 project, 2 feature views, 1 entity"],
        ),
        (
            [Change("feature view", "a", "updated"), Change("entity", "user", "unchanged")],
            ["feast apply repo: updated feature view a (1 unchanged)"],
        ),
        ([Change("entity", "user", "unchanged")], ["feast apply repo: no changes (1 unchanged)"]),
    ],
)  # fmt: skip
def test_feast_apply_summary_counts_what_is_new_and_names_what_changed(changes, expected):
    assert AppliedChanges("repo", registry=changes).summary() == expected


def test_feast_apply_summary_adds_the_online_store_tables():
    tables = [Change("sqlite table", "p_a", "created"), Change("sqlite table", "p_b", "deleted")]
    lines = AppliedChanges("repo", infrastructure=tables).summary()
    assert (
        lines[1]
        == "feast apply repo: online store created 1 sqlite table; deleted sqlite table p_b"
    )
