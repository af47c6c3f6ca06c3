"""A warm local task worker: import the heavy libraries once, run each kfp.local task forked.

kfp.local's SubprocessRunner starts every task as `sh -ec '<kfp script>' SOURCE ARGS...`, i.e.
`python -m kfp.dsl.executor_main ...` in a fresh interpreter, so each task pays TensorFlow,
Great Expectations, Feast and MLflow again. The worker is one more Python process, started at
the beginning of the local run, that imports those libraries one after the other (on the
machine's other core, while the first tasks run) and, for each task, forks a child that does
exactly what the task's command would: write the component source to a temporary
`ephemeral_component.py`, set `_KFP_RUNTIME=true`, the task's environment and working
directory, and run kfp's executor_main with the same arguments. A fresh fork per task keeps
one task's crash or leak out of the next; the child's exit code is the task's.

The worker serves a task between two imports (it is single-threaded, and forking in the middle
of an import is not safe), so a task waits at most for the import in progress; the child then
imports whatever the worker had not loaded yet, as the plain subprocess would.

Protocol (one JSON object per line over a socket pair): worker -> parent `{"ready": pid}` once
started; per preloaded module `{"importing": module}`, then `{"imported": module, "seconds": s}`
or `{"import_failed": module, "error": e}`; `{"started": n, "at": t}` when task n's child is
forked and `{"id": n, "returncode": rc}` when it ended. Parent -> worker `{"id": n, "task":
{...}}` per task and `{"stop": true}`. When the parent's end closes, the worker kills
its running tasks and exits. Light at import time: only the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# In the order the training pipeline needs them after its first step: validate (GX), then
# train/evaluate/push (TensorFlow, MLflow). Feast is left to the first task (features), which
# arrives about a second after the start: it imports Feast itself while the worker imports GX
# on the other core, instead of waiting for the worker to import Feast first. tensorflow
# imports keras (measured: a separate `import keras` after it adds nothing).
PRELOAD = ("kfp", "great_expectations", "tensorflow", "mlflow")
READY_TIMEOUT_S = 30.0
# At stop every task has ended: an idle worker exits at once, one mid-import (it cannot read
# "stop" until the import ends) is killed rather than waited for.
STOP_TIMEOUT_S = 0.05
POLL_S = 0.05
EXECUTOR_MODULE = "kfp.dsl.executor_main"
# kfp's lightweight-component command (kfp.dsl.component_factory), with `python3` replaced by
# the interpreter (kfp.local's replace_python_executable). Only this exact shape is run warm.
_GAP = r"\s+(?:\\\s+)?"  # blanks, maybe a shell line continuation
_KFP_SCRIPT = re.compile(
    r"program_path=\$\(mktemp -d\)\s+"
    r'printf "%s" "\$0" > "\$program_path/ephemeral_component\.py"\s+'
    rf"_KFP_RUNTIME=true (?P<python>\S+) -m kfp\.dsl\.executor_main{_GAP}"
    rf"--component_module_path{_GAP}"
    rf'"\$program_path/ephemeral_component\.py"{_GAP}'
    r'"\$@"\s*'
)


@dataclass(frozen=True)
class Task:
    """What one kfp.local task command runs: kfp's executor on a component source."""

    source: str  # the component module's source ($0 of the kfp script)
    arguments: list[str]  # executor_main's arguments ("$@")
    env: dict[str, str]
    cwd: str
    log: str  # the child's stdout and stderr go here


def parse_command(
    full_command: Sequence[str], python: str = sys.executable
) -> tuple[str, list[str]] | None:
    """(component source, executor arguments) of a kfp lightweight-component command run by
    `python`; None for any other command (it is then run as a plain subprocess)."""
    if len(full_command) < 4 or list(full_command[:2]) != ["sh", "-ec"]:
        return None
    script = _KFP_SCRIPT.fullmatch(full_command[2])
    if script is None or script.group("python") != python:
        return None
    return full_command[3], list(full_command[4:])


# --- parent side ----------------------------------------------------------------------------


class WorkerUnavailable(RuntimeError):
    """The worker did not start, is not ready, or died: run the task as a subprocess."""


