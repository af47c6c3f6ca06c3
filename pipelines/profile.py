"""The production profile: what a compiled pipeline needs to run where it is sent.

Local runs (`portside run --local`) use the embedded defaults: relative paths, SQLite MLflow,
the file Feast registry. None of these exist inside a task's container on Vertex AI /
Kubeflow, so `compile`, `submit` and `schedule` take a profile instead: a YAML file
(deploy/profiles/production.yaml) with environment overrides, validated here.

Overrides: `PORTSIDE_<SECTION>__<FIELD>=value`, e.g. `PORTSIDE_REGISTRY__TRACKING_URI`. They are
read when the profile is loaded, never at import time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from portside.components.errors import ConfigurationError

ENV_PREFIX = "PORTSIDE_"
PROFILE_VARIABLE = "PORTSIDE_PROFILE"  # the profile a DAG file loads (Airflow kubernetes/vertex)
DEFAULT_PROFILE = Path(__file__).resolve().parents[1] / "deploy" / "profiles" / "production.yaml"
IN_IMAGE_REPO = "/opt/portside/feature_repo"  # where deploy/component.Dockerfile puts it
SOURCES_VARIABLE = "PORTSIDE_FEATURE_SOURCES"  # read by feature_repo/definitions.py at apply


def is_container_local(tracking_uri: str) -> bool:
    """Whether an MLflow URI names storage inside the task's own container (lost with it)."""
    uri = tracking_uri.strip()
    return not uri or "://" not in uri or uri.split(":", 1)[0] in ("sqlite", "file")


def check_shared_registry(values: Mapping[str, Any], where: str) -> None:
    """Refuse pipeline parameters that would publish models into a task's container."""
    registry = values.get("registry", "mlflow")
    tracking_uri = str(values.get("tracking_uri", ""))
    if not is_container_local(tracking_uri):
        return
    prefix = f"{where}: " if where else ""
    if registry == "vertex":  # the models go to Vertex AI, but the runs would stay in the pod
        raise ConfigurationError(
            f"{prefix}tracking_uri {tracking_uri!r} is inside the task's container (empty, "
            "sqlite: or file:): train's and evaluate's MLflow runs would vanish with the pod; "
            "set registry.tracking_uri to a shared MLflow server (https://...)"
        )
    raise ConfigurationError(
        f"{prefix}tracking_uri {tracking_uri!r} is a registry inside the "
        "task's container (empty, sqlite: or file:): every push would vanish with the pod "
        "and every evaluate would see no champion; set registry.tracking_uri to a shared "
        "MLflow server (https://...) or registry.kind to vertex"
    )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageSettings(_Section):
    """Where things are inside the component image (deploy/component.Dockerfile)."""

    name: str = ""  # empty: the versioned project image
    feature_repo: str = IN_IMAGE_REPO
    expectation_suite: str = f"{IN_IMAGE_REPO}/expectations/fraud_model_v1.json"
    # Portside's content cache; empty = off (a pod's disk does not outlive it). A Cloud Storage
    # FUSE path (/gcs/BUCKET/portside-cache) reuses results across runs by content.
    cache_dir: str = ""

    @field_validator("feature_repo", "expectation_suite")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute():
            raise ValueError(f"{value!r} must be an absolute path inside the image")
        return value


class FeastSettings(_Section):
    """The image's feature_store.yaml (deploy/feast/) reads these from the task's environment."""

    registry_url: str  # SQL registry: postgresql+psycopg://USER@HOST:5432/DB
    redis_connection: str  # HOST:6379[,ssl=true]
    # Where the offline tables live, as `feast apply` was given it (feature_repo/definitions.py
    # checks the form): gs://BUCKET/PREFIX, s3://BUCKET/PREFIX, bigquery://PROJECT.DATASET or
    # an absolute directory. Required: the image holds no data/sources of its own.
    sources: str

    @field_validator("registry_url")
    @classmethod
    def _sql(cls, value: str) -> str:
        if not value.startswith(("postgresql", "mysql")):
            raise ValueError(f"{value!r} is not a SQL registry URL (postgresql+psycopg://...)")
        return value

    @field_validator("sources")
    @classmethod
    def _given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "empty; set it to where the offline sources live (gs://BUCKET/PREFIX, "
                "s3://BUCKET/PREFIX or bigquery://PROJECT.DATASET), the value given to "
                f"`feast apply` as {SOURCES_VARIABLE}"
            )
        return value.strip()

    def environment(self) -> dict[str, str]:
        return {
            "FEAST_REGISTRY_URL": self.registry_url,
            "FEAST_REDIS_CONNECTION": self.redis_connection,
            # What the repo's definitions read, so a task that loads them sees the same sources.
            SOURCES_VARIABLE: self.sources,
        }


