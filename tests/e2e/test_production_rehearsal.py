"""The production profile rehearsed here, as the image runs it.

The pipeline is compiled with `portside compile --profile deploy/profiles/production.yaml`
(overridden from the environment, as a deploy job would), then the COMPILED IR is run with
kfp.local (kfp.components.load_component_from_file, tests/e2e/rehearsal_runner.py): every
task in an empty working directory with the IR's container env, the project imported only from
the built wheel in the image's environment, the feature repo at its in-image layout
(`<tmp>/opt/portside` stands in for `/opt/portside`) with the image's feature_store.yaml, the
offline sources outside the image (`<tmp>/object-storage/sources` stands in for a bucket; the
repo applied with PORTSIDE_FEATURE_SOURCES and the profile's `feast.sources` set to it, as a
deploy step does), the Feast registry in PostgreSQL, the online store in Redis, and MLflow as a
real `mlflow server` (PostgreSQL backend). Two runs: the second is judged against the champion
the first pushed.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, DATA_END, ROOT, run_cli
from image_env import image_env, image_environ, run_checked  # noqa: F401
from mlflow_server import create_database, drop_database, mlflow_server

pytestmark = pytest.mark.integration
RUNNER = Path(__file__).with_name("rehearsal_runner.py")
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS = "127.0.0.1:6379"


@pytest.fixture(scope="module")
def mlflow_server_url(tmp_path_factory):
    """A real `mlflow server` on PostgreSQL; its start can take minutes on a loaded machine."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow_server"), timeout=400) as url:
        yield url


@pytest.fixture
def feast_project():
    """A PostgreSQL database for the SQL registry and a Feast project name of its own (which
    keeps the Redis keys apart); both removed afterwards."""
    import redis

    database = create_database("feast_rehearsal")
    yield database, database
    client = redis.Redis(host="127.0.0.1", port=6379)
    for key in client.scan_iter(match=f"*{database}*".encode()):
        client.delete(key)
    drop_database(database)


def _in_image_layout(prefix: Path, project: str) -> Path:
    """What deploy/component.Dockerfile puts under /opt/portside: the repo, no data."""
    repo = prefix / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("__pycache__"))
    config = (ROOT / "deploy" / "feast" / "feature_store.yaml").read_text()
    (repo / "feature_store.yaml").write_text(
        config.replace("project: portside", f"project: {project}")
    )
    return repo


def _registered_paths(repo: Path, feast_env: dict[str, str], monkeypatch) -> set[str]:
    """The offline source paths the SQL registry holds for the repo's batch views."""
    from feast import FeatureStore

    for name, value in feast_env.items():  # the image's feature_store.yaml reads them
        monkeypatch.setenv(name, value)
    store = FeatureStore(repo_path=str(repo))
    return {view.batch_source.path for view in store.list_feature_views()}


def _run_compiled(venv: Path, template: Path, root: Path, **parameters) -> dict:
    """One pipeline run of the compiled IR, from an empty directory, with nothing but the
    image environment: no source tree, no FEAST_/PORTSIDE_ variables of this process."""
    cwd = root / "cwd"
    cwd.mkdir(parents=True)
    env = {k: v for k, v in image_environ().items() if not k.startswith(("FEAST_", "PORTSIDE_"))}
    pairs = [f"{k}={json.dumps(v)}" for k, v in parameters.items()]
    report = root / "report.json"
    args = [str(venv / "bin" / "python"), str(RUNNER), str(template), str(root / "kfp")]
    done = run_checked([*args, str(root / "tasks"), str(report), *pairs], cwd=cwd, env=env)
    result = json.loads(report.read_text())
    assert result["error"] is None, done.stdout[-6000:]
    (blessing,) = (root / "kfp").rglob("blessing.json")
    result["blessing"] = json.loads(blessing.read_text())
    pushed = list((root / "kfp").rglob("pushed.json"))
    result["pushed"] = json.loads(pushed[0].read_text()) if pushed else None
    return result


