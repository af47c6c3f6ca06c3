"""`portside deploy --vertex`: the prediction server (`python -m portside.components serve` in the
component image) on a Vertex AI endpoint, as a new version beside the one(s) serving now.

The server follows the registry's champion alias (hot reload), so what a deployment rolls out
is the server: its image, flags and environment. The uploaded model version records the
champion it started with (label, artifact URI); the traffic split is a canary of the server.

Everything is checked before the client is touched; each request goes through the real
aiplatform client (REST), so the tests can record it against a loopback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portside.components.errors import ConfigurationError
from portside.components.serve.settings import (
    DEFAULT_HEALTH_ROUTE,
    DEFAULT_PORT,
    DEFAULT_PREDICT_ROUTE,
)
from portside.pipelines.vertex import init_client, service_errors

if TYPE_CHECKING:
    from portside.components.push.champion import ChampionRef
    from portside.pipelines.profile import Profile

SERVE_COMMAND = ["python", "-m", "portside.components", "serve"]
MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")  # n1-standard-4, e2-highmem-8
# Deploying as a service account needs actAs on it, beyond the Vertex AI role.
FORBIDDEN_HINT = (
    "check that the caller has roles/aiplatform.user and roles/iam.serviceAccountUser on "
    "the deployment's service account"
)


def server_args(profile: Profile) -> list[str]:
    """The server's flags for the profile: where features and the champion come from. Port
    and routes are left to the runtime (Vertex AI's AIP_* variables; KServe's manifest)."""
    registry = profile.registry
    args = ["--host", "0.0.0.0", "--feature-repo", profile.image.feature_repo]
    args += ["--model-name", registry.model_name, "--registry", registry.kind]
    if registry.kind == "mlflow":
        return [*args, "--tracking-uri", registry.tracking_uri]
    vertex = profile.vertex
    args += ["--vertex-project", vertex.project, "--vertex-location", vertex.region]
    return args + (["--vertex-api-endpoint", vertex.api_endpoint] if vertex.api_endpoint else [])


@dataclass(frozen=True)
class Rollout:
    """How the new server version joins the endpoint."""

    endpoint: str  # display name (created if missing) or projects/P/locations/L/endpoints/ID
    display_name: str  # the server's model in the registry; each deploy is a new version
    traffic_percent: int = 10  # the new version's share; the rest stays where it was
    machine_type: str = "n1-standard-4"
    min_replicas: int = 1
    max_replicas: int = 3

    def check(self) -> None:
        if not 0 <= self.traffic_percent <= 100:
            raise ConfigurationError(
                f"--traffic-percent {self.traffic_percent}: a percentage from 0 to 100"
            )
        if self.min_replicas < 1:
            raise ConfigurationError(
                f"--min-replicas {self.min_replicas}: at least 1 (a dedicated deployment "
                "always keeps a replica)"
            )
        if self.max_replicas < self.min_replicas:
            raise ConfigurationError(
                f"--max-replicas {self.max_replicas} is below --min-replicas {self.min_replicas}"
            )
        if not MACHINE_TYPE.match(self.machine_type):
            raise ConfigurationError(
                f"--machine-type {self.machine_type!r} is not a machine type like n1-standard-4"
            )
        if not self.endpoint.strip():
            raise ConfigurationError("--endpoint is empty: an endpoint's display or resource name")
        if not self.display_name.strip():
            raise ConfigurationError("--display-name is empty")


@dataclass(frozen=True)
class Deployed:
    champion: str  # the champion version when it was deployed
    model: str  # the uploaded version: projects/P/locations/L/models/ID@VERSION
    endpoint: str
    created_endpoint: bool
    deployed_model: str  # its display name on the endpoint
    traffic: dict[str, int]  # deployed model display name -> percent, after the deploy


def _label(value: str) -> str:
    """A label value Vertex accepts: 0.1.0 -> 0-1-0 (lowercase, digits, _ and -; 63 at most)."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


def upload_arguments(
    profile: Profile, rollout: Rollout, champion: ChampionRef | None
) -> dict[str, Any]:
    """Model.upload's arguments: the server's image, command, flags, environment, port and
    routes. `champion` None (a dry run) leaves out what only the registry knows."""
    from portside.components.image import package_version

    labels = {**profile.vertex.labels, "portside_version": _label(package_version())}
    arguments: dict[str, Any] = {
        "display_name": rollout.display_name,
        "serving_container_image_uri": profile.image_name(),
        "serving_container_command": SERVE_COMMAND,
        "serving_container_args": server_args(profile),
        "serving_container_environment_variables": profile.feast.environment(),
        "serving_container_ports": [DEFAULT_PORT],
        "serving_container_predict_route": DEFAULT_PREDICT_ROUTE,
        "serving_container_health_route": DEFAULT_HEALTH_ROUTE,
        "labels": labels,
    }
    if champion is not None:
        labels["champion_version"] = _label(champion.version)
        arguments["description"] = (
            f"Portside server for {profile.registry.model_name}; champion v{champion.version} "
            f"at deploy time (it follows the champion alias)"
        )
        if champion.location.startswith("gs://"):  # Vertex takes model files from gs:// only
            arguments["artifact_uri"] = champion.location
    return arguments


