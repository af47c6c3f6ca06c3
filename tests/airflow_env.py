"""Real Airflow for tests: a private AIRFLOW_HOME per test module, Airflow run in subprocesses.

Airflow reads its configuration when it is first imported, and other test files on the same
pytest worker may already have imported it, so a test never imports Airflow itself: it makes
an `AirflowHome` (a temporary folder with a migrated SQLite metadata database) and runs the
`airflow` CLI, or `python -c` snippets, with that home's environment.

    home = make_airflow_home(tmp_path_factory.mktemp("airflow"))
    home.airflow("dags", "reserialize")
    done = home.python("from airflow.dag_processing.dagbag import DagBag; ...")
    rows = home.query("SELECT state FROM dag_run WHERE dag_id = ?", ("training_pipeline",))

A test that needs the API server or the scheduler starts it with `home.popen(...)` and stops
it itself (`stop_process`). `make airflow`'s launcher (`pipelines.airflow_standalone`, the whole
of Airflow) is `start_standalone` / `wait_healthy` / `stop_standalone`, and `shut_down` at a
fixture's end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from portside.pipelines.airflow_standalone import PASSWORDS_FILE, health, is_healthy

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAGS = ROOT / "dags"
DB_FILE = "airflow.db"
STANDALONE_START_TIMEOUT_S = 300.0  # ~1 min on 2 cores, more while other tests run
STANDALONE_STOP_TIMEOUT_S = 90.0


def airflow_environment(
    home: Path, dags_folder: Path = DAGS, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of an Airflow process using `home`: this process's environment without
    any AIRFLOW__* setting or PORTSIDE_* binding setting inherited from the caller, the
    project's bin first on PATH (Airflow starts its parts by calling `airflow`), SQLite
    metadata in the home, no example DAGs, the LocalExecutor, then `overrides`."""
    env = {
        **launcher_environment(),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / DB_FILE}",
        "AIRFLOW__CORE__PARALLELISM": "2",  # this machine has 2 cores
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides or {})
    return env


