"""The prediction server for real: `python -m portside.components serve` over a materialized Feast
online store (SQLite) and an MLflow registry holding a trained champion; requests through both
protocols (Vertex AI's JSON, and the Open Inference Protocol v2 through NVIDIA's tritonclient),
bad requests, metrics, and a registry without a champion that gets one while the server runs.

The data ends at the start of this hour, so the online features are fresh now (the daily
view's TTL is 7 days) and the server scores with the real clock, as in production.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import schemathesis
from conftest import (
    BIN,
    EXAMPLE,
    EXPECTATION_SUITE,
    MODEL_NAME,
    ROOT,
    make_workspace,
    run_cli,
    uv_command,
)
from mlflow_server import free_port

from portside.pipelines.local_server import LocalServer, ServerNotReady

pytestmark = pytest.mark.integration

REQUEST = {"amount": 250.0, "merchant_category": "electronics"}
START_TIMEOUT_S = 180.0
TRITONCLIENT = "tritonclient[http]==2.73.0"


def call(url: str, body: bytes | dict | None = None, headers: dict | None = None):
    """(status, parsed JSON) of a GET (no body) or POST."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def metrics_page(server: LocalServer) -> str:
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        return response.read().decode()


def metric(server: LocalServer, series: str) -> float:
    """The value of one series of /metrics (its name with labels, as the page prints it)."""
    for line in metrics_page(server).splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in /metrics")


def start_server(repo: Path, tracking_uri: Path, log: Path, *more: str) -> LocalServer:
    port = free_port()
    command = [sys.executable, "-m", "portside.components", "serve", "--feature-repo", str(repo)]
    command += ["--model-name", MODEL_NAME, "--tracking-uri", str(tracking_uri)]
    command += ["--port", str(port), *more]
    return LocalServer.start(command, port, log, cwd=ROOT)


def wait_listening(server: LocalServer, route: str = "/v2/health/live") -> None:
    try:
        server.wait_ready(route, START_TIMEOUT_S)
    except ServerNotReady as error:
        pytest.fail(f"{error}:\n{server.output()}")


def stop_server(server: LocalServer) -> bool:
    """SIGTERM, as Kubernetes stops a pod; whether it shut down gracefully: uvicorn finishes
    the app's shutdown, then ends by the signal it caught (exit status -15)."""
    status = server.stop()
    graceful = "Application shutdown complete" in server.output()
    return graceful and status in (0, -signal.SIGTERM)


def train_and_push(repo: Path, rows: Path, root: Path, tracking_uri: Path) -> Path:
    """features -> train -> evaluate -> push: a champion in `tracking_uri`; its model dir."""
    from portside.components.evaluate.run import run as evaluate
    from portside.components.features.run import run as build_training_set
    from portside.components.push.run import run as push
    from portside.components.train.run import run as train
    from portside.components.validate.run import run as validate

    training_set = root / "training_set"
    build_training_set(str(rows), str(training_set), feature_repo=str(repo), **EXAMPLE)
    validate(str(training_set), str(root / "validation"), str(EXPECTATION_SUITE))
    args = (str(training_set), str(root / "validation"))
    train(*args, str(root / "model"), epochs=2, tracking_uri=str(tracking_uri))
    result = evaluate(
        str(root / "model"),
        *args,
        str(root / "evaluation"),
        MODEL_NAME,
        min_roc_auc=0.0,
        min_pr_auc=0.0,
        tracking_uri=str(tracking_uri),
    )
    assert result.blessed, result.reasons
    push(
        str(root / "model"),
        str(root / "evaluation"),
        str(root / "pushed"),
        model_name=MODEL_NAME,
        tracking_uri=str(tracking_uri),
    )
    return root / "model"


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """A workspace whose data ends this hour, applied and materialized online; and the end
    of what was materialized (the rows that had landed by then)."""
    from portside.components.features.materialize import materialize
    from portside.synthetic_data import SyntheticDataConfig, generate

    root = tmp_path_factory.mktemp("serve")
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    sources = root / "sources"
    generate(
        SyntheticDataConfig(transactions=20_000, users=400, end=end, seed=5),
        sources,
        progress=False,
    )
    workspace = make_workspace(root / "workspace", sources=sources)
    run_cli([str(BIN / "feast"), "apply"], cwd=workspace.repo)
    until = end + timedelta(hours=1)
    materialize(workspace.repo, end - timedelta(days=400), until, progress=False)
    return workspace, until


