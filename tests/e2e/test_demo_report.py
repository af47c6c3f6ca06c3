"""`make demo` reads like a report: the Makefile's own demo recipe, run in a copy of the repo on
a small data set, prints at most 40 lines in the documented order; a run stopped at the
validation gate names the step, its reason and the report to open."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import BIN, ROOT, run_command

pytestmark = pytest.mark.integration

MAX_LINES = 40
STEPS = ("features", "validate", "train", "evaluate", "push")


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, list[str]]:
    """The demo recipe as `make demo` runs it, in a fresh copy (UV=true: setup's `uv sync`
    becomes a no-op, this environment is the one under test)."""
    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(ROOT / "feature_repo", root / "feature_repo")
    done = subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), "demo", "UV=true",
         f"PORTSIDE={BIN / 'portside'}", "DEMO_TRANSACTIONS=20000"],
        cwd=root, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    return root, output.splitlines()


def _index(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, f"no line matches {pattern!r}:\n" + "\n".join(lines)
    return found[0]


def test_the_demo_prints_at_most_40_lines_in_order(demo):
    root, lines = demo
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    order = [
        r"^data: transactions 20,000, .* fraud rate \d+\.\d+%",
        r"^feast apply feature_repo: created .*feature service",
        r"^materialized user_daily_aggregates: [\d,]+ entities",
        *(rf"^  {step}\s+succeeded\s+ran\s+[\d.]+ s  \S" for step in STEPS),
        r"^pipeline succeeded in [\d.]+ s$",
        r"^  lineage  data/pipeline_runs/.*/pipeline_run\.json$",
        r"^  report   data/pipeline_runs/.*/validate/validation/report\.html$",
        r"^  plots    data/pipeline_runs/.*/evaluate/evaluation/ .*roc\.png",
        r"^serving fraud_model v1 on http://127\.0\.0\.1:\d+ \(ready in [\d.]+ s\)$",
        r"^  Vertex AI  POST /predict: v1 fraud_probability user 1 0\.\d{4}, .*user 3 0\.\d{4}$",
        r"^  OIP v2     POST /v2/models/fraud_model/infer: v1 fraud_probability 0\.\d{4}, "
        r"0\.\d{4}, 0\.\d{4}$",
        r"^stopped the server \(SIGTERM\)",
        r"^look further:$",
        rf"^  mlflow ui --backend-store-uri sqlite:///{re.escape(str(root.resolve()))}/data/mlflow",
    ]
    at = [_index(lines, pattern) for pattern in order]
    assert at == sorted(at), "\n".join(lines)
    assert not any("executor_input" in line or "Traceback" in line for line in lines)


def test_the_files_the_report_names_exist(demo):
    root, lines = demo
    for label in ("lineage", "report", "logs"):
        path = lines[_index(lines, rf"^  {label} ")].split(maxsplit=1)[1]
        assert (root / path).exists(), path
    (record,) = (root / "data" / "pipeline_runs").glob("*/pipeline_run.json")
    tasks = json.loads(record.read_text())["tasks"]
    assert [t["component"] for t in tasks] == list(STEPS)
    for task in tasks:  # each task's full log is in the run folder
        assert Path(task["log"]).is_file() and Path(task["log"]).stat().st_size > 0


def test_a_run_stopped_at_the_gate_names_the_step_reason_and_report(demo, tmp_path):
    root, _ = demo
    rows = pd.read_parquet(root / "data" / "sources" / "transactions.parquet")
    rows["amount"] = rows["amount"] * 1000  # a unit error the suite's max bound stops
    corrupted = tmp_path / "transactions.parquet"
    rows.to_parquet(corrupted, index=False)
    done = run_command(
        [str(BIN / "portside"), "run", "--local", "--entity-rows", str(corrupted)],
        cwd=root, timeout=900,
    )  # fmt: skip
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 1, "\n".join(lines)
    assert len(lines) <= 20, "\n".join(lines)
    failed = lines[_index(lines, r"^pipeline failed at validate after")]
    assert "amount" in failed, failed  # the one-line reason names the column
    report = lines[_index(lines, r"^  open     ")].split()[-1]
    assert report.endswith("report.html") and (root / report).is_file()
    log = lines[_index(lines, r"^  log      ")].split()[-1]
    assert (root / log).is_file()
    for step in ("train", "evaluate", "push"):
        assert re.search(rf"^  {step}\s+not run", lines[_index(lines, rf"^  {step} ")])
