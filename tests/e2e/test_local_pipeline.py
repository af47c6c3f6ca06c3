"""The whole training pipeline under kfp.local: a pushed champion, a cached rerun, and a
corrupted data set stopped at the validation gate with nothing pushed. Every task runs forked
by the warm worker (TensorFlow, GX, Feast, MLflow imported once per run), its output in the
run folder's logs/."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import DATA_END, ROOT

from portside.pipelines.local_run import PIPELINE_RUN_FILE, run_local

pytestmark = pytest.mark.integration


def _parameters(workspace, entity_rows: Path, tracking: Path) -> dict:
    return {
        "entity_rows_uri": str(entity_rows),
        "feature_repo": str(workspace.repo),
        "expectation_suite": str(ROOT / "feature_repo" / "expectations" / "fraud_model_v1.json"),
        "as_of": DATA_END.isoformat(),
        "epochs": 2,
        "tracking_uri": str(tracking),
    }


def _by_component(run) -> dict[str, dict]:
    return {task["component"]: task for task in run.tasks}


def _versions(tracking: Path) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracking}")
    return sorted(str(v.version) for v in client.search_model_versions("name='fraud_model'"))


@pytest.fixture(scope="module")
def pipeline_env(workspace, tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    return workspace, base, base / "mlflow.db"


def test_first_run_pushes_a_champion_and_records_lineage(pipeline_env):
    workspace, base, tracking = pipeline_env
    rows = workspace.sources / "transactions.parquet"
    run = run_local(_parameters(workspace, rows, tracking), base / "runs", base / "cache")
    assert run.status == "succeeded", run.error
    tasks = _by_component(run)
    assert set(tasks) == {"features", "validate", "train", "evaluate", "push"}
    assert all(t["status"] == "succeeded" for t in tasks.values())
    # Forked by the warm worker, whatever it had imported by then (TensorFlow included); the
    # first step does not wait for the worker's first import, so it may run as a subprocess.
    later = {name: t["runner"] for name, t in tasks.items() if name != "features"}
    assert later == dict.fromkeys(later, "warm")
    assert tasks["features"]["runner"] in ("warm", "subprocess")
    for name, task in tasks.items():
        log = Path(task["log"])
        assert log.parent == Path(run.run_dir) / "logs"
        assert f"{name}: succeeded in" in log.read_text()  # what kfp_shim prints per task
    assert "Executing task" in (Path(run.logs) / "kfp.log").read_text()
    lineage = json.loads((Path(run.run_dir) / PIPELINE_RUN_FILE).read_text())
    assert lineage["status"] == "succeeded" and len(lineage["tasks"]) == 5
    assert _versions(tracking) == ["1"]


def test_unchanged_inputs_are_served_from_cache(pipeline_env):
    workspace, base, tracking = pipeline_env
    rows = workspace.sources / "transactions.parquet"
    parameters = _parameters(workspace, rows, tracking)
    second = _by_component(run_local(parameters, base / "runs", base / "cache"))
    # evaluate runs again: the first run had no champion to compare with, now it has; so
    # push gets a new evaluation (it finds the same version already registered)
    assert {name: task["status"] for name, task in second.items()} == {
        "features": "cached",
        "validate": "cached",
        "train": "cached",
        "evaluate": "succeeded",
        "push": "succeeded",
    }
    third = run_local(parameters, base / "runs", base / "cache")
    assert third.status == "succeeded", third.error
    assert {task["status"] for task in third.tasks} == {"cached"}
    assert _versions(tracking) == ["1"]  # the same model content is not registered twice


def test_corrupted_data_stops_at_validate_and_nothing_is_pushed(pipeline_env, tmp_path):
    workspace, base, tracking = pipeline_env
    rows = pd.read_parquet(workspace.sources / "transactions.parquet")
    rows.loc[rows.sample(frac=0.05, random_state=0).index, "amount"] = -50.0
    corrupted = tmp_path / "corrupted.parquet"
    rows.to_parquet(corrupted)
    run = run_local(_parameters(workspace, corrupted, tracking), base / "runs", base / "cache")
    assert run.status == "failed"
    assert "validate" in run.error
    tasks = _by_component(run)
    assert tasks["validate"]["status"] == "gate_failed"
    assert "amount" in tasks["validate"]["error"]
    assert tasks["validate"]["log"] in run.error  # the failure names the log to open
    assert "train" not in tasks and "push" not in tasks
    assert _versions(tracking) == ["1"]
