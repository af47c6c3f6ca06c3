"""The batch scoring pipeline at scale: one Vertex AI batch prediction job on a model version.

One task, in the project image, creates the job with the aiplatform client
(`components.batch_predict.vertex.run_batch_job`) and waits for it; Vertex runs the version's
serving image on the instances. The production profile gives the defaults (model, project,
region) and what the job runs as (service account, encryption key, labels); the model must be
in Vertex AI Model Registry (registry.kind: vertex). Local, chunked scoring over the offline
store is the `batch_predict` component.
"""

# No `from __future__ import annotations` here: KFP reads the pipeline's and the component's
# parameter types from real annotation objects, not strings.
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portside.components.errors import ConfigurationError
from portside.pipelines.kfp_import import import_kfp
from portside.pipelines.profile import Profile

import_kfp()  # before kfp.dsl: the step's annotations need its types at definition time
from kfp.dsl import Artifact, Output  # noqa: E402

PIPELINE_NAME = "portside-batch-scoring"
DEFAULT_IR = "batch.yaml"


@dataclass(frozen=True)
class BatchTarget:
    """What the profile decides for every batch job: whose model, where, and as whom."""

    model_name: str
    project: str
    location: str
    service_account: str
    encryption_key: str = ""
    api_endpoint: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_profile(cls, profile: Profile) -> "BatchTarget":
        if profile.registry.kind != "vertex":
            raise ConfigurationError(
                "batch scoring at scale runs a model of Vertex AI Model Registry: set "
                "registry.kind to vertex in the profile (PORTSIDE_REGISTRY__KIND=vertex)"
            )
        vertex = profile.vertex
        if not vertex.service_account:
            raise ConfigurationError(
                "batch scoring needs vertex.service_account in the profile: the job would "
                "otherwise run as the default compute service account"
            )
        return cls(
            model_name=profile.registry.model_name,
            project=vertex.project,
            location=vertex.region,
            service_account=vertex.service_account,
            encryption_key=vertex.encryption_key or "",
            api_endpoint=vertex.api_endpoint or "",
            labels=dict(vertex.labels),
        )


def vertex_batch_predict(
    entity_rows_uri: str,
    destination_uri: str,
    model_name: str,
    model_version: str,
    vertex_project: str,
    vertex_location: str,
    vertex_api_endpoint: str,
    service_account: str,
    encryption_key: str,
    labels: dict,
    display_name: str,
    instances_format: str,
    predictions_format: str,
    machine_type: str,
    starting_replica_count: int,
    max_replica_count: int,
    job: Output[Artifact],
) -> str:
    """Score the instances with a model version as a Vertex AI batch prediction job."""
    import json

    from portside.components.batch_predict.vertex import VertexBatchJob, run_batch_job

    done = run_batch_job(
        VertexBatchJob(
            project=vertex_project,
            location=vertex_location,
            model_name=model_name,
            model_version=model_version,
            source_uri=entity_rows_uri,
            destination_uri=destination_uri,
            service_account=service_account,
            display_name=display_name,
            instances_format=instances_format,
            predictions_format=predictions_format,
            machine_type=machine_type,
            starting_replica_count=starting_replica_count,
            max_replica_count=max_replica_count,
            encryption_key=encryption_key,
            labels=labels,
            api_endpoint=vertex_api_endpoint,
        )
    )
    job.metadata.update(done)
    with open(job.path, "w") as out:
        json.dump(done, out, indent=2)
    return done["model_version"]


def create_batch_pipeline(target: BatchTarget, image: str | None = None) -> Any:
    """The KFP pipeline function; its one task runs in `image` (default: the project image)."""
    import_kfp()
    from kfp import dsl

    from portside.components.image import component_image

    step = dsl.component(
        vertex_batch_predict, base_image=image or component_image(), install_kfp_package=False
    )

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Score instances (gs:// or bq://) with a model version of Vertex AI Model "
        "Registry as a Vertex AI batch prediction job; predictions to gs:// or bq://.",
    )
    def batch_pipeline(
        entity_rows_uri: str,
        destination_uri: str,
        model_name: str = target.model_name,
        model_version: str = "champion",
        instances_format: str = "jsonl",
        predictions_format: str = "jsonl",
        machine_type: str = "n1-standard-4",
        starting_replica_count: int = 1,
        max_replica_count: int = 10,
        display_name: str = PIPELINE_NAME,
        vertex_project: str = target.project,
        vertex_location: str = target.location,
        vertex_api_endpoint: str = target.api_endpoint,
    ):
        task = step(
            entity_rows_uri=entity_rows_uri,
            destination_uri=destination_uri,
            model_name=model_name,
            model_version=model_version,
            vertex_project=vertex_project,
            vertex_location=vertex_location,
            vertex_api_endpoint=vertex_api_endpoint,
            # who the job runs as is the profile's, not a run's choice
            service_account=target.service_account,
            encryption_key=target.encryption_key,
            labels=target.labels,
            display_name=display_name,
            instances_format=instances_format,
            predictions_format=predictions_format,
            machine_type=machine_type,
            starting_replica_count=starting_replica_count,
            max_replica_count=max_replica_count,
        )
        task.set_caching_options(False)  # every run scores anew: the champion moves
        task.set_display_name("vertex-batch-prediction")

    return batch_pipeline


def compile_batch_pipeline(output: str | Path, profile: Profile) -> Path:
    from kfp import compiler

    output = Path(output)
    pipeline = create_batch_pipeline(BatchTarget.from_profile(profile), profile.image.name or None)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, package_path=str(output))
    return output
