"""The TFX pipeline end to end on LocalDagRunner in the TFX environment (.venv-tfx): features in
the main environment, then TFX's StatisticsGen/SchemaGen/ExampleValidator beside Portside's
validate, train, evaluate and push, with ML Metadata lineage from the examples to the pushed
model; bad data stopped at Portside's validate with nothing pushed; a model trained in either
environment scoring the same in both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, DATA_END, ROOT, copy_training_set, run_command
from corruptions import out_of_range_amounts

pytestmark = pytest.mark.integration
TFX_STEPS = ("StatisticsGen", "SchemaGen", "ExampleValidator")
PORTSIDE_STEPS = ("PortsideValidate", "PortsideTrain", "PortsideEvaluate", "PortsidePush")


def _run_tfx(workspace, folder: Path, *params: str):
    """`portside run --tfx` as a user runs it, in a folder holding the feature repo."""
    suite = ROOT / "feature_repo" / "expectations" / "fraud_model_v1.json"
    settings = ["epochs=2", f"as_of={DATA_END.isoformat()}", f"expectation_suite={suite}"]
    settings += [f"tracking_uri={folder / 'mlflow.db'}", *params]
    command = [str(BIN / "portside"), "run", "--tfx"]
    command += ["--entity-rows", str(workspace.sources / "transactions.parquet")]
    command += ["--pipeline-root", str(folder / "runs"), "--cache-dir", str(folder / "cache")]
    for setting in settings:
        command += ["--param", setting]
    return run_command(command, cwd=workspace.root, timeout=900)


@pytest.fixture(scope="module")
def tfx_run(workspace, tfx_python, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tfx_run")
    return folder, _run_tfx(workspace, folder)


def _lineage(tfx_python: Path, metadata: Path) -> dict:
    lineage = ["-m", "portside.pipelines.tfx_pipeline", "lineage", "--metadata-path", str(metadata)]
    done = run_command([str(tfx_python), *lineage])
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _producer(graph: dict, artifact_id: int) -> dict:
    (event,) = [
        e for e in graph["events"] if e["artifact"] == artifact_id and e["type"] == "OUTPUT"
    ]
    return next(x for x in graph["executions"] if x["id"] == event["execution"])


def _inputs(graph: dict, execution_id: int) -> dict[str, dict]:
    ids = {
        e["artifact"]
        for e in graph["events"]
        if e["execution"] == execution_id and e["type"] == "INPUT"
    }
    return {a["type"]: a for a in graph["artifacts"] if a["id"] in ids}


def test_the_pipeline_pushes_a_model_with_lineage_from_the_examples(tfx_run, tfx_python):
    folder, done = tfx_run
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    for step in ("features:", "examples:", "validate:", "train:", "evaluate:", "push:"):
        assert step in done.stdout, f"no {step} line in:\n{done.stdout}"
    graph = _lineage(tfx_python, folder / "runs" / "tfx" / "metadata.sqlite")
    states = {x["node"]: x["state"] for x in graph["executions"]}
    for step in ("TrainingSetExampleGen", *TFX_STEPS, *PORTSIDE_STEPS):
        assert states.get(step) == "COMPLETE", states
    # From the pushed model back to the examples, through ML Metadata's events only.
    pushed = min((a for a in graph["artifacts"] if a["type"] == "PushedModel"), key=_id)
    assert pushed["properties"]["pushed"] == 1 and pushed["properties"]["pushed_version"] == "1"
    push = _producer(graph, pushed["id"])
    assert push["node"] == "PortsidePush"
    model = _inputs(graph, push["id"])["Model"]
    blessing = _inputs(graph, push["id"])["ModelBlessing"]
    assert blessing["properties"]["blessed"] == 1
    assert (Path(blessing["uri"]) / "BLESSED").is_file()
    train = _producer(graph, model["id"])
    assert train["node"] == "PortsideTrain"
    examples = _inputs(graph, train["id"])["Examples"]
    assert _producer(graph, examples["id"])["node"] == "TrainingSetExampleGen"
    # TFX's own components read the same Examples artifact.
    stats = next(a for a in graph["artifacts"] if a["type"] == "ExampleStatistics")
    assert _inputs(graph, _producer(graph, stats["id"])["id"])["Examples"]["id"] == examples["id"]
    assert (Path(stats["uri"]) / "Split-train" / "FeatureStats.pb").is_file()
    # The registry holds the pushed version as champion.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("fraud_model", "champion").version) == "1"


def test_a_model_trained_in_either_environment_scores_the_same_in_both(
    tfx_run, tfx_python, training_set, tmp_path
):
    from portside.components.common.model_io import predict

    folder, done = tfx_run
    assert done.returncode == 0
    graph = _lineage(tfx_python, folder / "runs" / "tfx" / "metadata.sqlite")
    tfx_model = next(a["uri"] for a in graph["artifacts"] if a["type"] == "Model")
    main_model = tmp_path / "main_model"
    validation = tmp_path / "validation"
    for name, args in (
        (
            "validate",
            [
                "--validation",
                validation,
                "--suite",
                ROOT / "feature_repo/expectations/fraud_model_v1.json",
                "--as-of",
                DATA_END.isoformat(),
            ],
        ),
        (
            "train",
            [
                "--validation",
                validation,
                "--model",
                main_model,
                "--epochs",
                "1",
                "--tracking-uri",
                tmp_path / "mlflow.db",
            ],
        ),
    ):
        trained = run_command(
            [
                sys.executable,
                "-m",
                "portside.components",
                name,
                "--training-set",
                str(training_set),
                "--no-cache",
                *map(str, args),
            ]
        )
        assert trained.returncode == 0, trained.stderr[-3000:]
    frame = pd.read_parquet(training_set / "training_set.parquet").head(300)
    rows = tmp_path / "rows.parquet"
    frame.to_parquet(rows)
    for model in (tfx_model, str(main_model)):
        here = predict(model, frame)
        scores = tmp_path / "tfx_scores.npy"
        script = (
            "import sys, numpy as np, pandas as pd; "
            "from portside.components.common.model_io import predict; "
            "np.save(sys.argv[3], predict(sys.argv[1], pd.read_parquet(sys.argv[2])))"
        )
        there = run_command([str(tfx_python), "-c", script, model, str(rows), str(scores)])
        assert there.returncode == 0, there.stderr[-3000:]
        assert ((here > 0) & (here < 1)).all()
        np.testing.assert_allclose(np.load(scores), here, rtol=1e-5, atol=1e-6)


def test_bad_data_stops_the_tfx_pipeline_at_validate(training_set, tfx_python, tmp_path):
    frame = pd.read_parquet(training_set / "training_set.parquet")
    bad = copy_training_set(training_set, tmp_path / "bad", out_of_range_amounts(frame))
    metadata = tmp_path / "metadata.sqlite"
    done = run_command(
        [
            str(tfx_python),
            "-m",
            "portside.pipelines.tfx_pipeline",
            "run",
            "--training-set-uri",
            str(bad),
            "--pipeline-root",
            str(tmp_path / "artifacts"),
            "--metadata-path",
            str(metadata),
            "--as-of",
            DATA_END.isoformat(),
            "--tracking-uri",
            str(tmp_path / "mlflow.db"),
            "--expectation-suite",
            str(ROOT / "feature_repo/expectations/fraud_model_v1.json"),
        ],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=600,
    )
    assert done.returncode != 0
    assert "GateFailed" in done.stdout + done.stderr
    graph = _lineage(tfx_python, metadata)
    states = {x["node"]: x["state"] for x in graph["executions"]}
    assert states["PortsideValidate"] == "FAILED", states
    assert not {"PortsideTrain", "PortsideEvaluate", "PortsidePush"} & set(states), states
    assert not [a for a in graph["artifacts"] if a["type"] in ("Model", "PushedModel")]
    assert not (tmp_path / "mlflow.db").exists() or _no_versions(tmp_path / "mlflow.db")


def _no_versions(tracking: Path) -> bool:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tracking}")
    return not client.search_model_versions("name='fraud_model'")


def test_without_the_tfx_environment_the_cli_says_how_to_build_it(workspace, tmp_path):
    env = {**os.environ, "PORTSIDE_TFX_PYTHON": str(tmp_path / "missing" / "python")}
    done = subprocess.run(
        [str(BIN / "portside"), "run", "--tfx"],
        cwd=workspace.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr  # ConfigurationError
    assert "the TFX environment is not built" in done.stderr and "make setup" in done.stderr


def test_a_fresh_executor_process_finds_every_step_by_class_path(tfx_python):
    """What Vertex AI's TFX launcher does in the image: import the executor named in the spec."""
    script = (
        "from tfx.utils import import_utils\n"
        "from portside.pipelines import tfx_components as t\n"
        "for name in ['TrainingSetExampleGen', *map(t.component_name, t.TFX_COMPONENTS)]:\n"
        "    path = f'portside.pipelines.tfx_components.{name}_Executor'\n"
        "    cls = import_utils.import_class_by_path(path)\n"
        "    print(cls.__name__)\n"
    )
    done = run_command([str(tfx_python), "-c", script])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [
        "TrainingSetExampleGen_Executor",
        *(f"{name}_Executor" for name in PORTSIDE_STEPS),
    ]


def test_a_rerun_is_served_from_portsides_cache_and_an_unblessed_model_is_not_pushed(
    tfx_run, tfx_python, workspace
):
    folder, first = tfx_run
    assert first.returncode == 0
    done = _run_tfx(workspace, folder, "min_roc_auc=0.999")
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    # TFX reran every step (its cache is off); Portside's cache served what had not changed.
    assert "validate: cached in" in done.stdout and "train: cached in" in done.stdout
    assert "evaluate: succeeded in" in done.stdout
    assert "push: skipped: not blessed" in done.stdout
    graph = _lineage(tfx_python, folder / "runs" / "tfx" / "metadata.sqlite")
    blessing = max((a for a in graph["artifacts"] if a["type"] == "ModelBlessing"), key=_id)
    pushed = max((a for a in graph["artifacts"] if a["type"] == "PushedModel"), key=_id)
    assert blessing["properties"]["blessed"] == 0
    assert (Path(blessing["uri"]) / "NOT_BLESSED").is_file()
    assert pushed["properties"]["pushed"] == 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    versions = client.search_model_versions("name='fraud_model'")
    assert [str(v.version) for v in versions] == ["1"]  # nothing new was registered


def _id(artifact: dict) -> int:
    return artifact["id"]
