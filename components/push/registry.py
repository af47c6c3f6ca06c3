"""The MLflow model registry as push, evaluate and `portside models` use it.

Crash safety rests on ordering, so a kill at any point leaves the registry consistent:
  1. the model directory is logged as the artifacts of an MLflow run and read back (a kill here
     leaves an unfinished run and no version);
  2. a model version is created from the run's artifact location, tagged with the content hash;
  3. the version is tagged complete (a kill before this leaves an incomplete version that
     nothing points to, and that a later push of the same content verifies and adopts);
  4. only then does the `champion` alias move, and the alias history is recorded after it.
Versions are never modified after being marked complete.

Concurrency rests on the registry lock (`components.push.lock`): checking the champion,
finding-or-creating the version for a content hash, moving the alias and appending the history
happen while holding it, so two pushes can neither create two versions of the same content nor
lose a history entry, and push moves the champion only if it is still the one evaluate compared
against (compare-and-swap). Uploading the files, the slow part, happens before the lock.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from portside.components.common.tracking import log_run, resolve_tracking_uri
from portside.components.errors import ConfigurationError, PortsideError
from portside.components.lineage import content_hash
from portside.components.push.champion import CHAMPION, ChampionRef, refuse_if_moved
from portside.components.push.lock import DEFAULT_LEASE_S, Lease, RegistryLock

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

HASH_TAG = "portside.content_hash"
COMPLETE_TAG = "portside.complete"
HISTORY_TAG = "portside.champion_history"  # registered-model tag: JSON list, oldest first
REGISTRY_EXPERIMENT = "portside-model-registry"
HISTORY_LIMIT = 200
MISSING_CODES = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "ENDPOINT_NOT_FOUND")


class RegistryError(PortsideError):
    """The registry or its artifact store could not be read (network, permissions)."""


def is_complete(version: ModelVersion) -> bool:
    return version.tags.get(COMPLETE_TAG) == "true"


@dataclass(frozen=True)
class Published:
    version: str
    source: str
    reused: bool  # an existing version with the same content
    previous: str | None  # the champion before
    moved: bool  # False: that content already was the champion


class Registry:
    """One registered model in one MLflow tracking/registry store."""

    kind = "mlflow"

    def __init__(
        self, tracking_uri: str, model_name: str, lease_s: float = DEFAULT_LEASE_S
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        self.name = model_name
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        self.lock = RegistryLock(self.client, model_name, self.tracking_uri, lease_s)

    @property
    def uri(self) -> str:
        return self.tracking_uri

    # -- reading --------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """alias -> version; empty when the model is not registered yet."""
        model = self._registered_model()
        return {k: str(v) for k, v in model.aliases.items()} if model is not None else {}

    def champion(self) -> ModelVersion | None:
        version = self.aliases().get(CHAMPION)
        return self.client.get_model_version(self.name, version) if version else None

    def current_champion(self) -> ChampionRef | None:
        version = self.champion()
        if version is None:
            return None
        return ChampionRef(str(version.version), version.tags.get(HASH_TAG), version.source)

    def champion_files(self, champion: ChampionRef, scratch: str | Path) -> Path:
        return self._files_at(champion.location, scratch)

    def version_ref(self, version: str) -> ChampionRef:
        """A complete version by number (an incomplete one may lack files)."""
        found = self._version(version)
        if not is_complete(found):
            raise ConfigurationError(
                f"{self.name} v{version} is not marked complete (an interrupted push?)"
            )
        return ChampionRef(str(found.version), found.tags.get(HASH_TAG), found.source)

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
        return self._files_at(version.source, scratch)

    # -- writing --------------------------------------------------------------------------

    def publish(self, model_dir: str | Path, digest: str, expected: str | None) -> Published:
        """Make a complete, immutable version holding model_dir's files (content hash `digest`)
        the champion, only if the champion is still `expected` (None: no champion yet);
        GateFailed, nothing moved, otherwise. The same content is never registered twice."""
        before = self.current_champion()
        if before is None or before.content_hash != digest:
            refuse_if_moved(expected, before and before.version)  # fail before uploading
        uploaded = None if self._adoptable(digest) else self._upload(model_dir, digest)
        with self.lock.held() as lease:
            current = self.current_champion()
            if current is not None and current.content_hash == digest:
                return Published(current.version, current.location, True, current.version, False)
            refuse_if_moved(expected, current and current.version)
            version, reused = self._version_for(digest, model_dir, uploaded, lease)
            self._move_champion(lease, version.version, [*self.history(), str(version.version)])
        previous = current.version if current else None
        return Published(str(version.version), version.source, reused, previous, True)

    def promote(self, version: str) -> str | None:
        """Point the champion alias at a complete version; return the previous champion."""
        with self.lock.held() as lease:
            target = self._version(str(version))
            if not is_complete(target):
                raise ConfigurationError(
                    f"{self.name} v{version} is not marked complete (an interrupted push?); "
                    "only complete versions can become champion"
                )
            current = self.aliases().get(CHAMPION)
            if current != str(target.version):
                self._move_champion(lease, target.version, [*self.history(), str(target.version)])
        return current

    def rollback(self) -> tuple[str, str]:
        """Move the champion back to the version that held it before; return (from, to)."""
        with self.lock.held() as lease:
            history = self.history()
            if len(history) < 2:
                raise ConfigurationError(
                    f"{self.name}: no previous champion to roll back to "
                    f"(champion history: {' -> '.join(history) or 'empty'})"
                )
            current, previous = history[-1], history[-2]
            self._move_champion(lease, previous, history[:-1])
        return current, previous

    # -- internals ------------------------------------------------------------------------

    def _adoptable(self, digest: str) -> bool:
        """A version with this content exists and holds it: nothing to upload."""
        return any(is_complete(v) or self._holds(v.source, digest) for v in self._with_hash(digest))

    def _upload(self, model_dir: str | Path, digest: str) -> tuple[str, str]:
        """Log the files as a run's artifacts, read them back; (their location, the run)."""
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
        if not self._holds(source, digest):
            raise RegistryError(f"{self.tracking_uri}: artifacts written to {source} differ")
        return source, run_id

    def _version_for(
        self, digest: str, model_dir: str | Path, uploaded: tuple[str, str] | None, lease: Lease
    ) -> tuple[ModelVersion, bool]:
        """Under the lock: the complete version of this content, adopting one an interrupted
        push left incomplete, or a new one from the uploaded run."""
        same_content = self._with_hash(digest)
        for version in same_content:
            if is_complete(version):
                return version, True
        for version in same_content:
            if self._holds(version.source, digest):  # left incomplete by a crash; files whole
                lease.check()
                self._mark_complete(version)
                return version, True
        source, run_id = uploaded or self._upload(model_dir, digest)
        self._ensure_registered_model()
        lease.check()
        # the run must be named: a server checks that the source lies inside it
        tags = {HASH_TAG: digest}
        version = self.client.create_model_version(self.name, source, run_id=run_id, tags=tags)
        self._mark_complete(version)  # its files were verified in _upload
        return version, False

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

    def _files_at(self, source: str, scratch: str | Path) -> Path:
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        location = urlparse(source)
        if location.scheme == "file":
            return Path(url2pathname(location.path))
        import mlflow.artifacts

        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(scratch), tracking_uri=self.tracking_uri
            )
        )

    def _holds(self, source: str, digest: str) -> bool:
        """Whether the files at `source` are exactly the content with this hash. Missing files
        are "not this content"; a store that cannot be read is an error, not an answer."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory(prefix="portside-verify-") as scratch:
            try:
                return content_hash(self._files_at(source, scratch)) == digest
            except FileNotFoundError:
                return False
            except MlflowException as error:
                if error.error_code in MISSING_CODES:
                    return False
                raise RegistryError(
                    f"{self.tracking_uri}: cannot read {source}: {error}"
                ) from error
            except OSError as error:  # network (requests' errors are OSErrors), permissions
                raise RegistryError(
                    f"{self.tracking_uri}: cannot read {source}: {error}"
                ) from error

    def _mark_complete(self, version: ModelVersion) -> None:
        self.client.set_model_version_tag(self.name, version.version, COMPLETE_TAG, "true")

    def _move_champion(self, lease: Lease, version: str, history: list[str]) -> None:
        # Alias first: it is what readers follow. A kill before the history update is repaired
        # by history(), which trusts the alias.
        lease.check()
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        value = json.dumps(history[-HISTORY_LIMIT:])
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, value)