@pytest.fixture(scope="module")
def fresh_data(materialized):
    return materialized[0]


@pytest.fixture(scope="module")
def champion(fresh_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("champion")
    tracking_uri = root / "mlflow.db"
    rows = fresh_data.sources / "transactions.parquet"
    return train_and_push(fresh_data.repo, rows, root, tracking_uri), tracking_uri


@pytest.fixture(scope="module")
def server(fresh_data, champion, tmp_path_factory):
    _, tracking_uri = champion
    folder = tmp_path_factory.mktemp("server")
    running = start_server(
        fresh_data.repo,
        tracking_uri,
        folder / "server.log",
        "--prediction-log",
        str(folder / "log"),
    )
    try:
        wait_listening(running, "/health")
        yield running
    finally:
        stop_server(running)


def score(prediction: dict) -> float:
    """A Vertex prediction's score: its one entry besides the version (and features)."""
    (name,) = set(prediction) - {"model_version", "features"}
    return prediction[name]


def users(workspace, n: int) -> list[int]:
    profiles = pd.read_parquet(workspace.sources / "user_profiles.parquet")
    return [int(u) for u in profiles["user_id"].unique()[:n]]


def instances(workspace, n: int = 5) -> list[dict]:
    return [{"user_id": user, **REQUEST} for user in users(workspace, n)]


def test_vertex_route_scores_the_served_features_with_the_champion(server, fresh_data, champion):
    from portside.components.common.model_io import ServingModel
    from portside.components.features.online import OnlineLookup

    rows = instances(fresh_data)
    status, answer = call(
        server.url + "/predict", {"instances": rows, "parameters": {"return_features": True}}
    )
    assert status == 200, answer
    predictions = answer["predictions"]
    assert [p["model_version"] for p in predictions] == ["1"] * len(rows)
    model = ServingModel(champion[0])
    # The features the server used are the online store's, fresh now (not all missing).
    expected = OnlineLookup(fresh_data.repo, model.spec.feature_service).lookup(rows)
    served = pd.DataFrame([p["features"] for p in predictions])
    assert served["txn_count_30d"].notna().all()
    for column in model.spec.columns:
        left, right = served[column], expected[column]
        if column in model.spec.numeric:
            assert np.allclose(left.astype(float), right.astype(float), equal_nan=True), column
        else:
            assert list(left.fillna("")) == list(right.astype("string").fillna("")), column
    # ... and the score is the champion's for exactly those features.
    scores = np.array([p[model.spec.output] for p in predictions])
    assert np.allclose(scores, model.predict(expected), atol=1e-6)
    assert ((scores > 0) & (scores < 1)).all()


def test_no_training_serving_skew(server, materialized, champion, tmp_path):
    """For a sample of users, the served feature vector is the `as_known` training features
    at the materialization time (what the features component would put in a training set),
    and the served score is the champion's on that training-set row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from portside.components.common.model_io import ServingModel
    from portside.components.features.run import run as build_training_set

    workspace, until = materialized
    rows = instances(workspace, 40)
    status, answer = call(
        server.url + "/predict", {"instances": rows, "parameters": {"return_features": True}}
    )
    assert status == 200, answer
    entity_rows = pa.Table.from_pylist(
        [{**row, "event_timestamp": until, "is_fraud": 0} for row in rows]
    )
    pq.write_table(entity_rows, tmp_path / "rows.parquet")
    build_training_set(
        str(tmp_path / "rows.parquet"),
        str(tmp_path / "training_set"),
        feature_repo=str(workspace.repo),
        point_in_time="as_known",
        **EXAMPLE,
    )
    offline = pd.read_parquet(tmp_path / "training_set" / "training_set.parquet")
    model = ServingModel(champion[0])
    served = pd.DataFrame([p["features"] for p in answer["predictions"]])
    assert served["txn_count_7d"].notna().sum() > len(rows) // 2  # fresh, not all missing
    for column in model.spec.columns:
        if column in model.spec.numeric:
            left, right = served[column].astype(float), offline[column].astype(float)
            assert np.allclose(left, right, rtol=1e-9, equal_nan=True), column
        else:
            assert list(served[column].fillna("")) == list(offline[column].fillna("")), column
    scores = np.array([score(p) for p in answer["predictions"]])
    assert np.allclose(scores, model.predict(offline), atol=1e-6)


def test_the_monitor_reads_what_the_server_logged(fresh_data, champion, tmp_path):
    """Transactions old enough to be labelled, sent one per request named by its transaction
    id: the monitor on the prediction log, with the champion's model directory as the baseline
    (train put validate's statistics and its validation scores there), finds every served
    feature equal to the offline point-in-time value, compares the scores with the validation
    scores, and scores the champion against the generator's delayed labels."""
    from sklearn.metrics import roc_auc_score

    model_dir, tracking_uri = champion
    folder = tmp_path / "log"
    server = start_server(
        fresh_data.repo, tracking_uri, tmp_path / "server.log", "--prediction-log", str(folder)
    )
    labels = pd.read_parquet(fresh_data.sources / "labels.parquet")
    transactions = pd.read_parquet(fresh_data.sources / "transactions.parquet")
    old = transactions[transactions["transaction_id"].isin(labels["transaction_id"])]
    old = pd.concat([old[old["is_fraud"] == 0].head(300), old[old["is_fraud"] == 1].head(60)])
    try:
        wait_listening(server, "/health")
        for row in old.itertuples():
            instance = {"user_id": row.user_id, "amount": row.amount,
                        "merchant_category": row.merchant_category}  # fmt: skip
            body = {"instances": [instance], "parameters": {"request_id": row.transaction_id}}
            status, answer = call(server.url + "/predict", body)
            assert status == 200, answer
    finally:
        assert stop_server(server), server.output()
    out = tmp_path / "monitoring"
    args = ["--baseline", str(model_dir), "--window", str(folder), "--monitoring", str(out)]
    args += ["--timestamp-column", "timestamp", "--feature-repo", str(fresh_data.repo)]
    args += ["--labels", str(fresh_data.sources / "labels.parquet")]
    args += ["--labels-key", "transaction_id", "--min-labels", "100", "--min-samples", "100"]
    done = subprocess.run(
        [sys.executable, "-m", "portside.components", "monitor", *args],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["skew"]["rows"] == len(old)
    assert metrics["skew"]["features"] and all(
        s["mismatched"] == 0 for s in metrics["skew"]["features"]
    ), metrics["skew"]
    prediction = next(f for f in metrics["features"] if f["kind"] == "prediction")
    assert prediction["feature"] == "score" and prediction["values"] == len(old)
    (quality,) = metrics["quality"]["arms"]
    logged = pd.read_parquet(folder).merge(
        labels.assign(request_id=labels["transaction_id"].astype(str)), on="request_id"
    )
    assert quality["labelled"] == len(old) and quality["positives"] == 60
    assert quality["roc_auc"] == pytest.approx(roc_auc_score(logged["is_fraud"], logged["score"]))
    reference = json.loads((model_dir / "reference_scores.json").read_text())
    assert metrics["quality"]["reference_roc_auc"] == reference["roc_auc"]


def test_open_inference_protocol_through_tritonclient(server, fresh_data):
    rows = instances(fresh_data, 7)
    command = [*uv_command(), "run", "--no-project", "--quiet", "--python", sys.executable]
    command += ["--with", TRITONCLIENT, "python", str(ROOT / "tests" / "oip_client.py")]
    command += [server.url, MODEL_NAME, json.dumps(rows)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["live"] and result["ready"] and result["model_ready"]
    metadata = result["metadata"]
    assert metadata["name"] == MODEL_NAME and metadata["versions"] == ["1"]
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]} == {
        "user_id": "INT64",
        "amount": "FP64",
        "merchant_category": "BYTES",
    }
    _, vertex = call(server.url + "/predict", {"instances": rows})
    output = metadata["outputs"][0]["name"]
    expected = [p[output] for p in vertex["predictions"]]
    for kind in ("binary", "json"):
        answer = result["answers"][kind]
        assert answer["model_version"] == "1" and answer["id"] == "r1"
        assert np.allclose(answer["scores"], expected, atol=1e-6), kind
    assert np.allclose(result["answers"]["default"], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        (
            {"instances": [{"user_id": 1, "amount": "x", "merchant_category": "a"}]},
            400,
            "instances[0].amount: expected a finite number",
        ),
        (
            {"instances": [{"user_id": 1, "amount": 1.0}]},
            400,
            "instances[0].merchant_category: missing",
        ),
        (
            {"instances": [{"user_id": 1, "amount": 1.0, "merchant_category": "a", "x": 1}]},
            400,
            "instances[0]: unknown field(s) x",
        ),
        (
            {"instances": [{"user_id": 1.5, "amount": 1.0, "merchant_category": "a"}]},
            400,
            "instances[0].user_id: expected an integer",
        ),
        ({"rows": []}, 400, '"instances"'),
        ({"instances": []}, 400, "no instances"),
        (
            {"instances": [{"user_id": 1, "amount": 1.0, "merchant_category": "a"}] * 1001},
            413,
            "1001 instances, at most 1000",
        ),
        (b"{not json", 400, "body is not JSON"),
    ],
)
def test_bad_vertex_requests_are_4xx_naming_the_field(server, body, status, names):
    got, answer = call(server.url + "/predict", body)
    assert got == status, answer
    assert names in answer["error"]


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(server):
    """413 from the Content-Length alone: the server does not read 1.6 MB to refuse it."""
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1600000\r\n\r\n{"
        )
        received = b""
        while b"at most" not in received and (chunk := connection.recv(65536)):
            received += chunk
    answer = received.decode()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "body: 1600000 bytes, at most 1500000" in answer


def test_bad_inference_requests_are_4xx_naming_the_input(server):
    infer = f"{server.url}/v2/models/{MODEL_NAME}/infer"
    user = {"name": "user_id", "shape": [1], "datatype": "INT64", "data": [1]}
    amount = {"name": "amount", "shape": [1], "datatype": "FP64", "data": [2.0]}
    category = {"name": "merchant_category", "shape": [1], "datatype": "BYTES", "data": ["a"]}
    cases = [
        ({"inputs": [user, amount]}, 400, "inputs: missing merchant_category"),
        (
            {"inputs": [user, {**amount, "datatype": "BYTES"}, category]},
            400,
            "inputs[1] (amount): datatype 'BYTES'",
        ),
        (
            {"inputs": [user, {**amount, "shape": [2]}, category]},
            400,
            "inputs[1] (amount): shape [2] does not hold 1 elements",
        ),
        (
            {"inputs": [user, amount, category], "outputs": [{"name": "nope"}]},
            400,
            "outputs[0] (nope): unknown output",
        ),
    ]
    for body, status, names in cases:
        got, answer = call(infer, body)
        assert (got, names in answer["error"]) == (status, True), (body, answer)
    got, answer = call(f"{server.url}/v2/models/other/infer", {"inputs": [user, amount, category]})
    assert got == 404 and "not served here" in answer["error"]


FUZZ_EXAMPLES = 60


def _fuzz(operation, mode, base_url: str) -> set[int]:
    """The statuses of FUZZ_EXAMPLES generated requests, each checked by schemathesis."""
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    # An OIP request can fit the schema and still be wrong (a shape that does not match its
    # data, inputs of unequal lengths): JSON Schema cannot say so, the server answers 400.
    excluded = [positive_data_acceptance] if operation.path.endswith("/infer") else []
    statuses: set[int] = set()

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case) -> None:
        response = case.call_and_validate(base_url=base_url, excluded_checks=excluded)
        statuses.add(response.status_code)

    check()
    return statuses


