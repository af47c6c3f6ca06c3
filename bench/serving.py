"""Online serving: Portside's endpoint (lookup AND prediction) against `feast serve`
(lookup only), one worker each, side by side in one run, on SQLite and on Redis, for 1 and
100 entities per request.

Each server is started alone (the other is stopped) on a materialized copy of the feature
repo; the same load generator (this process: `CONCURRENCY` threads, each with one kept-alive
HTTP connection, bounded by `DURATION_S` and `MAX_REQUESTS`, to 127.0.0.1 only) sends
`POST /get-online-features` to Feast and `POST /predict` (Vertex AI's route) to Portside.
The client shares the machine's two cores with the server, so the absolute figures are the
client's too; the ratios compare like with like. Targets: Portside's throughput at least
`feast serve`'s, its p99 at most 2x `feast serve`'s.
"""

from __future__ import annotations

import http.client
import json
import shutil
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import (
    BIN,
    FEATURE_SERVICE,
    LOGS,
    WORK,
    dataset,
    feature_workspace,
    ratio,
    table,
    train_champion,
)
from portside.pipelines.local_server import LocalServer, ServerNotReady, free_port

NAME = "serving"
DATA = {"transactions": 200_000, "users": 3_000}
QUICK_DATA = {"transactions": 20_000, "users": 400}
MODEL_NAME = "fraud_model"
OUTPUT = "fraud_probability"
REQUEST_FIELDS = {"amount": 250.0, "merchant_category": "electronics"}
ENTITIES_PER_REQUEST = (1, 100)
CONCURRENCY = 4
DURATION_S, QUICK_DURATION_S = 15.0, 3.0
MAX_REQUESTS = 50_000
WARMUP_REQUESTS = 50
REDIS = "127.0.0.1:6379"
MIN_THROUGHPUT_RATIO, MAX_P99_RATIO = 1.0, 2.0
START_TIMEOUT_S = 240.0


def run(quick: bool = False) -> dict[str, Any]:
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    sources, rows = dataset(**(QUICK_DATA if quick else DATA), end=end)
    work = WORK / NAME
    shutil.rmtree(work, ignore_errors=True)
    project = f"portside_bench_{uuid.uuid4().hex[:8]}"
    repos = {
        "sqlite": feature_workspace(work / "sqlite", sources),
        "redis": feature_workspace(
            work / "redis",
            sources,
            {"project": project, "online_store": {"type": "redis", "connection_string": REDIS}},
        ),
    }
    for repo in repos.values():
        _materialize(repo, end)
    tracking_uri = work / "mlflow.db"
    print("training a champion ...", flush=True)
    transactions = sources / "transactions.parquet"
    train_champion(
        repos["sqlite"], transactions, work / "model", tracking_uri, MODEL_NAME, OUTPUT, 2
    )
    users = _users(sources)
    cases = []
    try:
        for store, repo in repos.items():
            for n in ENTITIES_PER_REQUEST:
                for engine in ("feast serve", "portside"):
                    cases.append(_measure(engine, store, n, repo, users, tracking_uri, work, quick))
    finally:
        _delete_redis_project(project)
    _add_ratios(cases)
    text = _table(cases)
    print(text, flush=True)
    return {
        "data": {**(QUICK_DATA if quick else DATA), "end": end.isoformat(), "rows": rows},
        "concurrency": CONCURRENCY,
        "duration_s": QUICK_DURATION_S if quick else DURATION_S,
        "cases": cases,
        "tables": [text],
        "failed": sum("error" in c for c in cases),
    }


def _materialize(repo: Path, end: datetime) -> None:
    from portside.components.features.materialize import materialize

    materialize(repo, end - timedelta(days=400), end + timedelta(hours=1), progress=False)


def _users(sources: Path) -> list[int]:
    import pyarrow.parquet as pq

    profiles = pq.read_table(sources / "user_profiles.parquet", columns=["user_id"])
    return sorted({int(u) for u in profiles.column("user_id").to_pylist()})


