"""A real `mlflow server` on a fresh PostgreSQL database, for tests that need a shared registry.

`mlflow_server(tmp_path)` is a context manager yielding the server's URL; the fixtures
`mlflow_server_url` (module scope) and `mlflow_server_session` (session scope) wrap it:

    from mlflow_server import mlflow_server_url  # noqa: F401  (tests/ is on sys.path)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from portside.pipelines.local_server import free_port

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
START_TIMEOUT_S = 120.0
BIN = Path(sys.executable).parent


def _admin_connect():  # -> psycopg.Connection
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True
    )


def create_database(prefix: str = "mlflow_test") -> str:
    """A new, empty PostgreSQL database; its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    """Drop the database, closing whatever connections are still open on it."""
    with _admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_healthy(process: subprocess.Popen, url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited ({process.returncode}):\n{log.read_text()[-6000:]}")
        if _healthy(url):
            return
        time.sleep(0.5)
    pytest.fail(
        f"mlflow server not healthy at {url} after {timeout:.0f}s:\n{log.read_text()[-6000:]}"
    )


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and its workers (it runs in its own process group)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(timeout=10)


@contextlib.contextmanager
def mlflow_server(tmp_path: Path, timeout: float = START_TIMEOUT_S) -> Iterator[str]:
    """Start `mlflow server` (PostgreSQL backend, local artifact root); yield its URL."""
    database = create_database()
    artifacts = tmp_path / "mlflow-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "mlflow-server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [
        str(BIN / "mlflow"), "server",
        "--backend-store-uri", f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}",
        "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                # its job runner (huey consumers) is not used and costs CPU on a 2-core box
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                start_new_session=True,
            )
        try:
            _wait_healthy(process, url, log, timeout)
            yield url
        finally:
            _stop(process)
    finally:
        drop_database(database)


@pytest.fixture(scope="module")
def mlflow_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh PostgreSQL-backed MLflow server for this test module."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow_server")) as url:
        yield url


@pytest.fixture(scope="session")
def mlflow_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PostgreSQL-backed MLflow server shared by the whole test session."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow_server_session")) as url:
        yield url