class RegistrySettings(_Section):
    """The model registry that evaluate compares against and push publishes to."""

    kind: Literal["mlflow", "vertex"] = "mlflow"
    model_name: str = "fraud_model"
    # Always a shared MLflow server: the registry (mlflow), or where train/evaluate log (vertex).
    # validate_default: a profile that leaves it out is refused like an empty one.
    tracking_uri: str = Field(default="", validate_default=True)

    @field_validator("tracking_uri")
    @classmethod
    def _shared(cls, value: str, info: ValidationInfo) -> str:
        try:
            check_shared_registry({"registry": info.data.get("kind"), "tracking_uri": value}, "")
        except ConfigurationError as error:  # pydantic reports ValueErrors with their field
            raise ValueError(str(error)) from error
        return value


class VertexSettings(_Section):
    """Where and as whom every job runs: the pipeline, the scale-out CustomJob, schedules."""

    project: str
    region: str
    pipeline_root: str
    service_account: str
    network: str | None = None
    encryption_key: str | None = None
    experiment: str | None = None
    labels: dict[str, str] = {}
    api_endpoint: str | None = None  # private endpoints; tests use a loopback


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # namespaces, accounts, PVCs
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|[kMGTPE]i?|[eE][0-9]+)?$")  # 500m, 4Gi, 1.5
BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
LIMITS = ("requests", "limits")


class KubernetesSettings(_Section):
    """Where and as whom the Airflow `kubernetes` runner starts each task's pod.

    Artifacts: every task of a DAG run reads and writes one folder tree, so all pods of the run
    must see the same files at `artifact_root`. `artifact_store` says what is mounted there:
    `pvc://NAME`, a ReadWriteMany PersistentVolumeClaim (Filestore, EFS, NFS), or
    `gs://BUCKET`, a Cloud Storage bucket through GKE's Cloud Storage FUSE CSI driver (the
    service account then needs roles/storage.objectUser on it). The Airflow binding's run
    folders ({artifact_root}/<dag_id>/<run_id>/...) are paths inside that mount.
    """

    namespace: str = "portside"
    # A Kubernetes service account; on GKE bind it to vertex.service_account with Workload
    # Identity, so pods reach Cloud Storage, Vertex AI and the registry as that account.
    service_account: str = "portside-runner"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    artifact_root: str = "/mnt/portside"
    artifact_store: str = "pvc://portside-artifacts"
    # Requests/limits of every task's container; `task_resources` overrides them per task id.
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": "1", "memory": "4Gi"},
        "limits": {"memory": "8Gi"},
    }
    task_resources: dict[str, dict[str, dict[str, str]]] = {}
    # The Airflow connection to the cluster. While kubernetes_default is not defined, the
    # provider uses the in-cluster configuration (KubernetesExecutor), else ~/.kube/config.
    kubernetes_conn_id: str = "kubernetes_default"

    @field_validator("namespace", "service_account")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a Kubernetes name (lowercase a-z, 0-9 and -)")
        return value

    @field_validator("artifact_root")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not PurePosixPath(value).is_absolute():
            raise ValueError(f"{value!r} must be an absolute path inside the pod")
        return value

    @field_validator("artifact_store")
    @classmethod
    def _store(cls, value: str) -> str:
        kind, sep, name = value.partition("://")
        if not sep or kind not in ("pvc", "gs") or not name.strip("/"):
            raise ValueError(
                f"{value!r} is neither pvc://CLAIM (a ReadWriteMany PersistentVolumeClaim) nor "
                "gs://BUCKET (Cloud Storage through GKE's Cloud Storage FUSE CSI driver)"
            )
        name = name.strip("/")
        if kind == "pvc" and not DNS_LABEL.match(name):
            raise ValueError(f"{value!r}: {name!r} is not a Kubernetes name")
        if kind == "gs" and not BUCKET.match(name):
            raise ValueError(f"{value!r}: {name!r} is not a bucket name (the bucket alone)")
        return f"{kind}://{name}"

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        return _check_resources(value, "resources")

    @field_validator("task_resources")
    @classmethod
    def _task_resources(cls, value: dict[str, dict[str, dict[str, str]]]) -> dict:
        return {task: _check_resources(r, f"task_resources.{task}") for task, r in value.items()}

    def artifact_volume(self) -> tuple[str, str]:
        """("pvc" | "gs", claim or bucket name)."""
        kind, _, name = self.artifact_store.partition("://")
        return kind, name

    def resources_for(self, task_id: str) -> dict[str, dict[str, str]]:
        """The task's requests and limits: its own entries over the defaults."""
        own = self.task_resources.get(task_id, {})
        return {kind: {**self.resources.get(kind, {}), **own.get(kind, {})} for kind in LIMITS}


