"""Batch scoring at scale: a Vertex AI batch prediction job on a version of the model in Vertex
AI Model Registry, through the real aiplatform client.

Vertex runs the model version's own serving container (the image push uploaded it with) on
the instances: each instance is what that container's predict route takes. The job runs as
the production profile's service account, with its encryption key and labels. Used by the
batch scoring pipeline (pipelines/batch_pipeline.py); the local, chunked path is `run.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portside.components.errors import ConfigurationError

INSTANCE_FORMATS = ("jsonl", "csv", "tf-record", "tf-record-gzip", "file-list")
PREDICTION_FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class VertexBatchJob:
    """One batch prediction job: which model version, on what, where to, on which machines."""

    project: str
    location: str
    model_name: str  # the Vertex display name push registers under
    model_version: str  # a version id or "champion"
    source_uri: str  # gs://... (instances_format) or bq://PROJECT.DATASET.TABLE
    destination_uri: str  # gs://PREFIX or bq://PROJECT[.DATASET]
    service_account: str
    display_name: str = "portside-batch-scoring"
    instances_format: str = "jsonl"
    predictions_format: str = "jsonl"
    machine_type: str = "n1-standard-4"
    starting_replica_count: int = 1
    max_replica_count: int = 10
    encryption_key: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    api_endpoint: str = ""  # empty: the regional endpoint; tests use a loopback

    def check(self) -> None:
        """Fail before any request when the job cannot work."""
        if not self.project:
            raise ConfigurationError("batch prediction needs vertex_project")
        if not self.service_account:
            raise ConfigurationError(
                "batch prediction needs a service account (vertex.service_account in the "
                "profile): the job would otherwise run as the default compute service account"
            )
        _storage_uri("source", self.source_uri)
        _storage_uri("destination", self.destination_uri)
        if self.source_uri.startswith("gs://") and self.instances_format not in INSTANCE_FORMATS:
            raise ConfigurationError(
                f"instances_format {self.instances_format!r}: one of {', '.join(INSTANCE_FORMATS)}"
            )
        if self.destination_uri.startswith("gs://") and (
            self.predictions_format not in PREDICTION_FORMATS
        ):
            raise ConfigurationError(
                f"predictions_format {self.predictions_format!r}: one of "
                f"{', '.join(PREDICTION_FORMATS)}"
            )
        if not 1 <= self.starting_replica_count <= self.max_replica_count:
            raise ConfigurationError(
                f"replica counts: need 1 <= starting ({self.starting_replica_count}) <= max "
                f"({self.max_replica_count})"
            )

    def storage(self) -> dict[str, str]:
        """The client's source and destination arguments for these URIs."""
        gcs_source = self.source_uri.startswith("gs://")
        gcs_destination = self.destination_uri.startswith("gs://")
        return {
            "gcs_source" if gcs_source else "bigquery_source": self.source_uri,
            "gcs_destination_prefix"
            if gcs_destination
            else "bigquery_destination_prefix": self.destination_uri,
        }


def _storage_uri(which: str, uri: str) -> None:
    scheme, _, rest = uri.partition("://")
    if scheme not in ("gs", "bq") or not rest.strip("/"):
        raise ConfigurationError(
            f"batch prediction {which} {uri!r}: a gs:// or bq:// URI (gs://BUCKET/PATH, "
            "bq://PROJECT.DATASET.TABLE)"
        )


def run_batch_job(job: VertexBatchJob) -> dict[str, Any]:
    """Create the job on the model version and wait for its end; what it scored and where the
    predictions are. RuntimeError (from the client) when the job fails."""
    from google.cloud import aiplatform

    from portside.components.push.champion import resolve_version
    from portside.components.push.vertex import VertexRegistry

    job.check()
    registry = VertexRegistry(job.project, job.location, job.api_endpoint, job.model_name)
    version = resolve_version(registry, job.model_version).version
    model = f"{registry.lineage()}@{version}"
    created = aiplatform.BatchPredictionJob.create(
        job_display_name=job.display_name,
        model_name=model,
        instances_format=job.instances_format,
        predictions_format=job.predictions_format,
        machine_type=job.machine_type,
        starting_replica_count=job.starting_replica_count,
        max_replica_count=job.max_replica_count,
        service_account=job.service_account,
        encryption_spec_key_name=job.encryption_key or None,
        labels=job.labels or None,
        sync=True,
        **job.storage(),
    )
    output = created.output_info
    return {
        "job": created.resource_name,
        "model": model,
        "model_version": version,
        "state": created.state.name,
        "output": output.gcs_output_directory or output.bigquery_output_dataset,
    }
