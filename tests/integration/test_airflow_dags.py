"""The DAGs under real Airflow 3: parsed by a DagBag in every runner mode, run with `airflow
dags test` (local runner) on small generated data, and an Asset event that queues training.

One AIRFLOW_HOME for the module (tests/airflow_env.py); Airflow only ever runs in subprocesses.
The tasks run in a workspace copy of the project (PORTSIDE_PROJECT_DIR), so the DAGs' default
parameters (feature_repo, data/sources/transactions.parquet, the suite, data/mlflow) are that
workspace's.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from airflow_env import (
    AirflowHome,
    RecordingWebhook,
    dag_test,
    make_airflow_home,
    stop_process,
    wait_for_asset_run,
    xcom,
)
from conftest import (
    BIN,
    DATA_END,
    EXPECTATION_SUITE,
    MODEL_NAME,
    ROOT,
    make_workspace,
    prediction_log_rows,
    run_cli,
    write_prediction_log,
)

pytestmark = pytest.mark.integration

TRAINING_TASKS = ["features", "validate", "train", "evaluate", "push"]
HEAVY = ("tensorflow", "feast", "great_expectations", "google.cloud.aiplatform", "kfp", "tfx")
LOGICAL_DATE = DATA_END.isoformat()  # the run's data interval ends at the data's end
FAST = {"epochs": 2}


# What a DagBag of dags/ holds, as JSON, which heavy modules parsing imported and how many
# times the production profile was read.
PROBE = f"""
import json, sys, time
import portside.pipelines.profile
profile_loads = []
read_profile = portside.pipelines.profile.load_profile
def counted_load_profile(*args, **kwargs):
    profile_loads.append(str(args[0]))
    return read_profile(*args, **kwargs)
portside.pipelines.profile.load_profile = counted_load_profile
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
bag = DagBag(dag_folder={str(ROOT / "dags")!r}, include_examples=False)
seconds = time.perf_counter() - started
heavy = [m for m in {HEAVY!r} if m in sys.modules]

def names(assets):
    return sorted(a.name for a in assets)

def schedule(timetable):
    inner = getattr(timetable, "timetable", None)
    condition = getattr(timetable, "asset_condition", None)
    return {{
        "type": type(timetable).__name__,
        "inner": type(inner).__name__ if inner is not None else None,
        "cron": getattr(inner or timetable, "expression", None),
        "interval": str(getattr(inner or timetable, "interval", "")),
        "assets": names(getattr(condition, "objects", [condition])) if condition else [],
    }}

dags = {{}}
for dag_id, dag in bag.dags.items():
    DagSerialization.from_dict(DagSerialization.to_dict(dag))  # what the DB would store
    dags[dag_id] = {{
        "schedule": schedule(dag.timetable),
        "params": sorted(dag.params),
        "tags": sorted(dag.tags),
        "doc": bool(dag.doc_md),
        "tasks": {{
            t.task_id: {{
                "type": type(t).__name__,
                "downstream": sorted(t.downstream_task_ids),
                "outlets": names(t.outlets),
                "owner": t.owner,
                "retries": t.retries,
                "timeout": t.execution_timeout.total_seconds() if t.execution_timeout else None,
                "links": sorted(link.name for link in t.operator_extra_links),
                "argv": [str(a) for a in getattr(t, "argv", getattr(t, "arguments", []))],
            }}
            for t in dag.tasks
        }},
    }}
print(json.dumps({{"errors": bag.import_errors, "heavy": heavy, "seconds": seconds,
                   "profile_loads": profile_loads, "dags": dags}}))
"""


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("airflow_dags")


@pytest.fixture(scope="module")
def airflow(base: Path) -> AirflowHome:
    """The module's Airflow: its own home and a DAG folder holding the project's DAGs."""
    dags = base / "dags"
    dags.mkdir()
    for path in (ROOT / "dags").glob("*.py"):
        shutil.copy(path, dags / path.name)
    return make_airflow_home(base / "home", dags_folder=dags)


@pytest.fixture(scope="module")
def project(workspace, base: Path):
    """A workspace over the session's data, with its own registry, online store and MLflow."""
    ws = make_workspace(base / "project", sources=workspace.sources)
    run_cli([str(BIN / "feast"), "apply"], cwd=ws.repo)
    return ws


