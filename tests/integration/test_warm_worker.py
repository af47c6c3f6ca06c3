"""The warm worker under kfp.local: tasks forked per task, their logs, their exit codes, no
process left behind, and the plain subprocess when the worker cannot run a task.

Small lightweight components stand in for the training pipeline's (which
tests/e2e/test_local_pipeline.py runs through the same worker); the worker preloads nothing
here (one test a slow module), so each test stays short.
"""

# No `from __future__ import annotations`: KFP reads the components' real annotation types.

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest
from kfp import dsl

from portside.pipelines import local_run, warm_worker
from portside.pipelines.local_run import run_local

pytestmark = pytest.mark.integration

IMAGE = "python:3.11"  # kfp.local warns about images without "python" in the name


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def report_pid(marker: str) -> int:
    import os

    print(f"{marker} from pid {os.getpid()} in {os.getcwd()} with {os.environ['WARM_TEST']}")
    if marker == "cache hit":  # what a Portside task served from its cache says last
        from portside.pipelines.kfp_shim import summary_line

        print(summary_line("report_pid", "cached", 0.01, "0" * 64))
    return os.getpid()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def fail(reason: str) -> int:
    raise ValueError(f"task failed on purpose: {reason}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def crash(how: str) -> int:
    import os
    import signal

    print("about to crash", flush=True)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(7)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def after(pid: int) -> str:
    return f"after {pid}"


@dsl.pipeline(name="warm-ok")
def ok_pipeline(marker: str = "hello", portside_cache_dir: str = ""):
    first = report_pid(marker=marker)
    after(pid=first.output)


@dsl.pipeline(name="warm-fail")
def failing_pipeline(reason: str = "boom", portside_cache_dir: str = ""):
    first = report_pid(marker="before the failure")
    failed = fail(reason=reason).after(first)
    after(pid=failed.output)


@dsl.pipeline(name="warm-crash")
def crashing_pipeline(how: str = "sigkill", portside_cache_dir: str = ""):
    crashed = crash(how=how)
    after(pid=crashed.output)


@pytest.fixture(autouse=True)
def light_worker(monkeypatch):
    """Preload nothing (each forked task imports kfp itself), so a task never meets the
    worker in the middle of an import; the task environment carries a marker they print."""
    monkeypatch.setattr(warm_worker, "PRELOAD", ())
    monkeypatch.setenv("WARM_TEST", "the task env")


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _run(pipeline, tmp_path: Path, **parameters):
    before = _descendants()
    run = run_local(parameters, tmp_path / "runs", None, pipeline=pipeline)
    assert _descendants() - before == set(), "run_local left processes behind"
    return run


def _task(run, name: str) -> dict:
    return next(t for t in run.tasks if t["component"] == name)


def test_tasks_run_forked_by_the_worker_with_logs_in_the_run_folder(tmp_path, capfd):
    run = _run(ok_pipeline, tmp_path, marker="hello")
    assert run.status == "succeeded", run.error
    assert [(p["task"], p["runner"], p["returncode"]) for p in run.processes] == [
        ("report-pid", "warm", 0),
        ("after", "warm", 0),
    ]
    log = Path(run.logs) / "report-pid.log"
    text = log.read_text()
    assert "hello from pid" in text and "with the task env" in text
    assert f"in {os.getcwd()}" in text  # the task's working directory: the caller's, as kfp's
    pid = int(text.split("from pid ")[1].split()[0])
    assert pid != os.getpid()
    assert (Path(run.logs) / "kfp.log").read_text().count("Executing task") == 2
    # not verbose: nothing of kfp.local or the tasks reaches the console
    out, err = capfd.readouterr()
    assert "hello" not in out + err and "Executing task" not in out + err


def test_verbose_streams_task_output_to_the_console(tmp_path, capfd):
    run = run_local({"marker": "streamed"}, tmp_path / "runs", None, ok_pipeline, verbose=True)
    assert run.status == "succeeded", run.error
    out, _ = capfd.readouterr()
    assert "Executing task" in out
    assert "    streamed from pid" in out  # indented under its task, as kfp.local prints it
    assert "streamed from pid" in (Path(run.logs) / "report-pid.log").read_text()


def test_a_failing_task_fails_the_pipeline_at_that_step_naming_its_log(tmp_path):
    run = _run(failing_pipeline, tmp_path, reason="boom")
    assert run.status == "failed"
    failed = _task(run, "fail")
    assert failed["status"] == "failed" and failed["returncode"] == 1
    log = Path(failed["log"])
    assert log == Path(run.logs) / "fail.log"
    assert "ValueError: task failed on purpose: boom" in log.read_text()
    assert str(log) in run.error
    assert not (Path(run.logs) / "after.log").exists()  # nothing downstream ran


@pytest.mark.parametrize(("how", "reason"), [("sigkill", "killed by SIGKILL"), ("exit", "code 7")])
def test_a_crashing_task_fails_its_step_and_the_next_run_is_unharmed(tmp_path, how, reason):
    crashed = _run(crashing_pipeline, tmp_path / "crash", how=how)
    assert crashed.status == "failed"
    task = _task(crashed, "crash")
    assert task["runner"] == "warm" and reason in task["error"]
    assert "about to crash" in Path(task["log"]).read_text()
    assert str(task["log"]) in crashed.error
    again = _run(ok_pipeline, tmp_path / "again", marker="next run")
    assert again.status == "succeeded", again.error
    assert [(p["task"], p["runner"]) for p in again.processes] == [
        ("report-pid", "warm"),
        ("after", "warm"),
    ]


def test_no_worker_is_left_when_run_local_raises(tmp_path):
    before = _descendants()
    with pytest.raises(Exception, match="did not start"):
        run_local({"no_such_parameter": 1}, tmp_path / "runs", None, pipeline=ok_pipeline)
    assert _descendants() - before == set()


def test_tasks_run_as_subprocesses_when_the_worker_cannot_start(tmp_path, monkeypatch):
    def refuse(log, preload=None):
        raise warm_worker.WorkerUnavailable("the warm worker did not start: refused by the test")

    monkeypatch.setattr(warm_worker.WarmWorker, "start", classmethod(lambda cls, *a: refuse(*a)))
    run = _run(ok_pipeline, tmp_path, marker="cold")
    assert run.status == "succeeded", run.error
    assert {p["runner"] for p in run.processes} == {"subprocess"}
    assert "refused by the test" in run.warm_worker["note"]
    assert "cold from pid" in (Path(run.logs) / "report-pid.log").read_text()


def test_a_worker_that_died_is_replaced_by_subprocesses(tmp_path, monkeypatch):
    start = local_run._start_worker

    def start_then_kill(log):
        worker = start(log)
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        return worker

    monkeypatch.setattr(local_run, "_start_worker", start_then_kill)
    run = _run(ok_pipeline, tmp_path, marker="fallback")
    assert run.status == "succeeded", run.error
    assert [p["runner"] for p in run.processes] == ["subprocess", "subprocess"]
    assert "exited" in run.warm_worker["note"] or "gone" in run.warm_worker["note"]
    log = (Path(run.logs) / "report-pid.log").read_text()
    assert "fallback from pid" in log


def test_the_worker_exits_when_its_parent_goes_away(tmp_path):
    worker = warm_worker.WarmWorker.start(tmp_path / "worker.log", preload=())
    worker._wait_ready()
    worker._channel.close()  # what the parent's death does to the worker's socket
    worker.process.wait(timeout=10)
    assert worker.process.returncode == 0


def test_only_kfp_lightweight_commands_are_run_warm():
    script = (
        "program_path=$(mktemp -d)\n\n"
        'printf "%s" "$0" > "$program_path/ephemeral_component.py"\n'
        f"_KFP_RUNTIME=true {sys.executable} -m kfp.dsl.executor_main "
        '--component_module_path "$program_path/ephemeral_component.py" "$@"\n'
    )
    source, arguments = warm_worker.parse_command(["sh", "-ec", script, "SRC", "--x", "1"])
    assert (source, arguments) == ("SRC", ["--x", "1"])
    other_python = script.replace(sys.executable, "/usr/bin/python3")
    assert warm_worker.parse_command(["sh", "-ec", other_python, "SRC"]) is None
    assert warm_worker.parse_command(["sh", "-ec", script + "rm -rf /\n", "SRC"]) is None
    assert warm_worker.parse_command(["python", "-m", "kfp.dsl.executor_main"]) is None


def test_after_a_light_task_the_next_does_not_wait_for_an_import(tmp_path, monkeypatch):
    # The worker's second preload takes 30 s; the first task is a cache hit, so the second
    # runs at once as a subprocess instead of waiting for that import.
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(30)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(warm_worker, "PRELOAD", ("kfp", "slow_import"))
    run = _run(ok_pipeline, tmp_path, marker="cache hit")
    assert run.status == "succeeded", run.error
    runners = [p["runner"] for p in run.processes]
    assert runners[1] == "subprocess", run.processes
    assert "ran as a subprocess while the worker imported" in run.processes[1]["note"]


def test_after_a_task_that_ran_warm_the_next_waits_for_the_worker(tmp_path, monkeypatch):
    # A warm task is short because the worker had imported what it needed: no reason to
    # expect the next one needs nothing, so it waits for the import in progress.
    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(warm_worker, "PRELOAD", ("kfp", "slow_import"))
    run = _run(ok_pipeline, tmp_path, marker="no cache")
    assert run.status == "succeeded", run.error
    first, second = run.processes  # the first may have come while the worker imported kfp
    assert second["runner"] == "warm", run.processes
    assert second["waited_s"] > 0.5, second  # it waited for slow_import