def test_requests_generated_from_the_openapi_document(server):
    """schemathesis generates requests from the server's own OpenAPI document, valid ones
    (positive) and ones that break it (negative): no answer is a server error, every answer
    is one the document lists, in its schema; valid Vertex requests are answered, and a
    request that breaks the document gets a 4xx (413 for too many instances)."""
    from schemathesis.config import SchemathesisConfig
    from schemathesis.generation import GenerationMode

    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": [400, 413]}}}
    )
    api = schemathesis.openapi.from_url(server.url + "/openapi.json", config=config)
    operations = {result.ok().path: result.ok() for result in api.get_all_operations()}
    assert {"/predict", f"/v2/models/{MODEL_NAME}/infer", "/health"} <= set(operations)
    statuses = {
        (path, mode.value): _fuzz(operation, mode, server.url)
        for path, operation in operations.items()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        # a GET without parameters has nothing to break
        if mode is GenerationMode.POSITIVE or operation.method.upper() == "POST"
    }
    # valid requests are answered (413 only for a body over the size limit)
    assert 200 in statuses[("/predict", "positive")] <= {200, 413}, statuses
    assert statuses[("/predict", "negative")] <= {400, 413}, statuses


def test_metrics_count_requests_and_name_the_version(server, fresh_data):
    for _ in range(3):
        assert call(server.url + "/predict", {"instances": instances(fresh_data, 2)})[0] == 200
    assert metric(server, 'portside_requests_total{route="/predict",status="200"}') >= 3
    text = metrics_page(server)
    assert f'portside_model_version{{arm="champion",model="{MODEL_NAME}",version="1"}} 1.0' in text
    assert "portside_request_seconds_bucket" in text
    assert metric(server, 'portside_instances_total{arm="champion"}') >= 6
    # concurrent requests may share a batch: never more batches than requests
    batches, batched = (
        metric(server, "portside_batches_total"),
        metric(server, "portside_batched_requests_total"),
    )
    assert 1 <= batches <= batched


