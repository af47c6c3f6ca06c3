"""Benchmark `pipeline`: the whole local training pipeline, cold and fully cached.

For each size, in a fresh workspace (feature repo copy, `feast apply`, empty cache, pipeline
root and MLflow database), `portside run --local` runs twice with the same arguments:

- cold: nothing cached yet;
- cached: the same command again (whatever the components allow to be a cache hit is one);
- cached again: and once more (the cold run moved the registry's champion, which the first
  rerun's evaluate and push depend on).

Measured per run: the process wall time of `portside run` (the wrapper of components.py:
subprocess wall), the peak RSS of its largest single process (RUSAGE_CHILDREN.ru_maxrss: the
kfp.local tasks are subprocesses, so this is the largest task or the parent), and the peak of the
summed RSS of the process tree (polled every 0.1 s; a shorter spike can be missed).

Per step: status and `seconds` from the run's pipeline_run.json (the component's execute():
its work, lazy heavy imports included), the task's process time from kfp.local's log
("Executing task" to "finished with status"; millisecond timestamps) and the difference
(outside execute: interpreter, kfp executor, entrypoint imports, exit). What is left of the
wall is the parent's: startup before the first task (imports, compiling the pipeline), between
tasks and after the last. At the smallest size one more cold run (`--no-cache`) with
PYTHONPROFILEIMPORTTIME=1 attributes import time to each task (every process, tasks included,
prints `-X importtime`; a task's lines are the ones inside its section of the log).
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    BIN,
    ROOT,
    WORK,
    count,
    dataset,
    feature_workspace,
    gigabytes,
    seconds,
    table,
)
from bench.components import AS_OF, SUITE, import_times, run_process

NAME = "pipeline"
SIZES = (50_000, 1_000_000)
QUICK_SIZES = (5_000,)
TFX_REFERENCE_S = (93.0, 97.0)  # TFX at 50k rows on this machine, measured earlier by others
REFERENCE_ROWS = 50_000
COLD_MAX_S = TFX_REFERENCE_S[0] / 3  # at most a third of the (faster) reference
CACHED_MAX_S = 3.0
CACHED_AGAIN = "cached again"
STEPS = ("features", "validate", "train", "evaluate", "push")
# Unbuffered: the parent's own import lines (stderr) and the tasks' (its stdout) stay in order.
IMPORTTIME_ENV = {"PYTHONPROFILEIMPORTTIME": "1", "PYTHONUNBUFFERED": "1"}
TASK_INDENT = "    "  # kfp.local prints a task's output lines indented by this
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) - \w+ - (.*)$")


def run(quick: bool = False) -> dict[str, Any]:
    work = WORK / NAME
    shutil.rmtree(work, ignore_errors=True)
    sizes = QUICK_SIZES if quick else SIZES
    cases = []
    for n in sizes:
        sources, source_rows = dataset(transactions=n)
        root = work / str(n)
        repo = feature_workspace(root / "workspace", sources)
        command = [
            str(BIN / "portside"),
            "run",
            "--local",
            "--entity-rows",
            str(sources / "transactions.parquet"),
            "--pipeline-root",
            str(root / "runs"),
            "--cache-dir",
            str(root / "cache"),
            "--param",
            f"feature_repo={repo}",
            "--param",
            f"expectation_suite={SUITE}",
            "--param",
            f"as_of={AS_OF}",
            "--param",
            f"tracking_uri={root / 'mlflow.db'}",
        ]
        runs: list[tuple[str, list[str], dict[str, str] | None]] = [
            ("cold", command, None),
            ("cached", command, None),
            # The cold run's push made its model the champion, so the first rerun's evaluate
            # (compared against "no champion") cannot be reused; the next rerun shows the
            # steady state.
            (CACHED_AGAIN, command, None),
        ]
        if n == sizes[0]:
            runs.append(("importtime", [*command, "--no-cache"], IMPORTTIME_ENV))
        for kind, arguments, env in runs:
            done = run_process(arguments, f"{NAME}-{n}-{kind}", env=env)
            case = {"transactions": n, "source_rows": source_rows, "run": kind, **done}
            case |= breakdown(case, root / "runs")
            if kind != "importtime":
                case["targets"] = _verdict(case)
                first = next((c for c in cases if c["transactions"] == n), case)
                if case.get("code_version") != first.get("code_version"):
                    case["targets"] += " (code changed since the cold run: not comparable)"
            cases.append(case)

    tables = [_summary_table(cases), _steps_table(cases)]
    if any(c["run"] == "importtime" for c in cases):
        tables.append(_imports_table(cases))
    for text in tables:
        print(text, flush=True)
    return {
        "sizes": list(sizes),
        "tfx_reference_s": {"rows": REFERENCE_ROWS, "seconds": TFX_REFERENCE_S},
        "cases": cases,
        "tables": tables,
        "failed": sum(c["returncode"] != 0 for c in cases),
    }


def breakdown(case: dict[str, Any], runs_root: Path) -> dict[str, Any]:
    """Per-task status/seconds (pipeline_run.json) and process time (kfp.local log)."""
    log = ANSI.sub("", (ROOT / case["log"]).read_text())
    found = re.search(r"lineage: (\S+pipeline_run\.json)", log)
    if found:
        record_path = Path(found.group(1))
    else:  # a failed run still writes its record; the newest one is this run's
        candidates = sorted(runs_root.glob("*/pipeline_run.json"), key=lambda p: p.stat().st_mtime)
        record_path = candidates[-1] if candidates else None
    out: dict[str, Any] = {}
    if record_path is None or not record_path.is_file():
        return {"breakdown_error": "no pipeline_run.json"}
    record = json.loads(record_path.read_text())
    out["pipeline_run"] = str(record_path)
    out["pipeline_status"], out["pipeline_seconds"] = record["status"], record["seconds"]
    out["pipeline_error"] = record.get("error")
    out["code_version"] = record.get("code_version")  # a change between runs voids the cache

    started_at = datetime.fromtimestamp(case["started_at"])
    events: dict[str, dict[str, float]] = {}
    sections: dict[str, list[str]] = {}
    current = None
    pipeline_start = pipeline_end = None
    for line in log.splitlines():
        match = LOG_LINE.match(line)
        if not match:
            if current is not None:
                sections[current].append(line)
            continue
        moment = _clock(match.group(1), started_at)
        message = match.group(2)
        if message.startswith("Running pipeline"):
            pipeline_start = moment
        elif task := re.match(r"Executing task '([^']+)'", message):
            current = task.group(1)
            events.setdefault(current, {})["start"] = moment
            sections[current] = []
        elif task := re.match(r"Task '([^']+)' finished with status (\w+)", message):
            events.setdefault(task.group(1), {})["end"] = moment
            events[task.group(1)]["kfp_status"] = task.group(2)
            current = None
        elif message.startswith("Pipeline ") and "finished with status" in message:
            pipeline_end = moment

    head = log.split("Executing task", 1)[0]  # the parent alone: start-up, compile
    parent_imports = import_times(head)
    if parent_imports["imports_total_s"]:
        out["parent_imports"] = parent_imports
    tasks = []
    manifests = {t["component"]: t for t in record["tasks"]}
    for name in STEPS:
        task: dict[str, Any] = {"step": name}
        manifest = manifests.get(name)
        if manifest is not None:
            task["status"], task["seconds"] = manifest["status"], manifest["seconds"]
        else:
            task["status"] = "not run"
        event = events.get(name, {})
        if "start" in event and "end" in event:
            task["process_s"] = round(event["end"] - event["start"], 3)
            task["kfp_status"] = event.get("kfp_status")
            if "seconds" in task:
                task["outside_execute_s"] = round(task["process_s"] - task["seconds"], 3)
        if name in sections:
            imported = import_times("\n".join(sections[name]), indent=TASK_INDENT)
            if imported["imports_total_s"]:
                task["imports"] = imported
        tasks.append(task)
    out["tasks"] = tasks
    if pipeline_start is not None and pipeline_end is not None and case["wall_s"] is not None:
        process_start = case["started_at"]
        in_tasks = sum(t.get("process_s", 0.0) for t in tasks)
        out["orchestration"] = {
            "before_first_task_s": round(pipeline_start - process_start, 3),
            "between_tasks_s": round(pipeline_end - pipeline_start - in_tasks, 3),
            "after_last_task_s": round(process_start + case["wall_s"] - pipeline_end, 3),
            "in_tasks_s": round(in_tasks, 3),
        }
    return out


def _clock(text: str, started_at: datetime) -> float:
    """A log time of day (local, like kfp.local's) as a Unix time on or after the run's day."""
    moment = datetime.combine(started_at.date(), datetime.strptime(text, "%H:%M:%S.%f").time())
    if moment < started_at - timedelta(hours=1):  # the run crossed midnight
        moment += timedelta(days=1)
    return moment.timestamp()


def _verdict(case: dict[str, Any]) -> str:
    if case["returncode"] != 0:
        return "failed"
    if case["run"] in ("cached", CACHED_AGAIN):
        if case["wall_s"] < CACHED_MAX_S:
            return "pass"
        return f"MISS: {case['wall_s']:.1f} s >= {CACHED_MAX_S:.0f} s"
    if case["transactions"] != REFERENCE_ROWS:
        return "- (reference is at 50k)"
    if case["wall_s"] <= COLD_MAX_S:
        return f"pass ({TFX_REFERENCE_S[0] / case['wall_s']:.1f}x faster than TFX)"
    return f"MISS: {case['wall_s']:.1f} s > {COLD_MAX_S:.0f} s"


def _summary_table(cases: list[dict[str, Any]]) -> str:
    rows = []
    for c in cases:
        statuses = [t["status"] for t in c.get("tasks", [])]
        orchestration = c.get("orchestration", {})
        rows.append(
            [
                count(c["transactions"]),
                c["run"] + (" (--no-cache)" if c["run"] == "importtime" else ""),
                seconds(c["wall_s"]),
                gigabytes(c["peak_rss_gb"]),
                gigabytes(c["tree_peak_rss_gb"]),
                seconds(c.get("cpu_s")),
                f"{statuses.count('succeeded')}/{statuses.count('cached')}",
                seconds(orchestration.get("before_first_task_s")),
                seconds(orchestration.get("in_tasks_s")),
                c.get("targets", "-"),
                " ".join(f"{x:.2f}" for x in c["load_average_before"]),
            ]
        )
    return table(
        f"{NAME}: `portside run --local` end to end (targets: cold at 50k <= {COLD_MAX_S:.0f} s, "
        f"a third of TFX's {TFX_REFERENCE_S[0]:.0f}-{TFX_REFERENCE_S[1]:.0f} s measured earlier "
        f"by others on this machine; cached < {CACHED_MAX_S:.0f} s). peak RSS = largest single "
        "process (ru_maxrss), tree = polled sum over the process tree; CPU s of the tree",
        [
            "transactions",
            "run",
            "wall s",
            "peak RSS GB",
            "tree GB",
            "CPU s",
            "ran/cached",
            "before 1st task s",
            "in tasks s",
            "targets",
            "load avg before",
        ],
        rows,
    )


def _steps_table(cases: list[dict[str, Any]]) -> str:
    rows = []
    for c in cases:
        if c["run"] == "importtime":
            continue
        label = f"{c['transactions']:,} {c['run']}"
        for t in c.get("tasks", []):
            rows.append(
                [
                    label,
                    t["step"],
                    t["status"],
                    seconds(t.get("process_s")),
                    seconds(t.get("seconds")),
                    seconds(t.get("outside_execute_s")),
                ]
            )
        orchestration = c.get("orchestration", {})
        for key, what in (
            ("before_first_task_s", "parent: before 1st task"),
            ("between_tasks_s", "parent: between tasks"),
            ("after_last_task_s", "parent: after last task"),
        ):
            rows.append([label, what, "-", seconds(orchestration.get(key)), "-", "-"])
        rows.append([label, "total (process wall)", "-", seconds(c["wall_s"]), "-", "-"])
    return table(
        f"{NAME}: per step. task s = kfp.local task process (log timestamps); execute s = "
        "run_manifest seconds (work incl. the component's lazy heavy imports; a cache hit is "
        "the lookup and restore); outside = task - execute (interpreter, kfp executor, "
        "entrypoint imports, exit)",
        ["run", "step", "status", "task s", "execute s", "outside s"],
        rows,
    )


def _imports_table(cases: list[dict[str, Any]]) -> str:
    rows = []
    for c in cases:
        if c["run"] != "importtime":
            continue
        parent = c.get("parent_imports", {})
        orchestration = c.get("orchestration", {})
        rows.append(
            [
                f"{c['transactions']:,}",
                "parent: before 1st task",
                seconds(orchestration.get("before_first_task_s")),
                seconds(parent.get("imports_total_s")),
                ", ".join(f"{k} {v:.2f}" for k, v in parent.get("top", {}).items()) or "-",
                seconds(
                    None
                    if not parent or "before_first_task_s" not in orchestration
                    else orchestration["before_first_task_s"] - parent["imports_total_s"]
                ),
            ]
        )
        for t in c.get("tasks", []):
            imports = t.get("imports", {})
            heavy = imports.get("heavy_first_import_s", {})
            rows.append(
                [
                    f"{c['transactions']:,}",
                    t["step"],
                    seconds(t.get("process_s")),
                    seconds(imports.get("imports_total_s")),
                    ", ".join(f"{k} {v:.2f}" for k, v in heavy.items()) or "-",
                    seconds(
                        None
                        if "process_s" not in t or not imports
                        else t["process_s"] - imports["imports_total_s"]
                    ),
                ]
            )
    return table(
        f"{NAME}: import vs work per step (one more cold run, --no-cache, "
        "PYTHONPROFILEIMPORTTIME=1, which itself adds some overhead); imports = all imports of "
        "the task's process",
        [
            "transactions",
            "step",
            "process s",
            "imports s",
            "heavy libraries (first import s); parent: largest imports",
            "rest s",
        ],
        rows,
    )
