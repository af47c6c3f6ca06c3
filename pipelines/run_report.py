"""The local run as a short report: one line per pipeline step, where its files are, and on a
failure the step, its one-line reason and the file to open.

Built only from the run's lineage record (`PipelineRun`, `pipeline_run.json`) and the run
manifest each task wrote (components/lineage.py, components/runtime.py): the numbers shown are
the ones the components recorded, never read back from logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAILED = ("failed", "gate_failed")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # kfp.local colours its messages
LOG_TAIL_LINES = 12  # of a task that died before it could record why


@dataclass(frozen=True)
class Step:
    """One pipeline step as the report shows it."""

    name: str
    status: str  # succeeded | failed | gate_failed | skipped | not run
    source: str  # ran | cache hit | "" (did not run)
    seconds: float | None
    figure: str  # the step's key figure, or its one-line reason when it failed
    log: str | None
    manifest: dict[str, Any] | None


def load_steps(tasks: list[dict[str, Any]], order: tuple[str, ...]) -> list[Step]:
    """The pipeline's steps in `order` (then any other task), from the run's task records."""
    by_name = {task["component"]: task for task in tasks}
    ran = {name: _step(name, task) for name, task in by_name.items()}
    status, why = _why_not_run(list(ran.values()))
    names = [*order, *(name for name in by_name if name not in order)]
    return [ran.get(name) or Step(name, status, "", None, why, None, None) for name in names]


def _why_not_run(ran: list[Step]) -> tuple[str, str]:
    """(status, reason) of the steps without a task record: after a failure they never
    started; after a model that was not blessed the pipeline's condition skipped them."""
    if any(step.status in FAILED for step in ran):
        return "not run", "the pipeline stopped earlier"
    if any(_result(step).get("blessed") is False for step in ran):
        return "skipped", "not blessed"
    return "not run", ""


def _step(name: str, task: dict[str, Any]) -> Step:
    manifest = _read_manifest(task.get("manifest"))
    recorded = task.get("status", "failed")
    status = "succeeded" if recorded == "cached" else recorded
    # The process time (start-up and imports included) is what the user waited for.
    seconds = task.get("process_s") or task.get("seconds")
    source = "cache hit" if recorded == "cached" else "ran"
    if status in FAILED:
        error = task.get("error") or (manifest or {}).get("error")
        figure = one_line(error or "no reason recorded")
    else:
        figure = key_figure(name, (manifest or {}).get("result") or {})
    return Step(name, status, source, seconds, figure, task.get("log"), manifest)