def test_feature_age_is_exported_per_view(server, materialized):
    """The age of the online values each lookup read: for each user, the time since the
    event time of its latest materialized daily-aggregates row, observed once per instance."""
    fresh_data, until = materialized
    series = '{view="user_daily_aggregates"}'
    before = [
        metric(server, f"portside_feature_age_seconds_{part}{series}") for part in ("count", "sum")
    ]
    rows = instances(fresh_data, 4)
    asked = datetime.now(timezone.utc)
    assert call(server.url + "/predict", {"instances": rows})[0] == 200
    answered = datetime.now(timezone.utc)
    count, total = (
        metric(server, f"portside_feature_age_seconds_{part}{series}") for part in ("count", "sum")
    )
    assert count == before[0] + 4
    # what materialization took: the rows that had landed (were created) by `until`
    daily = pd.read_parquet(fresh_data.sources / "user_daily_aggregates.parquet")
    landed = daily[["event_timestamp", "created_timestamp"]].max(axis=1) <= until
    latest = daily[landed].groupby("user_id")["event_timestamp"].max()
    stamps = [latest[row["user_id"]] for row in rows]
    low = sum((asked - stamp).total_seconds() for stamp in stamps)
    high = sum((answered - stamp).total_seconds() for stamp in stamps)
    assert low - 1 <= total - before[1] <= high + 1, (total - before[1], low, high)
    unknown = {"instances": [{"user_id": 999_999_999, **REQUEST}]}
    missing = 'portside_feature_rows_missing_total{view="user_daily_aggregates"}'
    text = metrics_page(server)
    missing_before = metric(server, missing) if missing in text else 0.0
    assert call(server.url + "/predict", unknown)[0] == 200  # nulls, as training saw them
    assert metric(server, missing) == missing_before + 1