def binding_env(project, base: Path, **more: str) -> dict[str, str]:
    return {
        "PORTSIDE_AIRFLOW_RUNNER": "local",
        "PORTSIDE_PROJECT_DIR": str(project.root),
        "PORTSIDE_ARTIFACT_ROOT": str(base / "runs"),
        "PORTSIDE_CACHE_DIR": str(base / "cache"),
        **more,
    }


def registry(project) -> tuple[list[str], str | None]:
    """(registered versions, champion version) of the worked example's model."""
    from mlflow.tracking import MlflowClient

    database = project.root / "data" / "mlflow" / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'"))
    if not versions:
        return [], None
    champion = client.get_registered_model(MODEL_NAME).aliases.get("champion")
    return versions, None if champion is None else str(champion)


def run_folder(base: Path, dag_id: str, run_id: str) -> Path:
    return base / "runs" / dag_id / run_id


# -- parsing ----------------------------------------------------------------------------------


def parse(airflow: AirflowHome, runner: str) -> dict:
    env = {"PORTSIDE_AIRFLOW_RUNNER": runner}
    return json.loads(airflow.python(PROBE, env=env, timeout=120).stdout.splitlines()[-1])


def test_dagbag_local(airflow):
    bag = parse(airflow, "local")
    assert bag["errors"] == {}
    assert bag["heavy"] == []
    assert bag["profile_loads"] == []  # the local runner needs no production profile
    assert set(bag["dags"]) == {"feature_materialization", "training_pipeline", "model_monitoring"}
    training, features = bag["dags"]["training_pipeline"], bag["dags"]["feature_materialization"]
    monitoring = bag["dags"]["model_monitoring"]
    assert monitoring["schedule"]["cron"] == "0 2 * * *"
    steps = monitoring["tasks"]
    assert steps["features"]["downstream"] == ["monitor"]
    assert steps["monitor"]["downstream"] == ["report_drift"]
    assert steps["monitor"]["links"] == ["Report", "Run manifest"]
    assert steps["report_drift"]["outlets"] == ["drift_detected"]
    assert {"baseline", "drift_threshold", "min_samples", "cooldown_hours"} <= set(
        monitoring["params"]
    )

    assert training["schedule"] == {
        "type": "AssetOrTimeSchedule",
        "inner": "CronTriggerTimetable",
        "cron": "0 0 * * *",
        "interval": "1 day, 0:00:00",
        "assets": ["drift_detected", "features_fresh"],
    }
    tasks = training["tasks"]
    assert list(tasks) == TRAINING_TASKS
    for upstream, downstream in zip(TRAINING_TASKS, TRAINING_TASKS[1:], strict=False):
        assert tasks[upstream]["downstream"] == [downstream]
    assert tasks["push"]["downstream"] == []
    assert {t["type"] for t in tasks.values()} == {"PortsideOperator"}
    assert {t["owner"] for t in tasks.values()} == {"portside"}
    assert all(t["retries"] >= 1 and t["timeout"] for t in tasks.values())
    assert tasks["validate"]["links"] == ["Report", "Run manifest"]
    assert tasks["evaluate"]["links"] == ["Plots", "Run manifest"]
    argv = tasks["features"]["argv"]
    assert argv[1:4] == ["-m", "portside.components", "features"]
    assert "--rows-until" in argv and "--cache-dir" in argv
    assert {
        "feature_service",
        "label_column",
        "model_name",
        "expectation_suite",
        "entity_rows",
        "feature_repo",
        "tracking_uri",
    } <= set(training["params"])
    assert training["tags"] == ["portside", "training"] and training["doc"]

    assert features["schedule"]["type"] == "CronTriggerTimetable"
    assert features["schedule"]["cron"] == "0 * * * *"
    assert features["schedule"]["interval"] == "1:00:00"
    (materialize,) = features["tasks"].values()
    assert materialize["outlets"] == ["features_fresh"]
    assert materialize["argv"][1:6] == [
        "-m",
        "portside.pipelines.cli",
        "features",
        "materialize",
        "--start",
    ]
    assert "landed" in materialize["argv"]


