"""Batch scoring at scale: the Vertex AI batch prediction job through the real
google-cloud-aiplatform client against a loopback endpoint that records every request, and the
compiled batch pipeline that runs it with the production profile's identity."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import MODEL_NAME, ROOT
from vertex_loopback import LOCATION, Loopback, ModelRegistry, new_bucket_routes

from portside.components.batch_predict.vertex import VertexBatchJob, run_batch_job
from portside.components.errors import ConfigurationError
from portside.components.image import component_image
from portside.pipelines.profile import load_profile

pytestmark = pytest.mark.integration

PROJECT, REGION = "proj-1", "europe-west4"
SERVICE_ACCOUNT = "scorer@proj-1.iam.gserviceaccount.com"
KEY = f"projects/{PROJECT}/locations/{REGION}/keyRings/ml/cryptoKeys/scores"
MODEL = f"projects/{PROJECT}/locations/{REGION}/models/1000"
PROFILE = ROOT / "deploy" / "profiles" / "production.yaml"
JOBS = LOCATION + r"/batchPredictionJobs"


class BatchJobs:
    """Enough of the batchPredictionJobs API: create (pending), then get (succeeded)."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}

    def routes(self) -> dict:
        return {("POST", JOBS): self.create, ("GET", JOBS + r"/(?P<job>\d+)"): self.get}

    def create(self, request, match):
        name = f"projects/{match['project']}/locations/{match['location']}/batchPredictionJobs/77"
        self.jobs["77"] = {**request.body, "name": name, "state": "JOB_STATE_PENDING"}
        return 200, self.jobs["77"]

    def get(self, request, match):
        job = self.jobs[match["job"]]
        output = job["outputConfig"]
        where = (
            {"gcsOutputDirectory": output["gcsDestination"]["outputUriPrefix"] + "/prediction-1"}
            if "gcsDestination" in output
            else {"bigqueryOutputDataset": output["bigqueryDestination"]["outputUri"] + "_1"}
        )
        return 200, {**job, "state": "JOB_STATE_SUCCEEDED", "outputInfo": where}


def _version(number: str, aliases: list[str]) -> dict:
    return {
        "name": MODEL,
        "displayName": MODEL_NAME,
        "versionId": number,
        "versionAliases": aliases,
        "artifactUri": f"gs://ml-artifacts/runs/{number}/model/saved_model",
        "labels": {"content_hash": f"hash{number}"},
    }


