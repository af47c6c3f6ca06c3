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


def _image_extras() -> list[str]:
    """The extras the image installs, as the Makefile's `requirements` target exports them."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("IMAGE_EXTRAS :="):
            return line.split(":=", 1)[1].split()
    raise AssertionError("no IMAGE_EXTRAS in the Makefile")


def test_image_requirements_are_exported_from_the_lock():
    extras = _image_extras()
    assert {"features", "validate", "train", "registry", "kfp", "serve"} <= set(extras[1::2])
    exported = _run(
        [
            *uv_command(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-header",
            *extras,
        ],
        cwd=ROOT,
    ).stdout
    assert exported == REQUIREMENTS.read_text(), "run `make requirements`"
    assert "apache-airflow==" not in exported  # the image does not carry Airflow


def test_tfx_image_requirements_are_exported_from_the_tfx_lock():
    """deploy/requirements/tfx.txt as the Makefile's TFX_EXPORT exports it: TFX 1.16's stack
    without the project (its wheel) and without Feast (it cannot live there)."""
    flags = next(
        line.split(":=", 1)[1].split()
        for line in (ROOT / "Makefile").read_text().splitlines()
        if line.startswith("TFX_EXPORT :=")
    )
    command = [*uv_command(), "export", "--frozen", "--project", "deploy/tfx", *flags]
    exported = _run(command, cwd=ROOT).stdout
    assert exported == (ROOT / "deploy" / "requirements" / "tfx.txt").read_text(), (
        "run `make requirements`"
    )
    assert "\ntfx==1.16.0 " in exported and "\nfeast==" not in exported
    assert "\nportside==" not in exported and "-e " not in exported


def test_every_component_runs_from_the_image_environment(image_env, workspace, tmp_path):  # noqa: F811
    from portside.components.registry import component_names

    python = str(image_env / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PORTSIDE_IMAGE"] = "portside-components:test"
    where = _run(
        [python, "-c", "import portside.components as c; print(c.__file__)"], tmp_path, env
    )
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
        "batch_predict": [  # the champion push just made, scored over the same rows
            "--entity-rows",
            str(workspace.sources / "transactions.parquet"),
            "--predictions",
            str(work / "predictions"),
            "--model-name",
            MODEL_NAME,
            "--tracking-uri",
            str(tmp_path / "mlflow.db"),
            "--feature-repo",
            str(workspace.repo),
        ],
        "monitor": [  # the training set itself against its baseline: no drift
            "--baseline",
            str(work / "validation"),
            "--window",
            str(work / "training_set"),
            "--monitoring",
            str(work / "monitoring"),
        ],
    }
    assert set(component_names()) == set(steps)
    for name, args in steps.items():
        _run(
            [
                python,
                "-m",
                "portside.components",
                name,
                *args,
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
            if name != "features"
            else [python, "-m", "portside.components", name, *args],
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
                "batch_predict": "predictions",
                "monitor": "monitoring",
            }[name]
        )
        manifest = json.loads((out_dir / "run_manifest.json").read_text())
        assert manifest["status"] == "succeeded", name
        assert manifest["image"] == "portside-components:test"
    pushed = json.loads((work / "pushed" / "pushed.json").read_text())
    assert str(pushed["version"]) == "1"
    assert json.loads((work / "monitoring" / "verdict.json").read_text())["verdict"] == "ok"
    _serve_from_the_image_environment(python, env, workspace, tmp_path)


def _serve_from_the_image_environment(python: str, env: dict, workspace, tmp_path: Path) -> None:
    """The image's serving entrypoint answers with the champion push just made: the image's
    requirements hold everything the server imports."""
    import signal
    import time
    import urllib.error
    import urllib.request

    from mlflow_server import free_port

    port = free_port()
    log = tmp_path / "serve.log"
    command = [python, "-m", "portside.components", "serve", "--port", str(port)]
    command += ["--feature-repo", str(workspace.repo), "--model-name", MODEL_NAME]
    command += ["--tracking-uri", str(tmp_path / "mlflow.db")]
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as health:
                    assert json.load(health)["model_version"] == "1"
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        body = {"instances": [{"user_id": 1, "amount": 25.0, "merchant_category": "grocery"}]}
        request = urllib.request.Request(
            url + "/predict", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            (prediction,) = json.load(response)["predictions"]
        assert prediction["model_version"] == "1"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)


def test_the_tfx_image_environment_runs_portsides_tfx_steps(training_set, tmp_path):
    """The TFX image as deploy/tfx.Dockerfile builds it, without Docker: a Python 3.10
    virtualenv of exactly deploy/requirements/tfx.txt (hashes) plus the built wheel. There the
    steps Portside's TFX executors run (validate, train, evaluate, push; no Feast in that image)
    run on a training set, and the executors Vertex AI's launcher names import."""
    found = subprocess.run([str(ROOT / "deploy" / "tfx" / "find_python.sh")], capture_output=True)
    if found.returncode != 0:
        pytest.skip("no Python 3.10 here (make setup says so): the TFX image's Python")
    uv = uv_command()
    _run([*uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist")], ROOT)
    venv = tmp_path / "tfx-venv"
    _run([*uv, "venv", "--python", found.stdout.decode().strip(), str(venv)], tmp_path)
    python = str(venv / "bin" / "python")
    install = [*uv, "pip", "install", "--python", python, "--no-deps"]
    _run([*install, "--require-hashes", "-r", str(ROOT / "deploy/requirements/tfx.txt")], tmp_path)
    _run([*install, str(next((tmp_path / "dist").glob("portside-*.whl")))], tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PORTSIDE_IMAGE"] = "portside-tfx:test"
    executors = ["PortsideValidate", "PortsideTrain", "PortsideEvaluate", "PortsidePush"]
    probe = "import portside.components as c, portside.pipelines.tfx_components as t; "
    probe += "print(c.__file__); "
    probe += f"[getattr(t, n + '_Executor') for n in {executors!r}]; import feast"
    imported = subprocess.run([python, "-c", probe], cwd=tmp_path, env=env, capture_output=True)
    assert str(venv) in imported.stdout.decode()  # the wheel, not the source tree
    assert b"No module named 'feast'" in imported.stderr  # the executors imported; no Feast

    tracking = ["--tracking-uri", str(tmp_path / "mlflow.db")]
    model, validation = str(tmp_path / "model"), str(tmp_path / "validation")
    steps = [
        ["validate", "--training-set", str(training_set), "--validation", validation,
         "--suite", str(EXPECTATION_SUITE), "--as-of", "2026-11-01T00:00:00+00:00"],
        ["train", "--training-set", str(training_set), "--validation", validation,
         "--model", model, "--epochs", "2", *tracking],
        ["evaluate", "--model", model, "--training-set", str(training_set),
         "--validation", validation, "--evaluation", str(tmp_path / "evaluation"),
         "--model-name", MODEL_NAME, *tracking],
        ["push", "--model", model, "--evaluation", str(tmp_path / "evaluation"),
         "--pushed", str(tmp_path / "pushed"), "--model-name", MODEL_NAME, *tracking],
    ]  # fmt: skip
    for step in steps:
        _run([python, "-m", "portside.components", *step], tmp_path, env)
    pushed = json.loads((tmp_path / "pushed" / "run_manifest.json").read_text())
    assert pushed["status"] == "succeeded" and pushed["image"] == "portside-tfx:test"


def test_the_wheel_installs_beside_a_users_own_components_and_pipelines(image_env, tmp_path):  # noqa: F811
    """A user's repository with packages named `components` and `pipelines` of its own, run with
    the built wheel installed: both the user's packages and Portside's import and work, and the
    entrypoints run."""
    python = str(image_env / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    user = tmp_path / "user_repo"
    for package in ("components", "pipelines"):
        (user / package).mkdir(parents=True)
        (user / package / "__init__.py").write_text(f"OWNER = 'the user: {package}'\n")
    probe = (
        "import importlib, json\n"
        "components, pipelines = map(importlib.import_module, ['components', 'pipelines'])\n"
        "from portside.components.registry import component_names\n"
        "from portside.pipelines.profile import load_profile\n"
        "import portside.components as ours\n"
        "print(json.dumps({'user': [components.OWNER, pipelines.OWNER],\n"
        "                  'components': component_names(), 'ours': ours.__file__}))\n"
    )
    seen = json.loads(_run([python, "-c", probe], user, env).stdout.strip().splitlines()[-1])
    assert seen["user"] == ["the user: components", "the user: pipelines"]
    assert "train" in seen["components"] and str(image_env) in seen["ours"]
    help_text = _run([python, "-m", "portside.components", "validate", "--help"], user, env)
    assert "--training-set" in help_text.stdout
    cli = _run([str(image_env / "bin" / "portside"), "--help"], user, env)
    assert "compile" in cli.stdout