def test_no_champion_is_503_with_the_reason_then_served_without_restart(
    fresh_data, champion, tmp_path
):
    """A registry with no champion yet: the server starts, says why it cannot answer, and
    serves as soon as push makes one (the reload loop), without a restart."""
    tracking_uri = tmp_path / "empty" / "mlflow.db"
    tracking_uri.parent.mkdir()
    server = start_server(
        fresh_data.repo, tracking_uri, tmp_path / "server.log", "--reload-interval-s", "1"
    )
    try:
        wait_listening(server)
        status, health = call(server.url + "/health")
        assert status == 503 and "has no champion" in health["reason"], health
        status, answer = call(server.url + "/predict", {"instances": instances(fresh_data, 1)})
        assert status == 503 and "has no champion" in answer["error"]
        assert call(server.url + "/v2/health/ready")[0] == 503

        from portside.components.push.run import run as push

        model_dir = champion[0]
        evaluation = model_dir.parent / "evaluation"
        push(
            str(model_dir),
            str(_blessing_for_empty(evaluation, tmp_path, tracking_uri)),
            str(tmp_path / "p"),
            model_name=MODEL_NAME,
            tracking_uri=str(tracking_uri),
        )
        deadline = time.monotonic() + 60
        while call(server.url + "/health")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        status, answer = call(server.url + "/predict", {"instances": instances(fresh_data, 1)})
        assert status == 200, (answer, server.output())
        assert answer["predictions"][0]["model_version"] == "1"
    finally:
        assert stop_server(server), server.output()
    assert f"serving {MODEL_NAME} v1" in server.output()


