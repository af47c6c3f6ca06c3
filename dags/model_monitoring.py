"""Daily: did yesterday's data drift from the champion's training baseline, did serving skew
from training, did the model get worse? If so, retrain.

features (the entity rows of the run's data interval, joined by Feast as training joins them)
-> monitor (per-feature PSI / Jensen-Shannon against the baseline; the trend in `history`)
and, when `prediction_log` is set, monitor_serving (the log's rows of the interval: score
drift, training/serving skew against the offline values, realized quality on the `labels`
that have arrived)
-> report_drift: on a drift, skew or quality-drop verdict of either, the Asset event "drift
detected" (verdict, findings and reasons in its extra), which queues `training_pipeline`; not
within `cooldown_hours` of the last such event, so a drifted week does not start a retraining
every day. "ok" and "not enough data" skip report_drift. Each monitor task links its HTML
report, and a drift, skew or quality-drop verdict is
sent through the Airflow connection `portside_alerts` (a webhook or email: see
pipelines/monitoring_alert.py; `PORTSIDE_ALERT_CONN_ID` names another), cooldown or not: people
hear of every bad day, retraining starts at most once per cooldown.

The window comes from the run: re-running or backfilling a day monitors that day. The cooldown
is real time (it spaces retrainings, which happen now).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, CronTriggerTimetable, Param, TriggerRule, chain, task

from portside.pipelines.airflow_assets import DRIFT_DETECTED
from portside.pipelines.airflow_binding import Binding, entity_row_params, run_end, run_start
from portside.pipelines.monitoring_alert import VerdictNotifier

INTERVAL = timedelta(days=1)
BINDING = Binding.from_environment()
if BINDING.runner == "vertex":  # Vertex AI runs the training pipeline; monitoring stays here
    BINDING = dataclasses.replace(BINDING, runner="local")
DEFAULTS = BINDING.pipeline_defaults()
ALERT_CONN_ID = os.environ.get("PORTSIDE_ALERT_CONN_ID", "portside_alerts")

PARAMS = {
    **entity_row_params("Entity rows to monitor (the run's data interval is taken from them)"),
    "feature_repo": Param(DEFAULTS.feature_repo, type="string", description="Feast repo"),
    "baseline": Param(
        "data/monitoring/baseline",
        type="string",
        description="The champion's model directory (statistics.json travels with it) or its "
        "training run's validate output",
    ),
    "drift_metric": Param("psi", enum=["psi", "js"], description="Distance that decides"),
    "drift_threshold": Param(0.2, type="number", description="A feature drifts above this"),
    "min_samples": Param(
        500, type="integer", minimum=1, description="Fewer rows: not enough data, no alarm"
    ),
    "cooldown_hours": Param(
        72, type="number", minimum=0, description="No new alarm this soon after the last one"
    ),
    "history": Param(
        "data/monitoring/history.jsonl",
        type="string",
        description="Past windows' numbers, kept for the report's trend (empty: none)",
    ),
    "prediction_log": Param(
        "",
        type="string",
        description="The server's prediction log folder (portside serve --prediction-log); "
        "empty: no serving checks",
    ),
    "labels": Param(
        "",
        type="string",
        description="Parquet file of the labels that have arrived (empty: no quality check)",
    ),
    "labels_key": Param(
        "transaction_id",
        type="string",
        description="The labels' key column: the request id the client sent",
    ),
}


def _p(name: str) -> str:
    return "{{ params." + name + " }}"


@task
def serving_log(*, params) -> str:
    """The prediction log to check; skips the serving checks when none is set."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not params["prediction_log"]:
        raise AirflowSkipException("no prediction_log set: no serving checks")
    return params["prediction_log"]


@task(
    inlets=[DRIFT_DETECTED],
    outlets=[DRIFT_DETECTED],
    # The serving checks may be skipped, or fail (a bad labels file) while the features'
    # monitor found drift: either monitor's alarm still counts.
    trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS,
)
def report_drift(*, params, ti, inlet_events, outlet_events) -> str:
    """Emit "drift detected" for an alarming verdict outside the cooldown; else skip."""
    from airflow.sdk.exceptions import AirflowSkipException

    from portside.pipelines.drift_alarm import decide, merge_verdicts

    returned = [ti.xcom_pull(task_ids=task_id) for task_id in ("monitor", "monitor_serving")]
    verdict = merge_verdicts([(r or {}).get("result") or {} for r in returned])
    latest = inlet_events[DRIFT_DETECTED].ascending(False).limit(1)
    last = latest[0].timestamp if len(latest) else None
    # Real time, not the run's: the cooldown spaces retrainings, which happen now.
    now = datetime.now(timezone.utc)
    decision = decide(verdict, last, now, timedelta(hours=float(params["cooldown_hours"])))
    if not decision.raise_alarm:
        raise AirflowSkipException(decision.reason)
    outlet_events[DRIFT_DETECTED].extra = decision.extra
    return decision.reason


with DAG(
    dag_id="model_monitoring",
    description="features of the day -> monitor -> drift detected (queues training)",
    doc_md=__doc__,
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC", interval=INTERVAL),
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # the cooldown reads the last alarm: runs in order
    tags=["portside", "monitoring"],
    default_args={"owner": "portside", "retry_delay": timedelta(minutes=5)},
    params=PARAMS,
) as dag:
    window = BINDING.artifact_path("features/window")
    monitoring = BINDING.artifact_path("monitor/monitoring")
    features = BINDING.component_task(
        "features",
        inputs={"entity_rows": _p("entity_rows")},
        outputs={"training_set": window},
        parameters={
            "feature_service": _p("feature_service"),
            "label_column": _p("label_column"),
            "feature_repo": _p("feature_repo"),
            "rows_from": run_start(INTERVAL),
            "rows_until": run_end(),
        },
        retries=2,
        execution_timeout=timedelta(minutes=30),
    )
    monitor = BINDING.component_task(
        "monitor",
        inputs={"baseline": _p("baseline"), "window": window},
        outputs={"monitoring": monitoring},
        parameters={
            # the features already hold the interval's rows only; the window names the
            # history's line, so a re-run replaces its day
            "window_start": run_start(INTERVAL),
            "window_end": run_end(),
            "drift_metric": _p("drift_metric"),
            "drift_threshold": _p("drift_threshold"),
            "min_samples": _p("min_samples"),
            "model_name": DEFAULTS.model_name,  # the dashboard's model filter: serving's name
            "history": _p("history"),
        },
        retries=1,
        execution_timeout=timedelta(minutes=30),
        on_success_callback=[VerdictNotifier(ALERT_CONN_ID)],
    )
    monitor_serving = BINDING.component_task(
        "monitor",
        task_id="monitor_serving",
        inputs={"baseline": _p("baseline"), "window": _p("prediction_log")},
        outputs={"monitoring": BINDING.artifact_path("monitor_serving/monitoring")},
        parameters={
            "window_start": run_start(INTERVAL),
            "window_end": run_end(),
            "timestamp_column": "timestamp",
            "feature_repo": _p("feature_repo"),
            "labels": _p("labels"),
            "labels_key": _p("labels_key"),
            "label_column": _p("label_column"),
            "drift_metric": _p("drift_metric"),
            "drift_threshold": _p("drift_threshold"),
            "min_samples": _p("min_samples"),
            "model_name": DEFAULTS.model_name,
        },
        retries=1,
        execution_timeout=timedelta(minutes=30),
        on_success_callback=[VerdictNotifier(ALERT_CONN_ID)],
    )
    alarm = report_drift()
    chain(features, monitor, alarm)
    chain(serving_log(), monitor_serving, alarm)