def deploy_arguments(profile: Profile, rollout: Rollout, traffic_percent: int) -> dict[str, Any]:
    """Endpoint.deploy's arguments (besides the model)."""
    return {
        "traffic_percentage": traffic_percent,
        "machine_type": rollout.machine_type,
        "min_replica_count": rollout.min_replicas,
        "max_replica_count": rollout.max_replicas,
        "service_account": profile.vertex.service_account,
    }


def check(profile: Profile, rollout: Rollout) -> None:
    """Everything that can be checked without a request."""
    profile.vertex_target().check()
    rollout.check()


def deploy(profile: Profile, rollout: Rollout, credentials: Any = None) -> Deployed:
    """Upload the server as a new model version, deploy it to the endpoint (found or created)
    with `rollout.traffic_percent` of the traffic; the deployed models keep the rest, in their
    current proportions. An endpoint with nothing deployed gives the new version 100%."""
    check(profile, rollout)
    from google.cloud import aiplatform

    init_client(profile.vertex_target(), credentials)
    champion = _champion(profile)
    with service_errors("upload the serving model", FORBIDDEN_HINT):
        model = aiplatform.Model.upload(
            **upload_arguments(profile, rollout, champion),
            parent_model=_lineage(profile, rollout.display_name),
        )
    with service_errors("find or create the endpoint", FORBIDDEN_HINT):
        endpoint, created = _endpoint(rollout.endpoint, profile.vertex.labels)
    percent = rollout.traffic_percent if endpoint.traffic_split else 100
    name = f"{rollout.display_name}-v{model.version_id}"
    with service_errors("deploy the model to the endpoint", FORBIDDEN_HINT):
        endpoint.deploy(
            model,
            deployed_model_display_name=name,
            sync=True,
            **deploy_arguments(profile, rollout, percent),
        )
    names = {m.id: m.display_name for m in endpoint.list_models()}
    traffic = {names.get(i, i): p for i, p in endpoint.traffic_split.items()}
    return Deployed(
        champion=champion.version,
        model=model.versioned_resource_name,
        endpoint=endpoint.resource_name,
        created_endpoint=created,
        deployed_model=name,
        traffic=traffic,
    )


def _champion(profile: Profile) -> ChampionRef:
    """The registry's champion: a server without one is never healthy, so the deployment
    would wait out Vertex AI's deployment timeout and fail."""
    from portside.components.push.champion import open_registry

    registry, vertex = profile.registry, profile.vertex
    with service_errors("read the champion", "check that the caller has roles/aiplatform.user"):
        opened = open_registry(
            registry.kind,
            registry.model_name,
            registry.tracking_uri,
            vertex.project,
            vertex.region,
            vertex.api_endpoint or "",
        )
        champion = opened.current_champion()
    if champion is None:
        raise ConfigurationError(
            f"model {registry.model_name!r} has no champion in {opened.uri}: the server "
            "would never be healthy; push one first (the training pipeline's push step)"
        )
    return champion


def _lineage(profile: Profile, display_name: str) -> str | None:
    """The server's model (new versions go under it), found by display name as push finds
    the trained model's."""
    from portside.components.push.vertex import VertexRegistry

    vertex = profile.vertex
    found = VertexRegistry(vertex.project, vertex.region, vertex.api_endpoint or "", display_name)
    return found.lineage()


def _endpoint(name: str, labels: dict[str, str]) -> tuple[Any, bool]:
    """(the endpoint, whether it was created): by resource name, else by display name."""
    from google.cloud import aiplatform

    if name.startswith("projects/"):
        return aiplatform.Endpoint(name), False
    found = aiplatform.Endpoint.list(filter=f'display_name="{name}"', order_by="create_time")
    if len(found) > 1:
        names = ", ".join(e.resource_name for e in found)
        raise ConfigurationError(
            f"--endpoint {name!r}: {len(found)} endpoints have that display name ({names}); "
            "pass one by its resource name"
        )
    if found:
        return found[0], False
    return aiplatform.Endpoint.create(display_name=name, labels=labels or None), True
