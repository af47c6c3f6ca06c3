"""`make airflow`'s launcher with real Airflow: healthy, loopback only, a small worker pool, the
DAGs of dags/ behind a login, and Ctrl-C leaves nothing running.

One standalone for the module (it takes ~1 min to start on 2 cores); the last test stops it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from airflow_env import (
    Standalone,
    is_running,
    shut_down,
    start_standalone,
    stop_standalone,
    wait_healthy,
)
from mlflow_server import free_port

from portside.pipelines.airflow_standalone import PASSWORDS_FILE, health, port_is_free

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAG_IDS = {"feature_materialization", "training_pipeline", "model_monitoring"}
PARALLELISM = 2
WORKER_TITLE = "airflow worker -- LocalExecutor"  # the executor's setproctitle
API_SERVER_TITLE = "airflow api_server"


def start(home: Path, port: int, log: Path) -> Standalone:
    return start_standalone(home, port, log, ["--parallelism", str(PARALLELISM)])


def _request(url: str, token: str | None = None, body: dict | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def login(standalone: Standalone) -> str:
    answer = _request(
        f"{standalone.url}/auth/token", body={"username": "admin", "password": standalone.password}
    )
    return answer["access_token"]


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("airflow_home")
    running = start(home, free_port(), home.parent / "launcher.log")
    try:
        print(f"standalone healthy after {wait_healthy(running):.1f} s")
        yield running
    finally:  # also when it never came up: nothing may outlive the module
        shut_down(running)


def test_comes_up_healthy(standalone: Standalone):
    document = health(standalone.url)
    statuses = {name: part["status"] for name, part in document.items()}
    assert statuses == dict.fromkeys(statuses, "healthy"), document
    assert set(statuses) >= {"metadatabase", "scheduler", "triggerer", "dag_processor"}


def test_listens_on_loopback_only(standalone: Standalone):
    listening = [
        (process.name(), conn.laddr)
        for process in standalone.group()
        for conn in process.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN
    ]
    assert any(addr.port == standalone.port for _, addr in listening), listening
    assert {addr.ip for _, addr in listening} == {"127.0.0.1"}, listening


def test_worker_pool_fits_two_cores(standalone: Standalone):
    group = standalone.group()
    titles = standalone.titles()
    workers = [t for t in titles if t.startswith(WORKER_TITLE)]
    api_servers = [t for t in titles if t.startswith(API_SERVER_TITLE)]
    rss_mb = sum(p.memory_info().rss for p in group) / 2**20
    print(
        f"{len(group)} processes, {len(workers)} workers, {rss_mb:.0f} MB RSS:", *titles, sep="\n"
    )
    assert 1 <= len(workers) <= PARALLELISM, titles
    assert len(api_servers) == 1, titles  # [api] workers = 1: uvicorn without a supervisor
    assert len(group) <= 12, titles


def test_lists_the_dags_after_login(standalone: Standalone):
    banner = standalone.output()
    password_file = standalone.home / PASSWORDS_FILE
    assert f"password in {password_file}" in banner
    assert password_file.is_file()
    token = login(standalone)
    deadline = time.monotonic() + 120
    while True:  # the DAG processor parses dags/ right after it starts
        dags = _request(f"{standalone.url}/api/v2/dags", token)["dags"]
        if {d["dag_id"] for d in dags} >= DAG_IDS or time.monotonic() > deadline:
            break
        time.sleep(2)
    errors = _request(f"{standalone.url}/api/v2/importErrors", token)["import_errors"]
    assert errors == []
    assert {d["dag_id"] for d in dags} == DAG_IDS
    assert all(d["fileloc"].startswith(str(ROOT / "dags")) for d in dags)


def test_rejects_a_wrong_password(standalone: Standalone):
    with pytest.raises(urllib.error.HTTPError) as refused:
        _request(f"{standalone.url}/auth/token", body={"username": "admin", "password": "x"})
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        _request(f"{standalone.url}/api/v2/dags")
    assert anonymous.value.code == 401


def test_ctrl_c_stops_every_process(standalone: Standalone):
    started = time.monotonic()
    code, members = stop_standalone(standalone)
    print(f"stopped {len(members)} processes in {time.monotonic() - started:.1f} s")
    assert code == 0, standalone.output()
    assert members and not [p for p in members if is_running(p)]
    assert port_is_free(standalone.port)
    assert health(standalone.url) is None
    assert "Airflow stopped" in standalone.output()


def test_second_start_reuses_the_home(standalone: Standalone):
    password_file = standalone.home / PASSWORDS_FILE
    password = password_file.read_text()
    again = start(standalone.home, standalone.port, standalone.log)
    try:
        print(f"second start healthy after {wait_healthy(again):.1f} s")
        assert password_file.read_text() == password
        assert login(again)
    finally:
        code, members = stop_standalone(again)
    assert code == 0
    assert not [p for p in members if is_running(p)]
    assert port_is_free(standalone.port)