def _check_resources(value: dict[str, dict[str, str]], where: str) -> dict[str, dict[str, str]]:
    for kind, quantities in value.items():
        if kind not in LIMITS:
            raise ValueError(f"{where}: {kind!r} is neither requests nor limits")
        for name, quantity in quantities.items():
            if not QUANTITY.match(str(quantity)):
                raise ValueError(
                    f"{where}.{kind}.{name}: {quantity!r} is not a quantity (500m, 2, 4Gi)"
                )
    return {kind: {k: str(v) for k, v in q.items()} for kind, q in value.items()}


class Profile(_Section):
    image: ImageSettings = ImageSettings()
    feast: FeastSettings
    registry: RegistrySettings
    vertex: VertexSettings
    kubernetes: KubernetesSettings = KubernetesSettings()

    def image_name(self) -> str:
        """The component image: the profile's, else the versioned project image."""
        from portside.components.image import component_image

        return self.image.name or component_image()

    def vertex_target(self, **overrides: Any) -> Any:
        """The `vertex` section as a pipelines.vertex.VertexTarget; `overrides` win."""
        from portside.pipelines.vertex import VertexTarget

        vertex = self.vertex
        values = dict(
            project=vertex.project,
            region=vertex.region,
            pipeline_root=vertex.pipeline_root,
            service_account=vertex.service_account,
            network=vertex.network,
            labels=dict(vertex.labels),
            experiment=vertex.experiment,
            encryption_key=vertex.encryption_key,
            api_endpoint=vertex.api_endpoint,
        )
        return VertexTarget(**{**values, **overrides})

    def pipeline_defaults(self) -> Any:
        """The compiled pipeline's parameter defaults for this profile."""
        from portside.pipelines.training_pipeline import PipelineDefaults

        return PipelineDefaults(
            feature_repo=self.image.feature_repo,
            expectation_suite=self.image.expectation_suite,
            model_name=self.registry.model_name,
            tracking_uri=self.registry.tracking_uri,
            registry=self.registry.kind,
            vertex_project=self.vertex.project,
            vertex_location=self.vertex.region,
            vertex_api_endpoint=self.vertex.api_endpoint or "",
            portside_cache_dir=self.image.cache_dir,
        )

    def job_settings(self) -> Any:
        """Service account, network and key for jobs the pipeline itself creates."""
        from portside.pipelines.training_pipeline import JobSettings

        return JobSettings(
            service_account=self.vertex.service_account,
            network=self.vertex.network or "",
            encryption_key=self.vertex.encryption_key or "",
            environment=self.feast.environment(),
        )


def profile_path(environ: Mapping[str, str] | None = None) -> Path:
    """The profile named by PORTSIDE_PROFILE, else the repository's production profile."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(PROFILE_VARIABLE) or DEFAULT_PROFILE)


def load_profile(path: str | Path, environ: Mapping[str, str] | None = None) -> Profile:
    """Read and validate a profile; `PORTSIDE_<SECTION>__<FIELD>` variables override the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"{path}: profile not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigurationError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: a profile is a mapping of sections")
    _apply_overrides(data, os.environ if environ is None else environ)
    try:
        return Profile.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "profile"
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigurationError(f"{path}: {field}: {message}") from error


def _apply_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, name = key[len(ENV_PREFIX) :].lower().partition("__")
        if section not in Profile.model_fields:
            continue
        if not isinstance(data.get(section), dict):
            data[section] = {}
        data[section][name] = value
