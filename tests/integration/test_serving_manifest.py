"""deploy/k8s/base/inferenceservice.yaml against what it deploys: the server's own argument
parser takes its args, the app answers its probe and metrics paths, the port agrees
everywhere, the settings are the production profile's, the image is the versioned one. A
renamed flag or route, a new package version or a changed profile fails here."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
from types import SimpleNamespace

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.integration
MANIFEST = ROOT / "deploy" / "k8s" / "base" / "inferenceservice.yaml"
PROFILE = ROOT / "deploy" / "profiles" / "production.yaml"


@pytest.fixture(scope="module")
def service() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def container(service) -> dict:
    (only,) = service["spec"]["predictor"]["containers"]
    return only


@pytest.fixture(scope="module")
def profile():
    from portside.pipelines.profile import load_profile

    return load_profile(PROFILE, environ={})


def _served(args: list[str]) -> argparse.Namespace:
    """`args` as `python -m portside.components serve` parses them; an unknown or abbreviated flag
    fails here."""
    from portside.components.serve.cli import add_arguments

    parser = argparse.ArgumentParser(exit_on_error=False, allow_abbrev=False)
    add_arguments(parser)
    parsed, unknown = parser.parse_known_args(args)
    assert unknown == [], f"the server does not take {unknown}"
    return parsed


def test_it_is_a_kserve_inference_service_with_autoscaling_and_canary(service):
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService"
    predictor = service["spec"]["predictor"]
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert predictor["scaleMetric"] in ("concurrency", "rps", "cpu", "memory")
    assert predictor["scaleTarget"] > 0
    assert 0 <= predictor["canaryTrafficPercent"] <= 100


def test_the_image_is_the_component_image_of_this_version(container, profile):
    from portside.components.image import component_image, package_version

    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+; the project is 3.10+
    declared = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert declared and package_version() == declared[1]  # the installed one is current
    assert container["image"] == profile.image_name() == component_image()
    assert container["image"].endswith(f":{package_version()}")


def test_it_runs_the_server_with_the_production_profiles_settings(container, profile):
    from portside.components.serve.cli import settings_from_args
    from portside.pipelines.vertex_deploy import SERVE_COMMAND, server_args

    assert container["command"] == SERVE_COMMAND
    served = settings_from_args(_served(container["args"]))
    # the same flags `portside deploy --vertex` sends, the port given explicitly here
    expected = settings_from_args(_served(server_args(profile)))
    assert served == dataclasses.replace(expected, port=served.port)
    assert (served.host, served.feature_repo) == ("0.0.0.0", profile.image.feature_repo)
    assert (served.registry, served.model_name) == (profile.registry.kind, "fraud_model")
    assert served.tracking_uri == profile.registry.tracking_uri
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    assert env == profile.feast.environment()


def test_one_port_for_the_server_probes_and_metrics(service, container):
    served = _served(container["args"])
    (port,) = container["ports"]
    assert port["containerPort"] == served.port == 8080
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == served.port
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == str(served.port)


def test_the_probe_and_metrics_paths_are_routes_the_app_serves(service, container, tmp_path):
    """Readiness answers 503 until a champion is loaded and 200 after; liveness 200 either
    way (an outage must not restart pods); /metrics is Prometheus text."""
    import httpx

    from portside.components.serve.app import create_app
    from portside.components.serve.arms import Arms
    from portside.components.serve.cli import settings_from_args
    from portside.components.serve.holder import ModelHolder

    settings = settings_from_args(_served(container["args"]))
    registry = SimpleNamespace(name=settings.model_name, uri="not read: no refresh here")
    holder = ModelHolder(registry, settings.feature_repo, tmp_path)
    app = create_app(settings, Arms(holder))  # its lifespan (the champion load) does not run
    ready = container["readinessProbe"]["httpGet"]["path"]
    live = container["livenessProbe"]["httpGet"]["path"]
    metrics = service["metadata"]["annotations"]["prometheus.kserve.io/path"]

    async def get(*paths: str) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
            return [await client.get(path) for path in paths]

    not_ready, alive, scraped, unknown = asyncio.run(get(ready, live, metrics, "/no-such"))
    assert (not_ready.status_code, not_ready.json()["ready"]) == (503, False)
    assert alive.status_code == 200
    assert scraped.status_code == 200 and "portside_requests" in scraped.text
    assert unknown.status_code == 404  # an unserved path would not pass for a probe
    holder.current = SimpleNamespace(version="1")  # a loaded champion, as far as probes see
    now_ready, still_alive = asyncio.run(get(ready, live))
    assert (now_ready.status_code, still_alive.status_code) == (200, 200)