def test_dagbag_vertex(airflow):
    bag = parse(airflow, "vertex")
    assert bag["errors"] == {}
    assert bag["heavy"] == []
    assert len(bag["profile_loads"]) == len(bag["dags"])  # once per DAG file, not per task
    tasks = bag["dags"]["training_pipeline"]["tasks"]
    assert list(tasks) == ["training_pipeline_on_vertex"]
    assert tasks["training_pipeline_on_vertex"]["type"] == "VertexPipelineOperator"
    assert bag["dags"]["training_pipeline"]["schedule"]["assets"] == [
        "drift_detected",
        "features_fresh",
    ]


def test_dagbag_kubernetes(airflow):
    bag = parse(airflow, "kubernetes")
    assert bag["errors"] == {}
    assert bag["heavy"] == []
    assert len(bag["profile_loads"]) == len(bag["dags"])  # once per DAG file, not per task
    tasks = bag["dags"]["training_pipeline"]["tasks"]
    assert list(tasks) == TRAINING_TASKS
    assert tasks["validate"]["argv"][0] == "validate"  # the pod's arguments after its command
    (materialize,) = bag["dags"]["feature_materialization"]["tasks"].values()
    assert materialize["argv"][:2] == ["features", "materialize"]


# -- training runs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def champion_run(airflow, project, base):
    """The training DAG run whose data interval ends at the data's end: a pushed champion."""
    env = binding_env(project, base)
    done, run_id, tasks = dag_test(airflow, env, "training_pipeline", LOGICAL_DATE, FAST)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    folder = run_folder(base, "training_pipeline", run_id)
    # read now: later runs of the same logical date replace this run and its folder
    manifests = {
        name: json.loads(path.read_text())
        for name, path in {
            "features": folder / "features/training_set/run_manifest.json",
            "training_set": folder / "features/training_set/manifest.json",
            "push": folder / "push/pushed/run_manifest.json",
        }.items()
    }
    validate = xcom(airflow, "training_pipeline", run_id, "validate", "return_value")
    link = xcom(airflow, "training_pipeline", run_id, "validate", "_link_portside_report")
    return env, run_id, tasks, manifests, validate, link


def test_training_run_pushes_a_champion(champion_run, project):
    _, run_id, tasks, manifests, validate, link = champion_run
    assert {name: t["state"] for name, t in tasks.items()} == dict.fromkeys(
        TRAINING_TASKS, "success"
    )
    assert manifests["push"]["status"] == "succeeded"
    version = str(manifests["push"]["result"]["version"])
    assert registry(project) == ([version], version)
    # The data interval, not the clock: rows before its end, freshness judged at its end.
    parameters = manifests["features"]["parameters"]
    assert parameters["rows_until"] == LOGICAL_DATE
    assert parameters["rows_from"] == (DATA_END - timedelta(days=90)).isoformat()
    assert manifests["training_set"]["extra"]["rows_window"] == [
        parameters["rows_from"],
        parameters["rows_until"],
    ]
    # The validate task publishes its manifest and report, and links to the report.
    assert validate["status"] == "succeeded"
    (report,) = validate["reports"]["Report"]
    assert report.endswith("validate/validation/report.html") and Path(report).is_file()
    assert link == Path(report).resolve().as_uri()


def test_thresholds_no_model_meets_skip_push_and_the_run_succeeds(champion_run, airflow, project):
    env, *_ = champion_run
    before = registry(project)
    conf = {**FAST, "min_roc_auc": 0.9999, "min_pr_auc": 0.9999}
    done, run_id, tasks = dag_test(airflow, env, "training_pipeline", LOGICAL_DATE, conf)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    states = {name: t["state"] for name, t in tasks.items()}
    assert states == {**dict.fromkeys(TRAINING_TASKS[:-1], "success"), "push": "skipped"}
    (state,) = airflow.query(
        "SELECT state FROM dag_run WHERE dag_id = 'training_pipeline' AND run_id = ?", (run_id,)
    )[0]
    assert state == "success"
    assert tasks["push"]["try"] == 1
    assert registry(project) == before