def _blessing_for_empty(evaluation: Path, root: Path, tracking_uri: Path) -> Path:
    """The evaluation's blessing as judged against the empty registry (no champion): what
    evaluate would have recorded there."""
    import shutil

    from portside.components.push.champion import identity
    from portside.components.push.registry import Registry

    target = root / "evaluation"
    shutil.copytree(evaluation, target)
    blessing = json.loads((target / "blessing.json").read_text())
    blessing["registry"] = identity(Registry(str(tracking_uri), MODEL_NAME))
    blessing["champion"] = None
    (target / "blessing.json").write_text(json.dumps(blessing))
    return target


def test_sigterm_stops_cleanly(fresh_data, champion, tmp_path):
    server = start_server(fresh_data.repo, champion[1], tmp_path / "server.log")
    wait_listening(server, "/health")
    assert stop_server(server), server.output()
    lines = [line for line in server.output().splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line)["severity"] for line in lines)  # structured logs


# -- the champion moves under load --------------------------------------------------------------

RELOAD_S = 0.5
LOAD_THREADS = 4
MOVES = ("1", "3", "2", "1", "3")
MOVE_EVERY_S = 3.0


def _variants(model_dir: Path, root: Path, tracking_uri: Path) -> list[str]:
    """Three versions of the champion's model (an extra file each: new content) published in
    a registry of their own; the versions, the last one the champion."""
    import shutil

    from portside.components.lineage import content_hash
    from portside.components.push.registry import Registry

    registry = Registry(str(tracking_uri), MODEL_NAME)
    expected = None
    for tag in ("a", "b", "c"):
        variant = root / f"model-{tag}"
        shutil.copytree(model_dir, variant)
        (variant / "variant.txt").write_text(tag)
        expected = registry.publish(variant, content_hash(variant), expected).version
    return [str(v.version) for v in registry.versions()]


