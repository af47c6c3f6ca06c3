"""`portside deploy --vertex` through the real google-cloud-aiplatform client (REST) against the
loopback Vertex AI API (tests/vertex_loopback.py), which records every request.

The champion is published the way push publishes it (components.push.vertex); the command then
uploads the server as its own model, finds or creates the endpoint and deploys with a traffic
split, each long-running operation polled to its end. The recorded requests are checked in
full, and the container they describe is parsed by the server's own argument parser.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest
from conftest import MODEL_NAME, ROOT
from vertex_loopback import LOCATION, Endpoints, Loopback, ModelRegistry

from portside.pipelines.cli import main

pytestmark = pytest.mark.integration
PROFILE = ROOT / "deploy" / "profiles" / "production.yaml"
PROJECT, REGION = "proj-1", "europe-west4"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
CHAMPION_FILES = "gs://ml-artifacts/runs/42/model"
UPLOAD = LOCATION + r"/models:upload"
DEPLOY = LOCATION + r"/endpoints/[^/]+:deployModel"


@dataclass
class Vertex:
    server: Loopback
    registry: ModelRegistry
    endpoints: Endpoints

    def deploy(self, *flags: str) -> int:
        base = ["deploy", "--vertex", "--profile", str(PROFILE), "--api-endpoint", self.server.url]
        return main([*base, *flags])


@pytest.fixture
def vertex(monkeypatch):
    """The loopback with the profile pointed at it (registry kind vertex) and anonymous
    application-default credentials; the client's process-global configuration is restored."""
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), None))
    registry, endpoints = ModelRegistry(), Endpoints()
    try:
        with Loopback({**registry.routes(), **endpoints.routes()}) as server:
            monkeypatch.setenv("PORTSIDE_REGISTRY__KIND", "vertex")
            monkeypatch.setenv("PORTSIDE_VERTEX__PROJECT", PROJECT)
            monkeypatch.setenv("PORTSIDE_VERTEX__API_ENDPOINT", server.url)
            yield Vertex(server, registry, endpoints)
    finally:
        vars(initializer.global_config).clear()
        vars(initializer.global_config).update(saved)


@pytest.fixture
def champion(vertex):
    """v1 of the model, made champion by push's own code; the requests it took are forgotten."""
    from portside.components.push.spec import DEFAULT_VERTEX_SERVING_IMAGE
    from portside.components.push.vertex import VertexModelUpload, VertexRegistry

    upload = VertexModelUpload(
        PROJECT, REGION, CHAMPION_FILES, DEFAULT_VERTEX_SERVING_IMAGE, vertex.server.url
    )
    VertexRegistry(PROJECT, REGION, vertex.server.url, MODEL_NAME).publish(upload, "c0ffee", None)
    vertex.server.requests.clear()
    return vertex


def _profile():
    from portside.pipelines.profile import load_profile

    return load_profile(PROFILE)  # with the fixture's environment


def _served(container: dict, monkeypatch) -> argparse.Namespace:
    """The container's flags as the server parses them, with the AIP_* variables Vertex AI
    sets from its port and routes."""
    from portside.components.serve.cli import add_arguments

    monkeypatch.setenv("AIP_HTTP_PORT", str(container["ports"][0]["containerPort"]))
    monkeypatch.setenv("AIP_PREDICT_ROUTE", container["predictRoute"])
    monkeypatch.setenv("AIP_HEALTH_ROUTE", container["healthRoute"])
    parser = argparse.ArgumentParser(exit_on_error=False, allow_abbrev=False)
    add_arguments(parser)
    return parser.parse_args(container["args"])


