"""The retraining loop end to end, through real Airflow and the real prediction server.

Data whose last DRIFT_DAYS drift (higher amounts, a new merchant category, a changed fraud
pattern) and that ends at the start of this hour, so the server scores with the real clock:

1. training_pipeline trains the champion on the quiet period before the drift (`airflow dags
   test`, its data interval ending where the drift starts);
2. the prediction server, with that champion, answers the last day's (drifted) transactions and
   logs them;
3. model_monitoring over the last day (its interval ends at the next full hour after serving,
   so it holds the day's rows and what the server logged just now) flags drift in the
   features, finds the served features equal to the offline ones, and emits "drift detected";
4. `make airflow`'s Airflow (scheduler, LocalExecutor, API server) turns the event into an
   asset-triggered training_pipeline run that trains on the recent data, evaluates the new model
   against the champion on the same (drifted) test window and pushes it only because it is
   better: the champion alias moves to the new version.

The suite in the workspace is the reviewed one that accepts the new merchant category (without
that review the validation gate stops the retraining: `make drift-demo` shows that outcome).
"""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from airflow_env import (
    dag_test,
    make_airflow_home,
    shut_down,
    start_standalone,
    task_states,
    wait_healthy,
    xcom,
)
from conftest import BIN, EXPECTATION_SUITE, MODEL_NAME, ROOT, make_workspace, run_cli

from portside.pipelines.local_server import LocalServer, free_port

pytestmark = pytest.mark.integration

DATA_DAYS = 60
DRIFT_DAYS = 25
TRAINING_TASKS = ["features", "validate", "train", "evaluate", "push"]
SERVED_ROWS = 400  # the last day's transactions sent to the server, one request each
RETRAINING_TIMEOUT_S = 1200


