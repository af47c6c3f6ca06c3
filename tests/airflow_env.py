"""Real Airflow for tests: a private AIRFLOW_HOME per test module, Airflow run in subprocesses.

Airflow reads its configuration when it is first imported, and other test files on the same
pytest worker may already have imported it, so a test never imports Airflow itself: it makes
an `AirflowHome` (a temporary folder with a migrated SQLite metadata database) and runs the
`airflow` CLI, or `python -c` snippets, with that home's environment.

    home = make_airflow_home(tmp_path_factory.mktemp("airflow"))
    home.airflow("dags", "reserialize")
    done = home.python("from airflow.dag_processing.dagbag import DagBag; ...")
    rows = home.query("SELECT state FROM dag_run WHERE dag_id = ?", ("training_pipeline",))

Nothing here starts long-lived processes: a test that needs the API server or the scheduler
starts it with `home.popen(...)` and stops it itself.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAGS = ROOT / "dags"
DB_FILE = "airflow.db"


def airflow_environment(
    home: Path, dags_folder: Path = DAGS, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of an Airflow process using `home`: this process's environment without
    any AIRFLOW__* setting or PORTSIDE_* binding setting inherited from the caller, the
    project's bin first on PATH (Airflow starts its parts by calling `airflow`), SQLite
    metadata in the home, no example DAGs, the LocalExecutor, then `overrides`."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_", "PORTSIDE_"))
    }
    env = {
        **keep,
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
