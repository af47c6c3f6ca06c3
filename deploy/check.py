"""The deploy files' checks, offline: `make lint` runs them, and so does the test suite
(tests/unit/test_deploy_checks.py).

- Dockerfiles: hadolint (rules and the reasons for the few ignored ones: .hadolint.yaml);
- GitHub Actions workflows: the workflow JSON schema, and shellcheck over their `run:` scripts;
- shell scripts under deploy/: shellcheck;
- Kubernetes manifests (deploy/k8s/base, and each overlay rendered by `kubectl kustomize`):
  each document against the Kubernetes OpenAPI schema of KUBERNETES (kubernetes-validate,
  schemas shipped in the package); custom resources (KServe) against the schema kept in
  deploy/schemas/, their inline PodSpec as a Pod's;
- secrets: detect-secrets over every tracked file (lock files' hashes aside).

`python deploy/check.py` prints each problem as `path: problem` and exits 1 if there is one.
The tools come from the dev dependency group (`make setup`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KUBERNETES = "1.33.0"  # the cluster version the manifests are validated for
SCHEMAS = ROOT / "deploy" / "schemas"
# Hashes, not keys: pinned requirements and lock files are long hex strings by design.
NOT_SECRET_FILES = r"(uv\.lock|deploy/requirements/.*\.txt)$"
# Lines that name a secret or stand in for one, never hold one: a Kubernetes Secret's name or
# key, a connection string whose password is the placeholder PASSWORD, a data fingerprint.
# Anything else that only looks like a secret carries `pragma: allowlist secret` on its line.
NOT_SECRET_LINES = r"([sS]ecret(Name|Key)\b|:PASSWORD@|\"fingerprint\": \"[0-9a-f]{64}\")"


def _tool(name: str) -> str:
    found = BIN / name
    if found.is_file():
        return str(found)
    on_path = shutil.which(name)
    if on_path is None:
        raise FileNotFoundError(f"{name} is not installed: run `make setup` (dev group)")
    return on_path


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def hadolint(paths: Iterable[Path]) -> list[str]:
    problems = []
    for path in paths:
        argv = [_tool("hadolint"), "--no-color", "--config", str(ROOT / ".hadolint.yaml")]
        done = _run([*argv, str(path)])
        if done.returncode != 0:
            lines = (done.stdout + done.stderr).strip().splitlines()
            problems += [f"{_relative(path)}: {line}" for line in lines]
    return problems


def workflows(paths: Iterable[Path]) -> list[str]:
    """GitHub Actions workflows: against the workflow schema check-jsonschema ships (SchemaStore's;
    actionlint has no Linux build on PyPI), and every `run:` script through shellcheck, with
    each `${{ ... }}` expression standing in as a plain word, as Actions substitutes it."""
    import yaml

    paths = list(paths)
    if not paths:
        return []
    problems = []
    argv = [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
    done = _run([*argv, *map(str, paths)])
    if done.returncode != 0:
        problems += (done.stdout + done.stderr).strip().splitlines()
    with tempfile.TemporaryDirectory(prefix="portside-workflow-") as scratch:
        for path in paths:
            for job_id, job in (yaml.safe_load(path.read_text()).get("jobs") or {}).items():
                for number, step in enumerate(job.get("steps") or [], start=1):
                    if "run" not in step:
                        continue
                    script = Path(scratch) / f"{path.stem}.{job_id}.step{number}.sh"
                    body = re.sub(r"\$\{\{.*?\}\}", "EXPRESSION", step["run"])
                    script.write_text("#!/usr/bin/env bash\nset -e\n" + body)
                    for line in shellcheck([script]):
                        where = f"{_relative(path)}: job {job_id}, step {number}"
                        problems.append(f"{where} ({step.get('name', 'run')}): {line}")
    return problems


def shellcheck(paths: Iterable[Path]) -> list[str]:
    paths = list(paths)
    if not paths:
        return []
    done = _run([_tool("shellcheck"), "--format", "gcc", "--shell", "bash", *map(str, paths)])
    if done.returncode == 0:
        return []
    return (done.stdout + done.stderr).strip().splitlines()


def manifests(paths: Iterable[Path]) -> list[str]:
    """Each YAML document: a custom resource against deploy/schemas/<group>_<kind>.json, any
    other kind against Kubernetes' own schema."""
    import jsonschema
    import kubernetes_validate
    import yaml

    problems = []
    for path in paths:
        for number, document in enumerate(yaml.safe_load_all(path.read_text()), start=1):
            if not document:
                continue
            where = f"{_relative(path)} (document {number}, {document.get('kind')})"
            group = str(document.get("apiVersion", "")).split("/")[0]
            custom = SCHEMAS / f"{group}_{str(document.get('kind', '')).lower()}.json"
            if "." in group and not group.endswith("k8s.io"):
                if not custom.is_file():
                    problems.append(f"{where}: no schema {_relative(custom)} for this resource")
                    continue
                schema = json.loads(custom.read_text())
                errors = jsonschema.Draft7Validator(schema).iter_errors(document)
                problems += [f"{where}: {_path(e.absolute_path)}: {e.message}" for e in errors]
                problems += _inline_pod_specs(document, schema, where)
                continue
            try:
                kubernetes_validate.validate(document, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(f"{where}: {_path(error.path)}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                problems.append(f"{where}: {error}")
    return problems


def _inline_pod_specs(document: dict, schema: dict, where: str) -> list[str]:
    """A custom resource's inline PodSpec (the schema's x-podspec paths): its fields other than
    the resource's own, validated as a Pod's spec against Kubernetes' schema."""
    import kubernetes_validate

    problems = []
    for keys in schema.get("x-podspec", []):
        part, own = document, schema
        for key in keys:
            part = part.get(key) or {}
            own = own["properties"][key]
            if "$ref" in own:
                own = schema["definitions"][own["$ref"].rsplit("/", 1)[1]]
        pod_spec = {k: v for k, v in part.items() if k not in own.get("properties", {})}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": pod_spec}
        try:
            kubernetes_validate.validate(pod, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            at = ".".join([*keys, *map(str, list(error.path)[1:])])
            problems.append(f"{where}: {at}: {error.message}")
    return problems


def _path(parts: Iterable[object]) -> str:
    return ".".join(str(p) for p in parts) or "(top)"


def secrets(paths: Iterable[Path]) -> list[str]:
    paths = [Path(p).resolve() for p in paths]
    if not paths:
        return []
    # detect-secrets skips files outside its working directory: run it in their common folder.
    base = Path(os.path.commonpath(paths))
    base = base.parent if base.is_file() else base
    # --all-files: exactly these paths (by default it skips files git does not track yet)
    argv = [_tool("detect-secrets"), "scan", "--all-files", "--exclude-files", NOT_SECRET_FILES]
    argv += ["--exclude-lines", NOT_SECRET_LINES, *(str(p.relative_to(base)) for p in paths)]
    done = subprocess.run(argv, cwd=base, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return [f"detect-secrets failed: {done.stderr.strip()[-2000:]}"]
    found = json.loads(done.stdout)["results"]
    return [
        f"{_relative(base / name)}:{hit['line_number']}: {hit['type']}"
        for name, hits in found.items()
        for hit in hits
    ]


def _tracked() -> list[Path]:
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    if listed.returncode != 0:  # not a git checkout (an unpacked source tree)
        return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    return [ROOT / name for name in listed.stdout.split("\0") if name and (ROOT / name).is_file()]


def repository_files() -> dict[str, list[Path]]:
    """What each check covers in this repository."""
    deploy = ROOT / "deploy"
    base = sorted((deploy / "k8s" / "base").glob("*.yaml"))
    return {
        "dockerfiles": sorted([*deploy.glob("*.Dockerfile"), *deploy.glob("**/Dockerfile")]),
        "workflows": sorted((ROOT / ".github" / "workflows").glob("*.yml")),
        "scripts": sorted(deploy.glob("**/*.sh")),
        "manifests": [p for p in base if p.name != "kustomization.yaml"],
        "overlays": sorted(
            p.parent for p in (deploy / "k8s" / "overlays").glob("*/kustomization.yaml")
        ),
        "tracked": _tracked(),
    }


def overlays(folders: Iterable[Path]) -> list[str]:
    """Each Kustomize overlay rendered (`kubectl kustomize`, kustomize built in) and its output
    checked as manifests. Without kubectl on PATH they cannot be rendered: a warning says so
    (the base's files are still checked one by one)."""
    folders = list(folders)
    if not folders:
        return []
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # kustomize is not on PyPI: a machine without kubectl cannot render
        for folder in folders:
            print(f"warning: {_relative(folder)} not rendered: kubectl is not on PATH")
        return []
    problems = []
    with tempfile.TemporaryDirectory(prefix="portside-overlay-") as scratch:
        for folder in folders:
            done = _run([kubectl, "kustomize", str(folder)])
            if done.returncode != 0:
                problems.append(f"{_relative(folder)}: kustomize: {done.stderr.strip()[-1000:]}")
                continue
            rendered = Path(scratch) / f"{folder.name}.yaml"
            rendered.write_text(done.stdout)
            label = f"{_relative(folder)} (rendered)"
            problems += [p.replace(str(rendered), label) for p in manifests([rendered])]
    return problems


def check_repository() -> list[str]:
    files = repository_files()
    return [
        *hadolint(files["dockerfiles"]),
        *workflows(files["workflows"]),
        *shellcheck(files["scripts"]),
        *manifests(files["manifests"]),
        *overlays(files["overlays"]),
        *secrets(files["tracked"]),
    ]


def main() -> int:
    problems = check_repository()
    for problem in problems:
        print(problem)
    files = repository_files()
    counts = ", ".join(f"{len(v)} {k}" for k, v in files.items())
    print(f"deploy checks: {len(problems)} problem(s) in {counts}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