def test_corrupted_data_fails_at_validate_without_retry_and_pushes_nothing(
    champion_run, airflow, project, base
):
    from corruptions import out_of_range_amounts

    env, *_ = champion_run
    before = registry(project)
    rows = pd.read_parquet(project.sources / "transactions.parquet")
    corrupted = base / "corrupted.parquet"
    out_of_range_amounts(rows).to_parquet(corrupted, index=False)
    conf = {**FAST, "entity_rows": str(corrupted)}
    done, run_id, tasks = dag_test(airflow, env, "training_pipeline", LOGICAL_DATE, conf)
    assert done.returncode != 0  # `airflow dags test` exits non-zero for a failed run
    assert tasks["features"]["state"] == "success"
    assert tasks["validate"]["state"] == "failed"
    assert tasks["validate"]["try"] == 1 and tasks["validate"]["max_tries"] >= 1  # not retried
    assert {tasks[name]["state"] for name in ("train", "evaluate", "push")} == {"upstream_failed"}
    assert registry(project) == before
    failed = xcom(airflow, "training_pipeline", run_id, "validate", "portside")
    assert failed["status"] == "gate_failed" and failed["exit_code"] == 3
    assert "amount" in failed["error"]
    assert Path(failed["reports"]["Report"][0]).is_file()  # the GX report of the failure


# -- materialization --------------------------------------------------------------------------


def busiest_landing_hour(sources: Path) -> pd.Timestamp:
    """The hour (end) in which most aggregate rows landed: a run for it has work to do."""
    created = pq.read_table(sources / "user_daily_aggregates.parquet").column("created_timestamp")
    hours = pd.Series(created.to_pandas()).dt.ceil("h")
    return hours.value_counts().idxmax()


def online_state(repo: Path) -> dict:
    import sqlite3

    database = repo.parent / "data" / "feast" / "online_store.db"
    with sqlite3.connect(database) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            t: db.execute(
                f'SELECT entity_key, feature_name, value, event_ts, created_ts FROM "{t}" '
                "ORDER BY entity_key, feature_name"
            ).fetchall()
            for t in tables
        }


@pytest.fixture(scope="module")
def feature_project(workspace, base):
    """A workspace with its own copy of the sources: this test appends late rows to them."""
    sources = base / "feature_sources"
    shutil.copytree(workspace.sources, sources)
    ws = make_workspace(base / "feature_project", sources=sources)
    run_cli([str(BIN / "feast"), "apply"], cwd=ws.repo)
    return ws


def test_materialization_is_idempotent_and_picks_up_late_rows(airflow, feature_project, base):
    env = binding_env(feature_project, base)
    hour = busiest_landing_hour(feature_project.sources)
    first, _, tasks = dag_test(airflow, env, "feature_materialization", hour.isoformat(), {})
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert tasks == {"materialize": {"state": "success", "try": 1, "max_tries": 3}}
    once = online_state(feature_project.repo)
    assert sum(len(rows) for rows in once.values()) > 0
    again, _, _ = dag_test(airflow, env, "feature_materialization", hour.isoformat(), {})
    assert again.returncode == 0
    assert online_state(feature_project.repo) == once

    # A row that happened before `hour` but lands in the next hour: only the next run sees it.
    path = feature_project.sources / "user_daily_aggregates.parquet"
    table = pq.read_table(path)
    created = table.column("created_timestamp")
    landed = pc.less_equal(created, pa.scalar(hour.to_pydatetime()))
    # a user with nothing else landing in the next hour, so the late row is the newest there
    upcoming = pc.and_(
        pc.greater(created, pa.scalar(hour.to_pydatetime())),
        pc.less_equal(created, pa.scalar((hour + pd.Timedelta(hours=1)).to_pydatetime())),
    )
    busy = pc.unique(table.filter(upcoming).column("user_id"))
    quiet = pc.and_(landed, pc.invert(pc.is_in(table.column("user_id"), value_set=busy)))
    latest = table.filter(quiet).sort_by([("event_timestamp", "descending")]).slice(0, 1)
    late = latest.set_column(
        latest.column_names.index("txn_count_1d"),
        "txn_count_1d",
        pa.array([987_654], latest.schema.field("txn_count_1d").type),
    )
    late = late.set_column(
        late.column_names.index("created_timestamp"),
        "created_timestamp",
        pa.array([hour + pd.Timedelta(minutes=30)], late.schema.field("created_timestamp").type),
    )
    late = late.set_column(  # newer than what is online, still before `hour`
        late.column_names.index("event_timestamp"),
        "event_timestamp",
        pc.add(late.column("event_timestamp"), pa.scalar(timedelta(seconds=1))),
    )
    pq.write_table(pa.concat_tables([table, late]), path)
    assert 987_654 not in stored_counts(feature_project.repo)
    later = (hour + pd.Timedelta(hours=1)).isoformat()
    done, _, _ = dag_test(airflow, env, "feature_materialization", later, {})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 987_654 in stored_counts(feature_project.repo)

    events = airflow.query(
        "SELECT count(*) FROM asset_event JOIN asset ON asset.id = asset_event.asset_id "
        "WHERE asset.name = 'features_fresh'"
    )[0][0]
    assert events == 3  # each successful run said "features fresh"


