"""The training pipeline, wired once: features -> validate -> train -> evaluate -> push.

`create_pipeline()` is used by the compile (Vertex AI / Kubeflow, with a production profile's
defaults and job settings) and by the local run (embedded defaults).
"""

# No `from __future__ import annotations` here: KFP reads the pipeline's parameter types from
# real annotation objects, not strings.
from dataclasses import dataclass, field
from typing import Any

from portside.components.errors import ConfigurationError
from portside.pipelines.kfp_import import import_kfp

PIPELINE_NAME = "portside-training"


@dataclass(frozen=True)
class VertexTraining:
    """Run the train step as a Vertex AI custom training job on bigger machines."""

    machine_type: str = "n1-standard-8"
    accelerator_type: str = ""  # e.g. NVIDIA_TESLA_T4; empty for CPU only
    accelerator_count: int = 1
    replica_count: int = 1
    boot_disk_size_gb: int = 100


@dataclass(frozen=True)
class PipelineDefaults:
    """Defaults of the pipeline's parameters: embedded (local run) or from a profile."""

    feature_repo: str = "feature_repo"
    # The worked example's model: the pipelines' defaults, never the components'.
    feature_service: str = "fraud_model_v1"
    label_column: str = "is_fraud"
    serving_output: str = "fraud_probability"
    expectation_suite: str = "feature_repo/expectations/fraud_model_v1.json"
    model_name: str = "fraud_model"
    tracking_uri: str = ""  # empty: the embedded SQLite file under data/mlflow
    registry: str = "mlflow"
    vertex_project: str = ""
    vertex_location: str = "us-central1"
    vertex_api_endpoint: str = ""
    portside_cache_dir: str = ""


@dataclass(frozen=True)
class JobSettings:
    """What every task and every job the pipeline creates runs with (from the profile)."""

    service_account: str = ""
    network: str = ""
    encryption_key: str = ""
    environment: dict[str, str] = field(default_factory=dict)  # e.g. the Feast connections


def _scale_out(train: Any, training: VertexTraining, jobs: JobSettings) -> Any:
    """Train as a Vertex AI CustomJob that runs as the profile's account, network and key."""
    if not jobs.service_account:
        raise ConfigurationError(
            "scale-out (--train-machine-type) needs vertex.service_account in the profile: "
            "the CustomJob would otherwise run as the default compute service account"
        )
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    return create_custom_training_job_from_component(
        train,
        display_name="portside-train",
        machine_type=training.machine_type,
        accelerator_type=training.accelerator_type,
        accelerator_count=training.accelerator_count if training.accelerator_type else 0,
        replica_count=training.replica_count,
        boot_disk_size_gb=training.boot_disk_size_gb,
        service_account=jobs.service_account,
        network=jobs.network,
        encryption_spec_key_name=jobs.encryption_key,
        env=[{"name": k, "value": v} for k, v in sorted(jobs.environment.items())] or None,
    )


def _configure(task: Any, jobs: JobSettings) -> Any:
    # KFP caching is off for every task: its key is the identity of the input artifacts, and
    # features (a moving feature store, never cached) writes a new one every run, so no task
    # downstream could ever hit. Reuse by content is Portside's cache (portside_cache_dir).
    task.set_caching_options(False)
    for name, value in sorted(jobs.environment.items()):
        task.set_env_variable(name, value)
    return task


def create_pipeline(
    image: str | None = None,
    vertex_training: VertexTraining | None = None,
    defaults: PipelineDefaults | None = None,
    jobs: JobSettings | None = None,
) -> Any:
    """The KFP pipeline function; components run in `image` (default: the project image).

    `defaults` are the parameters' defaults (embedded unless a profile gives them); `jobs` the
    account, network, key and environment of every task. With `vertex_training`, the train
    step becomes a Vertex AI CustomJob (google-cloud-pipeline-components); such a pipeline
    runs on Vertex AI only, not under kfp.local.
    """
    import_kfp()
    from kfp import dsl

    from portside.pipelines.kfp_components import kfp_components

    d = defaults or PipelineDefaults()
    jobs = jobs or JobSettings()
    steps = kfp_components(image)
    if vertex_training is not None:
        steps["train"] = _scale_out(steps["train"], vertex_training, jobs)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Feast training set -> GX validation gate -> Keras model -> "
        "evaluation against the champion -> push when blessed.",
    )
    def training_pipeline(
        entity_rows_uri: str,
        feature_repo: str = d.feature_repo,
        feature_service: str = d.feature_service,
        label_column: str = d.label_column,
        serving_output: str = d.serving_output,
        point_in_time: str = "as_known",
        features_engine: str = "auto",
        rows_from: str = "",
        rows_until: str = "",
        expectation_suite: str = d.expectation_suite,
        as_of: str = "",
        epochs: int = 8,
        batch_size: int = 1024,
        learning_rate: float = 1e-3,
        hidden_units: str = "64,32",
        seed: int = 7,
        min_roc_auc: float = 0.75,
        min_pr_auc: float = 0.10,
        max_regression: float = 0.01,
        model_name: str = d.model_name,
        tracking_uri: str = d.tracking_uri,
        registry: str = d.registry,
        vertex_project: str = d.vertex_project,
        vertex_location: str = d.vertex_location,
        vertex_api_endpoint: str = d.vertex_api_endpoint,
        portside_cache_dir: str = d.portside_cache_dir,
    ):
        rows = dsl.importer(artifact_uri=entity_rows_uri, artifact_class=dsl.Dataset)
        rows.set_display_name("entity-rows")
        features = steps["features"](
            entity_rows=rows.output,
            feature_repo=feature_repo,
            feature_service=feature_service,
            label_column=label_column,
            point_in_time=point_in_time,
            engine=features_engine,
            rows_from=rows_from,
            rows_until=rows_until,
            portside_cache_dir=portside_cache_dir,
        )
        _configure(features, jobs)
        validate = steps["validate"](
            training_set=features.outputs["training_set"],
            suite=expectation_suite,
            as_of=as_of,
            portside_cache_dir=portside_cache_dir,
        )
        _configure(validate, jobs)
        train = steps["train"](
            training_set=features.outputs["training_set"],
            validation=validate.outputs["validation"],
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            hidden_units=hidden_units,
            seed=seed,
            output_name=serving_output,
            tracking_uri=tracking_uri,
            portside_cache_dir=portside_cache_dir,
        )
        _configure(train, jobs)
        registry_target = dict(
            registry=registry,
            model_name=model_name,
            tracking_uri=tracking_uri,
            vertex_project=vertex_project,
            vertex_location=vertex_location,
            vertex_api_endpoint=vertex_api_endpoint,
        )
        evaluate = steps["evaluate"](
            model=train.outputs["model"],
            training_set=features.outputs["training_set"],
            validation=validate.outputs["validation"],
            min_roc_auc=min_roc_auc,
            min_pr_auc=min_pr_auc,
            max_regression=max_regression,
            portside_cache_dir=portside_cache_dir,
            **registry_target,
        )
        _configure(evaluate, jobs)
        # evaluate's one result is `blessed` (KFP calls a single result `Output`).
        with dsl.If(evaluate.outputs["Output"] == True, name="blessed"):  # noqa: E712
            # registry=vertex: push uploads from the model artifact's own gs:// URI
            # (kfp_components.ARTIFACT_URI_DEFAULTS).
            push = steps["push"](
                model=train.outputs["model"],
                evaluation=evaluate.outputs["evaluation"],
                portside_cache_dir=portside_cache_dir,
                **registry_target,
            )
            _configure(push, jobs)

    return training_pipeline