@dataclass
class AirflowHome:
    """One AIRFLOW_HOME; `env` is what every process started through it gets."""

    home: Path
    dags_folder: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> Path:
        return self.home / DB_FILE

    def environment(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self.env, **(overrides or {})}

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 600,
        check: bool = True,
        cwd: Path = ROOT,
    ) -> subprocess.CompletedProcess:
        """Run a command in this home's environment (plus `env`); with `check`, fail the
        test with its output when it exits non-zero."""
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env=self.environment(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {done.returncode}:\n"
                f"--- stdout\n{done.stdout[-6000:]}\n--- stderr\n{done.stderr[-6000:]}"
            )
        return done

    def airflow(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """`airflow ARGS...` (the project environment's)."""
        return self.run([str(BIN / "airflow"), *args], **kwargs)

    def python(self, code: str, **kwargs) -> subprocess.CompletedProcess:
        """`python -c CODE` in the project environment with this home."""
        return self.run([sys.executable, "-c", code], **kwargs)

    def popen(self, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None):
        """Start a long-lived process (API server, scheduler) in its own session, output to
        `log`; the caller stops it (`stop_process`)."""
        with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=self.environment(env),
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def query(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple]:
        """Rows from the metadata database (SQLite), read directly."""
        with sqlite3.connect(self.database) as db:
            return db.execute(sql, tuple(parameters)).fetchall()


def make_airflow_home(
    home: Path, dags_folder: Path = DAGS, overrides: Mapping[str, str] | None = None
) -> AirflowHome:
    """A fresh AIRFLOW_HOME at `home` with its metadata database migrated (`airflow db
    migrate`, ~10-20 s); share one per test module."""
    home.mkdir(parents=True, exist_ok=True)
    airflow = AirflowHome(home, dags_folder, airflow_environment(home, dags_folder, overrides))
    airflow.airflow("db", "migrate", timeout=300)
    return airflow


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a process started by `AirflowHome.popen` and everything it started."""
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# -- `make airflow`'s launcher ------------------------------------------------------------------


def launcher_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without Airflow or Portside binding settings from the
    caller (the DAGs then use the local runner, as `make airflow` does by default), then
    `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PORTSIDE_"))}
    return env | dict(overrides or {})


@dataclass
class Standalone:
    """A running `python -m portside.pipelines.airflow_standalone` (what `make airflow` runs)."""

    launcher: subprocess.Popen
    home: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def password(self) -> str:
        """The admin's password, from the file the launcher names in its banner."""
        return json.loads((self.home / PASSWORDS_FILE).read_text())["admin"]

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-8000:]

    def group(self) -> list[psutil.Process]:
        """The processes of standalone's process group: the launcher's child that leads one."""
        leaders = [
            c.pid for c in psutil.Process(self.launcher.pid).children() if _pgid(c.pid) == c.pid
        ]
        return [p for p in psutil.process_iter() if leaders and _pgid(p.pid) == leaders[0]]

    def titles(self) -> list[str]:
        """The group's command lines as `ps` shows them (setproctitle included)."""
        found = []
        for process in self.group():
            with contextlib.suppress(psutil.Error):  # a DAG-file parser that just ended
                found.append(" ".join(process.cmdline()))
        return found


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def is_running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_standalone(
    home: Path,
    port: int,
    log: Path,
    arguments: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Standalone:
    """Start the launcher with `--home HOME --port PORT ARGUMENTS...`, output to `log`, in
    `launcher_environment(env)`."""
    command = [sys.executable, "-m", "portside.pipelines.airflow_standalone", "--home", str(home)]
    command += ["--port", str(port), *arguments]
    with log.open("ab") as out:
        launcher = subprocess.Popen(
            command, cwd=ROOT, env=launcher_environment(env), stdout=out, stderr=subprocess.STDOUT
        )
    return Standalone(launcher, home, port, log)


def wait_healthy(standalone: Standalone, timeout: float = STANDALONE_START_TIMEOUT_S) -> float:
    """Seconds until every part reports healthy and the banner is printed; fails the test with
    the launcher's output if it exits or takes longer than `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if standalone.launcher.poll() is not None:
            pytest.fail(
                f"launcher exited ({standalone.launcher.returncode}):\n{standalone.output()}"
            )
        if is_healthy(health(standalone.url)) and "Airflow is ready" in standalone.output():
            return time.monotonic() - started
        time.sleep(1.0)
    pytest.fail(
        f"not healthy after {timeout:.0f} s: {health(standalone.url)}\n{standalone.output()}"
    )


def stop_standalone(
    standalone: Standalone, timeout: float = STANDALONE_STOP_TIMEOUT_S
) -> tuple[int, list[psutil.Process]]:
    """Ctrl-C to the launcher (it stops its whole process group); its exit code and the
    group's processes as they were before."""
    members = standalone.group()
    standalone.launcher.send_signal(signal.SIGINT)
    return standalone.launcher.wait(timeout), members


def shut_down(standalone: Standalone) -> None:
    """A fixture's end, also when it never came up: stop it, kill what outlived the stop."""
    if standalone.launcher.poll() is not None:
        return
    members = standalone.group()
    try:
        stop_standalone(standalone)
    except subprocess.TimeoutExpired:
        standalone.launcher.kill()
        standalone.launcher.wait()
    finally:
        for process in members:
            if is_running(process):
                process.kill()


# -- runs, read back from the metadata database ------------------------------------------------


def dag_test(airflow: AirflowHome, env: dict, dag_id: str, logical_date: str, conf: dict):
    """`airflow dags test DAG DATE -c CONF`; the run's id and its tasks' (state, try_number),
    read back from the metadata database."""
    done = airflow.airflow(
        "dags", "test", dag_id, logical_date, "-c", json.dumps(conf), env=env, check=False
    )
    (run_id,) = airflow.query(
        "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
    )[0]
    return done, run_id, task_states(airflow, dag_id, run_id)


def task_states(airflow: AirflowHome, dag_id: str, run_id: str) -> dict[str, dict]:
    """Each task of the run: its state, try number and max tries."""
    rows = airflow.query(
        "SELECT task_id, state, try_number, max_tries FROM task_instance "
        "WHERE dag_id = ? AND run_id = ?",
        (dag_id, run_id),
    )
    return {task: {"state": s, "try": t, "max_tries": m} for task, s, t, m in rows}


def xcom(airflow: AirflowHome, dag_id: str, run_id: str, task_id: str, key: str):
    rows = airflow.query(
        "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ?",
        (dag_id, run_id, task_id, key),
    )
    return json.loads(rows[0][0]) if rows else None


def wait_for_asset_run(airflow: AirflowHome, timeout: float = 120) -> list[tuple]:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = airflow.query(
            "SELECT run_id FROM dag_run WHERE dag_id = 'training_pipeline' "
            "AND run_type = 'asset_triggered'"
        )
        if runs:
            return runs
        time.sleep(2)
    return []


class RecordingWebhook:
    """A loopback HTTP server that records every POST (path, authorization, JSON body)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                authorization = self.headers.get("Authorization")
                received.append({"path": self.path, "authorization": authorization, "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
