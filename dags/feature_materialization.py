"""Hourly: what landed in the online store's sources during the run's interval goes online.

`portside features materialize --start <data interval start> --end <data interval end>
--mode landed` selects the feature rows that became available (event and created time passed)
in the interval, so late and backfilled rows reach the online store; it writes a row only if
it is not older than what the store holds, so a retry or a re-run of the same interval leaves
the same state. Success emits the Asset event "features fresh", which queues a training run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, CronTriggerTimetable, Param

from portside.pipelines.airflow_assets import FEATURES_FRESH
from portside.pipelines.airflow_binding import Binding, run_end, run_start

INTERVAL = timedelta(hours=1)

with DAG(
    dag_id="feature_materialization",
    description="Feast offline sources -> online store, for what landed each hour",
    doc_md=__doc__,
    # logical date = run time; data interval = the hour before it
    schedule=CronTriggerTimetable("0 * * * *", timezone="UTC", interval=INTERVAL),
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # runs of one store's writer never overlap
    tags=["portside", "features"],
    default_args={
        "owner": "portside",
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "feature_repo": Param(
            "feature_repo",
            type="string",
            description="Feast repo (feature_store.yaml), relative to the project directory",
        ),
    },
) as dag:
    Binding.from_environment().command_task(
        "materialize",
        [
            "portside",
            "features",
            "materialize",
            "--start",
            run_start(INTERVAL),
            "--end",
            run_end(),
            "--mode",
            "landed",
            "--repo",
            "{{ params.feature_repo }}",
            "--quiet",
        ],
        outlets=[FEATURES_FRESH],
        doc_md="Materialize the rows that landed in the data interval (idempotent).",
    )