def _reviewed_suite(path: Path, category: str) -> None:
    """The workspace's suite with `category` added to the allowed merchant categories."""
    suite = json.loads(EXPECTATION_SUITE.read_text())
    (allowed,) = [
        e["kwargs"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_values_to_be_in_set"
        and e["kwargs"]["column"] == "merchant_category"
    ]
    allowed["value_set"].append(category)
    path.write_text(json.dumps(suite, indent=2))


def _registry(project_root: Path) -> tuple[list[str], str | None]:
    from mlflow.tracking import MlflowClient

    database = project_root / "data" / "mlflow" / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'"))
    champion = client.get_registered_model(MODEL_NAME).aliases.get("champion")
    return versions, None if champion is None else str(champion)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _serve(project, log_folder: Path, rows: pd.DataFrame, server_log: Path) -> None:
    """Start the prediction server on the workspace's champion, send each row as one request
    named by its transaction id, stop it (SIGTERM flushes the prediction log)."""
    port = free_port()
    command = [str(BIN / "python"), "-m", "portside.components", "serve"]
    command += ["--feature-repo", str(project.repo), "--model-name", MODEL_NAME]
    command += ["--tracking-uri", str(project.root / "data" / "mlflow" / "mlflow.db")]
    command += ["--port", str(port), "--prediction-log", str(log_folder)]
    server = LocalServer.start(command, port, server_log, cwd=ROOT)
    try:
        server.wait_ready("/health", 180)
        for row in rows.itertuples():
            instance = {"user_id": row.user_id, "amount": row.amount,
                        "merchant_category": row.merchant_category}  # fmt: skip
            body = {"instances": [instance], "parameters": {"request_id": row.transaction_id}}
            (prediction,) = _post(server.url + "/predict", body)["predictions"]
            assert prediction["model_version"] == "1"
    finally:
        server.stop()


def _wait_for_run(airflow, dag_id: str, run_type: str, timeout: float) -> tuple[str, str]:
    """(run_id, final state) of the DAG's first run of `run_type`, once it has finished."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = airflow.query(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? AND run_type = ? ORDER BY id",
            (dag_id, run_type),
        )
        if rows and rows[0][1] in ("success", "failed"):
            return rows[0]
        time.sleep(5)
    raise AssertionError(f"no finished {run_type} run of {dag_id} after {timeout:.0f} s: {rows}")


def test_drift_in_served_traffic_retrains_and_pushes_a_better_model(tmp_path_factory):
    from portside.components.features.materialize import materialize
    from portside.synthetic_data import DriftScenario, SyntheticDataConfig, generate

    base = tmp_path_factory.mktemp("retraining_loop")
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    drift_start = end - timedelta(days=DRIFT_DAYS)
    scenario = DriftScenario(start=drift_start)
    config = SyntheticDataConfig(
        transactions=30_000, users=500, days=DATA_DAYS, end=end, seed=23, drift=scenario
    )
    generate(config, base / "sources", progress=False)
    project = make_workspace(base / "project", sources=base / "sources")
    _reviewed_suite(project.repo / "expectations" / EXPECTATION_SUITE.name, scenario.new_category)
    run_cli([str(BIN / "feast"), "apply"], cwd=project.repo)
    materialize(project.repo, end - timedelta(days=400), end + timedelta(hours=1), progress=False)

    airflow = make_airflow_home(base / "home")
    env = {
        "PORTSIDE_AIRFLOW_RUNNER": "local",
        "PORTSIDE_PROJECT_DIR": str(project.root),
        "PORTSIDE_ARTIFACT_ROOT": str(base / "runs"),
        "PORTSIDE_CACHE_DIR": str(base / "cache"),
    }

    # 1. The champion: trained on everything before the drift.
    quiet = {"training_window_days": 0, "epochs": 2}
    done, champion_run, tasks = dag_test(
        airflow, env, "training_pipeline", drift_start.isoformat(), quiet
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert {t: tasks[t]["state"] for t in TRAINING_TASKS} == dict.fromkeys(
        TRAINING_TASKS, "success"
    )
    assert _registry(project.root) == (["1"], "1")
    champion_dir = base / "runs" / "training_pipeline" / champion_run / "train" / "model"

    # 2. The champion serves the last day's transactions, which have drifted.
    transactions = pd.read_parquet(project.sources / "transactions.parquet")
    last_day = transactions[transactions["event_timestamp"] >= end - timedelta(days=1)]
    served = last_day.sample(min(SERVED_ROWS, len(last_day)), random_state=0)
    log_folder = base / "prediction_log"
    _serve(project, log_folder, served, base / "server.log")

    # 3. The monitoring run over the last day finds the drift and raises the alarm. Airflow
    # queues asset-triggered runs only for known, unpaused DAGs.
    airflow.airflow("dags", "reserialize", env=env)
    airflow.airflow("dags", "unpause", "training_pipeline", env=env)
    conf = {
        "baseline": str(champion_dir),
        "min_samples": 100,
        "history": str(base / "history.jsonl"),
        "prediction_log": str(log_folder),
        "labels": str(project.sources / "labels.parquet"),
    }
    # The interval ends at the next full hour after serving: it holds everything just logged,
    # also when the clock passed an hour during the test, and nearly all of the last day's rows.
    served_until = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    window_end = (served_until + timedelta(hours=1)).isoformat()
    done, monitoring_run, tasks = dag_test(airflow, env, "model_monitoring", window_end, conf)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert {t: s["state"] for t, s in tasks.items()} == dict.fromkeys(
        ("features", "monitor", "serving_log", "monitor_serving", "report_drift"), "success"
    )
    features = xcom(airflow, "model_monitoring", monitoring_run, "monitor", "return_value")
    assert features["result"]["verdict"] == "drift", features["result"]
    assert {"amount", "merchant_category"} <= set(features["result"]["drifted"])
    serving = xcom(airflow, "model_monitoring", monitoring_run, "monitor_serving", "return_value")
    metrics = json.loads(
        (base / "runs" / "model_monitoring" / monitoring_run / "monitor_serving" / "monitoring"
         / "metrics.json").read_text()
    )  # fmt: skip
    assert metrics["window"]["rows"] == len(served)  # everything the server answered
    assert all(f["mismatched"] == 0 for f in metrics["skew"]["features"]), metrics["skew"]
    assert "skew" not in serving["result"]["findings"]
    assert {"amount", "merchant_category"} <= set(serving["result"]["drifted"])  # as served
    (event,) = airflow.query(
        "SELECT asset_event.extra FROM asset_event JOIN asset ON asset.id = asset_id "
        "WHERE asset.name = 'drift_detected'"
    )
    assert json.loads(event[0])["verdict"] == "drift"
    assert airflow.query(
        "SELECT target_dag_id FROM asset_dag_run_queue JOIN asset ON asset.id = asset_id "
        "WHERE asset.name = 'drift_detected'"
    ) == [("training_pipeline",)]

    # 4. Airflow as `make airflow` runs it turns the event into a training run. (Unpaused,
    # training_pipeline also gets today's cron run, catchup or not; it waits behind this one,
    # max_active_runs=1, and is stopped with Airflow.)
    standalone = start_standalone(
        airflow.home, free_port(), base / "standalone.log", ["--parallelism", "2"], env=env
    )
    try:
        wait_healthy(standalone)
        retraining_run, state = _wait_for_run(
            airflow, "training_pipeline", "asset_triggered", RETRAINING_TIMEOUT_S
        )
    finally:
        shut_down(standalone)
    tasks = task_states(airflow, "training_pipeline", retraining_run)
    assert state == "success", (tasks, standalone.output())
    assert {t: tasks[t]["state"] for t in TRAINING_TASKS} == dict.fromkeys(
        TRAINING_TASKS, "success"
    )
    consumed = airflow.query(
        "SELECT asset.name FROM dagrun_asset_event "
        "JOIN asset_event ON asset_event.id = dagrun_asset_event.event_id "
        "JOIN asset ON asset.id = asset_event.asset_id "
        "JOIN dag_run ON dag_run.id = dagrun_asset_event.dag_run_id WHERE dag_run.run_id = ?",
        (retraining_run,),
    )
    assert consumed == [("drift_detected",)]
    folder = base / "runs" / "training_pipeline" / retraining_run
    rows_window = json.loads((folder / "features/training_set/manifest.json").read_text())
    assert rows_window["extra"]["rows_window"][1] > drift_start.isoformat()  # the recent data
    evaluation = folder / "evaluate" / "evaluation"
    blessing = json.loads((evaluation / "blessing.json").read_text())
    scores = json.loads((evaluation / "metrics.json").read_text())
    # The same drifted test window for both; the new model is better, so it is blessed.
    assert scores["test_window"]["start"] > drift_start.isoformat()
    assert blessing["champion"]["version"] == "1"
    assert scores["model"]["roc_auc"] > scores["champion"]["roc_auc"], scores
    assert blessing["blessed"], blessing["reasons"]
    print(
        f"drifted: {features['result']['drifted']}; retrained ROC AUC "
        f"{scores['model']['roc_auc']:.4f} vs champion {scores['champion']['roc_auc']:.4f}"
    )
    assert _registry(project.root) == (["1", "2"], "2")
