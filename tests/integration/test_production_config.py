"""deploy/feast/feature_store.yaml against the local PostgreSQL (SQL registry) and Redis, and the
production profile (deploy/profiles/production.yaml) that compile/submit/schedule take."""

from __future__ import annotations

import os
import re
import uuid
from datetime import timedelta

import pytest
from conftest import (
    BIN,
    DATA_END,
    ROOT,
    assert_same_values,
    make_workspace,
    run_cli,
    run_command,
)
from test_materialize import ALL_FEATURES, _users, offline_at, online

from portside.components.features.materialize import materialize_incremental

pytestmark = pytest.mark.integration
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture
def production_workspace(workspace, tmp_path, monkeypatch):
    import psycopg
    import redis

    name = f"portside_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    ws = make_workspace(tmp_path, sources=workspace.sources)
    config = (ROOT / "deploy" / "feast" / "feature_store.yaml").read_text()
    # A project of its own keeps the test's Redis keys apart from anything else.
    (ws.repo / "feature_store.yaml").write_text(
        config.replace("project: portside", f"project: {name}")
    )
    monkeypatch.setenv("FEAST_REGISTRY_URL", f"{POSTGRES}/{name}")
    monkeypatch.setenv("FEAST_REDIS_CONNECTION", "127.0.0.1:6379")
    yield ws
    client = redis.Redis(host="127.0.0.1", port=6379)
    for key in client.scan_iter(match=f"*{name}*".encode()):
        client.delete(key)
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_production_config_applies_materializes_and_serves(production_workspace):
    import psycopg

    ws = production_workspace
    run_cli([str(BIN / "feast"), "apply"], cwd=ws.repo, env=dict(os.environ))
    registry_db = os.environ["FEAST_REGISTRY_URL"].rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={registry_db}") as db:
        (views,) = db.execute("SELECT count(*) FROM feature_views").fetchone()
    assert views == 2  # the registry really is in PostgreSQL

    moment = DATA_END - timedelta(days=6)
    # Feast's semantics, so the Redis state can be compared with Feast's own offline join
    done = materialize_incremental(ws.repo, moment, progress=False, mode="feast")
    assert all(v.rows > 0 for v in done)
    users = _users(ws, n=200)
    served = online(ws.repo, users)  # from Redis
    assert_same_values(served, offline_at(ws.repo, users, moment), ALL_FEATURES)
    assert served["credit_limit"].notna().sum() > 100


PROFILE = ROOT / "deploy" / "profiles" / "production.yaml"


def test_production_profile_loads_with_in_image_paths():
    from portside.pipelines.profile import IN_IMAGE_REPO, load_profile

    profile = load_profile(PROFILE, environ={})
    assert profile.image.feature_repo == IN_IMAGE_REPO
    assert profile.registry.tracking_uri.startswith("https://")
    assert profile.vertex.service_account.endswith(".iam.gserviceaccount.com")
    # the image puts the repo, with the production feature_store.yaml, where the profile says
    dockerfile = (ROOT / "deploy" / "component.Dockerfile").read_text()
    assert f"COPY feature_repo {IN_IMAGE_REPO}\n" in dockerfile
    assert f"COPY deploy/feast/feature_store.yaml {IN_IMAGE_REPO}/feature_store.yaml" in dockerfile


def test_environment_overrides_the_profile_when_loaded():
    from portside.pipelines.profile import load_profile

    environ = {
        "PORTSIDE_REGISTRY__TRACKING_URI": "http://mlflow.other:5000",
        "PORTSIDE_VERTEX__REGION": "us-east1",
        "PORTSIDE_IMAGE": "not-a-section-override:1",  # the lineage variable, ignored here
    }
    profile = load_profile(PROFILE, environ=environ)
    assert profile.registry.tracking_uri == "http://mlflow.other:5000"
    assert profile.vertex.region == "us-east1"
    assert profile.pipeline_defaults().vertex_location == "us-east1"


CONTAINER_LOCAL = ["", "sqlite:///data/mlflow/mlflow.db", "file:///tmp/mlruns", "mlruns"]


@pytest.mark.parametrize("tracking_uri", CONTAINER_LOCAL)
def test_a_container_local_registry_is_refused_naming_the_setting(tracking_uri):
    from portside.components.errors import ConfigurationError
    from portside.pipelines.profile import load_profile

    environ = {"PORTSIDE_REGISTRY__TRACKING_URI": tracking_uri}
    with pytest.raises(ConfigurationError, match=r"production\.yaml: registry\.tracking_uri"):
        load_profile(PROFILE, environ=environ)


