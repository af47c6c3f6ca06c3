"""Run the training pipeline on this machine with kfp.local (no Docker, no cluster).

kfp.local's SubprocessRunner (use_venv=False: the project environment already holds
everything) orchestrates, with the same wiring as on Vertex AI (artifacts, dsl.If). Each task's
command runs in a child forked by the warm worker (`pipelines.warm_worker`: the heavy libraries
imported once per run), or as the plain subprocess kfp.local would start where the worker
cannot take it. Every task's output goes to `<run folder>/logs/<task>.log`, kfp.local's own
output to `logs/kfp.log` (streamed to the console as well with verbose). Caching is
Portside's content-addressed cache; a pipeline-level lineage record (`pipeline_run.json`)
gathers every task's run manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from portside.components.errors import ConfigurationError
from portside.components.lineage import RUN_MANIFEST_FILE, code_version
from portside.pipelines.kfp_import import import_kfp
from portside.pipelines.warm_worker import Task, WarmWorker, WorkerUnavailable, parse_command

PIPELINE_RUN_FILE = "pipeline_run.json"
LOGS_DIR = "logs"
KFP_LOG = "kfp.log"
WORKER_LOG = "warm_worker.log"
POLL_S = 0.1


@dataclass
class PipelineRun:
    pipeline: str
    status: str  # succeeded | failed
    run_dir: str
    parameters: dict[str, Any]
    started_at: str
    seconds: float
    code_version: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    logs: str | None = None  # the folder with every task's log (<task>.log) and kfp.log
    processes: list[dict[str, Any]] = field(default_factory=list)  # how each task command ran
    warm_worker: dict[str, Any] = field(default_factory=dict)  # used?, its imports, why not


def run_local(
    parameters: dict[str, Any],
    pipeline_root: str | Path = "data/pipeline_runs",
    cache_dir: str | Path | None = "data/cache",
    pipeline: Any = None,
    verbose: bool = False,
    warm: bool = True,
) -> PipelineRun:
    """Run the whole pipeline (default: `create_pipeline()` on embedded defaults); write and
    return its lineage record. verbose: kfp.local's output and every task's stream to the
    console (they always go to the run folder's logs/); warm=False: every task as a plain
    subprocess."""
    staging = Path(tempfile.mkdtemp(prefix="portside-run-"))  # logs until the run folder exists
    # First, so that the worker's imports overlap with this process's and the first tasks.
    runner = TaskRunner(_start_worker(staging / WORKER_LOG) if warm else None, verbose)
    try:
        with kfp_task_seam(runner), _console(verbose, staging / KFP_LOG):
            run = _run_pipeline(parameters, pipeline_root, cache_dir, pipeline, runner)
    finally:
        try:
            runner.close()
        finally:
            _keep_logs(staging, runner.run_dir)
    (Path(run.run_dir) / PIPELINE_RUN_FILE).write_text(
        json.dumps(asdict(run), indent=2, default=str)
    )
    return run


def _run_pipeline(
    parameters: dict[str, Any],
    pipeline_root: str | Path,
    cache_dir: str | Path | None,
    pipeline: Any,
    runner: TaskRunner,
) -> PipelineRun:
    import_kfp()
    from kfp import local

    from portside.pipelines.training_pipeline import PIPELINE_NAME, create_pipeline

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    runner.pipeline_root = root
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    fix_kfp_local_conditions()
    pipeline = pipeline or create_pipeline()
    arguments = {
        **parameters,
        "portside_cache_dir": str(Path(cache_dir).resolve()) if cache_dir else "",
    }
    started, started_at = time.perf_counter(), datetime.now(timezone.utc).isoformat()
    error = None
    try:
        pipeline(**arguments)
    except Exception as failure:  # kfp.local raises RuntimeError naming the failed task
        error = str(failure).strip().splitlines()[-1] if str(failure).strip() else repr(failure)
    new_dirs = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not new_dirs:  # kfp.local stopped before it started a run (e.g. a bad parameter)
        raise ConfigurationError(f"the pipeline did not start: {error}")
    run_dir = new_dirs[-1]
    runner.run_dir = run_dir
    tasks = _with_processes(_task_manifests(run_dir), runner.processes)
    failed = [t for t in tasks if t["status"] in ("failed", "gate_failed")]
    if error and failed:  # kfp.local's message does not say which task failed or why
        error = "; ".join(
            f"{t['component']} {t['status']}: {t['error']} (log: {t.get('log')})" for t in failed
        )
    return PipelineRun(
        pipeline=PIPELINE_NAME,
        status="failed" if error else "succeeded",
        run_dir=str(run_dir),
        parameters=arguments,
        started_at=started_at,
        seconds=round(time.perf_counter() - started, 3),
        code_version=asdict(code_version()),
        tasks=tasks,
        error=error,
        logs=str(run_dir / LOGS_DIR),
        processes=[asdict(p) for p in runner.processes],
        warm_worker=runner.worker_report(),
    )


def pipeline_parameter_definitions(pipeline: Any) -> dict[str, dict[str, Any]]:
    """The pipeline's parameters as the compiled IR declares them (parameterType, default)."""
    from google.protobuf import json_format

    root = json_format.MessageToDict(pipeline.pipeline_spec.root)
    return dict(root["inputDefinitions"]["parameters"])


def fix_kfp_local_conditions() -> None:
    """Let kfp.local evaluate the conditions KFP itself compiles.

    kfp 2.16's local orchestrator substitutes channel values into the compiled condition
    (`inputs.parameter_values['pipelinechannel--evaluate-Output'] == true`) and evals it as
    Python, which fails on the `inputs.parameter_values[...]` wrapper and on `true`, so every
    dsl.If branch is silently skipped. Rewrite the condition into the form it can evaluate.
    """
    from kfp.local.orchestrator import enhanced_dag_orchestrator as dag

    original = dag.ConditionEvaluator.evaluate_condition
    if getattr(original, "portside_fixed", False):
        return

    def evaluate_condition(condition: str, io_store: Any) -> bool:
        condition = re.sub(
            r"inputs\.parameter_values\['(pipelinechannel--[^']+)'\]", r"\1", condition
        )
        condition = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", condition))
        return original(condition, io_store)

    evaluate_condition.portside_fixed = True  # type: ignore[attr-defined]
    dag.ConditionEvaluator.evaluate_condition = staticmethod(evaluate_condition)


@dataclass
class TaskProcess:
    """How one task's command ran: where its output is and how it ended."""

    task: str  # kfp.local's task name (its folder in the run folder)
    log: str
    runner: str  # warm (forked by the worker) | subprocess
    returncode: int
    process_s: float  # from handing the command over to its exit
    waited_s: float | None = None  # of which waiting for the worker's import in progress
    note: str | None = None  # why the worker did not run it


class TaskRunner:
    """kfp.local's `run_local_subprocess` for the duration of a local run: each task's command
    goes to the warm worker (or, where it cannot take it, to a plain subprocess), its output
    to `<run folder>/logs/<task>.log` (echoed to the console with verbose), and its exit code
    back to kfp.local, which fails the pipeline at that step on a nonzero one."""

    def __init__(self, worker: WarmWorker | str | None, verbose: bool) -> None:
        # A str: why there is no worker (it could not be started).
        self.worker = worker if isinstance(worker, WarmWorker) else None
        self.worker_note = worker if isinstance(worker, str) else None
        self.verbose = verbose
        self.processes: list[TaskProcess] = []
        self.pipeline_root: Path | None = None  # set once known; run folders are its children
        self.run_dir: Path | None = None

    def __call__(self, full_command: list[str]) -> int:
        task, run_dir = _task_location(full_command, self.pipeline_root)
        self.run_dir = run_dir
        log = run_dir / LOGS_DIR / f"{task}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        started = time.perf_counter()
        record = self._run_warm(full_command, task, log, started)
        if record is None:
            returncode = self._run_subprocess(full_command, log)
            record = TaskProcess(
                task, str(log), "subprocess", returncode, 0.0, note=self.worker_note
            )
        record.process_s = round(time.perf_counter() - started, 3)
        self.processes.append(record)
        return record.returncode

    def close(self) -> None:
        """Stop the worker and its tasks; safe to call twice."""
        if self.worker is not None:
            self.worker.stop()

    def worker_report(self) -> dict[str, Any]:
        worker = self.worker
        return {
            "used": any(p.runner == "warm" for p in self.processes),
            "imports_s": dict(worker.imports) if worker else {},
            "import_errors": dict(worker.import_errors) if worker else {},
            "note": self.worker_note,
        }

    def _after_a_light_task(self) -> bool:
        """No task ran yet, or the last one was a cache hit (it imported no heavy library):
        the next then likely needs none either. Its own time cannot tell: a warm task is
        short because the worker had imported what it needed."""
        from portside.pipelines.kfp_shim import reports_cache_hit

        if not self.processes:
            return True
        log = Path(self.processes[-1].log)
        return log.is_file() and reports_cache_hit(log.read_text(errors="replace"))

    def _run_warm(
        self, full_command: list[str], task: str, log: Path, started: float
    ) -> TaskProcess | None:
        parsed = parse_command(full_command)
        if self.worker is None or parsed is None:
            if parsed is None:
                self.worker_note = f"{task}: not a kfp lightweight-component command"
            return None
        source, arguments = parsed
        job = Task(source, arguments, dict(os.environ), os.getcwd(), str(log))
        worker = self.worker
        try:
            importing = worker.busy_importing()
            if importing and self._after_a_light_task():
                # The first task, or one after a subprocess that needed no heavy library (a
                # cache hit): it likely needs none either, so it does not wait for the worker.
                self.worker_note = (
                    f"{task}: ran as a subprocess while the worker imported {importing}"
                )
                return None
            task_id = worker.submit(job)
            submitted = time.time()
            returncode = self._follow(log, lambda timeout: worker.result(task_id, timeout))
        except WorkerUnavailable as error:
            # Its child, if it had one, died with it (PR_SET_PDEATHSIG): run the task again.
            self.worker_note = f"{task}: {error}; this and later tasks ran as subprocesses"
            with log.open("a") as handle:
                handle.write(f"\n--- {self.worker_note} ---\n")
            worker.stop()
            self.worker = None
            return None
        forked = worker.started_at.get(task_id)
        waited = None if forked is None else round(max(forked - submitted, 0.0), 3)
        return TaskProcess(task, str(log), "warm", returncode, 0.0, waited_s=waited)

    def _run_subprocess(self, full_command: list[str], log: Path) -> int:
        with log.open("ab") as output:
            process = subprocess.Popen(
                full_command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            return self._follow(log, lambda timeout: _poll(process, timeout))
        finally:
            if process.poll() is None:  # interrupted: leave nothing running
                process.kill()
                process.wait()

    def _follow(self, log: Path, result: Callable[[float], int | None]) -> int:
        """Wait for the task's exit code, echoing its log as it grows when verbose."""
        with log.open(errors="replace") as handle:
            partial = ""
            while True:
                returncode = result(POLL_S)
                if self.verbose:
                    partial = _echo(handle, partial, final=returncode is not None)
                if returncode is not None:
                    return returncode


def _echo(handle: IO[str], partial: str, final: bool) -> str:
    """Print the complete lines added to `handle` (kfp.local indents what is printed during a
    task); returns the incomplete last line, printed too when `final`."""
    text = partial + handle.read()
    lines = text.split("\n")
    partial = lines.pop()
    for line in lines:
        print(line)
    if final and partial:
        print(partial)
        partial = ""
    return partial


def _poll(process: subprocess.Popen, timeout: float) -> int | None:
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def _task_location(full_command: list[str], pipeline_root: Path | None) -> tuple[str, Path]:
    """(task name, run folder) of a kfp.local task command, from its executor input: the
    executor output file lies in `<pipeline root>/<run>/[<condition>/...]<task>/`."""
    try:
        executor_input = json.loads(full_command[full_command.index("--executor_input") + 1])
        task_root = Path(executor_input["outputs"]["outputFile"]).parent
    except (ValueError, IndexError, KeyError, TypeError) as error:
        raise ConfigurationError(
            f"a kfp.local task command without an executor input naming its output file: {error}"
        ) from error
    if pipeline_root is not None and task_root.is_relative_to(pipeline_root):
        return task_root.name, pipeline_root / task_root.relative_to(pipeline_root).parts[0]
    return task_root.name, task_root.parent


def _start_worker(log: Path) -> WarmWorker | str:
    try:
        return WarmWorker.start(log)
    except WorkerUnavailable as error:
        return str(error)


@contextlib.contextmanager
def kfp_task_seam(run_task: Callable[[list[str]], int]) -> Iterator[None]:
    """kfp.local runs every task through `subprocess_task_handler.run_local_subprocess`;
    `run_task` replaces it until the block ends."""
    from kfp.local import subprocess_task_handler

    original = subprocess_task_handler.run_local_subprocess

    def run_local_subprocess(full_command: list[str]) -> int:
        return run_task(list(full_command))

    subprocess_task_handler.run_local_subprocess = run_local_subprocess
    try:
        yield
    finally:
        subprocess_task_handler.run_local_subprocess = original


@contextlib.contextmanager
def _console(verbose: bool, log: Path) -> Iterator[None]:
    """Unless verbose, what kfp.local prints (task headers, executor outputs, warnings) goes
    to `log` instead of the console."""
    if verbose:
        yield
        return
    with (
        log.open("a") as output,
        contextlib.redirect_stdout(output),
        contextlib.redirect_stderr(output),
    ):
        yield


def _keep_logs(staging: Path, run_dir: Path | None) -> None:
    """Move the logs written before the run folder existed into its logs/ (or drop them when
    no run started: the error says why)."""
    if run_dir is not None and run_dir.is_dir():
        logs = run_dir / LOGS_DIR
        logs.mkdir(exist_ok=True)
        for path in staging.iterdir():
            shutil.move(str(path), logs / path.name)
    shutil.rmtree(staging, ignore_errors=True)


def _with_processes(
    tasks: list[dict[str, Any]], processes: list[TaskProcess]
) -> list[dict[str, Any]]:
    """The manifests' tasks with how each ran (log, runner, exit code); a task that died
    without a final manifest (killed, os._exit) is reported failed with its exit code."""
    by_task = {p.task: p for p in processes}  # the last attempt of each task
    seen = set()
    for task in tasks:
        process = by_task.get(task.pop("task"))
        if process is None:
            continue
        seen.add(process.task)
        task.update(
            log=process.log,
            runner=process.runner,
            returncode=process.returncode,
            process_s=process.process_s,
            waited_s=process.waited_s,
        )
        if process.returncode != 0 and task["status"] not in ("failed", "gate_failed"):
            task["status"], task["error"] = "failed", _exit_reason(process.returncode)
    for process in processes:
        if process.task not in seen and process.returncode != 0:
            tasks.append(
                {
                    "component": process.task,
                    "status": "failed",
                    "error": _exit_reason(process.returncode),
                    "log": process.log,
                    "runner": process.runner,
                    "returncode": process.returncode,
                    "process_s": process.process_s,
                }
            )
    return tasks


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode} before writing its run manifest"


def _task_manifests(run_dir: Path) -> list[dict[str, Any]]:
    """One entry per component run, from the run manifests the tasks wrote (deduplicated)."""
    seen: dict[str, dict[str, Any]] = {}
    for path in sorted(run_dir.rglob(RUN_MANIFEST_FILE)):
        manifest = json.loads(path.read_text())
        key = f"{manifest['component']}:{manifest['started_at']}"
        seen[key] = {
            "component": manifest["component"],
            # kfp.local's task folder: <task>/<output>/run_manifest.json
            "task": path.parent.parent.name,
            "started_at": manifest["started_at"],
            "status": manifest["status"],
            "seconds": manifest["seconds"],
            "cache_key": manifest["cache_key"],
            "manifest": str(path),
            "error": manifest.get("error"),
        }
    return sorted(seen.values(), key=lambda t: t["started_at"])
