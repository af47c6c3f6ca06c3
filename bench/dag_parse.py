"""Benchmark `dag_parse`: how long each DAG file of dags/ takes to parse, in every runner mode.

For each DAG file and each `PORTSIDE_AIRFLOW_RUNNER` (local, kubernetes, vertex), with a
minimal `airflow.sdk` DAG alongside as the reference (the issue measured 0.19 s for one here):

- `airflow dags report -o json` over a DAG folder holding only that file, in a fresh
  AIRFLOW_HOME of its own (migrated SQLite metadata DB): Airflow's own parse duration;
- `python -c` importing the file in a fresh process (Airflow configured by the same home):
  the heavy modules that ended up in sys.modules, which must be none of HEAVY.

Target: <= 0.2 s per file in every mode (`airflow dags report`'s duration) with no heavy module
imported. A case over the target says which top-level imports cost most (`-X importtime`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import BIN, LOGS, ROOT, WORK, import_times, run_process, seconds, table

NAME = "dag_parse"
DAGS = ROOT / "dags"
RUNNERS = ("local", "kubernetes", "vertex")
TARGET_S = 0.2
HEAVY = ("tensorflow", "feast", "great_expectations", "google.cloud.aiplatform", "kfp", "tfx")
REFERENCE = "minimal_sdk_dag.py"
REFERENCE_DAG = '''"""The reference: the smallest airflow.sdk DAG."""
from datetime import datetime

from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG(dag_id="minimal_sdk_dag", start_date=datetime(2025, 1, 1), schedule=None):
    EmptyOperator(task_id="noop")
'''
# Imports airflow.sdk (what every DAG file pays: `sdk_import_s`), then the DAG file as the DAG
# processor would, a module from a path (`import_s`: the file's own cost on top), then lists
# what is loaded. Printed as the last line, JSON.
PROBE = """
import importlib.util, json, sys, time
path, heavy = sys.argv[1], sys.argv[2].split(",")
started = time.perf_counter()
import airflow.sdk
sdk = time.perf_counter() - started
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
wall = time.perf_counter() - started
loaded = sorted(h for h in heavy if h in sys.modules)
print(json.dumps({"sdk_import_s": round(sdk, 3), "import_s": round(wall, 3), "heavy_loaded": loaded,
                  "modules": len(sys.modules)}))
"""


def run(quick: bool = False) -> dict[str, Any]:
    work = WORK / NAME
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    reference = work / "reference" / REFERENCE
    reference.parent.mkdir()
    reference.write_text(REFERENCE_DAG)
    files = [reference, *sorted(DAGS.glob("*.py"))]
    runners = RUNNERS[:1] if quick else RUNNERS
    cases = [_case(work, path, runner) for path in files for runner in runners]
    failed = sum(1 for case in cases if not case["ok"])
    rows = [
        [
            case["file"],
            case["runner"],
            seconds(case["report_s"]),
            seconds(case.get("sdk_import_s")),
            seconds(case["import_s"]),
            seconds(case["report_wall_s"]),
            ", ".join(case["heavy_loaded"]) or "none",
            "yes" if case["ok"] else f"NO: {case['why']}",
        ]
        for case in cases
    ]
    rendered = table(
        f"DAG parse time per file and runner (target <= {TARGET_S} s in `airflow dags report`, "
        "no heavy module imported; the reference is a minimal airflow.sdk DAG)",
        ["file", "runner", "dags report s", "airflow.sdk import s", "file import s", "report cmd s"]
        + ["heavy", "met"],
        rows,
    )
    print(rendered, flush=True)
    return {
        "target_s": TARGET_S,
        "heavy": HEAVY,
        "cases": cases,
        "tables": [rendered],
        "failed": failed,
    }


def _case(work: Path, dag_file: Path, runner: str) -> dict[str, Any]:
    """One file in one mode: its own AIRFLOW_HOME and a DAG folder holding only that file."""
    label = f"{NAME}-{dag_file.stem}-{runner}"
    home = work / label / "home"
    folder = work / label / "dags"
    folder.mkdir(parents=True)
    shutil.copy(dag_file, folder / dag_file.name)
    env = _environment(home, folder, runner)
    case: dict[str, Any] = {"label": label, "file": dag_file.name, "runner": runner}
    migrated = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True
    )
    if migrated.returncode != 0:
        return case | _failure(f"airflow db migrate exited {migrated.returncode}", migrated.stderr)

    report = run_process(
        [str(BIN / "airflow"), "dags", "report", "-o", "json"], f"{label}-report", env=env
    )
    case["report_wall_s"] = report["wall_s"]
    rows = _report_rows(ROOT / report["log"]) if report["returncode"] == 0 else None
    if not rows:
        return case | _failure(f"airflow dags report failed (log: {report['log']})")
    case["report"] = rows
    case["report_s"] = sum(_duration_s(row["duration"]) for row in rows)
    case["dags"] = sorted(d for row in rows for d in row["dags"])

    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(folder / dag_file.name), ",".join(HEAVY)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return case | _failure(f"import exited {probe.returncode}", probe.stderr)
    case |= json.loads(probe.stdout.strip().splitlines()[-1])

    why = []
    if case["report_s"] > TARGET_S:
        why.append(f"{case['report_s']:.2f} s > {TARGET_S} s")
    if case["heavy_loaded"]:
        why.append("imports " + ", ".join(case["heavy_loaded"]))
    case["ok"], case["why"] = not why, "; ".join(why)
    if why:  # where the time goes
        traced = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", PROBE, str(folder / dag_file.name), ""],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        (LOGS / f"{label}.importtime.log").write_text(traced.stderr)
        case["import_times"] = import_times(traced.stderr)
        case["import_times"]["slowest"] = _slowest(traced.stderr)
    return case


def _environment(home: Path, folder: Path, runner: str) -> dict[str, str]:
    """The caller's environment without Airflow/Portside settings, plus this case's home."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PORTSIDE_"))}
    return keep | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PORTSIDE_AIRFLOW_RUNNER": runner,
    }


def _report_rows(log: Path) -> list[dict[str, Any]] | None:
    """The JSON rows of `airflow dags report -o json` from its log (warnings may precede)."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("["):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _duration_s(text: str) -> float:
    """`dags report` prints a timedelta: `0:00:00.123456`."""
    hours, minutes, secs = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


def _slowest(log: str, top: int = 8) -> list[tuple[str, float]]:
    """The modules with the largest cumulative import time (any depth)."""
    found = []
    for line in log.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():
            found.append((fields[2].strip(), int(fields[1]) / 1e6))
    return sorted(found, key=lambda item: -item[1])[:top]


def _failure(why: str, output: str = "") -> dict[str, Any]:
    print(f"    {why}\n{output[-2000:]}", flush=True)
    return {
        "ok": False,
        "why": why,
        "report_s": None,
        "import_s": None,
        "report_wall_s": None,
        "heavy_loaded": [],
    }
