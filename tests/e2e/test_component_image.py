"""The container contract without Docker: a clean virtualenv holding exactly the image's pinned
requirements plus the built wheel runs every component entrypoint, outside the source tree."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import EXAMPLE_ARGS, EXPECTATION_SUITE, MODEL_NAME, ROOT, uv_command
from image_env import REQUIREMENTS, image_env  # noqa: F401  (the shared fixture)

pytestmark = pytest.mark.integration


def _run(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_image_requirements_are_exported_from_the_lock():
    exported = _run(
        [
            *uv_command(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-header",
            "--extra",
            "features",
            "--extra",
            "validate",
            "--extra",
            "train",
            "--extra",
            "registry",
            "--extra",
            "kfp",
        ],
        cwd=ROOT,
    ).stdout
    assert exported == REQUIREMENTS.read_text(), "run `make requirements`"
    assert "apache-airflow==" not in exported  # the image does not carry Airflow


def test_every_component_runs_from_the_image_environment(image_env, workspace, tmp_path):  # noqa: F811
    from components.registry import component_names

    python = str(image_env / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PORTSIDE_IMAGE"] = "portside-components:test"
    where = _run([python, "-c", "import components; print(components.__file__)"], tmp_path, env)
    assert str(image_env) in where.stdout  # the wheel, not the source tree

    work = tmp_path / "run"
    steps = {
        "features": [
            "--entity-rows",
            str(workspace.sources / "transactions.parquet"),
            "--training-set",
            str(work / "training_set"),
            "--feature-repo",
            str(workspace.repo),
            *EXAMPLE_ARGS,
        ],
        "validate": [
            "--training-set",
            str(work / "training_set"),
            "--validation",
            str(work / "validation"),
            "--suite",
            str(EXPECTATION_SUITE),
            "--as-of",
            "2026-11-01T00:00:00+00:00",
        ],
        "train": [
            "--training-set",
            str(work / "training_set"),
            "--validation",
            str(work / "validation"),
            "--model",
            str(work / "model"),
            "--epochs",
            "2",
            "--tracking-uri",
            str(tmp_path / "mlflow.db"),
        ],
        "evaluate": [
            "--model",
            str(work / "model"),
            "--training-set",
            str(work / "training_set"),
            "--validation",
            str(work / "validation"),
            "--evaluation",
            str(work / "evaluation"),
            "--model-name",
            MODEL_NAME,
            "--tracking-uri",
            str(tmp_path / "mlflow.db"),
        ],
        "push": [
            "--model",
            str(work / "model"),
            "--evaluation",
            str(work / "evaluation"),
            "--pushed",
            str(work / "pushed"),
            "--model-name",
            MODEL_NAME,
            "--tracking-uri",
            str(tmp_path / "mlflow.db"),
        ],
    }
    assert set(component_names()) == set(steps)
    for name, args in steps.items():
        _run(
            [python, "-m", "components", name, *args, "--cache-dir", str(tmp_path / "cache")]
            if name != "features"
            else [python, "-m", "components", name, *args],
            tmp_path,
            env,
        )
        out_dir = (
            work
            / {
                "features": "training_set",
                "validate": "validation",
                "train": "model",
                "evaluate": "evaluation",
                "push": "pushed",
            }[name]
        )
        manifest = json.loads((out_dir / "run_manifest.json").read_text())
        assert manifest["status"] == "succeeded", name
        assert manifest["image"] == "portside-components:test"
    pushed = json.loads((work / "pushed" / "pushed.json").read_text())
    assert str(pushed["version"]) == "1"
