"""Vertex AI Model Registry: the champion and new versions, through the real aiplatform client.

The model directory must already be staged in Cloud Storage (the pipeline's artifact store);
Vertex's prebuilt TensorFlow containers load the SavedModel from `<staged dir>/saved_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from portside.components.common.artifacts import SAVED_MODEL_DIR
from portside.components.errors import ConfigurationError, GateFailed
from portside.components.push.champion import CHAMPION, ChampionRef, refuse_if_moved

LABEL_LIMIT = 63  # Vertex label values: at most 63 characters
DEFAULT_ALIAS = "default"  # what Vertex serves when no version is named


@dataclass(frozen=True)
class VertexModelUpload:
    """What push sends to Vertex AI Model Registry: the staged model and its serving image,
    in which project and region. (A pipeline job's target is `pipelines.vertex.VertexTarget`.)"""

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
    previous: str | None  # the champion version before
    reused: bool  # that content already was the champion; nothing uploaded


class VertexRegistry:
    """One model lineage (display name) in Vertex AI Model Registry, through the real client.

    Vertex has no conditional alias update and no lock, so compare-and-swap is checked, not
    atomic: push checks the champion, uploads the new version without the alias, checks again
    and then moves the alias (one request). Two pushes that both pass the second check within
    that last round trip can both move it, the later one winning; each new version carries the
    version it replaced in its `previous_champion` label, so the history survives either way.
    """

    kind = "vertex"

    def __init__(self, project: str, location: str, api_endpoint: str, model_name: str) -> None:
        if not project:
            raise ConfigurationError("registry=vertex needs vertex_project")
        from google.cloud import aiplatform

        aiplatform.init(
            project=project,
            location=location,
            api_endpoint=api_endpoint or None,
            api_transport="rest",
        )
        self.project, self.location, self.name = project, location, model_name
        self.uri = f"projects/{project}/locations/{location}"

    def lineage(self) -> str | None:
        """The resource name of the model whose versions carry this display name."""
        from google.cloud import aiplatform

        found = aiplatform.Model.list(filter=f'display_name="{self.name}"', order_by="create_time")
        return found[0].resource_name if found else None

    def current_champion(self) -> ChampionRef | None:
        parent = self.lineage()
        return None if parent is None else self._champion_of(parent)

    def champion_files(self, champion: ChampionRef, scratch: str | Path) -> Path:
        """Download the champion's model directory (the parent of its saved_model/)."""
        from google.cloud import storage

        folder = champion.location.rstrip("/").removesuffix(f"/{SAVED_MODEL_DIR}")
        bucket, _, prefix = folder.removeprefix("gs://").partition("/")
        out = Path(scratch) / "champion"
        client = storage.Client(project=self.project)
        for blob in client.list_blobs(bucket, prefix=f"{prefix}/"):
            relative = blob.name.removeprefix(f"{prefix}/")
            if relative and not blob.name.endswith("/"):
                (out / relative).parent.mkdir(parents=True, exist_ok=True)
                blob.download_to_filename(str(out / relative))
        if not out.is_dir():
            raise ConfigurationError(
                f"{self.uri}: champion v{champion.version} of {self.name!r}: no files under "
                f"{folder}"
            )
        return out

    def version_ref(self, version: str) -> ChampionRef:
        """A version of this model by its version id (or alias)."""
        parent = self.lineage()
        found = None if parent is None else self._version_of(parent, version)
        if found is None:
            raise ConfigurationError(f"{self.uri}: model {self.name!r} has no version {version}")
        return found

    def publish(self, target: VertexModelUpload, digest: str, expected: str | None) -> Uploaded:
        """Upload a new version and make it the champion, only if the champion is still
        `expected`; GateFailed, champion unchanged, otherwise."""
        target.check()
        from google.cloud import aiplatform

        parent = self.lineage()
        current = self._champion_of(parent) if parent else None
        if current is not None and current.content_hash == digest[:LABEL_LIMIT]:
            return Uploaded(parent, current.version, parent, current.version, True)
        refuse_if_moved(expected, current and current.version)
        labels = {"content_hash": digest[:LABEL_LIMIT]}
        if current is not None:
            labels["previous_champion"] = current.version
        model = aiplatform.Model.upload(
            display_name=self.name,
            artifact_uri=target.saved_model_uri,
            serving_container_image_uri=target.serving_image,
            parent_model=parent,
            is_default_version=parent is None,  # becomes the default when it becomes champion
            labels=labels,
        )
        if parent is None and self.lineage() != model.resource_name:
            raise GateFailed(
                f"champion changed since evaluation: another push created {self.name!r} in "
                f"{self.uri} first; {model.resource_name} was uploaded but not made champion"
            )
        now = self._champion_of(parent or model.resource_name)
        refuse_if_moved(expected, now and now.version)  # the upload took time: check again
        aliases = [CHAMPION] if parent is None else [CHAMPION, DEFAULT_ALIAS]
        model.versioning_registry.add_version_aliases(aliases, version=model.version_id)
        previous = current.version if current else None
        return Uploaded(model.resource_name, str(model.version_id), parent, previous, False)

    def _champion_of(self, model: str) -> ChampionRef | None:
        return self._version_of(model, CHAMPION)

    def _version_of(self, model: str, version: str) -> ChampionRef | None:
        from google.api_core.exceptions import NotFound
        from google.cloud import aiplatform

        try:
            found = aiplatform.Model(model_name=model, version=version)
        except NotFound:
            return None
        labels = dict(found.labels or {})
        return ChampionRef(str(found.version_id), labels.get("content_hash"), found.uri)