def test_first_deploy_uploads_the_server_creates_the_endpoint_and_deploys(
    champion, monkeypatch, capsys
):
    from portside.components.image import component_image
    from portside.components.serve.settings import DEFAULT_HEALTH_ROUTE, DEFAULT_PREDICT_ROUTE

    flags = ["--machine-type", "n1-standard-8", "--min-replicas", "2", "--max-replicas", "5"]
    assert champion.deploy(*flags) == 0
    profile = _profile()

    (upload,) = champion.server.find("POST", UPLOAD)
    assert "parentModel" not in upload.body  # the server's first version: a new model
    model = upload.body["model"]
    assert model["displayName"] == f"{MODEL_NAME}-server"
    assert model["artifactUri"] == f"{CHAMPION_FILES}/saved_model"  # the champion's files
    assert model["labels"] == {
        "team": "fraud",
        "portside_version": "0-1-0",
        "champion_version": "1",
    }
    assert model["encryptionSpec"]["kmsKeyName"] == profile.vertex.encryption_key
    container = model["containerSpec"]
    assert container["imageUri"] == component_image()
    assert container["command"] == ["python", "-m", "portside.components", "serve"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == profile.feast.environment()
    assert container["ports"] == [{"containerPort": 8080}]
    assert (container["predictRoute"], container["healthRoute"]) == (
        DEFAULT_PREDICT_ROUTE,
        DEFAULT_HEALTH_ROUTE,
    )
    served = _served(container, monkeypatch)
    assert (served.host, served.port) == ("0.0.0.0", 8080)
    assert (served.predict_route, served.health_route) == ("/predict", "/health")
    assert served.feature_repo == "/opt/portside/feature_repo"
    assert (served.registry, served.model_name) == ("vertex", MODEL_NAME)
    assert (served.vertex_project, served.vertex_location) == (PROJECT, REGION)
    assert served.vertex_api_endpoint == champion.server.url

    (created,) = champion.server.find("POST", LOCATION + r"/endpoints")
    assert created.body["displayName"] == MODEL_NAME
    assert created.body["labels"] == {"team": "fraud"}
    assert created.body["encryptionSpec"]["kmsKeyName"] == profile.vertex.encryption_key

    (deploy,) = champion.server.find("POST", DEPLOY)
    assert deploy.path == f"/v1/{PARENT}/endpoints/100:deployModel"
    deployed = deploy.body["deployedModel"]
    assert deployed["model"] == f"{PARENT}/models/1001@1"
    assert deployed["displayName"] == f"{MODEL_NAME}-server-v1"
    assert deployed["serviceAccount"] == profile.vertex.service_account
    resources = deployed["dedicatedResources"]
    assert resources["machineSpec"] == {"machineType": "n1-standard-8"}
    assert (resources["minReplicaCount"], resources["maxReplicaCount"]) == (2, 5)
    assert deploy.body["trafficSplit"] == {"0": 100}  # nothing else deployed: it takes all
    # both long-running operations (create, deploy) were polled to their end
    assert len(champion.server.find("GET", r"/ui/.+/operations/\d+")) == 2

    out = capsys.readouterr().out
    assert f"champion: {MODEL_NAME} v1" in out
    assert f"uploaded {PARENT}/models/1001@1 ({component_image()})" in out
    assert f"endpoint {PARENT}/endpoints/100 (created)" in out
    assert f"traffic: {MODEL_NAME}-server-v1 100%" in out


def test_later_deploys_are_canaries_beside_the_deployed_models(champion, capsys):
    existing = [{"id": "111", "displayName": "blue"}, {"id": "222", "displayName": "green"}]
    endpoint = champion.endpoints.add(
        PROJECT,
        REGION,
        {
            "displayName": "fraud",
            "deployedModels": existing,
            "trafficSplit": {"111": 60, "222": 40},
        },
    )
    assert champion.deploy("--endpoint", endpoint["name"], "--traffic-percent", "10") == 0
    (first,) = champion.server.find("POST", DEPLOY)
    # the new version gets its share; the deployed ones keep the rest in their proportions
    assert first.body["trafficSplit"] == {"0": 10, "111": 54, "222": 36}
    assert "blue 54%, green 36%, fraud_model-server-v1 10%" in capsys.readouterr().out

    assert champion.deploy("--endpoint", endpoint["name"], "--traffic-percent", "50") == 0
    second_upload = champion.server.find("POST", UPLOAD)[-1]
    assert second_upload.body["parentModel"] == f"{PARENT}/models/1001"  # a new version
    second = champion.server.find("POST", DEPLOY)[-1]
    assert second.body["deployedModel"]["model"] == f"{PARENT}/models/1001@2"
    assert second.body["trafficSplit"] == {"0": 50, "111": 27, "222": 18, "9000": 5}
    assert endpoint["trafficSplit"] == {"111": 27, "222": 18, "9000": 5, "9001": 50}
    assert not champion.server.find("POST", LOCATION + r"/endpoints")  # found, not created


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--traffic-percent", "150"], "--traffic-percent 150: a percentage from 0 to 100"),
        (["--min-replicas", "0"], "--min-replicas 0: at least 1"),
        (["--min-replicas", "3", "--max-replicas", "2"], "--max-replicas 2 is below"),
        (["--machine-type", "big"], "--machine-type 'big' is not a machine type"),
        (["--service-account", "me@gmail.com"], "--service-account 'me@gmail.com' is not"),
        (["--region", "Europe West"], "--region 'Europe West' is not a region"),
        (["--endpoint", " "], "--endpoint is empty"),
    ],
)
def test_bad_flags_fail_naming_the_flag_before_any_request(champion, capsys, flags, message):
    assert champion.deploy(*flags) == 1
    assert message in capsys.readouterr().err
    assert champion.server.requests == []


def test_without_vertex_it_says_how_to_deploy(vertex, capsys):
    assert main(["deploy", "--profile", str(PROFILE)]) == 1
    err = capsys.readouterr().err
    assert "add --vertex" in err and "kubectl apply -k deploy/k8s/overlays/prod" in err


def test_no_champion_is_refused_before_anything_is_uploaded(vertex, capsys):
    assert vertex.deploy() == 1
    assert f"model {MODEL_NAME!r} has no champion in {PARENT}" in capsys.readouterr().err
    assert not vertex.server.find("POST", r".*")


def test_service_errors_become_clear_messages(champion, capsys):
    def forbidden(request, match):
        message = "Permission 'iam.serviceAccounts.actAs' denied on service account"
        return 403, {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": message}}

    champion.server.routes = {("POST", DEPLOY): forbidden, **champion.server.routes}  # first
    assert champion.deploy() == 1
    err = capsys.readouterr().err
    assert "Vertex AI could not deploy the model to the endpoint (403 Forbidden)" in err
    assert "iam.serviceAccounts.actAs" in err and "roles/iam.serviceAccountUser" in err


def test_dry_run_prints_what_would_be_sent_and_sends_nothing(vertex, capsys):
    assert vertex.deploy("--dry-run", "--traffic-percent", "20", "--image", "r/server:rc1") == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["location"] == PARENT
    assert preview["champion"] == f"vertex {MODEL_NAME}@champion"
    upload = preview["upload"]
    assert upload["serving_container_image_uri"] == "r/server:rc1"
    assert upload["serving_container_command"] == ["python", "-m", "portside.components", "serve"]
    assert upload["serving_container_args"][:2] == ["--host", "0.0.0.0"]
    assert upload["serving_container_environment_variables"] == _profile().feast.environment()
    assert preview["deploy"]["traffic_percentage"] == 20
    assert preview["deploy"]["service_account"] == _profile().vertex.service_account
    assert vertex.server.requests == []