def stored_counts(repo: Path) -> set[int]:
    """Every txn_count_1d value the online store holds, decoded from Feast's stored protos
    (read as stored: the rows are older than the TTL from today's point of view)."""
    from feast.protos.feast.types.Value_pb2 import Value

    rows = online_state(repo)["portside_user_daily_aggregates"]
    return {
        Value.FromString(value).int64_val for _, name, value, _, _ in rows if name == "txn_count_1d"
    }


# -- Asset-triggered training -----------------------------------------------------------------


@pytest.fixture(scope="module")
def baseline(training_set, base) -> Path:
    """validate's output over the session's training set: the champion's baseline."""
    from portside.components.validate.run import run as validate

    folder = base / "baseline"
    validate(str(training_set), str(folder), str(EXPECTATION_SUITE), LOGICAL_DATE)
    return folder


def test_a_monitoring_run_that_finds_drift_queues_a_training_run(
    airflow, project, base, baseline, training_set
):
    """model_monitoring on the last day of data; a threshold nothing stays under makes the
    verdict drift (detection itself: tests/integration/test_monitor.py), the event queues
    training_pipeline and the scheduler starts it; within the cooldown no second alarm. Each
    drift verdict is posted to the alert connection's webhook (a loopback server). With a
    prediction log, monitor_serving checks the day's logged predictions (no skew: the log holds
    the offline values); without one it is skipped."""
    hook = RecordingWebhook()
    token = "alert-token"  # pragma: allowlist secret (the loopback webhook's test token)
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": hook.port,
                  "password": token, "extra": {"endpoint": "/alerts"}}  # fmt: skip
    env = binding_env(project, base, AIRFLOW_CONN_PORTSIDE_ALERTS=json.dumps(connection))
    conf = {"baseline": str(baseline), "drift_threshold": 1e-9, "min_samples": 10}
    conf["history"] = str(base / "h.jsonl")
    day = DATA_END - timedelta(days=1)  # the first run's data interval
    log = prediction_log_rows(training_set, day - timedelta(days=1), DATA_END)  # and the day before
    served = {**conf, "prediction_log": str(write_prediction_log(log, base / "prediction_log"))}
    served["labels"] = str(project.sources / "labels.parquet")
    # Airflow queues asset-triggered runs only for DAGs that are known and unpaused (a paused
    # consumer's events are not queued), so: every DAG in the database, training unpaused, and
    # a pool without slots so that the scheduler below creates runs but starts no task.
    airflow.airflow("dags", "reserialize", env=env)
    airflow.airflow("pools", "set", "default_pool", "0", "no slots in this test", env=env)
    airflow.airflow("dags", "unpause", "training_pipeline", env=env)
    airflow.query("DELETE FROM asset_dag_run_queue")  # earlier "features fresh" events
    try:
        done, run_id, tasks = dag_test(airflow, env, "model_monitoring", LOGICAL_DATE, served)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert {t: tasks[t]["state"] for t in tasks} == dict.fromkeys(
            ("features", "monitor", "serving_log", "monitor_serving", "report_drift"), "success"
        )
        serving = json.loads(
            (run_folder(base, "model_monitoring", run_id) / "monitor_serving" / "monitoring"
             / "metrics.json").read_text()
        )  # fmt: skip
        in_day = log[log["timestamp"] >= day]
        assert serving["window"]["rows"] == len(in_day) > 0  # the run's day only
        assert serving["skew"]["rows"] == len(in_day)
        assert all(f["mismatched"] == 0 for f in serving["skew"]["features"]), serving["skew"]
        (arm,) = serving["quality"]["arms"]  # the last day's labels: frauds only, no verdict
        assert arm["predictions"] == len(in_day) and arm["status"] == "not enough data"
        assert len((base / "h.jsonl").read_text().splitlines()) == 1  # the features' history
        monitored = xcom(airflow, "model_monitoring", run_id, "monitor", "return_value")
        assert monitored["result"]["verdict"] == "drift"
        assert monitored["reports"]["Report"][0].endswith("report.html")
        (extra,) = airflow.query(
            "SELECT asset_event.extra FROM asset_event JOIN asset ON asset.id = asset_id "
            "WHERE asset.name = 'drift_detected' ORDER BY asset_event.id DESC LIMIT 1"
        )[0]
        assert json.loads(extra)["verdict"] == "drift"
        serving_verdict = xcom(
            airflow, "model_monitoring", run_id, "monitor_serving", "return_value"
        )
        both = monitored["result"]["reasons"] + serving_verdict["result"]["reasons"]
        assert json.loads(extra)["reasons"] == both  # the day's features' and the log's
        alert, serving_alert = hook.received  # the features' monitor and the log's
        assert serving_alert["body"]["run_id"] == run_id
        assert alert["path"] == "/alerts" and alert["authorization"] == f"Bearer {token}"
        assert alert["body"]["verdict"] == "drift" and alert["body"]["run_id"] == run_id
        assert alert["body"]["reasons"] == monitored["result"]["reasons"]
        assert alert["body"]["report"].endswith("report.html")
        queued = airflow.query(
            "SELECT target_dag_id FROM asset_dag_run_queue JOIN asset ON asset.id = asset_id "
            "WHERE asset.name = 'drift_detected'"
        )
        assert queued == [("training_pipeline",)]
        # The scheduler turns the queue entry into an asset-triggered run.
        log = base / "scheduler.log"
        scheduler = airflow.popen([str(BIN / "airflow"), "scheduler"], log, env)
        try:
            runs = wait_for_asset_run(airflow)
        finally:
            stop_process(scheduler)
        # The next day drifts too, but the last alarm is within the cooldown: no new event.
        events = "SELECT count(*) FROM asset_event JOIN asset ON asset.id = asset_id "
        events += "WHERE asset.name = 'drift_detected'"
        (before,) = airflow.query(events)[0]
        next_day = (DATA_END - timedelta(days=1)).isoformat()
        again, next_run, tasks = dag_test(airflow, env, "model_monitoring", next_day, conf)
        assert again.returncode == 0, again.stderr[-3000:]
        monitored = xcom(airflow, "model_monitoring", next_run, "monitor", "return_value")
        assert monitored["result"]["verdict"] == "drift"
        assert tasks["report_drift"]["state"] == "skipped"
        assert airflow.query(events)[0] == (before,)
        assert tasks["serving_log"]["state"] == "skipped"  # no log in this run's conf
        assert tasks["monitor_serving"]["state"] == "skipped"
        history = [json.loads(line) for line in (base / "h.jsonl").read_text().splitlines()]
        assert [h["window_end"][:10] for h in history] == ["2026-10-31", "2026-11-01"]
        runs_told = [a["body"]["run_id"] for a in hook.received]
        assert runs_told == [run_id, run_id, next_run]  # still told within the cooldown
    finally:
        hook.close()
        airflow.airflow("dags", "pause", "training_pipeline", env=env)
        airflow.airflow("pools", "set", "default_pool", "128", "default", env=env)
    assert runs, log.read_text()[-5000:]
    (run_id,) = runs[0]
    consumed = airflow.query(
        "SELECT asset.name FROM dagrun_asset_event "
        "JOIN asset_event ON asset_event.id = dagrun_asset_event.event_id "
        "JOIN asset ON asset.id = asset_event.asset_id "
        "JOIN dag_run ON dag_run.id = dagrun_asset_event.dag_run_id WHERE dag_run.run_id = ?",
        (run_id,),
    )
    assert ("drift_detected",) in consumed