class WarmWorker:
    """The parent's handle on a worker process (its own session: stop() ends it and its
    tasks). Not thread-safe: kfp.local runs one task at a time."""

    def __init__(self, process: subprocess.Popen, channel: socket.socket) -> None:
        self.process = process
        self._channel = channel
        self._buffer = b""
        self._next_id = 0
        self._ready = False
        self._done: dict[int, int] = {}  # task id -> exit code, not yet collected
        self._status: dict[int, int] = {}  # task id -> read end of its status pipe
        self._reported: set[int] = set()  # tasks whose code came through the pipe
        self.started_at: dict[int, float] = {}  # task id -> when its child was forked (Unix s)
        self.imports: dict[str, float] = {}  # module -> seconds, as the worker reported
        self.import_errors: dict[str, str] = {}
        self.importing: str | None = None  # the module it is importing, as last reported

    def busy_importing(self) -> str | None:
        """The module the worker is importing right now (it forks a task only after it)."""
        while self._receive(timeout=0.0) is not None:  # what it reported so far
            pass
        return self.importing

    @classmethod
    def start(cls, log: Path, preload: Sequence[str] | None = None) -> WarmWorker:
        """Start the worker (its own output to `log`) importing `preload` (default PRELOAD);
        returns at once, without waiting for it: the imports run while the caller goes on."""
        preload = PRELOAD if preload is None else preload
        parent_end, child_end = socket.socketpair()
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            with log.open("ab") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", __name__, "--fd", str(child_end.fileno()), *preload],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    pass_fds=[child_end.fileno()],
                    start_new_session=True,  # stop() signals the whole group, tasks included
                )
        except OSError as error:
            parent_end.close()
            raise WorkerUnavailable(f"the warm worker did not start: {error}") from error
        finally:
            child_end.close()
        return cls(process, parent_end)

    def submit(self, task: Task) -> int:
        """Start `task` in a forked child; returns its id for result(). Raises
        WorkerUnavailable when the worker cannot take it (nothing of it ran)."""
        self._wait_ready()
        self._next_id += 1
        # The child writes its exit code to this pipe as it exits: the worker may be in the
        # middle of an import then, and would report the exit only after it.
        status_read, status_write = os.pipe()
        message = json.dumps({"id": self._next_id, "task": asdict(task)}).encode() + b"\n"
        try:
            socket.send_fds(self._channel, [message], [status_write])
        except OSError as error:
            os.close(status_read)
            raise WorkerUnavailable(f"the warm worker is gone: {error}") from error
        finally:
            os.close(status_write)
        self._status[self._next_id] = status_read
        return self._next_id

    def result(self, task_id: int, timeout: float) -> int | None:
        """The task's exit code (negative: killed by that signal), or None while it runs.
        Raises WorkerUnavailable when the worker died (its child was killed with it)."""
        deadline = time.monotonic() + timeout
        while True:
            if task_id in self._done:
                self._close_status(task_id)
                return self._done.pop(task_id)
            status = self._status.get(task_id)
            left = max(deadline - time.monotonic(), 0.0)
            readable, _, _ = select.select(
                [self._channel, *([status] if status else [])], [], [], left
            )
            if self._channel in readable:
                # First: the worker's "started" message, written before the child existed,
                # must be in before the exit code that follows it is returned.
                while self._receive(0.0) is not None:
                    pass
                if task_id in self._done:
                    continue
            if status is not None and status in readable:
                written = os.read(status, 64)
                self._close_status(task_id)
                if written.strip():
                    self._reported.add(task_id)
                    return int(written)
                # No code written: the child was killed; the worker reports how when it reaps.
            elif not readable:
                return None

    def _close_status(self, task_id: int) -> None:
        fd = self._status.pop(task_id, None)
        if fd is not None:
            os.close(fd)

    def stop(self) -> None:
        """End the worker and anything it still runs; safe to call twice."""
        with contextlib.suppress(WorkerUnavailable):  # already gone: nothing to tell it
            self._send({"stop": True})
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # A stuck worker: kill its group (its tasks too) while it is not yet reaped, so
            # the group id is still its own. A worker that exits kills its tasks itself, and
            # a killed one takes them along (PR_SET_PDEATHSIG).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for task_id in list(self._status):
            self._close_status(task_id)
        self._channel.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerUnavailable(f"the warm worker was not ready in {READY_TIMEOUT_S:.0f} s")
            self._receive(timeout=left)

    def _send(self, message: dict) -> None:
        try:
            self._channel.sendall(json.dumps(message).encode() + b"\n")
        except OSError as error:
            raise WorkerUnavailable(f"the warm worker is gone: {error}") from error

    def _receive(self, timeout: float | None) -> dict | None:
        while b"\n" not in self._buffer:
            readable, _, _ = select.select([self._channel], [], [], timeout)
            if not readable:
                return None
            try:
                chunk = self._channel.recv(65536)
            except OSError as error:
                raise WorkerUnavailable(f"the warm worker is gone: {error}") from error
            if not chunk:
                code = self.process.poll()
                raise WorkerUnavailable(f"the warm worker exited (code {code})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if "returncode" in message:
            if message["id"] not in self._reported:  # else its child told it first
                self._done[message["id"]] = int(message["returncode"])
        elif "started" in message:
            self.started_at[message["started"]] = message["at"]
        elif "ready" in message:
            self._ready = True
        elif "importing" in message:
            self.importing = message["importing"]
        elif "imported" in message:
            self.imports[message["imported"]] = message["seconds"]
            self.importing = None
        elif "import_failed" in message:
            self.import_errors[message["import_failed"]] = message["error"]
            self.importing = None
        return message


# --- worker side ----------------------------------------------------------------------------


def serve(channel: socket.socket, preload: Sequence[str]) -> None:
    """The worker's loop: import `preload` one by one, serving tasks in between, until the
    parent says stop or goes away."""
    _die_with_parent()
    pending = list(preload)
    running: dict[int, int] = {}  # child pid -> task id
    buffer = b""
    status_fds: list[int] = []  # one per task message, in order
    _send(channel, {"ready": os.getpid()})
    try:
        while True:
            timeout = 0.0 if pending else (POLL_S if running else None)
            readable, _, _ = select.select([channel], [], [], timeout)
            if readable:
                chunk, fds, _, _ = socket.recv_fds(channel, 65536, 4)
                status_fds += fds
                if not chunk:
                    return  # the parent is gone
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    message = json.loads(line)
                    if message.get("stop"):
                        return
                    status = status_fds.pop(0)
                    pid = _fork_task(channel, Task(**message["task"]), status)
                    os.close(status)  # the child's now
                    running[pid] = message["id"]
                    _send(channel, {"started": message["id"], "at": time.time()})
            _reap(channel, running)
            if pending and not readable:
                _preload(channel, pending.pop(0))
    finally:
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in running:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _preload(channel: socket.socket, module: str) -> None:
    import importlib

    _send(channel, {"importing": module})
    started = time.perf_counter()
    try:
        importlib.import_module(module)
    except Exception as error:  # the task that needs it imports it again and reports it
        _send(channel, {"import_failed": module, "error": f"{type(error).__name__}: {error}"})
        return
    seconds = round(time.perf_counter() - started, 3)
    print(f"warm worker: imported {module} in {seconds:.2f} s", file=sys.stderr, flush=True)
    _send(channel, {"imported": module, "seconds": seconds})


def _reap(channel: socket.socket, running: dict[int, int]) -> None:
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        task_id = running.pop(pid, None)
        if task_id is not None:
            _send(channel, {"id": task_id, "returncode": os.waitstatus_to_exitcode(status)})


def _fork_task(channel: socket.socket, task: Task, status: int) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        channel.close()
        _die_with_parent()
        code = _run_task(task)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            os.write(status, f"{code}\n".encode())
        os._exit(code)  # never return into the worker's loop


def _run_task(task: Task) -> int:
    """In the forked child: what `sh -ec <kfp script>` would do; returns the exit code."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _redirect_output(task.log)
    os.environ.clear()
    os.environ.update(task.env)
    os.environ["_KFP_RUNTIME"] = "true"
    os.chdir(task.cwd)
    program_path = tempfile.mkdtemp()
    module_path = os.path.join(program_path, "ephemeral_component.py")
    Path(module_path).write_text(task.source)
    sys.argv = [EXECUTOR_MODULE, "--component_module_path", module_path, *task.arguments]
    try:
        from kfp.dsl import executor_main

        executor_main.executor_main()
        code = 0
    except SystemExit as done:
        code = _exit_code(done)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        shutil.rmtree(program_path, ignore_errors=True)
    # As an interpreter does at exit: atexit handlers (mlflow ends its runs, logging flushes).
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _redirect_output(log: str) -> None:
    import io

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(devnull)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(
        os.fdopen(2, "wb", closefd=False), line_buffering=True, errors="backslashreplace"
    )


def _exit_code(done: SystemExit) -> int:
    if done.code is None:
        return 0
    if isinstance(done.code, int):
        return done.code
    print(done.code, file=sys.stderr)
    return 1


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies, so no worker or task outlives the run."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _send(channel: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):  # the parent is gone: the loop ends on the next read
        channel.sendall(json.dumps(message).encode() + b"\n")


@contextlib.contextmanager
def _channel_from_fd(fd: int) -> Iterator[socket.socket]:
    channel = socket.socket(fileno=fd)
    try:
        yield channel
    finally:
        channel.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="the parent's socket")
    parser.add_argument("preload", nargs="*", help="modules to import once, in order")
    args = parser.parse_args(argv)
    with _channel_from_fd(args.fd) as channel:
        serve(channel, args.preload)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: with TensorFlow & co. loaded it takes seconds, and the worker
    # has nothing left to save (its tasks have ended, their outputs are written).
    os._exit(code)