def test_the_champion_moves_under_load_without_a_failed_request(fresh_data, champion, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from portside.components.push.registry import Registry

    tracking_uri = tmp_path / "moves" / "mlflow.db"
    tracking_uri.parent.mkdir()
    assert _variants(champion[0], tmp_path, tracking_uri) == ["1", "2", "3"]
    server = start_server(
        fresh_data.repo, tracking_uri, tmp_path / "server.log", "--reload-interval-s", str(RELOAD_S)
    )
    registry = Registry(str(tracking_uri), MODEL_NAME)
    timeline = [(time.monotonic(), "3")]  # (since when, champion)
    stop = time.monotonic() + 3600  # set for real once the moves are done
    body = {"instances": instances(fresh_data, 1)}

    def load() -> list[tuple[float, float, int, str | None]]:
        answers = []
        while time.monotonic() < stop and len(answers) < 5000:
            started = time.monotonic()
            try:
                status, answer = call(server.url + "/predict", body)
                version = answer["predictions"][0]["model_version"] if status == 200 else None
            except OSError as error:  # a dropped connection is a failure too
                status, version = -1, repr(error)
            answers.append((started, time.monotonic(), status, version))
        return answers

    try:
        wait_listening(server, "/health")
        with ThreadPoolExecutor(LOAD_THREADS) as pool:
            loads = [pool.submit(load) for _ in range(LOAD_THREADS)]
            for version in MOVES:
                time.sleep(MOVE_EVERY_S)
                registry.promote(version)
                timeline.append((time.monotonic(), version))
            time.sleep(MOVE_EVERY_S)
            stop = time.monotonic()
            answers = [a for future in loads for a in future.result()]
    finally:
        assert stop_server(server), server.output()

    failed = [a for a in answers if a[2] != 200]
    assert not failed, failed[:5]
    # A version served at [start, end] was the champion at some moment of [start - lag, end]:
    # the server sees a move within a reload interval and needs a moment to load the model.
    lag = RELOAD_S + 3.0

    def champions(start: float, end: float) -> set[str]:
        held = {v for t, v in timeline if start - lag <= t <= end}
        before = [v for t, v in timeline if t < start - lag]
        return held | set(before[-1:])

    wrong = [a for a in answers if a[3] not in champions(a[0], a[1])]
    assert not wrong, (wrong[:5], timeline)
    served = [a[3] for a in sorted(answers)]
    assert {"1", "2", "3"} <= set(served), set(served)  # every champion was served
    assert served[-1] == MOVES[-1]
    print(f"{len(answers)} requests, {len(timeline) - 1} champion moves, no failure")


# -- a challenger beside the champion: canary and shadow -----------------------------------------


@pytest.fixture(scope="module")
def three_versions(fresh_data, champion, tmp_path_factory):
    """A registry holding v1, v2 and v3 (the champion) of the champion's model."""
    root = tmp_path_factory.mktemp("versions")
    tracking_uri = root / "mlflow.db"
    assert _variants(champion[0], root, tracking_uri) == ["1", "2", "3"]
    return tracking_uri


def test_a_canary_answers_its_share_of_entities_the_same_way_every_time(
    fresh_data, three_versions, tmp_path
):
    """30% canary of v1 beside champion v3: each user's requests always reach the arm its
    entity key hashes to (the same function on every replica); the log and metrics say which."""
    from portside.components.serve.arms import canary_bucket

    folder = tmp_path / "log"
    server = start_server(
        fresh_data.repo,
        three_versions,
        tmp_path / "server.log",
        *("--challenger-version", "1", "--canary-percent", "30"),
        *("--prediction-log", str(folder)),
    )
    everyone = users(fresh_data, 200)
    try:
        wait_listening(server, "/health")
        status, health = call(server.url + "/health")
        assert status == 200 and health["challenger"] == {
            "arm": "canary",
            "status": "ready",
            "model_version": "1",
        }, health
        answered = {}
        for user in everyone + everyone[:20]:  # the first 20 asked twice
            status, answer = call(
                server.url + "/predict", {"instances": [{"user_id": user, **REQUEST}]}
            )
            assert status == 200, answer
            version = answer["predictions"][0]["model_version"]
            assert answered.setdefault(user, version) == version, f"user {user} changed arm"
        expected = {user: "1" if canary_bucket([user]) < 30 else "3" for user in everyone}
        assert answered == expected
        share = sum(v == "1" for v in answered.values()) / len(answered)
        assert 0.2 < share < 0.4, share
        text = metrics_page(server)
        assert (
            f'portside_model_version{{arm="canary",model="{MODEL_NAME}",version="1"}} 1.0' in text
        )
        assert metric(server, 'portside_instances_total{arm="canary"}') == sum(
            expected[u] == "1" for u in everyone + everyone[:20]
        )
    finally:
        assert stop_server(server), server.output()
    logged = pd.read_parquet(folder)
    arms = logged.groupby("arm")["model_version"].unique().map(list).to_dict()
    assert arms == {"canary": ["1"], "champion": ["3"]}


def test_a_pinned_version_answers_and_a_shadow_is_logged_never_returned(
    fresh_data, three_versions, tmp_path
):
    """`--model-version 2` serves v2 although v3 is the champion; v1 in shadow scores every
    request into the prediction log under the answer's request id and is never returned."""
    folder = tmp_path / "log"
    server = start_server(
        fresh_data.repo,
        three_versions,
        tmp_path / "server.log",
        *("--model-version", "2", "--challenger-version", "1", "--shadow"),
        *("--prediction-log", str(folder)),
    )
    try:
        wait_listening(server, "/health")
        answers = []
        for _ in range(5):
            status, answer = call(server.url + "/predict", {"instances": instances(fresh_data, 3)})
            assert status == 200, answer
            answers.append(answer)
        assert {p["model_version"] for a in answers for p in a["predictions"]} == {"2"}
        status, _ = call(server.url + "/predict", {"instances": [{"user_id": "x"}]})
        assert status == 400  # a bad request is refused before either model scores it
    finally:
        assert stop_server(server), server.output()  # the log is written on shutdown
    logged = pd.read_parquet(folder)
    assert sorted(logged["arm"].unique()) == ["champion", "shadow"]
    by_arm = {arm: rows for arm, rows in logged.groupby("arm")}
    assert set(by_arm["champion"]["model_version"]) == {"2"}
    assert set(by_arm["shadow"]["model_version"]) == {"1"}
    assert len(by_arm["champion"]) == len(by_arm["shadow"]) == 15
    pairs = by_arm["champion"].merge(by_arm["shadow"], on=["request_id", "instance"])
    assert len(pairs) == 15  # each answer's shadow under the same request and instance
    assert pairs["score_x"].to_numpy() == pytest.approx(pairs["score_y"].to_numpy())  # same model


def test_challenger_flags_that_do_not_fit_together_are_refused():
    for flags, reason in [
        (["--canary-percent", "10"], "need a challenger-version"),
        (["--challenger-version", "1"], "either canary-percent"),
        (["--challenger-version", "1", "--shadow"], "set prediction-log"),
        (["--challenger-version", "1", "--canary-percent", "150"], "between 0 and 100"),
    ]:
        command = [sys.executable, "-m", "portside.components", "serve", "--model-name", MODEL_NAME]
        done = subprocess.run(command + flags, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2 and reason in done.stderr, (flags, done.stderr)


# -- the online store goes away and comes back --------------------------------------------------


@dataclass
class PrivateRedis:
    """A redis-server of this test's own (the shared one on 6379 serves other tests), saving
    to `folder` when stopped so a restart finds the materialized rows again."""

    port: int
    folder: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.folder), "--save", "3600 1", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ping = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if ping.stdout.strip() == "PONG":
                return
            time.sleep(0.2)
        pytest.fail(f"redis-server on {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # saves dump.rdb first (the save point above)
            self.process.wait(30)


@pytest.fixture
def redis_workspace(fresh_data, tmp_path):
    """The fresh data's repo on a private Redis online store, materialized."""
    import yaml

    from portside.components.features.materialize import materialize

    redis = PrivateRedis(free_port(), tmp_path)
    redis.start()
    workspace = make_workspace(tmp_path / "workspace", sources=fresh_data.sources)
    path = workspace.repo / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config["online_store"] = {"type": "redis", "connection_string": f"127.0.0.1:{redis.port}"}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_cli([str(BIN / "feast"), "apply"], cwd=workspace.repo)
    end = datetime.now(timezone.utc) + timedelta(hours=1)
    materialize(workspace.repo, end - timedelta(days=400), end, progress=False)
    try:
        yield workspace, redis
    finally:
        redis.stop()


def test_online_store_outage_is_503_with_the_reason_then_recovers(
    redis_workspace, champion, tmp_path
):
    workspace, redis = redis_workspace
    server = start_server(workspace.repo, champion[1], tmp_path / "server.log")
    body = {"instances": instances(workspace, 2)}
    try:
        wait_listening(server, "/health")
        status, before = call(server.url + "/predict", body)
        assert status == 200, before
        redis.stop()
        status, answer = call(server.url + "/predict", body)
        assert status == 503, answer
        assert (
            answer["error"].startswith("online store unavailable: ")
            and "Connection" in (answer["error"])
        ), answer
        redis.start()  # the same data (saved on stop)
        deadline = time.monotonic() + 30
        while (status := call(server.url + "/predict", body)[0]) != 200:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.5)
        _, after = call(server.url + "/predict", body)
        assert after == before  # the same features and scores as before the outage
        assert metric(server, "portside_online_store_errors_total") >= 1
    finally:
        assert stop_server(server), server.output()


def test_every_answered_instance_is_in_the_prediction_log(server, fresh_data):
    """Under concurrent load, each instance answered is logged (or counted as dropped) with
    its score, version and the features the model saw."""
    from concurrent.futures import ThreadPoolExecutor

    folder = server.log.parent / "log"
    written_before = metric(server, "portside_prediction_log_written_total")
    rows = instances(fresh_data, 3)

    def send(_: int) -> list[float]:
        status, answer = call(server.url + "/predict", {"instances": rows})
        assert status == 200, answer
        return [score(p) for p in answer["predictions"]]

    with ThreadPoolExecutor(4) as pool:
        answered = [score for scores in pool.map(send, range(40)) for score in scores]
    deadline = time.monotonic() + 30
    while metric(server, "portside_prediction_log_written_total") + metric(
        server, "portside_prediction_log_dropped_total"
    ) < written_before + len(answered):
        assert time.monotonic() < deadline, "the prediction log did not catch up"
        time.sleep(0.5)
    assert metric(server, "portside_prediction_log_dropped_total") == 0
    logged = pd.read_parquet(folder)  # date=... partitions
    assert len(logged) == written_before + len(answered)
    assert {"timestamp", "request_id", "model_version", "arm", "score", "amount_to_avg_30d"} <= set(
        logged.columns
    )
    assert set(logged["model_version"]) == {"1"} and set(logged["arm"]) == {"champion"}
    recent = logged.sort_values("timestamp").tail(len(answered))
    assert sorted(recent["score"]) == pytest.approx(sorted(answered))
    assert sorted(recent["user_id"].unique()) == sorted(r["user_id"] for r in rows)
    assert [p.name for p in folder.iterdir()] == [
        "date=" + datetime.now(timezone.utc).strftime("%Y-%m-%d")
    ]