def test_compiled_pipeline_runs_as_the_image_runs_it(
    image_env,  # noqa: F811
    mlflow_server_url,
    workspace,
    feast_project,
    tmp_path,
    monkeypatch,
):
    from mlflow.tracking import MlflowClient

    started = time.perf_counter()
    database, project = feast_project
    prefix = tmp_path / "opt" / "portside"  # stands in for /opt/portside
    repo = _in_image_layout(prefix, project)
    # Outside the image, where nothing defaults to: the registry's paths are the only way there.
    sources = tmp_path / "object-storage" / "sources"
    shutil.copytree(workspace.sources, sources)
    feast_env = {"FEAST_REGISTRY_URL": f"{POSTGRES}/{database}", "FEAST_REDIS_CONNECTION": REDIS}
    # The deploy step: apply the image's repo with the profile's source location.
    apply_env = image_environ(**feast_env, PORTSIDE_FEATURE_SOURCES=str(sources))
    run_checked([str(image_env / "bin" / "feast"), "apply"], repo, apply_env)
    assert _registered_paths(repo, feast_env, monkeypatch) == {
        str(sources / "user_profiles.parquet"),
        str(sources / "user_daily_aggregates.parquet"),
    }
    assert not (prefix / "data").exists()

    template = tmp_path / "training.yaml"
    overrides = {
        "PORTSIDE_IMAGE__FEATURE_REPO": str(repo),
        "PORTSIDE_IMAGE__EXPECTATION_SUITE": str(repo / "expectations" / "fraud_model_v1.json"),
        "PORTSIDE_FEAST__REGISTRY_URL": feast_env["FEAST_REGISTRY_URL"],
        "PORTSIDE_FEAST__REDIS_CONNECTION": REDIS,
        "PORTSIDE_FEAST__SOURCES": str(sources),
        "PORTSIDE_REGISTRY__TRACKING_URI": mlflow_server_url,
    }
    profile = ROOT / "deploy" / "profiles" / "production.yaml"
    run_cli(
        [str(BIN / "portside"), "compile", "--profile", str(profile), "-o", str(template)],
        cwd=tmp_path,
        env=image_environ(**overrides, PATH=f"{BIN}:{image_environ()['PATH']}"),
    )
    common = {
        "entity_rows_uri": str(sources / "transactions.parquet"),
        "as_of": DATA_END.isoformat(),
        "epochs": 2,
    }
    first = _run_compiled(image_env, template, tmp_path / "run1", **common, seed=7)
    # Another seed, so a new version; a generous margin, so push runs and moves the champion.
    second = _run_compiled(
        image_env, template, tmp_path / "run2", **common, seed=8, max_regression=1.0
    )
    seconds = time.perf_counter() - started

    for run in (first, second):
        assert str(image_env) in run["project_from"]  # the wheel, not the source tree
        components = [t["component"].removeprefix("comp-") for t in run["tasks"]]
        assert components == ["features", "validate", "train", "evaluate", "push"]
        for task in run["tasks"]:
            assert task["env"]["FEAST_REGISTRY_URL"] == feast_env["FEAST_REGISTRY_URL"]
            assert task["env"]["PORTSIDE_FEATURE_SOURCES"] == str(sources)
            assert task["left_in_cwd"] == [], task  # nothing written into the container's cwd
    assert first["blessing"]["first_run"] is True and first["blessing"]["champion"] is None
    assert first["pushed"]["version"] == "1"
    # The second run was judged against the champion the first one pushed, on the server.
    assert second["blessing"]["champion"]["version"] == first["pushed"]["version"]
    assert second["pushed"]["version"] == "2"
    champion = MlflowClient(mlflow_server_url).get_model_version_by_alias("fraud_model", "champion")
    assert champion.version == "2"
    print(
        f"\nproduction rehearsal: 2 runs of the compiled pipeline in {seconds:.1f} s",
        file=sys.stderr,
    )
