"""The compiled KFP IR: deterministic, loadable, one versioned image, accepted by aiplatform."""

from __future__ import annotations

import time

import pytest
import yaml

from components.image import component_image
from components.registry import component_names
from pipelines.compile import compile_pipeline
from pipelines.kfp_components import component_source

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("ir") / "training.yaml"
    started = time.perf_counter()
    compile_pipeline(path)
    return path, time.perf_counter() - started


def test_compile_is_deterministic(compiled, tmp_path):
    path, _ = compiled
    again = compile_pipeline(tmp_path / "again.yaml")
    assert again.read_text() == path.read_text()


def test_ir_loads_back_with_kfp(compiled):
    from kfp import components

    path, seconds = compiled
    pipeline = components.load_component_from_file(str(path))
    assert pipeline.name == "portside-training"
    assert "entity_rows_uri" in pipeline.component_spec.inputs
    assert seconds < 30


def test_every_task_runs_the_versioned_project_image(compiled):
    path, _ = compiled
    spec = yaml.safe_load(path.read_text())
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {component_image()}
    tasks = spec["root"]["dag"]["tasks"]
    assert set(component_names()) <= {
        name for name in tasks if not name.startswith("condition")
    } | set(_tasks_in_conditions(spec))
    # the install step of a lightweight component is off: the image already holds kfp
    for executor in executors.values():
        if "container" in executor:
            assert "pip install" not in " ".join(executor["container"]["command"])


def _tasks_in_conditions(spec) -> list[str]:
    names = []
    for component in spec["components"].values():
        names += list(component.get("dag", {}).get("tasks", {}))
    return names


def test_push_runs_only_when_evaluate_blesses(compiled):
    spec = yaml.safe_load(compiled[0].read_text())
    conditions = [t for n, t in spec["root"]["dag"]["tasks"].items() if n.startswith("condition")]
    assert len(conditions) == 1
    condition = conditions[0]["triggerPolicy"]["condition"]
    assert "evaluate-Output" in condition and "true" in condition.lower()
    assert "push" in _tasks_in_conditions(spec)


def test_caching_is_set_deliberately_per_task(compiled):
    tasks = yaml.safe_load(compiled[0].read_text())["root"]["dag"]["tasks"]
    assert tasks["features"]["cachingOptions"] == {}  # moving data window: never cached
    assert tasks["evaluate"]["cachingOptions"] == {}  # the champion can change
    assert tasks["train"]["cachingOptions"] == {"enableCache": True}


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
    source = component_source(__import__("components.registry").registry.get_spec("evaluate"))
    assert "model: Input[Model]" in source
    assert "evaluation: Output[Metrics]" in source
    assert source.split("\n")[0].endswith("-> bool:")  # the blessing


def test_scale_out_compiles_train_as_a_vertex_custom_job(tmp_path):
    from pipelines.training_pipeline import VertexTraining

    path = compile_pipeline(
        tmp_path / "scale.yaml",
        vertex_training=VertexTraining("n1-standard-16", "NVIDIA_TESLA_T4", 2),
    )
    text = path.read_text()
    spec = yaml.safe_load(text)
    train = spec["components"]["comp-train"]["inputDefinitions"]["parameters"]
    pools = train["worker_pool_specs"]["defaultValue"]
    machine = pools[0]["machine_spec"]
    assert machine == {
        "machine_type": "n1-standard-16",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 2,
    }
    assert pools[0]["container_spec"]["image_uri"] == component_image()
    executor = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert (
        "google_cloud_pipeline_components.container.v1.custom_job.launcher" in executor["command"]
    )


def test_bigquery_configuration_runs_features_on_the_offline_store(compiled):
    spec = yaml.safe_load(compiled[0].read_text())
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["features_engine"]["defaultValue"] == "auto"
    task = spec["root"]["dag"]["tasks"]["features"]["inputs"]["parameters"]
    assert task["engine"] == {"componentInputParameter": "features_engine"}
    assert task["point_in_time"] == {"componentInputParameter": "point_in_time"}