def _read_manifest(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _result(step: Step) -> dict[str, Any]:
    return (step.manifest or {}).get("result") or {}


def one_line(text: str) -> str:
    """The last non-empty line of a message, without terminal colours."""
    lines = [line.strip() for line in ANSI.sub("", text).splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _features(result: dict[str, Any]) -> str:
    nulls = result.get("null_counts") or {}
    with_nulls = sum(1 for count in nulls.values() if count)
    figure = (
        f"{result['rows_out']:,} rows, {sum(nulls.values()):,} nulls "
        f"in {with_nulls} of {len(nulls)} features"
    )
    if result.get("label_rate") is not None:
        figure += f", {result['label_column']} rate {result['label_rate']:.2%}"
    return figure


def _validate(result: dict[str, Any]) -> str:
    return f"{len(result['failures'])} of {result['evaluated']} expectations failed"


def _train(result: dict[str, Any]) -> str:
    return (
        f"validation ROC AUC {result['validation_roc_auc']:.3f} "
        f"(best epoch {result['best_epoch']} of {result['epochs_run']})"
    )


def _evaluate(result: dict[str, Any]) -> str:
    figure = f"ROC AUC {result['metrics']['roc_auc']:.3f}; "
    if not result["blessed"]:
        failed = [r for r in result["reasons"] if not r.startswith("PASS")]
        return figure + "not blessed: " + (failed[0].removeprefix("FAIL ") if failed else "?")
    champion = result.get("champion")
    if champion:
        return figure + f"blessed against champion v{champion['version']}"
    return figure + "blessed (first run: no champion yet)"


def _push(result: dict[str, Any]) -> str:
    figure = f"{result['model_name']} v{result['version']} is the champion"
    if result.get("reused"):
        return figure + " (same content as before)"
    previous = result.get("previous_champion")
    return figure + (f" (was v{previous})" if previous else " (the first)")


# The key figure of each of Portside's components, from the result its manifest records.
KEY_FIGURES: dict[str, Callable[[dict[str, Any]], str]] = {
    "features": _features,
    "validate": _validate,
    "train": _train,
    "evaluate": _evaluate,
    "push": _push,
}


def key_figure(component: str, result: dict[str, Any]) -> str:
    describe = KEY_FIGURES.get(component)
    if describe is None or not result:
        return ""
    try:
        return describe(result)
    except (KeyError, TypeError, AttributeError):  # a result from another version
        return "(result not recognised)"


def step_line(step: Step) -> str:
    seconds = f"{step.seconds:6.1f} s" if step.seconds is not None else " " * 8
    status = step.status.replace("_", " ")
    return f"  {step.name:<9} {status:<11} {step.source:<9} {seconds}  {step.figure}".rstrip()


def show_path(path: str | Path) -> str:
    """A path relative to the working directory when it lies below it (shorter lines)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _files(steps: list[Step], pattern: str) -> list[Path]:
    """Files matching `pattern` directly in the steps' output directories."""
    found = []
    for step in steps:
        for output in ((step.manifest or {}).get("outputs") or {}).values():
            found += sorted(Path(output["path"]).glob(pattern))
    return found


def render(
    run: Any, order: tuple[str, ...], lineage_file: str, tracking_uri: str = ""
) -> list[str]:
    """The report of a finished local run (a `PipelineRun`) as lines to print; `tracking_uri`:
    where train and evaluate logged their MLflow runs."""
    steps = load_steps(run.tasks, order)
    lines = [step_line(step) for step in steps]
    failed = [step for step in steps if step.status in FAILED]
    if failed:
        step = failed[0]
        lines.append(f"pipeline failed at {step.name} after {run.seconds:.1f} s: {step.figure}")
        lines += _failure_details(step)
    elif run.status != "succeeded":  # failed without any step recording it
        reason = one_line(run.error or "")
        lines.append(f"pipeline {run.status} after {run.seconds:.1f} s: {reason}")
    else:
        lines.append(f"pipeline succeeded in {run.seconds:.1f} s")
    lines.append(f"  lineage  {show_path(Path(run.run_dir) / lineage_file)}")
    for step in steps:
        if step not in failed:  # a failed step's report is named above
            lines += [f"  report   {show_path(r)}" for r in _files([step], "*.html")]
        plots = _files([step], "*.png")
        for folder in sorted({p.parent for p in plots}):
            names = ", ".join(p.name for p in plots if p.parent == folder)
            lines.append(f"  plots    {show_path(folder)}/ {names}")
    if tracking_uri:
        lines.append(f"  mlflow   {tracking_uri}")
    if getattr(run, "logs", None):
        lines.append(f"  logs     {show_path(run.logs)}")
    return lines


def _failure_details(step: Step) -> list[str]:
    """Which file to open for a failed step: its report if it wrote one, else its log (and
    the log's end when the task died before its manifest could say why)."""
    details = [f"  open     {show_path(report)}" for report in _files([step], "*.html")]
    if step.log:
        details.append(f"  log      {show_path(step.log)}")
        if step.manifest is None:
            details += [f"    {line}" for line in _tail(Path(step.log), LOG_TAIL_LINES)]
    return details


def _tail(path: Path, count: int) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ANSI.sub("", line) for line in lines if line.strip()][-count:]
