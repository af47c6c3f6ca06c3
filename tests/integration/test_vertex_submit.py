"""Submission to Vertex AI Pipelines through the real google-cloud-aiplatform client, against a
loopback HTTP endpoint that records every request.

The client checks the pipeline root's bucket before it submits; `STORAGE_EMULATOR_HOST` sends
that check to the same loopback, which answers as for a new bucket (create, then grant the
service account access), so the real code path runs and nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml
from vertex_loopback import LOCATION, Loopback, new_bucket_routes

from portside.components.errors import ConfigurationError, PortsideError
from portside.pipelines.vertex import VertexTarget, parse_labels, schedule, submit

pytestmark = pytest.mark.integration
SERVICE_ACCOUNT = "trainer@proj-1.iam.gserviceaccount.com"


def _created_job(request, match):
    job_id = request.query.get("pipelineJobId", ["job"])[0]
    name = f"projects/{match['project']}/locations/{match['location']}/pipelineJobs/{job_id}"
    return 200, {**request.body, "name": name, "state": "PIPELINE_STATE_PENDING"}


def _created_schedule(request, match):
    name = f"projects/{match['project']}/locations/{match['location']}/schedules/42"
    return 200, {**request.body, "name": name, "state": "ACTIVE"}


@pytest.fixture
def vertex(monkeypatch):
    routes = {
        ("POST", LOCATION + r"/pipelineJobs"): _created_job,
        ("POST", LOCATION + r"/schedules"): _created_schedule,
        **new_bucket_routes(),
    }
    with Loopback(routes) as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        yield server


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    from conftest import ROOT

    from portside.pipelines.compile import compile_pipeline
    from portside.pipelines.profile import load_profile

    profile = load_profile(ROOT / "deploy" / "profiles" / "production.yaml", environ={})
    return compile_pipeline(tmp_path_factory.mktemp("ir") / "training.yaml", profile)


def _target(server, **overrides) -> VertexTarget:
    values = dict(
        project="proj-1",
        region="europe-west4",
        pipeline_root="gs://ml-artifacts/portside",
        service_account=SERVICE_ACCOUNT,
        network="projects/123/global/networks/ml-vpc",
        labels={"team": "fraud", "env": "prod"},
        enable_caching=True,
        encryption_key="projects/proj-1/locations/europe-west4/keyRings/ml/cryptoKeys/pipelines",
        api_endpoint=server.url,
    )
    return VertexTarget(**{**values, **overrides})


def _credentials():
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def test_submit_sends_the_full_create_pipeline_job_request(vertex, template):
    parameters = {"entity_rows_uri": "gs://ml-data/rows.parquet", "epochs": 3}
    name = submit(
        _target(vertex), template, parameters, "fraud-nightly", credentials=_credentials()
    )
    assert name.startswith("projects/proj-1/locations/europe-west4/pipelineJobs/")
    assert vertex.find("GET", r"/storage/v1/b/ml-artifacts")  # the bucket check ran
    (request,) = vertex.find("POST", LOCATION + r"/pipelineJobs")
    assert request.path == "/v1/projects/proj-1/locations/europe-west4/pipelineJobs"
    job = request.body
    assert job["displayName"] == "fraud-nightly"
    assert job["labels"]["team"] == "fraud" and job["labels"]["env"] == "prod"
    assert job["serviceAccount"] == SERVICE_ACCOUNT
    assert job["network"] == "projects/123/global/networks/ml-vpc"
    assert job["encryptionSpec"]["kmsKeyName"].endswith("cryptoKeys/pipelines")
    runtime = job["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == "gs://ml-artifacts/portside"
    assert runtime["parameterValues"]["entity_rows_uri"] == "gs://ml-data/rows.parquet"
    assert runtime["parameterValues"]["epochs"] == 3
    spec = job["pipelineSpec"]
    assert spec["pipelineInfo"]["name"] == "portside-training"
    images = {
        e["container"]["image"]
        for e in spec["deploymentSpec"]["executors"].values()
        if "container" in e
    }
    assert len(images) == 1 and re.search(r"/components:\d+\.\d+\.\d+", images.pop())


def test_schedule_creates_a_pipeline_job_schedule(vertex, template):
    name = schedule(
        _target(vertex),
        template,
        {"entity_rows_uri": "gs://d/r.parquet"},
        "fraud-nightly",
        cron="TZ=Europe/Amsterdam 0 3 * * *",
        credentials=_credentials(),
    )
    assert name.endswith("/schedules/42")
    (request,) = vertex.find("POST", LOCATION + r"/schedules")
    body = request.body
    assert body["cron"] == "TZ=Europe/Amsterdam 0 3 * * *"
    assert body["maxConcurrentRunCount"] == "1" or body["maxConcurrentRunCount"] == 1
    created = body["createPipelineJobRequest"]["pipelineJob"]
    assert created["serviceAccount"] == SERVICE_ACCOUNT
    assert created["network"] == "projects/123/global/networks/ml-vpc"
    assert created["encryptionSpec"]["kmsKeyName"].endswith("cryptoKeys/pipelines")
    assert created["runtimeConfig"]["gcsOutputDirectory"] == "gs://ml-artifacts/portside"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"service_account": ""}, "--service-account is required"),
        ({"service_account": "someone@gmail.com"}, "not a service account email"),
        ({"region": "Europe West"}, "not a region"),
        ({"pipeline_root": "/local/root"}, "must be a gs:// URI"),
        ({"pipeline_root": "s3://bucket/root"}, "must be a gs:// URI"),
        ({"labels": {"Team": "x"}}, "label Team=x"),
        ({"encryption_key": "my-key"}, "KMS key name"),
    ],
)
def test_bad_targets_fail_before_any_request(vertex, template, overrides, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        submit(_target(vertex, **overrides), template, {}, "x", credentials=_credentials())
    assert vertex.requests == []


@pytest.mark.parametrize("tracking_uri", ["", "sqlite:////tmp/mlflow.db"])
def test_a_job_that_would_push_inside_its_container_is_refused(vertex, template, tracking_uri):
    parameters = {"entity_rows_uri": "gs://d/r.parquet", "tracking_uri": tracking_uri}
    with pytest.raises(ConfigurationError, match="is a registry inside the task's container"):
        submit(_target(vertex), template, parameters, "x", credentials=_credentials())
    with pytest.raises(ConfigurationError, match="tracking_uri"):
        cron = "0 3 * * *"
        schedule(_target(vertex), template, parameters, "x", cron, credentials=_credentials())
    # with the Vertex AI Model Registry, train's and evaluate's runs would still be lost
    parameters["registry"] = "vertex"
    with pytest.raises(ConfigurationError, match="runs would vanish with the pod"):
        submit(_target(vertex), template, parameters, "x", credentials=_credentials())
    assert vertex.requests == []
    parameters["tracking_uri"] = "https://mlflow.example.internal"
    submit(_target(vertex), template, parameters, "x", credentials=_credentials())
    assert len(vertex.find("POST", LOCATION + r"/pipelineJobs")) == 1


def test_service_errors_become_clear_messages(template, monkeypatch):
    def forbidden(request, match):
        return 403, {
            "error": {
                "code": 403,
                "status": "PERMISSION_DENIED",
                "message": "Permission 'aiplatform.pipelineJobs.create' denied",
            }
        }

    with Loopback({("POST", LOCATION + r"/pipelineJobs"): forbidden, **new_bucket_routes()}) as s:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", s.url)
        with pytest.raises(PortsideError) as error:
            submit(_target(s), template, {}, "x", credentials=_credentials())
    text = str(error.value)
    assert "403" in text and "aiplatform.pipelineJobs.create" in text
    assert "roles/aiplatform.user" in text


def test_labels_parse_and_reject_garbage():
    assert parse_labels(["team=fraud", "env=prod"]) == {"team": "fraud", "env": "prod"}
    with pytest.raises(ConfigurationError, match="not KEY=VALUE"):
        parse_labels(["team"])


@pytest.fixture(scope="module")
def tfx_template(tfx_python, tmp_path_factory):
    """`portside compile --tfx` with the production profile: the KubeflowV2 job JSON."""
    from conftest import BIN, ROOT, run_cli

    output = tmp_path_factory.mktemp("tfx_ir") / "training_tfx.json"
    profile = ROOT / "deploy" / "profiles" / "production.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTSIDE_")}
    command = [str(BIN / "portside"), "compile", "--tfx", "--profile", str(profile)]
    command += ["--training-set-uri", "gs://ml-data/training_set", "-o", str(output)]
    run_cli(command, cwd=ROOT, env=env)
    return output


def test_the_tfx_pipeline_compiles_for_vertex_and_submits(vertex, tfx_template):
    from conftest import ROOT
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from portside.components.image import tfx_image
    from portside.pipelines.profile import load_profile

    job = json.loads(tfx_template.read_text())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == "portside-training-tfx"
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    steps = {name for name in executors if "Portside" in name or "TrainingSet" in name}
    assert len(steps) == 5, sorted(executors)
    # Every step, TFX's own included, runs in the project's TFX image.
    assert {e["container"]["image"] for e in executors.values()} == {tfx_image()}
    assert all(
        "portside.pipelines.tfx_components." in json.dumps(executors[name]) for name in steps
    ), "a Portside step does not name its executor class by path"
    titles = {
        yaml.safe_load(artifact["artifactType"]["instanceSchema"])["title"]
        for component in job["pipelineSpec"]["components"].values()
        for artifact in component.get("outputDefinitions", {}).get("artifacts", {}).values()
    }
    assert "portside.ValidationResult" in titles
    assert all(re.fullmatch(r"[a-z]+\.[A-Z]\w+", title) for title in titles), titles
    # What the profile compiled in: the training set, the in-image suite, the shared registry;
    # TFX's cache off on every task (Portside's cache decides, see pipelines.tfx_components).
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in tasks.values())

    def constant(task: str, name: str):
        value = tasks[task]["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]
        return next(iter(value.values()))

    profile = load_profile(ROOT / "deploy" / "profiles" / "production.yaml", environ={})
    assert constant("TrainingSetExampleGen", "training_set_uri") == "gs://ml-data/training_set"
    assert constant("PortsideValidate", "suite") == profile.image.expectation_suite
    for task in ("PortsideTrain", "PortsideEvaluate", "PortsidePush"):
        assert constant(task, "tracking_uri") == profile.registry.tracking_uri
    name = submit(_target(vertex), tfx_template, {}, "fraud-tfx", credentials=_credentials())
    assert name.startswith("projects/proj-1/locations/europe-west4/pipelineJobs/")
    (request,) = vertex.find("POST", LOCATION + r"/pipelineJobs")
    assert request.body["pipelineSpec"]["pipelineInfo"]["name"] == "portside-training-tfx"
    assert request.body["serviceAccount"] == SERVICE_ACCOUNT
