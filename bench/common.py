"""Shared helpers: data and Feast repo copies, per-case subprocess measurement, tables.

A measured case runs as `python -m bench.<module> --case JSON --result PATH`; the child does
its setup (imports, reading inputs, opening the store), times only the call under test and
writes a JSON result. The parent reaps the child with `os.wait4`, whose rusage is that one
child's, so the peak RSS (ru_maxrss) of every case is its own, imports included.

Only the standard library is imported at module level: the children import this module too,
and anything imported here would count in their memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA = RESULTS / "data"  # generated sources, reused across runs for the same config
WORK = RESULTS / "work"  # repo copies and outputs, recreated by every run
LOGS = RESULTS / "logs"  # one log and one result JSON per case
BIN = Path(sys.executable).parent
GB = 1e9  # memory is reported in decimal GB
CASE_TIMEOUT_S = 3600


# --- machine and data ---------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import psutil

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: metadata.version(name) for name in ("feast", "duckdb", "pyarrow")},
    }


def dataset(**config_fields: Any) -> tuple[Path, dict[str, int]]:
    """Synthetic sources for a `SyntheticDataConfig(**config_fields)`, generated once and cached
    under bench/results/data/; returns the sources folder and the row count per table."""
    from pipelines.synthetic_data import SyntheticDataConfig, generate

    config = SyntheticDataConfig(**config_fields)
    key = (
        f"t{config.transactions}_u{config.n_users}_d{config.days}_s{config.seed}"
        f"_{config.end:%Y%m%d}"
    )
    sources = DATA / key / "sources"
    marker = DATA / key / "rows.json"  # written last: its presence means the data is complete
    if not marker.is_file():
        print(f"generating {key} ...", flush=True)
        shutil.rmtree(sources, ignore_errors=True)
        generated = generate(config, sources, progress=False)
        marker.write_text(json.dumps(generated.rows))
    return sources, json.loads(marker.read_text())


def feature_workspace(root: Path, sources: Path, store_config: dict[str, Any] | None = None) -> Path:
    """A copy of feature_repo/ under root with root/data/sources linked to `sources`, as
    tests/conftest.py::make_workspace does; top-level keys of feature_store.yaml replaced by
    `store_config`; then `feast apply`. Returns the repo copy."""
    import yaml

    shutil.rmtree(root, ignore_errors=True)
    repo = root / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "data").mkdir()
    (root / "data" / "sources").symlink_to(sources.resolve())
    if store_config:
        path = repo / "feature_store.yaml"
        settings = yaml.safe_load(path.read_text())
        settings.update(store_config)
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
    done = subprocess.run(
        [str(BIN / "feast"), "apply"], cwd=repo, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"feast apply failed in {repo}:\n{done.stdout}\n{done.stderr}")
    return repo


# --- measurement ---------------------------------------------------------------------------


def measure(module: str, label: str, case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in its own process; return the child's result plus its peak RSS.

    On failure the result has `error` (and the log path) instead of numbers.
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path, result_path = LOGS / f"{label}.log", LOGS / f"{label}.json"
    result_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", module, "--case", json.dumps(case), "--result", str(result_path)]
    print(f"  {label} ...", end="", flush=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        killer = threading.Timer(CASE_TIMEOUT_S, child.kill)
        killer.start()
        _, status, usage = os.wait4(child.pid, 0)
        killer.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
    process_s = time.perf_counter() - started
    outcome: dict[str, Any] = {"label": label, **case, "process_s": round(process_s, 3)}
    if child.returncode != 0 or not result_path.is_file():
        tail = log_path.read_text().strip().splitlines()[-1:] or [""]
        outcome["error"] = f"exit {child.returncode}: {tail[0]} (log: {log_path})"
        print(f" FAILED ({outcome['error']})", flush=True)
        return outcome
    outcome.update(json.loads(result_path.read_text()))
    outcome["peak_rss_gb"] = round(usage.ru_maxrss * 1024 / GB, 3)  # ru_maxrss is in KiB
    print(
        f" {outcome['wall_s']:.2f} s, peak RSS {outcome['peak_rss_gb']:.2f} GB "
        f"(process {process_s:.1f} s)",
        flush=True,
    )
    return outcome


def timed(call: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Child side: run `call` once; its wall time and the RSS just before it (the setup's)."""
    import psutil

    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    value = call()
    wall = time.perf_counter() - started
    return value, {"wall_s": round(wall, 3), "rss_before_gb": round(rss_before / GB, 3)}


def case_main(run_case: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Child entry point: `python -m bench.<module> --case JSON --result PATH`."""
    parser = argparse.ArgumentParser(description="Run one measured benchmark case.")
    parser.add_argument("--case", required=True, help="the case as JSON")
    parser.add_argument("--result", required=True, help="where to write the result JSON")
    args = parser.parse_args()
    result = run_case(json.loads(args.case))
    Path(args.result).write_text(json.dumps(result, indent=2))


# --- reporting -----------------------------------------------------------------------------


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; columns whose cells all look numeric are right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    right = [all(_numeric(row[i]) for row in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(headers), rule, *(line(row) for row in cells)])


def _numeric(text: str) -> bool:
    stripped = text.replace(",", "").rstrip("x%").strip()
    if stripped in ("", "-"):
        return True
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def gigabytes(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
