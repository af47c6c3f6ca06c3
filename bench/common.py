"""The one benchmark harness: data and Feast repo copies, measured processes, tables.

Two ways to measure a process, both watched by one MemoryWatcher (which stops a process that
would exhaust the machine):

- measure(): a case runs as `python -m bench.<module> --case JSON --result PATH`; the child does
  its setup (imports, reading inputs, opening the store), times only the call under test and
  writes a JSON result with its own peak RSS (VmHWM: since its exec, imports included).
- run_process(): any command (an entrypoint, `portside run --local`, `python -c "import x"`)
  under a small wrapper that reports its wall time, CPU seconds and RUSAGE_CHILDREN.ru_maxrss
  (the peak RSS of the largest single process of the tree); the watcher polls the summed RSS
  of the whole tree.

The machine may be shared: before each case the parent waits (boundedly) for the CPUs to be
idle, and it records how much CPU other processes used while the case ran.

Only the standard library is imported at module level: the children import this module too,
and anything imported here would count in their memory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
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
# The worked example's names: the components take them as parameters.
FEATURE_SERVICE = "fraud_model_v1"
LABEL = "is_fraud"
SUITE = ROOT / "feature_repo" / "expectations" / "fraud_model_v1.json"
AS_OF = "2026-11-01T00:00:00+00:00"  # the synthetic data's fixed end
HEAVY = ("feast", "great_expectations", "tensorflow", "mlflow", "google.cloud.aiplatform", "kfp")
IMPORT_REPEATS = 3
TOP_IMPORTS = 3
PROCESS_TIMEOUT_S = 3600
GB = 1e9  # memory is reported in decimal GB
CASE_TIMEOUT_S = 3600
MEMORY_CAP_FRACTION = 0.75  # of physical memory: a case above it is killed
MIN_AVAILABLE_GB = 1.0  # ... and so is one that leaves the machine less than this
POLL_S = 0.05
TREE_POLL_S = 0.1  # a tree's RSS is a sum over its processes: a slower poll
QUIET_BUSY_PERCENT = 20.0  # before a case starts, wait for the machine to be this idle ...
QUIET_WAIT_S = 90.0  # ... but not longer than this


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
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "packages": {name: metadata.version(name) for name in ("feast", "duckdb", "pyarrow")},
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and the measured paths that differ from it (read-only git)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    changed = git(
        "diff",
        "--name-only",
        "HEAD",
        "--",
        "components",
        "pipelines",
        "synthetic_data",
        "feature_repo",
    )
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": changed.splitlines()}


def dataset(**config_fields: Any) -> tuple[Path, dict[str, int]]:
    """Synthetic sources for a `SyntheticDataConfig(**config_fields)`, generated once and cached
    under bench/results/data/; returns the sources folder and the row count per table."""
    from portside.synthetic_data import SyntheticDataConfig, generate

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


def feature_workspace(
    root: Path, sources: Path, store_config: dict[str, Any] | None = None
) -> Path:
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


def train_champion(
    repo: Path,
    entity_rows: Path,
    root: Path,
    tracking_uri: Path,
    model_name: str,
    output: str,
    epochs: int,
) -> None:
    """A model for the serving and scoring benchmarks, in this process: features -> train ->
    registered in the MLflow registry at `tracking_uri` as `model_name`'s champion (no
    validation or evaluation: these benchmarks measure serving, not the gates)."""
    from portside.components.features.run import run as build_training_set
    from portside.components.lineage import content_hash
    from portside.components.push.registry import Registry
    from portside.components.train.run import run as train

    training_set, validation, model = root / "training_set", root / "validation", root / "model"
    build_training_set(
        str(entity_rows), str(training_set), FEATURE_SERVICE, LABEL, feature_repo=str(repo)
    )
    validation.mkdir(parents=True)
    (validation / "summary.json").write_text(json.dumps({"passed": True}))
    train(str(training_set), str(validation), str(model), epochs=epochs, output_name=output,
          tracking_uri=str(tracking_uri))  # fmt: skip
    Registry(str(tracking_uri), model_name).publish(model, content_hash(model), None)


def measure(module: str, label: str, case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in its own process; return the child's result with its peak RSS.

    A watcher polls the child's RSS and kills it at the memory cap (or when the machine is
    about to run out), so a runaway case cannot bring the machine down. A failed case has
    `error` instead of numbers; one killed at the cap also has lower bounds: how long its
    timed call had run and the highest RSS seen.
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path, result_path = LOGS / f"{label}.log", LOGS / f"{label}.json"
    started_path = result_path.with_suffix(".started")
    result_path.unlink(missing_ok=True)
    started_path.unlink(missing_ok=True)
    command = [sys.executable, "-m", module, "--case", json.dumps(case)]
    command += ["--result", str(result_path)]
    print(f"  {label} ...", end="", flush=True)
    import psutil

    waited_s, busy_percent = _wait_until_quiet()
    load_before = [round(load, 2) for load in os.getloadavg()]  # 1, 5, 15 min: a busy machine?
    cpu_before = psutil.cpu_times()
    started = time.perf_counter()
    with log_path.open("w") as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        watcher = MemoryWatcher(child.pid, tree=False)
        watcher.start()
        try:
            child.wait(timeout=CASE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        ended = time.time()
        watcher.stop()
    process_s = time.perf_counter() - started
    machine_cpu_s = _busy(psutil.cpu_times()) - _busy(cpu_before)
    outcome: dict[str, Any] = {"label": label, **case, "process_s": round(process_s, 3)}
    outcome["load_average_before"] = load_before
    outcome["quiet_wait"] = {"waited_s": waited_s, "machine_busy_percent": busy_percent}
    outcome["polled_peak_rss_gb"] = round(watcher.peak / GB, 3)
    if child.returncode != 0 or not result_path.is_file():
        if watcher.killed:
            outcome["killed"] = watcher.killed
            if started_path.is_file():  # the timed call had begun: its time so far
                outcome["timed_call_s_at_kill"] = round(ended - float(started_path.read_text()), 1)
            error = f"killed: {watcher.killed}"
        else:
            tail = log_path.read_text().strip().splitlines()[-1:] or [""]
            error = f"exit {child.returncode}: {tail[0]}"
        outcome["error"] = f"{error} (log: {log_path.relative_to(ROOT)})"
        print(f" FAILED: {outcome['error']}", flush=True)
        return outcome
    outcome.update(json.loads(result_path.read_text()))
    # CPU used by other processes while the case ran, as a share of all cores: noise.
    others = (machine_cpu_s - outcome["cpu_s"]) / (process_s * (os.cpu_count() or 1))
    outcome["other_processes_cpu_share"] = round(max(others, 0.0), 3)
    print(
        f" {outcome['wall_s']:.2f} s, peak RSS {outcome['peak_rss_gb']:.2f} GB "
        f"(process {process_s:.1f} s, other processes {others:.0%} of the CPUs, "
        f"waited {waited_s:.0f} s for a quiet machine)",
        flush=True,
    )
    return outcome


def _wait_until_quiet() -> tuple[float, float]:
    """The machine may be shared: wait (up to QUIET_WAIT_S) until other processes use less
    than QUIET_BUSY_PERCENT of the CPUs. Returns the wait and the last busy share seen."""
    import psutil

    started = time.monotonic()
    while True:
        busy = psutil.cpu_percent(interval=2.0)  # this runner is idle between cases
        waited = time.monotonic() - started
        if busy < QUIET_BUSY_PERCENT or waited >= QUIET_WAIT_S:
            return round(waited, 1), busy


def _busy(times: Any) -> float:
    """Busy CPU seconds of the machine (guest time is already in user time)."""
    idle = ("idle", "iowait", "guest", "guest_nice")
    return sum(value for name, value in times._asdict().items() if name not in idle)


class MemoryWatcher(threading.Thread):
    """Polls the RSS of a process (tree=False) or the summed RSS of its descendants (tree=True:
    a wrapper's children); kills the process and its descendants above MEMORY_CAP_FRACTION of
    RAM or when the machine has less than MIN_AVAILABLE_GB left."""

    def __init__(self, pid: int, tree: bool) -> None:
        import psutil

        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.tree = tree
        self.cap = MEMORY_CAP_FRACTION * psutil.virtual_memory().total
        self.peak = 0
        self.killed = ""
        self._stopped = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._stopped.is_set():
            try:
                rss = self._rss()
            except psutil.Error:  # it exited
                return
            self.peak = max(self.peak, rss)
            available = psutil.virtual_memory().available
            if rss > self.cap or available < MIN_AVAILABLE_GB * GB:
                self.kill(
                    f"RSS {rss / GB:.1f} GB with {available / GB:.1f} GB left on the machine "
                    f"(cap {self.cap / GB:.1f} GB)"
                )
                return
            self._stopped.wait(TREE_POLL_S if self.tree else POLL_S)

    def _rss(self) -> int:
        import psutil

        if not self.tree:
            return self.process.memory_info().rss
        total = 0
        for process in self.process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def kill(self, why: str) -> None:
        import psutil

        self.killed = why
        try:
            processes = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return
        for process in processes:
            with contextlib.suppress(psutil.Error):
                process.kill()

    def stop(self) -> None:
        self._stopped.set()
        self.join()


# Runs a command, then writes its wall time and the children's rusage. Only the standard
# library: the wrapper's own RSS (~10 MB) is what its child inherits as a high-water mark.
WRAPPER = r"""
import json, resource, subprocess, sys, time
result, command = sys.argv[1], sys.argv[2:]
started, clock = time.time(), time.perf_counter()
code = subprocess.call(command)
wall = time.perf_counter() - clock
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(result, "w") as handle:
    json.dump({"started_at": started, "wall_s": wall, "returncode": code,
               "max_rss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}, handle)
sys.exit(code)
"""


def run_process(
    command: list[str],
    label: str,
    cwd: Path = ROOT,
    timeout: float = PROCESS_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run `command` (output to bench/results/logs/<label>.log) and measure it: wall time,
    peak RSS of its largest single process (ru_maxrss of the wrapper's children), peak of the
    summed RSS of the whole process tree (polled every TREE_POLL_S s) and CPU seconds."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path, result_path = LOGS / f"{label}.log", LOGS / f"{label}.process.json"
    result_path.unlink(missing_ok=True)
    print(f"  {label} ...", end="", flush=True)
    outcome: dict[str, Any] = {"label": label, "command": shlex.join(command)}
    waited_s, busy_percent = _wait_until_quiet()
    outcome["quiet_wait"] = {"waited_s": waited_s, "machine_busy_percent": busy_percent}
    outcome |= machine_load()
    with log_path.open("w") as log:
        wrapper = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(result_path), *command],
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        watcher = MemoryWatcher(wrapper.pid, tree=True)
        watcher.start()
        try:
            wrapper.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            watcher.kill("timeout")
            wrapper.wait()
        watcher.stop()
    measured = json.loads(result_path.read_text()) if result_path.is_file() else {}
    outcome |= {
        "returncode": measured.get("returncode", wrapper.returncode),
        "started_at": measured.get("started_at"),
        "wall_s": round(measured["wall_s"], 3) if measured else None,
        "peak_rss_gb": round(measured["max_rss_kb"] * 1024 / GB, 3) if measured else None,
        "tree_peak_rss_gb": round(watcher.peak / GB, 3),
        "cpu_s": round(measured["cpu_s"], 2) if measured else None,
        "log": str(log_path.relative_to(ROOT)),
    }
    if watcher.killed:
        outcome["killed"] = watcher.killed
    if outcome["returncode"] != 0:
        print(f" FAILED (exit {outcome['returncode']}; log: {outcome['log']})", flush=True)
    else:
        print(
            f" {outcome['wall_s']:.2f} s, peak RSS {outcome['peak_rss_gb']:.2f} GB "
            f"(tree {outcome['tree_peak_rss_gb']:.2f} GB)",
            flush=True,
        )
    return outcome


def machine_load() -> dict[str, Any]:
    """The load average and whether a test run shares the machine, at the start of a case."""
    import psutil

    tests = 0
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        tests += "pytest" in cmdline and "bench" not in cmdline
    return {
        "load_average_before": [round(load, 2) for load in os.getloadavg()],
        "pytest_processes": tests,
    }


def import_cost(
    modules: tuple[str, ...] | list[str], repeats: int = IMPORT_REPEATS
) -> dict[str, Any]:
    """`python -c "import a, b"` in fresh processes: median and all walls."""
    label = "import-" + "-".join(m.replace(".", "_") for m in modules)
    code = "import " + ", ".join(modules)
    walls = []
    for i in range(repeats):
        done = run_process([sys.executable, "-c", code], f"{label}-{i}")
        if done["returncode"] != 0:
            return {"error": f"exit {done['returncode']} (log: {done['log']})"}
        walls.append(done["wall_s"])
    return {
        "command": f'python -c "{code}"',
        "walls_s": walls,
        "median_s": statistics.median(walls),
        "load_average_before": done["load_average_before"],
    }


def import_times(log: str) -> dict[str, Any]:
    """From `-X importtime` output: seconds spent in imports (top-level entries' cumulative
    times) and each heavy library's cumulative time where it was first imported."""
    total_us, heavy, top = 0, {}, {}
    marker = "import time:"
    for line in log.splitlines():
        if not line.startswith(marker):
            continue
        fields = line[len(marker) :].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header
        cumulative, name = int(fields[1]), fields[2]
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        name = name.strip()
        if depth == 0:
            total_us += cumulative
            top[name] = top.get(name, 0) + cumulative
        if name in HEAVY and name not in heavy:
            heavy[name] = round(cumulative / 1e6, 3)
    largest = sorted(top.items(), key=lambda item: -item[1])[:TOP_IMPORTS]
    return {
        "imports_total_s": round(total_us / 1e6, 3),
        "heavy_first_import_s": heavy,
        "top": {name: round(us / 1e6, 3) for name, us in largest},  # largest top-level imports
    }


def warm_feast(repo: str) -> None:
    """Setup for a Portside case, the same as a Feast case's: import feast and open a
    FeatureStore for the repo. The first FeatureStore of a process pays Feast's lazy imports
    (about 0.9 s here); the Feast cases pay them in setup, so the Portside cases do too.
    The call under test then opens its own store (a new instance: no registry cache)."""
    from feast import FeatureStore

    FeatureStore(repo_path=repo)


def timed(call: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Child side: run `call` once; its wall time and the RSS just before it (the setup's)."""
    import psutil

    rss_before = psutil.Process().memory_info().rss
    if _started_marker is not None:  # lets the parent time a call that gets killed
        _started_marker.write_text(repr(time.time()))
    started = time.perf_counter()
    value = call()
    wall = time.perf_counter() - started
    return value, {"wall_s": round(wall, 3), "rss_before_gb": round(rss_before / GB, 3)}


def peak_rss_gb() -> float:
    """This process's peak RSS since its exec (VmHWM).

    Not ru_maxrss: on Linux a child started by fork/vfork + exec inherits the parent's
    high-water mark in ru_maxrss (measured here: a 2 GB parent gives `python -c pass` a
    ru_maxrss of 2 GB), so it would report the runner's memory, not the case's.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) * 1024 / GB, 3)
    raise RuntimeError("no VmHWM in /proc/self/status")


_started_marker: Path | None = None


def case_main(run_case: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Child entry point: `python -m bench.<module> --case JSON --result PATH`."""
    parser = argparse.ArgumentParser(description="Run one measured benchmark case.")
    parser.add_argument("--case", required=True, help="the case as JSON")
    parser.add_argument("--result", required=True, help="where to write the result JSON")
    args = parser.parse_args()
    global _started_marker
    _started_marker = Path(args.result).with_suffix(".started")
    result = run_case(json.loads(args.case))
    result["peak_rss_gb"] = peak_rss_gb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)  # the whole process
    Path(args.result).write_text(json.dumps(result, indent=2))


# --- reporting -----------------------------------------------------------------------------


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; columns whose cells all look numeric are right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    right = [all(_numeric(row[i]) for row in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(headers), rule, *(line(row) for row in cells)])


def _numeric(text: str) -> bool:
    stripped = text.replace(",", "").lstrip("<> ").rstrip("x%").strip()
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
