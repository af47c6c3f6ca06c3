"""The compiled KFP IR: deterministic, loadable, one versioned image, accepted by aiplatform, and
carrying the production profile (in-image paths, shared registry, Feast connections, jobs)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from portside.components.errors import ConfigurationError
from portside.components.image import component_image
from portside.components.registry import PIPELINE_ORDER
from portside.pipelines.compile import compile_pipeline
from portside.pipelines.kfp_components import component_source
from portside.pipelines.profile import load_profile

pytestmark = pytest.mark.integration
PRODUCTION = Path(__file__).resolve().parents[2] / "deploy" / "profiles" / "production.yaml"


@pytest.fixture(scope="module")
def profile():
    return load_profile(PRODUCTION, environ={})


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, profile):
    path = tmp_path_factory.mktemp("ir") / "training.yaml"
    started = time.perf_counter()
    compile_pipeline(path, profile)
    return path, time.perf_counter() - started


def _spec(compiled) -> dict:
    return yaml.safe_load(compiled[0].read_text())


def _all_tasks(spec) -> dict[str, dict]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_compile_is_deterministic(compiled, profile, tmp_path):
    path, _ = compiled
    again = compile_pipeline(tmp_path / "again.yaml", profile)
    assert again.read_text() == path.read_text()


def test_ir_loads_back_with_kfp(compiled):
    from kfp import components

    path, seconds = compiled
    pipeline = components.load_component_from_file(str(path))
    assert pipeline.name == "portside-training"
    assert "entity_rows_uri" in pipeline.component_spec.inputs
    assert seconds < 30


def test_every_task_runs_the_versioned_project_image(compiled):
    spec = _spec(compiled)
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {component_image()}
    assert set(PIPELINE_ORDER) <= set(_all_tasks(spec))  # batch_predict is not a step
    # the install step of a lightweight component is off: the image already holds kfp
    for executor in executors.values():
        if "container" in executor:
            assert "pip install" not in " ".join(executor["container"]["command"])


def test_push_runs_only_when_evaluate_blesses(compiled):
    spec = _spec(compiled)
    conditions = [t for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("condition")]
    assert len(conditions) == 1
    condition = conditions[0]["triggerPolicy"]["condition"]
    assert "evaluate-Output" in condition and "true" in condition.lower()
    assert "push" in _all_tasks(spec)


def test_kfp_caching_is_off_for_every_component(compiled):
    # KFP keys its cache on input artifact identity; features writes a new artifact every
    # run, so a cached validate/train could never hit. Reuse is Portside's content cache.
    tasks = _all_tasks(_spec(compiled))
    for name in PIPELINE_ORDER:
        assert tasks[name]["cachingOptions"] == {}, name


def test_the_production_profile_is_compiled_in(compiled):
    spec = _spec(compiled)
    defaults = {
        name: p.get("defaultValue")
        for name, p in spec["root"]["inputDefinitions"]["parameters"].items()
    }
    assert defaults["feature_repo"] == "/opt/portside/feature_repo"
    assert defaults["expectation_suite"].startswith("/opt/portside/feature_repo/expectations/")
    assert defaults["tracking_uri"] == "https://mlflow.portside.internal"
    assert defaults["registry"] == "mlflow"
    assert (defaults["vertex_project"], defaults["vertex_location"]) == (
        "portside-project",
        "europe-west4",
    )
    executors = spec["deploymentSpec"]["executors"]
    for name in PIPELINE_ORDER:
        env = {e["name"]: e["value"] for e in executors[f"exec-{name}"]["container"]["env"]}
        assert env["FEAST_REGISTRY_URL"].startswith("postgresql+psycopg://"), name
        assert env["FEAST_REDIS_CONNECTION"] == "10.10.0.4:6379", name


def test_evaluate_and_push_share_the_registry_target(tmp_path):
    vertex = load_profile(PRODUCTION, environ={"PORTSIDE_REGISTRY__KIND": "vertex"})
    spec = yaml.safe_load(compile_pipeline(tmp_path / "vertex.yaml", vertex).read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["registry"]["defaultValue"] == "vertex"
    tasks = _all_tasks(spec)
    for name in ("evaluate", "push"):
        inputs = tasks[name]["inputs"]["parameters"]
        for parameter in ("registry", "model_name", "tracking_uri", "vertex_project"):
            # push sits inside the dsl.If: its inputs are the pipeline's, renamed by KFP
            wired = inputs[parameter]["componentInputParameter"]
            assert wired.removeprefix("pipelinechannel--") == parameter, (name, parameter)


def test_push_to_vertex_takes_the_model_artifacts_own_uri():
    from portside.pipelines.kfp_shim import with_artifact_uris

    uris = {"model": "gs://root/job/train/model", "evaluation": "gs://root/job/evaluate/e"}
    vertex = with_artifact_uris("push", {"registry": "vertex", "vertex_artifact_uri": ""}, uris)
    assert vertex["vertex_artifact_uri"] == "gs://root/job/train/model"
    given = {"registry": "vertex", "vertex_artifact_uri": "gs://staged/m"}
    assert with_artifact_uris("push", given, uris) == given
    mlflow = {"registry": "mlflow", "vertex_artifact_uri": ""}
    assert with_artifact_uris("push", mlflow, uris) == mlflow  # keys Portside's cache as before
    source = component_source(
        __import__("portside.components.registry").components.registry.get_spec("push")
    )
    assert "'model': model.uri" in source


def test_aiplatform_pipeline_job_accepts_the_template(compiled):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    job = aiplatform.PipelineJob(
        display_name="check",
        template_path=str(compiled[0]),
        pipeline_root="gs://bucket/root",
        parameter_values={"entity_rows_uri": "gs://bucket/rows.parquet"},
        project="proj-1",
        location="us-central1",
        credentials=AnonymousCredentials(),
    )
    body = job._gca_resource
    assert body.runtime_config.gcs_output_directory == "gs://bucket/root"
    assert body.pipeline_spec["pipelineInfo"]["name"] == "portside-training"


def test_generated_component_source_is_typed():
    source = component_source(
        __import__("portside.components.registry").components.registry.get_spec("evaluate")
    )
    assert "model: Input[Model]" in source
    assert "evaluation: Output[Metrics]" in source
    assert source.split("\n")[0].endswith("-> bool:")  # the blessing


def test_scale_out_custom_job_runs_as_the_profiles_account_network_and_key(profile, tmp_path):
    from portside.pipelines.training_pipeline import VertexTraining

    path = compile_pipeline(
        tmp_path / "scale.yaml",
        profile,
        vertex_training=VertexTraining("n1-standard-16", "NVIDIA_TESLA_T4", 2),
    )
    spec = yaml.safe_load(path.read_text())
    train = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    pools = train["worker_pool_specs"]["defaultValue"]
    assert pools[0]["machine_spec"] == {
        "machine_type": "n1-standard-16",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 2,
    }
    container = pools[0]["container_spec"]
    assert container["image_uri"] == component_image()
    assert {e["name"] for e in container["env"]} == {
        "FEAST_REGISTRY_URL",
        "FEAST_REDIS_CONNECTION",
        "PORTSIDE_FEATURE_SOURCES",
    }
    assert train["service_account"]["defaultValue"] == profile.vertex.service_account
    assert train["network"]["defaultValue"] == profile.vertex.network
    assert train["encryption_spec_key_name"]["defaultValue"] == profile.vertex.encryption_key
    executor = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert (
        "google_cloud_pipeline_components.container.v1.custom_job.launcher" in executor["command"]
    )


def test_scale_out_without_a_service_account_is_refused(tmp_path):
    from portside.pipelines.training_pipeline import JobSettings, VertexTraining, create_pipeline

    with pytest.raises(ConfigurationError, match="vertex.service_account"):
        create_pipeline(vertex_training=VertexTraining(), jobs=JobSettings())


def test_bigquery_configuration_runs_features_on_the_offline_store(compiled):
    spec = _spec(compiled)
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["features_engine"]["defaultValue"] == "auto"
    task = spec["root"]["dag"]["tasks"]["features"]["inputs"]["parameters"]
    assert task["engine"] == {"componentInputParameter": "features_engine"}
    assert task["point_in_time"] == {"componentInputParameter": "point_in_time"}
    for bound in ("rows_from", "rows_until"):  # the entity-row window: unbounded by default
        assert inputs[bound]["defaultValue"] == ""
        assert task[bound] == {"componentInputParameter": bound}
