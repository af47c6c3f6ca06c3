"""Daily, or when features are fresh or drift was detected: train, judge and publish a model.

features -> validate -> train -> evaluate -> push, one task per Portside component
(`pipelines.airflow_binding.Binding`); with `PORTSIDE_AIRFLOW_RUNNER=vertex`, one deferrable
task that runs the same pipeline on Vertex AI Pipelines.

Every time comes from the run, never the clock: the run's end is its data interval's end (an
Asset-triggered run has none: the time it was queued for). The training set is the entity rows
in `[end - training_window_days, end)`; validation judges freshness as of `end`. So re-running
or backfilling a past interval (`airflow backfill create --dag-id training_pipeline
--from-date ... --to-date ...`, or the trigger form with a logical date) trains on that
interval. A failed validation stops the run (never retried); a model that is not blessed is
not pushed (push is skipped, the run is green). Each task links to its run manifest; validate
links to the Great Expectations report, evaluate to its plots.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, chain

from portside.pipelines.airflow_assets import DRIFT_DETECTED, FEATURES_FRESH
from portside.pipelines.airflow_binding import Binding, entity_row_params, run_end, run_start

# The runner, the folders and (tasks in the image) the production profile, read once.
BINDING = Binding.from_environment()
RUNNER = BINDING.runner
# Local: the embedded defaults `portside run --local` uses; in the image: the profile's.
DEFAULTS = BINDING.pipeline_defaults()

# The worked example's names: the DAG's trigger form shows and takes them.
PARAMS = {
    **entity_row_params("Labelled entity rows (Parquet; a gs:// URI on Vertex AI)"),
    "model_name": Param(DEFAULTS.model_name, type="string", description="Registered model"),
    "serving_output": Param(
        "fraud_probability", type="string", description="Serving signature's output name"
    ),
    "training_window_days": Param(
        90,
        type="integer",
        minimum=0,
        description="Train on the entity rows of this many days before the run's end (0: all)",
    ),
    "epochs": Param(8, type="integer", minimum=1, description="Maximum training epochs"),
    "min_roc_auc": Param(0.75, type="number", description="Lowest ROC AUC that is blessed"),
    "min_pr_auc": Param(0.10, type="number", description="Lowest PR AUC that is blessed"),
    "max_regression": Param(
        0.01, type="number", description="Largest ROC AUC drop allowed against the champion"
    ),
}
if RUNNER != "vertex":  # on Vertex AI the compiled pipeline's (profile) defaults decide
    PARAMS |= {
        "feature_repo": Param(
            DEFAULTS.feature_repo,
            type="string",
            description="Feast repo (locally: relative to the project)",
        ),
        "expectation_suite": Param(
            DEFAULTS.expectation_suite, type="string", description="GX expectation suite (JSON)"
        ),
        # Nullable: the trigger form treats an empty string as a missing required field.
        "tracking_uri": Param(
            DEFAULTS.tracking_uri or None,
            type=["null", "string"],
            description="MLflow tracking/registry URI; empty: data/mlflow/mlflow.db (local)",
        ),
    }

END = run_end()
ROWS_FROM = run_start(days_param="training_window_days")


def _p(name: str) -> str:
    return "{{ params." + name + " }}"


TRACKING_URI = "{{ params.tracking_uri or '' }}"  # null (the form's empty field) means ""


def component_pipeline() -> None:
    """features -> validate -> train -> evaluate -> push, outputs in the run's folder."""
    training_set = BINDING.artifact_path("features/training_set")
    validation = BINDING.artifact_path("validate/validation")
    model = BINDING.artifact_path("train/model")
    evaluation = BINDING.artifact_path("evaluate/evaluation")
    registry = {"model_name": _p("model_name"), "tracking_uri": TRACKING_URI}
    features = BINDING.component_task(
        "features",
        inputs={"entity_rows": _p("entity_rows")},
        outputs={"training_set": training_set},
        parameters={
            "feature_service": _p("feature_service"),
            "label_column": _p("label_column"),
            "feature_repo": _p("feature_repo"),
            "rows_from": ROWS_FROM,
            "rows_until": END,
        },
        retries=2,
        execution_timeout=timedelta(minutes=30),
    )
    validate = BINDING.component_task(
        "validate",
        inputs={"training_set": training_set},
        outputs={"validation": validation},
        parameters={"suite": _p("expectation_suite"), "as_of": END},
        retries=2,  # errors only: a failed gate is never retried
        execution_timeout=timedelta(minutes=15),
    )
    train = BINDING.component_task(
        "train",
        inputs={"training_set": training_set, "validation": validation},
        outputs={"model": model},
        parameters={
            "epochs": _p("epochs"),
            "output_name": _p("serving_output"),
            "tracking_uri": TRACKING_URI,
        },
        retries=1,
        execution_timeout=timedelta(hours=2),
    )
    evaluate = BINDING.component_task(
        "evaluate",
        inputs={"model": model, "training_set": training_set, "validation": validation},
        outputs={"evaluation": evaluation},
        parameters={
            "min_roc_auc": _p("min_roc_auc"),
            "min_pr_auc": _p("min_pr_auc"),
            "max_regression": _p("max_regression"),
            **registry,
        },
        retries=2,
        execution_timeout=timedelta(minutes=30),
    )
    push = BINDING.component_task(
        "push",
        inputs={"model": model, "evaluation": evaluation},
        outputs={"pushed": BINDING.artifact_path("push/pushed")},
        parameters=registry,
        retries=3,  # a registry that is briefly away; "not blessed" skips instead
        execution_timeout=timedelta(minutes=15),
    )
    chain(features, validate, train, evaluate, push)


def vertex_pipeline() -> None:
    """The same pipeline as one Vertex AI job; the task waits deferred (no worker slot)."""
    names = ("feature_service", "label_column", "serving_output", "model_name", "epochs")
    names += ("min_roc_auc", "min_pr_auc", "max_regression")
    BINDING.pipeline_task(
        "training_pipeline_on_vertex",
        parameter_values={
            "entity_rows_uri": _p("entity_rows"),
            "as_of": END,
            "rows_from": ROWS_FROM,
            "rows_until": END,
            **{name: _p(name) for name in names},
        },
        retries=1,
        execution_timeout=timedelta(hours=6),
        doc_md="Compile the KFP pipeline (production profile), submit it, wait deferred.",
    )


with DAG(
    dag_id="training_pipeline",
    description="features -> validate -> train -> evaluate -> push",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 0 * * *", timezone="UTC", interval=timedelta(days=1)),
        assets=FEATURES_FRESH | DRIFT_DETECTED,
    ),
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # one training at a time: push compares against the champion
    tags=["portside", "training"],
    default_args={"owner": "portside", "retry_delay": timedelta(minutes=5)},
    params=PARAMS,
) as dag:
    if RUNNER == "vertex":
        vertex_pipeline()
    else:
        component_pipeline()
