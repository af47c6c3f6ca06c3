"""The training pipeline, wired once: features -> validate -> train -> evaluate -> push.

`create_pipeline()` is used by the compile (Vertex AI / Kubeflow) and by the local run.
"""

# No `from __future__ import annotations` here: KFP reads the pipeline's parameter types from
# real annotation objects, not strings.
from dataclasses import dataclass
from typing import Any

PIPELINE_NAME = "portside-training"


@dataclass(frozen=True)
class VertexTraining:
    """Run the train step as a Vertex AI custom training job on bigger machines."""

    machine_type: str = "n1-standard-8"
    accelerator_type: str = ""  # e.g. NVIDIA_TESLA_T4; empty for CPU only
    accelerator_count: int = 1
    replica_count: int = 1
    boot_disk_size_gb: int = 100


def create_pipeline(image: str | None = None, vertex_training: VertexTraining | None = None) -> Any:
    """The KFP pipeline function; components run in `image` (default: the project image).

    With `vertex_training`, the train step becomes a Vertex AI CustomJob (google-cloud-pipeline-
    components) on that machine; such a pipeline runs on Vertex AI only, not under kfp.local.
    """
    from kfp import dsl

    from pipelines.kfp_components import kfp_components

    steps = kfp_components(image)
    if vertex_training is not None:
        from google_cloud_pipeline_components.v1.custom_job import (
            create_custom_training_job_from_component,
        )

        steps["train"] = create_custom_training_job_from_component(
            steps["train"],
            display_name="portside-train",
            machine_type=vertex_training.machine_type,
            accelerator_type=vertex_training.accelerator_type,
            accelerator_count=vertex_training.accelerator_count
            if vertex_training.accelerator_type
            else 0,
            replica_count=vertex_training.replica_count,
            boot_disk_size_gb=vertex_training.boot_disk_size_gb,
        )

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Feast training set -> GX validation gate -> Keras model -> "
        "evaluation against the champion -> push when blessed.",
    )
    def training_pipeline(
        entity_rows_uri: str,
        feature_repo: str = "feature_repo",
        feature_service: str = "fraud_model_v1",
        point_in_time: str = "as_known",
        features_engine: str = "auto",
        expectation_suite: str = "feature_repo/expectations/fraud_model_v1.json",
        as_of: str = "",
        epochs: int = 8,
        batch_size: int = 1024,
        learning_rate: float = 1e-3,
        hidden_units: str = "64,32",
        seed: int = 7,
        min_roc_auc: float = 0.75,
        min_pr_auc: float = 0.10,
        max_regression: float = 0.01,
        model_name: str = "fraud_model",
        tracking_uri: str = "",
        registry: str = "mlflow",
        portside_cache_dir: str = "",
    ):
        rows = dsl.importer(artifact_uri=entity_rows_uri, artifact_class=dsl.Dataset)
        rows.set_display_name("entity-rows")
        features = steps["features"](
            entity_rows=rows.output,
            feature_repo=feature_repo,
            feature_service=feature_service,
            point_in_time=point_in_time,
            engine=features_engine,
            portside_cache_dir=portside_cache_dir,
        )
        # It reads a moving feature store: never reuse a cached result. Downstream steps
        # cache on the content of the training set it writes.
        features.set_caching_options(False)
        validate = steps["validate"](
            training_set=features.outputs["training_set"],
            suite=expectation_suite,
            as_of=as_of,
            portside_cache_dir=portside_cache_dir,
        )
        train = steps["train"](
            training_set=features.outputs["training_set"],
            validation=validate.outputs["validation"],
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            hidden_units=hidden_units,
            seed=seed,
            tracking_uri=tracking_uri,
            portside_cache_dir=portside_cache_dir,
        )
        evaluate = steps["evaluate"](
            model=train.outputs["model"],
            training_set=features.outputs["training_set"],
            validation=validate.outputs["validation"],
            min_roc_auc=min_roc_auc,
            min_pr_auc=min_pr_auc,
            max_regression=max_regression,
            model_name=model_name,
            tracking_uri=tracking_uri,
            portside_cache_dir=portside_cache_dir,
        )
        # The champion can change between runs: evaluate always runs against the current one.
        evaluate.set_caching_options(False)
        # evaluate's one result is `blessed` (KFP calls a single result `Output`).
        with dsl.If(evaluate.outputs["Output"] == True, name="blessed"):  # noqa: E712
            push = steps["push"](
                model=train.outputs["model"],
                evaluation=evaluate.outputs["evaluation"],
                registry=registry,
                model_name=model_name,
                tracking_uri=tracking_uri,
                portside_cache_dir=portside_cache_dir,
            )
            push.set_caching_options(False)

    return training_pipeline
