"""A virtualenv built like the component image (deploy/component.Dockerfile): exactly the pinned
requirements of deploy/requirements/component.txt, then the built wheel. Shared by the tests
that run the project as the image runs it:

    from image_env import image_env  # noqa: F401  (tests/ is on sys.path)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, uv_command

REQUIREMENTS = ROOT / "deploy" / "requirements" / "component.txt"


def run_checked(
    args: list[str], cwd: Path, env: dict | None = None, timeout: int = 900
) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def image_environ(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would put the source tree on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


@pytest.fixture(scope="session")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's environment: pinned requirements, then the wheel (built once per session)."""
    uv = uv_command()
    base = tmp_path_factory.mktemp("image")
    run_checked([*uv, "build", "--wheel", "--out-dir", str(base / "dist")], cwd=ROOT)
    venv = base / "venv"
    run_checked([*uv, "venv", "--python", "3.11", str(venv)], cwd=base)
    python = str(venv / "bin" / "python")
    install = [*uv, "pip", "install", "--python", python, "--no-deps"]
    run_checked([*install, "--require-hashes", "-r", str(REQUIREMENTS)], cwd=base)
    wheel = next((base / "dist").glob("portside-*.whl"))
    run_checked([*install, str(wheel)], cwd=base)
    return venv