def _start(engine: str, repo: Path, tracking_uri: Path, log: Path) -> LocalServer:
    port = free_port()
    if engine == "feast serve":
        command = [str(BIN / "feast"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--workers", "1", "--max-requests", "0", "--no-access-log"]
        cwd = repo
    else:
        command = [sys.executable, "-m", "portside.components", "serve", "--port", str(port)]
        command += ["--feature-repo", str(repo), "--model-name", MODEL_NAME]
        command += ["--tracking-uri", str(tracking_uri), "--no-access-log"]
        cwd = Path(__file__).resolve().parents[1]
    log.unlink(missing_ok=True)
    server = LocalServer.start(command, port, log, cwd=cwd, own_session=True)
    try:
        server.wait_ready("/health", START_TIMEOUT_S)
    except ServerNotReady:
        server.stop()
        raise
    return server


def _body(engine: str, users: list[int], n: int, offset: int) -> bytes:
    chosen = [users[(offset + i) % len(users)] for i in range(n)]
    if engine == "feast serve":
        entities = {"user_id": chosen, **{k: [v] * n for k, v in REQUEST_FIELDS.items()}}
        return json.dumps({"feature_service": FEATURE_SERVICE, "entities": entities}).encode()
    return json.dumps({"instances": [{"user_id": u, **REQUEST_FIELDS} for u in chosen]}).encode()


def _load(engine: str, port: int, users: list[int], n: int, duration_s: float) -> dict[str, Any]:
    """CONCURRENCY threads, each on one kept-alive connection, until duration_s or
    MAX_REQUESTS; latencies of the answered requests and the count of failures."""
    path = "/get-online-features" if engine == "feast serve" else "/predict"
    headers = {"Content-Type": "application/json"}
    bodies = [_body(engine, users, n, i * 7) for i in range(64)]
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    budget = [MAX_REQUESTS]
    deadline = [0.0]

    def worker(index: int, count: int | None) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, errors, i = [], [], index
        while True:
            if count is not None:
                if count == 0:
                    break
                count -= 1
            elif time.perf_counter() >= deadline[0]:
                break
            else:
                with lock:
                    if budget[0] <= 0:
                        break
                    budget[0] -= 1
            started = time.perf_counter()
            try:
                connection.request("POST", path, bodies[i % len(bodies)], headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    errors.append(f"HTTP {response.status}")
                else:
                    mine.append(time.perf_counter() - started)
            except (OSError, http.client.HTTPException) as error:
                errors.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            i += CONCURRENCY
        connection.close()
        if count is None:
            with lock:
                latencies.extend(mine)
                failures.extend(errors)

    warm = [threading.Thread(target=worker, args=(i, WARMUP_REQUESTS)) for i in range(2)]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    deadline[0] = time.perf_counter() + duration_s
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i, None)) for i in range(CONCURRENCY)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()

    def quantile(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    return {
        "requests": len(latencies),
        "failures": len(failures),
        "failure_examples": failures[:3],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": round(quantile(0.50) * 1000, 2) if latencies else None,
        "p99_ms": round(quantile(0.99) * 1000, 2) if latencies else None,
    }


def _measure(
    engine: str,
    store: str,
    n: int,
    repo: Path,
    users: list[int],
    tracking_uri: Path,
    work: Path,
    quick: bool,
) -> dict[str, Any]:
    label = f"{engine} {store} {n}"
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"serving-{engine.replace(' ', '_')}-{store}-{n}.log"
    case: dict[str, Any] = {"engine": engine, "store": store, "entities": n, "log": str(log)}
    print(f"  {label} ...", end=" ", flush=True)
    try:
        server = _start(engine, repo, tracking_uri, log)
        try:
            case |= _load(engine, server.port, users, n, QUICK_DURATION_S if quick else DURATION_S)
        finally:
            server.stop()
    except ServerNotReady as error:
        case["error"] = str(error)
        print(f"failed: {error}", flush=True)
        return case
    if case["failures"]:
        case["error"] = f"{case['failures']} failed requests, e.g. {case['failure_examples']}"
    print(
        f"{case['throughput_rps']:.0f} req/s, p50 {case['p50_ms']} ms, p99 {case['p99_ms']} ms"
        f"{', ' + str(case['failures']) + ' failures' if case['failures'] else ''}",
        flush=True,
    )
    return case


def _add_ratios(cases: list[dict[str, Any]]) -> None:
    feast = {
        (c["store"], c["entities"]): c
        for c in cases
        if c["engine"] == "feast serve" and "error" not in c
    }
    for case in cases:
        reference = feast.get((case["store"], case["entities"]))
        if case["engine"] != "portside" or reference is None or "error" in case:
            continue
        case["throughput_vs_feast"] = round(case["throughput_rps"] / reference["throughput_rps"], 3)
        case["p99_vs_feast"] = round(case["p99_ms"] / reference["p99_ms"], 3)
        misses = []
        if case["throughput_vs_feast"] < MIN_THROUGHPUT_RATIO:
            misses.append(f"throughput {case['throughput_vs_feast']:.2f}x < 1x")
        if case["p99_vs_feast"] > MAX_P99_RATIO:
            misses.append(f"p99 {case['p99_vs_feast']:.2f}x > 2x")
        case["verdict"] = "pass" if not misses else "MISS: " + "; ".join(misses)


def _table(cases: list[dict[str, Any]]) -> str:
    rows = [
        [
            c["engine"],
            c["store"],
            c["entities"],
            c.get("throughput_rps", "-"),
            c.get("p50_ms", "-"),
            c.get("p99_ms", "-"),
            c.get("failures", "-"),
            ratio(c.get("throughput_vs_feast")),
            ratio(c.get("p99_vs_feast")),
            c.get("verdict", "error: " + c["error"] if "error" in c else "-"),
        ]
        for c in cases
    ]
    return table(
        "Online serving, one worker each (Portside: lookup + prediction; feast serve: lookup "
        f"only); {CONCURRENCY} client threads (targets: throughput >= 1x feast serve's, "
        "p99 <= 2x)",
        ["engine", "store", "entities", "req/s", "p50 ms", "p99 ms", "failures",
         "throughput vs feast", "p99 vs feast", "verdict"],
        rows,
    )  # fmt: skip


def _delete_redis_project(project: str) -> None:
    import redis

    client = redis.Redis.from_url(f"redis://{REDIS}")
    for key in client.scan_iter(match=b"*" + project.encode(), count=10_000):
        client.delete(key)