@pytest.mark.parametrize("tracking_uri", CONTAINER_LOCAL)
def test_vertex_needs_a_shared_tracking_server_for_the_runs(tracking_uri):
    from portside.components.errors import ConfigurationError
    from portside.pipelines.profile import load_profile

    # Vertex holds the models, but train's and evaluate's MLflow runs would stay in the pod.
    environ = {"PORTSIDE_REGISTRY__KIND": "vertex", "PORTSIDE_REGISTRY__TRACKING_URI": tracking_uri}
    with pytest.raises(
        ConfigurationError, match=r"production\.yaml: registry\.tracking_uri: "
    ) as e:
        load_profile(PROFILE, environ=environ)
    assert "train's and evaluate's MLflow runs would vanish with the pod" in str(e.value)
    shared = {**environ, "PORTSIDE_REGISTRY__TRACKING_URI": "https://mlflow.example"}
    assert load_profile(PROFILE, environ=shared).pipeline_defaults().registry == "vertex"


@pytest.mark.parametrize("kind", ["mlflow", "vertex"])
def test_a_profile_without_a_tracking_uri_is_refused(tmp_path, kind):
    import yaml

    from portside.components.errors import ConfigurationError
    from portside.pipelines.profile import load_profile

    base = yaml.safe_load(PROFILE.read_text())
    base["registry"] = {"kind": kind, "model_name": "m"}  # tracking_uri left out
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigurationError, match=r"profile\.yaml: registry\.tracking_uri: "):
        load_profile(path, environ={})


@pytest.mark.parametrize("command", ["compile", "submit", "schedule"])
def test_compile_submit_and_schedule_refuse_vertex_without_a_tracking_uri(tmp_path, command):
    env = {
        **os.environ,
        "PORTSIDE_REGISTRY__KIND": "vertex",
        "PORTSIDE_REGISTRY__TRACKING_URI": "",
    }
    rows = ["--entity-rows", "gs://b/rows.parquet", "--work-dir", str(tmp_path)]
    args = {
        "compile": ["-o", str(tmp_path / "training.yaml")],
        "submit": [*rows, "--dry-run"],
        "schedule": [*rows, "--cron", "0 3 * * *"],
    }[command]
    done = run_command([str(BIN / "portside"), command, "--profile", str(PROFILE), *args], env=env)
    assert done.returncode == 1, done.stderr
    assert (
        "production.yaml: registry.tracking_uri: tracking_uri '' is inside the task's container"
        in done.stderr
    )
    assert not (tmp_path / "training.yaml").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image: {feature_repo: feature_repo}", "image.feature_repo: 'feature_repo' must be an"),
        ("registry: {kind: mlflow, tracking_uri: https://m, colour: blue}", "registry.colour"),
        ("feast: {registry_url: ../data/feast/registry.db}", "feast.registry_url"),
        ("feast: {sources: ''}", "feast.sources: empty; set it to where the offline sources"),
        ("- a list", "a mapping of sections"),
    ],
)
def test_bad_profiles_name_the_file_and_field(tmp_path, text, message):
    import yaml

    from portside.components.errors import ConfigurationError
    from portside.pipelines.profile import load_profile

    base = yaml.safe_load(PROFILE.read_text())
    path = tmp_path / "profile.yaml"
    change = yaml.safe_load(text)
    if isinstance(change, dict):
        for section, values in change.items():
            base[section] = {**base[section], **values}
        path.write_text(yaml.safe_dump(base))
    else:
        path.write_text(text)
    with pytest.raises(ConfigurationError, match=re.escape(message)) as error:
        load_profile(path, environ={})
    assert str(path) in str(error.value)


def test_compile_refuses_a_container_local_registry(tmp_path):
    out = tmp_path / "training.yaml"
    env = {**os.environ, "PORTSIDE_REGISTRY__TRACKING_URI": "sqlite:///mlflow.db"}
    done = run_command(
        [str(BIN / "portside"), "compile", "--profile", str(PROFILE), "-o", str(out)], env=env
    )
    assert done.returncode == 1
    assert "registry.tracking_uri: tracking_uri 'sqlite:///mlflow.db'" in done.stderr
    assert not out.exists()


def test_the_source_location_is_compiled_onto_every_task(tmp_path):
    import yaml

    from portside.components.registry import PIPELINE_ORDER
    from portside.pipelines.compile import compile_pipeline
    from portside.pipelines.profile import load_profile

    profile = load_profile(PROFILE, environ={"PORTSIDE_FEAST__SOURCES": "bigquery://proj.feast"})
    assert profile.feast.sources == "bigquery://proj.feast"
    spec = yaml.safe_load(compile_pipeline(tmp_path / "training.yaml", profile).read_text())
    executors = spec["deploymentSpec"]["executors"]
    for name in PIPELINE_ORDER:
        env = {e["name"]: e["value"] for e in executors[f"exec-{name}"]["container"]["env"]}
        assert env["PORTSIDE_FEATURE_SOURCES"] == "bigquery://proj.feast", name


def test_a_profile_without_a_source_location_is_refused(tmp_path):
    import yaml

    from portside.components.errors import ConfigurationError
    from portside.pipelines.profile import load_profile

    base = yaml.safe_load(PROFILE.read_text())
    del base["feast"]["sources"]
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ConfigurationError, match=r"profile\.yaml: feast\.sources: Field required"):
        load_profile(path, environ={})
