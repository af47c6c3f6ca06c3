"""The MLflow model registry as push, evaluate and `portside models` use it.

Crash safety rests on ordering, so a kill at any point leaves the registry consistent:
  1. the model directory is logged as the artifacts of an MLflow run (a kill here leaves an
     unfinished run and no version);
  2. a model version is created from the run's artifact location, tagged with the content hash;
  3. the artifacts are read back and hashed; only when they match is the version tagged
     complete (a kill before this leaves an incomplete version that nothing points to, and that
     a later push of the same content verifies and adopts);
  4. only then does the `champion` alias move, and the alias history is recorded after it.
Versions are never modified after being marked complete. A re-push of the same content finds
the complete version by its hash tag instead of creating a duplicate.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from components.common.tracking import log_run, resolve_tracking_uri
from components.errors import ConfigurationError
from components.lineage import content_hash

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

CHAMPION = "champion"
HASH_TAG = "portside.content_hash"
COMPLETE_TAG = "portside.complete"
HISTORY_TAG = "portside.champion_history"  # registered-model tag: JSON list, oldest first
REGISTRY_EXPERIMENT = "portside-model-registry"
HISTORY_LIMIT = 200


def is_complete(version: ModelVersion) -> bool:
    return version.tags.get(COMPLETE_TAG) == "true"


@dataclass(frozen=True)
class Registered:
    version: str
    source: str
    reused: bool  # an existing complete version with the same content


class Registry:
    """One registered model in one MLflow tracking/registry store."""

    def __init__(self, tracking_uri: str, model_name: str) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        self.name = model_name
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    # -- reading --------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """alias -> version; empty when the model is not registered yet."""
        model = self._registered_model()
        return {k: str(v) for k, v in model.aliases.items()} if model is not None else {}

    def champion(self) -> ModelVersion | None:
        version = self.aliases().get(CHAMPION)
        return self.client.get_model_version(self.name, version) if version else None

    def versions(self) -> list[ModelVersion]:
        if self._registered_model() is None:
            return []
        found = self.client.search_model_versions(f"name = '{self.name}'")
        return sorted(found, key=lambda v: int(v.version))

    def history(self) -> list[str]:
        """Versions that held the champion alias, oldest first, ending at the current one."""
        model = self._registered_model()
        recorded = [str(v) for v in json.loads(model.tags.get(HISTORY_TAG, "[]"))] if model else []
        current = self.aliases().get(CHAMPION)
        # The alias is the truth; the history is written after it moves and may lag by one.
        if current is None:
            return recorded
        if current in recorded:
            return recorded[: len(recorded) - recorded[::-1].index(current)]
        return [*recorded, current]

    def files(self, version: ModelVersion, scratch: str | Path) -> Path:
        """The directory holding a version's files: read in place when the artifact store is
        local, else downloaded into `scratch`."""
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        location = urlparse(version.source)
        if location.scheme == "file":
            return Path(url2pathname(location.path))
        import mlflow.artifacts

        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=version.source, dst_path=str(scratch), tracking_uri=self.tracking_uri
            )
        )

    # -- writing --------------------------------------------------------------------------

    def register(self, model_dir: str | Path, digest: str) -> Registered:
        """A complete, immutable version holding model_dir's files (content hash `digest`);
        reuses one with the same content instead of creating a duplicate."""
        same_content = self._with_hash(digest)
        for version in same_content:
            if is_complete(version):
                return Registered(str(version.version), version.source, reused=True)
        for version in same_content:
            if self._holds(version, digest):  # left incomplete by a crash; its files are whole
                self._mark_complete(version)
                return Registered(str(version.version), version.source, reused=True)

        run_id = log_run(
            self.tracking_uri,
            run_name=f"register {self.name}",
            params={"model_name": self.name, "content_hash": digest},
            metrics={},
            artifact_dir=model_dir,
            tags={"portside.component": "push", HASH_TAG: digest},
            experiment=REGISTRY_EXPERIMENT,
        )
        source = self.client.get_run(run_id).info.artifact_uri
        self._ensure_registered_model()
        version = self.client.create_model_version(
            self.name, source, run_id=run_id, tags={HASH_TAG: digest}
        )
        if not self._holds(version, digest):
            raise RuntimeError(f"{self.name} v{version.version}: artifacts at {source} differ")
        self._mark_complete(version)
        return Registered(str(version.version), source, reused=False)

    def promote(self, version: str) -> str | None:
        """Point the champion alias at a complete version; return the previous champion."""
        target = self._version(str(version))
        if not is_complete(target):
            raise ConfigurationError(
                f"{self.name} v{version} is not marked complete (an interrupted push?); "
                "only complete versions can become champion"
            )
        current = self.aliases().get(CHAMPION)
        if current != str(target.version):
            self._move_champion(str(target.version), [*self.history(), str(target.version)])
        return current

    def rollback(self) -> tuple[str, str]:
        """Move the champion back to the version that held it before; return (from, to)."""
        history = self.history()
        if len(history) < 2:
            raise ConfigurationError(
                f"{self.name}: no previous champion to roll back to "
                f"(champion history: {' -> '.join(history) or 'empty'})"
            )
        current, previous = history[-1], history[-2]
        self._move_champion(previous, history[:-1])
        return current, previous

    # -- internals ------------------------------------------------------------------------

    def _registered_model(self):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(self.name)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def _version(self, version: str) -> ModelVersion:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.name, version)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        known = ", ".join(str(v.version) for v in self.versions()) or "none"
        raise ConfigurationError(f"{self.name} has no version {version} (versions: {known})")

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(self.name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":  # another push got there first
                raise

    def _with_hash(self, digest: str) -> list[ModelVersion]:
        query = f"name = '{self.name}' and tags.`{HASH_TAG}` = '{digest}'"
        found = self.client.search_model_versions(query)
        return sorted(found, key=lambda v: int(v.version))

    def _holds(self, version: ModelVersion, digest: str) -> bool:
        """Whether the version's stored files are exactly the content with this hash."""
        with tempfile.TemporaryDirectory(prefix="portside-verify-") as scratch:
            try:
                return content_hash(self.files(version, scratch)) == digest
            except Exception:  # missing or unreadable files: not the content
                return False

    def _mark_complete(self, version: ModelVersion) -> None:
        self.client.set_model_version_tag(self.name, version.version, COMPLETE_TAG, "true")

    def _move_champion(self, version: str, history: list[str]) -> None:
        # Alias first: it is what readers follow. A kill before the history update is repaired
        # by history(), which trusts the alias.
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        value = json.dumps(history[-HISTORY_LIMIT:])
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, value)
