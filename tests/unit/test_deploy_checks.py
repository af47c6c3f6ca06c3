"""deploy/check.py (`make lint`): the repository's Dockerfiles, workflows, scripts, Kubernetes
manifests and tracked files pass, and each check finds a problem planted in a file of its kind
(so none of them passes by checking nothing)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("deploy_check", ROOT / "deploy" / "check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_repository_passes_every_deploy_check():
    done = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "check.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "deploy checks: 0 problem(s) in 3 dockerfiles, 2 workflows, 3 scripts" in done.stdout
    assert "2 overlays" in done.stdout


def test_each_image_runs_unprivileged_from_a_multi_stage_build():
    for name in ("component.Dockerfile", "tfx.Dockerfile"):
        text = (ROOT / "deploy" / name).read_text()
        assert text.count("\nFROM ") >= 2, name  # a build stage and a final one
        assert "COPY --from=build /opt/venv /opt/venv" in text, name
        assert "\nUSER 10001\n" in text, name
        assert 'org.opencontainers.image.revision="${GIT_SHA}"' in text, name
    serving = (ROOT / "deploy" / "component.Dockerfile").read_text().split("AS serving")[1]
    assert "HEALTHCHECK" in serving and "/v2/health/ready" in serving
    assert 'ENTRYPOINT ["python", "-m", "portside.components", "serve"]' in serving


def test_hadolint_finds_an_unpinned_root_image(check, tmp_path: Path):
    dockerfile = tmp_path / "bad.Dockerfile"
    dockerfile.write_text("FROM python:latest\nRUN pip install requests\n")
    problems = "\n".join(check.hadolint([dockerfile]))
    assert "DL3007" in problems  # the latest tag
    assert "DL3013" in problems  # an unpinned pip install


def test_workflows_are_checked_against_the_schema_and_shellcheck(check, tmp_path: Path):
    workflow = tmp_path / "bad.yml"
    workflow.write_text(
        "name: bad\non: push\njobs:\n  build:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - name: unquoted\n        run: cd $HOME/${{ github.ref }}\n"
        "  broken:\n    runs-on: ubuntu-24.04\n    stepz: []\n"
    )
    problems = "\n".join(check.workflows([workflow]))
    assert "stepz" in problems or "broken" in problems  # not a job's key
    assert "job build, step 1 (unquoted)" in problems and "SC2086" in problems


def test_shellcheck_finds_an_unquoted_variable(check, tmp_path: Path):
    script = tmp_path / "bad.sh"
    script.write_text("#!/usr/bin/env bash\nrm -rf $TARGET/data\n")
    assert any("SC2086" in line for line in check.shellcheck([script]))


def test_manifests_are_checked_against_kubernetes_and_kserve(check, tmp_path: Path):
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
        "spec:\n  selector: {matchLabels: {app: x}}\n  template:\n"
        "    metadata: {labels: {app: x}}\n"
        "    spec: {containers: [{name: x, image: x, resourcez: {}}]}\n"
        "---\n"
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: y}\n"
        "spec:\n  predictor:\n    canaryTrafficPercent: 150\n"
        "    containers: [{name: kserve-container, image: y, portz: []}]\n"
    )
    problems = check.manifests([manifest])
    assert any("Deployment" in p and "resourcez" in p for p in problems), problems
    assert any("InferenceService" in p and "150" in p for p in problems), problems
    assert any("spec.predictor.containers" in p and "portz" in p for p in problems), problems


def test_the_secrets_scan_finds_a_committed_key(check, tmp_path: Path):
    leaked = tmp_path / "settings.py"
    # built from parts: this file itself must pass the scan
    key, url = "AKIA" + "QX7NZ3K2M8P4R6T1", "postgresql://app:" + "s3cr3tpw@db/app"
    leaked.write_text(f'AWS_ACCESS_KEY_ID = "{key}"\nDB_URL = "{url}"\n')
    problems = check.secrets([leaked])
    assert any("AWS Access Key" in p for p in problems), problems
    assert any("Basic Auth" in p for p in problems), problems


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) not on PATH")
def test_an_overlay_is_rendered_and_its_output_checked(check, tmp_path: Path):
    shutil.copytree(ROOT / "deploy" / "k8s" / "base", tmp_path / "base")
    overlay = tmp_path / "bad-overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources:\n  - ../base\n"
        "patches:\n  - target: {kind: Deployment, name: feast-feature-server}\n"
        "    patch: |-\n      - op: replace\n        path: /spec/replicas\n        value: three\n"
    )
    problems = check.overlays([overlay])
    assert any("(rendered)" in p and "Deployment" in p and "three" in p for p in problems), problems


def test_every_file_the_deploy_guide_names_exists():
    """deploy/README.md walks through the deploy files: each one it names (relative to deploy/
    or to the repository) is there."""
    import re

    text = (ROOT / "deploy" / "README.md").read_text()
    names = set()
    for token in re.findall(r"`([\w./{},-]+)`", text):
        if not re.search(r"(/|\.(ya?ml|md|json|py|sh)$|Dockerfile$)", token):
            continue
        braced = re.fullmatch(r"(.*)\{(.+)\}(.*)", token)
        options = braced.group(2).split(",") if braced else [""]
        for option in options:
            names.add(f"{braced.group(1)}{option}{braced.group(3)}" if braced else token)
    assert len(names) >= 15, names
    missing = [
        n for n in sorted(names) if not ((ROOT / "deploy" / n).exists() or (ROOT / n).exists())
    ]
    assert missing == [], missing
