"""`make airflow`: `airflow standalone` for local development, loopback only, sized for a laptop.

Everything is set through Airflow's environment variables (AIRFLOW__SECTION__KEY) for the one
`airflow standalone` process this starts; nothing is written to a global Airflow config.
AIRFLOW_HOME (default data/airflow) keeps the SQLite metadata DB, the generated airflow.cfg (its
fernet key and JWT secret), the logs and the admin password, so a second start reuses them.

Why a launcher and not just `airflow standalone`:
- standalone starts its parts (scheduler, dag-processor, api-server, triggerer) by calling
  `airflow` from PATH, so the project environment's bin/ goes first on PATH;
- its defaults listen on 0.0.0.0:8080 and start `[core] parallelism` = 32 LocalExecutor
  worker processes at once (5.5 GB measured);
- its scheduler and triggerer each start a log server on every interface, on fixed ports
  (8793, 8794: `host=""` in airflow.utils.serve_logs, not configurable); an `airflow` shim in
  AIRFLOW_HOME/bin, first on PATH, adds `--skip-serve-logs` to those two (on one machine the
  API server reads task logs from AIRFLOW_HOME/logs itself);
- it stops its parts only on Ctrl-C (SIGTERM kills it and leaves them running), and then
  terminates the four `airflow` processes without waiting for what they started. Here
  standalone runs in a process group of its own; SIGINT/SIGTERM/SIGHUP stop the whole group
  (and any descendant that left it), SIGKILL what is still there after a grace period, and
  wait until nothing is left.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the API server / UI listens on loopback only
DEFAULT_HOME = ROOT / "data" / "airflow"
DEFAULT_DAGS = ROOT / "dags"
DEFAULT_PORT = 8080
DEFAULT_PARALLELISM = 2  # LocalExecutor workers, started at once: what 2 cores carry
ADMIN_USER = "admin"
# Standalone generates the admin's password into this file (simple auth manager) on first start.
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"  # pragma: allowlist secret
SHIM_DIR = "bin"  # AIRFLOW_HOME/bin/airflow, first on PATH
HEALTH_PATH = "/api/v2/monitor/health"
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
GRACE_S = 30.0  # standalone's own shutdown (SIGINT); then SIGTERM to the group
TERM_GRACE_S = 10.0  # after SIGTERM, SIGKILL
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SLOW_START_S = 180.0


@dataclass(frozen=True)
class StandaloneSettings:
    """Where the local Airflow lives and how big it is."""

    home: Path = DEFAULT_HOME
    dags: Path = DEFAULT_DAGS
    port: int = DEFAULT_PORT
    parallelism: int = DEFAULT_PARALLELISM

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def password_file(self) -> Path:
        return self.home / PASSWORDS_FILE


def airflow_environment(settings: StandaloneSettings, base: Mapping[str, str]) -> dict[str, str]:
    """`base` (the caller's environment) plus the settings standalone and its parts read.

    A metadata DB already configured in `base` (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, e.g. a
    postgresql+psycopg:// URL as in deploy/airflow/) is kept; otherwise SQLite in AIRFLOW_HOME.
    """
    env = dict(base)
    home = settings.home
    # The shim, then the venv's bin/ as it is (not resolved: a venv's python is a symlink).
    path = [str(home / SHIM_DIR), str(Path(sys.executable).parent), base.get("PATH", "")]
    env["PATH"] = os.pathsep.join(path)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW_CONFIG": str(home / "airflow.cfg"),  # never the user's ~/airflow/airflow.cfg
            "AIRFLOW__CORE__DAGS_FOLDER": str(settings.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(settings.parallelism),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",  # user:role
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(settings.password_file),
            "AIRFLOW__API__HOST": HOST,
            "AIRFLOW__API__PORT": str(settings.port),
            "AIRFLOW__API__WORKERS": "1",
            # The task supervisors' Execution API follows the port (default localhost:8080).
            # [api] base_url stays unset (relative): the UI then also works through a
            # forwarded port (ssh -L 9000:127.0.0.1:8080).
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.url}/execution/",
            # Two DAG files: one parsing process is plenty; new files show up within 30 s.
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        }
    )
    connection = env.setdefault(
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}"
    )
    if connection.startswith("postgresql+psycopg://"):
        # psycopg 3 serves Airflow's async engine too; left alone, Airflow would derive
        # postgresql+asyncpg://, a driver the project does not install.
        env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC", connection)
    return env


def write_airflow_shim(home: Path) -> Path:
    """AIRFLOW_HOME/bin/airflow: the project's `airflow`, with `--skip-serve-logs` for the
    scheduler and the triggerer (see the module docstring); rewritten at every start."""
    real = shlex.quote(str(Path(sys.executable).parent / "airflow"))
    shim = home / SHIM_DIR / "airflow"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(
        "#!/bin/sh\n"
        "# Written by pipelines/airflow_standalone.py (make airflow) at every start.\n"
        'case "$1" in\n'
        f'  scheduler|triggerer) exec {real} "$@" --skip-serve-logs ;;\n'
        "esac\n"
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)
    return shim


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As a server binds (uvicorn sets it): connections of a stopped server in TIME_WAIT
        # do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def health(url: str, timeout: float = 2.0) -> dict | None:
    """The API server's health document, or None while it does not answer."""
    try:
        with urllib.request.urlopen(url + HEALTH_PATH, timeout=timeout) as response:
            return json.load(response)
    except (OSError, ValueError):  # URLError and refused connections are OSErrors
        return None


def is_healthy(document: dict | None) -> bool:
    return bool(document) and all(
        (document.get(name) or {}).get("status") == "healthy" for name in COMPONENTS
    )


class _Stop(Exception):
    """A stop signal arrived (Ctrl-C, SIGTERM, SIGHUP)."""


def _raise_stop(signum: int, _frame) -> None:
    raise _Stop(signal.Signals(signum).name)


def _become_subreaper() -> None:
    """Linux: orphans of our descendants (a task's `start_new_session` subprocess whose
    parent died) become our children, so the shutdown still finds and reaps them."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_child_subreaper = 36
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def _members(group: int):
    """Every live process of the process group, and every descendant of this process."""
    import psutil

    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True)}
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(process.pid) == group:
                found.setdefault(process.pid, process)
    return [p for p in found.values() if _alive(p)]


def _alive(process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _reap_children() -> None:
    """Collect exited children (adopted orphans included), so none stays a zombie."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _wait_gone(group: int, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while True:
        _reap_children()
        left = _members(group)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def stop_group(standalone: subprocess.Popen) -> int:
    """Stop standalone and everything it started; return how many processes were still alive
    when it came to SIGKILL (0: all stopped on their own)."""
    import psutil

    for signum in STOP_SIGNALS:  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signum, signal.SIG_IGN)
    group = standalone.pid  # start_new_session: its pid is its group id
    if standalone.poll() is None:
        print(f"stopping Airflow (up to {GRACE_S:.0f} s for running tasks) ...", flush=True)
        with contextlib.suppress(ProcessLookupError):
            standalone.send_signal(signal.SIGINT)  # standalone's own shutdown of its parts
        with contextlib.suppress(subprocess.TimeoutExpired):
            standalone.wait(GRACE_S)
    left = _wait_gone(group, timeout=2.0)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    left = _wait_gone(group, TERM_GRACE_S) if left else []
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    if left:
        _wait_gone(group, TERM_GRACE_S)
    standalone.poll()
    return len(left)


def _banner(settings: StandaloneSettings) -> str:
    return "\n".join(
        [
            "",
            f"Airflow is ready: {settings.url}  (listening on {HOST} only)",
            f"  login      {ADMIN_USER}; password in {settings.password_file}",
            f"  home       {settings.home}",
            f"  dags       {settings.dags}",
            f"  workers    {settings.parallelism} (LocalExecutor)",
            "  stop       Ctrl-C",
            "",
        ]
    )


def run(settings: StandaloneSettings) -> int:
    """Start `airflow standalone`, print where it is once healthy, stop it all on a signal."""
    airflow = Path(sys.executable).parent / "airflow"
    if not airflow.exists():
        print(f"error: {airflow} not found; run `make setup`", file=sys.stderr)
        return 1
    if not port_is_free(settings.port):
        print(
            f"error: {HOST}:{settings.port} is in use (another `make airflow`?); "
            "stop it or choose another port: make airflow AIRFLOW_PORT=8081",
            file=sys.stderr,
        )
        return 1
    settings.home.mkdir(parents=True, exist_ok=True)
    write_airflow_shim(settings.home)
    env = airflow_environment(settings, os.environ)
    print(f"starting airflow standalone in {settings.home} ...", flush=True)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stop)
    _become_subreaper()
    standalone = None
    try:
        standalone = subprocess.Popen(
            [str(airflow), "standalone"], cwd=ROOT, env=env, start_new_session=True
        )
        _wait_until_healthy(standalone, settings)
        standalone.wait()
        print(f"airflow standalone exited with code {standalone.returncode}", file=sys.stderr)
        return standalone.returncode or 1
    except _Stop:
        return 0
    finally:
        if standalone is not None:
            killed = stop_group(standalone)
            print(f"Airflow stopped{f' ({killed} killed)' if killed else ''}", flush=True)


def _wait_until_healthy(standalone: subprocess.Popen, settings: StandaloneSettings) -> None:
    """Print the banner once every component reports healthy (standalone's own "ready" line
    has no URL); say so once if that takes unusually long."""
    started, warned = time.monotonic(), False
    while standalone.poll() is None:
        if is_healthy(health(settings.url)):
            print(_banner(settings), flush=True)
            return
        if not warned and time.monotonic() - started > SLOW_START_S:
            print(f"not healthy after {SLOW_START_S:.0f} s: {settings.url}{HEALTH_PATH}")
            warned = True
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m portside.pipelines.airflow_standalone", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="UI/API port (8080)")
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME, help="AIRFLOW_HOME")
    parser.add_argument("--dags", type=Path, default=DEFAULT_DAGS, help="the DAG folder")
    parser.add_argument(
        "--parallelism",
        type=int,
        default=DEFAULT_PARALLELISM,
        help="LocalExecutor worker processes = tasks running at once (2)",
    )
    args = parser.parse_args(argv)
    if args.parallelism < 1:
        parser.error("--parallelism must be at least 1")
    settings = StandaloneSettings(
        home=args.home.resolve(),
        dags=args.dags.resolve(),
        port=args.port,
        parallelism=args.parallelism,
    )
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
