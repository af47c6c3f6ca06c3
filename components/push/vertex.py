"""Vertex AI Model Registry: upload a model version through the real aiplatform client.

The model directory must already be staged in Cloud Storage (the pipeline's artifact store);
Vertex's prebuilt TensorFlow containers load the SavedModel from `<staged dir>/saved_model`.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.common.model_io import SAVED_MODEL_DIR
from components.errors import ConfigurationError
from components.push.registry import CHAMPION

LABEL_LIMIT = 63  # Vertex label values: at most 63 characters


@dataclass(frozen=True)
class VertexTarget:
    project: str
    location: str
    artifact_uri: str  # gs:// folder holding the model directory's files
    serving_image: str
    api_endpoint: str = ""  # empty: the regional endpoint the client picks

    def check(self) -> None:
        """Fail before any request is sent when the target cannot work."""
        if not self.project:
            raise ConfigurationError("registry=vertex needs vertex_project")
        if not self.artifact_uri:
            raise ConfigurationError(
                "registry=vertex needs vertex_artifact_uri: the gs:// folder where the model "
                "directory has been staged"
            )
        if not self.artifact_uri.startswith("gs://") or len(self.artifact_uri) <= len("gs://"):
            raise ConfigurationError(
                f"vertex_artifact_uri must be a gs:// folder, got {self.artifact_uri!r}"
            )
        if not self.serving_image:
            raise ConfigurationError("registry=vertex needs vertex_serving_image")

    @property
    def saved_model_uri(self) -> str:
        return f"{self.artifact_uri.rstrip('/')}/{SAVED_MODEL_DIR}"


@dataclass(frozen=True)
class Uploaded:
    resource_name: str
    version: str
    parent_model: str | None


def upload(target: VertexTarget, model_name: str, digest: str) -> Uploaded:
    """Upload a new version of `model_name` (a new model if none has that display name), as the
    default version with the champion alias, labelled with the content hash."""
    target.check()
    from google.cloud import aiplatform

    aiplatform.init(
        project=target.project,
        location=target.location,
        api_endpoint=target.api_endpoint or None,
        api_transport="rest",
    )
    # Versions of one model share its display name; the oldest such model is the lineage.
    existing = aiplatform.Model.list(filter=f'display_name="{model_name}"', order_by="create_time")
    parent = existing[0].resource_name if existing else None
    model = aiplatform.Model.upload(
        display_name=model_name,
        artifact_uri=target.saved_model_uri,
        serving_container_image_uri=target.serving_image,
        parent_model=parent,
        version_aliases=[CHAMPION],
        is_default_version=True,
        labels={"content_hash": digest[:LABEL_LIMIT]},
    )
    return Uploaded(model.resource_name, str(model.version_id), parent)