@pytest.fixture
def vertex():
    """Model versions 1 (default) and 2 (champion) of MODEL_NAME, the jobs API, anonymous
    credentials; the client's process-global configuration is restored afterwards."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    aiplatform.init(credentials=AnonymousCredentials())
    registry = ModelRegistry(
        {"1000": {"1": _version("1", ["default"]), "2": _version("2", ["champion"])}}
    )
    try:
        with Loopback({**registry.routes(), **BatchJobs().routes()}) as server:
            yield server
    finally:
        vars(initializer.global_config).clear()
        vars(initializer.global_config).update(saved)


def _job(server: Loopback, **overrides) -> VertexBatchJob:
    values = dict(
        project=PROJECT,
        location=REGION,
        model_name=MODEL_NAME,
        model_version="champion",
        source_uri="gs://ml-data/instances/*.jsonl",
        destination_uri="gs://ml-data/scores",
        service_account=SERVICE_ACCOUNT,
        display_name="nightly-scores",
        machine_type="n1-standard-8",
        starting_replica_count=2,
        max_replica_count=20,
        encryption_key=KEY,
        labels={"team": "fraud"},
        api_endpoint=server.url,
    )
    return VertexBatchJob(**{**values, **overrides})


def test_the_job_is_created_on_the_champion_version_with_the_full_request(vertex):
    done = run_batch_job(_job(vertex))
    (request,) = vertex.find("POST", JOBS)
    assert request.path == f"/v1/projects/{PROJECT}/locations/{REGION}/batchPredictionJobs"
    assert request.body == {
        "displayName": "nightly-scores",
        "model": f"{MODEL}@2",
        "inputConfig": {
            "instancesFormat": "jsonl",
            "gcsSource": {"uris": ["gs://ml-data/instances/*.jsonl"]},
        },
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": "gs://ml-data/scores"},
        },
        "dedicatedResources": {
            "machineSpec": {"machineType": "n1-standard-8"},
            "startingReplicaCount": 2,
            "maxReplicaCount": 20,
        },
        "manualBatchTuningParameters": {},
        "labels": {"team": "fraud"},
        "encryptionSpec": {"kmsKeyName": KEY},
        "serviceAccount": SERVICE_ACCOUNT,
    }
    assert vertex.find("GET", JOBS + r"/77")  # it waited for the job's end
    assert done == {
        "job": f"projects/{PROJECT}/locations/{REGION}/batchPredictionJobs/77",
        "model": f"{MODEL}@2",
        "model_version": "2",
        "state": "JOB_STATE_SUCCEEDED",
        "output": "gs://ml-data/scores/prediction-1",
    }


def test_bigquery_in_and_out_with_a_named_version(vertex):
    job = _job(
        vertex,
        model_version="1",
        source_uri="bq://proj-1.scoring.entity_rows",
        destination_uri="bq://proj-1.scores",
    )
    done = run_batch_job(job)
    (request,) = vertex.find("POST", JOBS)
    assert request.body["model"] == f"{MODEL}@1"
    assert request.body["inputConfig"] == {
        "instancesFormat": "bigquery",
        "bigquerySource": {"inputUri": "bq://proj-1.scoring.entity_rows"},
    }
    assert request.body["outputConfig"] == {
        "predictionsFormat": "bigquery",
        "bigqueryDestination": {"outputUri": "bq://proj-1.scores"},
    }
    assert (done["model_version"], done["output"]) == ("1", "bq://proj-1.scores_1")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"service_account": ""}, "needs a service account"),
        ({"source_uri": "s3://bucket/rows.jsonl"}, "source 's3://bucket/rows.jsonl': a gs:// or"),
        ({"destination_uri": "gs://"}, "destination 'gs://'"),
        ({"instances_format": "parquet"}, "instances_format 'parquet'"),
        ({"starting_replica_count": 5, "max_replica_count": 2}, "starting (5) <= max (2)"),
    ],
)
def test_bad_jobs_fail_before_any_request(vertex, overrides, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        run_batch_job(_job(vertex, **overrides))
    assert vertex.requests == []


def test_an_unknown_version_creates_no_job(vertex):
    with pytest.raises(ConfigurationError, match=f"model '{MODEL_NAME}' has no version 7"):
        run_batch_job(_job(vertex, model_version="7"))
    assert vertex.find("POST", JOBS) == []


def _vertex_profile():
    return load_profile(PROFILE, environ={"PORTSIDE_REGISTRY__KIND": "vertex"})


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    from portside.pipelines.batch_pipeline import compile_batch_pipeline

    return compile_batch_pipeline(tmp_path_factory.mktemp("ir") / "batch.yaml", _vertex_profile())


def test_the_batch_pipeline_compiles_with_the_profiles_identity(compiled):
    from kfp import components

    spec = yaml.safe_load(compiled.read_text())
    assert spec["pipelineInfo"]["name"] == "portside-batch-scoring"
    assert components.load_component_from_file(str(compiled)).name == "portside-batch-scoring"
    (executor,) = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == component_image()
    assert "pip install" not in " ".join(executor["container"]["command"])
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {"entity_rows_uri", "destination_uri"} <= {
        name for name, p in parameters.items() if "defaultValue" not in p
    }
    profile = _vertex_profile()
    assert parameters["model_name"]["defaultValue"] == profile.registry.model_name
    assert parameters["vertex_project"]["defaultValue"] == profile.vertex.project
    assert parameters["vertex_location"]["defaultValue"] == profile.vertex.region
    (task,) = spec["root"]["dag"]["tasks"].values()
    assert task["cachingOptions"] == {}
    constants = {
        name: value["runtimeValue"]["constant"]
        for name, value in task["inputs"]["parameters"].items()
        if "runtimeValue" in value
    }
    assert constants == {
        "service_account": profile.vertex.service_account,
        "encryption_key": profile.vertex.encryption_key,
        "labels": dict(profile.vertex.labels),
    }


def test_the_compiled_pipeline_is_submitted_as_is(compiled, monkeypatch):
    """`portside submit --template batch.yaml` sends it: no registry parameter to refuse."""
    from google.auth.credentials import AnonymousCredentials

    from portside.pipelines.vertex import VertexTarget, submit

    def created(request, match):
        name = f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/batch-1"
        return 200, {**request.body, "name": name, "state": "PIPELINE_STATE_PENDING"}

    routes = {("POST", LOCATION + r"/pipelineJobs"): created, **new_bucket_routes()}
    with Loopback(routes) as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        target = VertexTarget(
            project=PROJECT,
            region=REGION,
            pipeline_root="gs://ml-artifacts/portside",
            service_account=SERVICE_ACCOUNT,
            api_endpoint=server.url,
        )
        values = {"entity_rows_uri": "bq://p.d.rows", "destination_uri": "bq://p.scores"}
        submit(target, compiled, values, "batch", credentials=AnonymousCredentials())
    (request,) = server.find("POST", LOCATION + r"/pipelineJobs")
    assert request.body["pipelineSpec"]["pipelineInfo"]["name"] == "portside-batch-scoring"
    assert request.body["runtimeConfig"]["parameterValues"] == values


def test_portside_compile_batch(tmp_path, monkeypatch):
    from portside.pipelines.cli import main

    out = tmp_path / "batch.yaml"
    monkeypatch.setenv("PORTSIDE_REGISTRY__KIND", "mlflow")
    assert main(["compile", "--batch", "--profile", str(PROFILE), "-o", str(out)]) == 1
    assert not out.exists()  # an MLflow registry has no model Vertex AI could run
    monkeypatch.setenv("PORTSIDE_REGISTRY__KIND", "vertex")
    assert main(["compile", "--batch", "--profile", str(PROFILE), "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["pipelineInfo"]["name"] == "portside-batch-scoring"
