"""The `push` component: a real MLflow registry (SQLite file) with real TensorFlow models, the
`portside models` commands, crash safety under SIGKILL, and Vertex AI through the real
google-cloud-aiplatform client against a loopback endpoint.

One MLflow database serves the module (creating one costs seconds); each test uses its own
registered model name.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, ROOT, run_command, run_component, write_validation_summary
from vertex_loopback import Loopback, ModelRegistry

from components.common import model_io
from components.errors import ConfigurationError, GateFailed, InputDataError
from components.lineage import content_hash
from components.push.registry import COMPLETE_TAG, HASH_TAG, Registry, is_complete
from components.push.run import run as push
from components.push.spec import DEFAULT_VERTEX_SERVING_IMAGE

pytestmark = pytest.mark.integration

KILL_ITERATIONS = 20


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture(scope="module")
def model(training_set, db, tmp_path_factory):
    """A trained model and the evaluation that blessed it."""
    from components.evaluate.run import run as evaluate
    from components.train.run import run as train

    root = tmp_path_factory.mktemp("model")
    write_validation_summary(root / "validation", passed=True)
    args = (str(training_set), str(root / "validation"))
    train(*args, str(root / "model"), epochs=2, tracking_uri=str(db))
    result = evaluate(str(root / "model"), *args, str(root / "evaluation"), tracking_uri=str(db))
    assert result.blessed, result.reasons
    return root / "model", root / "evaluation"


@pytest.fixture(scope="module")
def rows(training_set):
    return pd.read_parquet(training_set / "training_set.parquet").tail(5)


def _variant(model, root: Path, tag: str) -> tuple[Path, Path]:
    """The same model with one extra file: new content, with a blessing for that content."""
    model_dir, evaluation = model
    variant, blessed = root / f"model-{tag}", root / f"evaluation-{tag}"
    shutil.copytree(model_dir, variant)
    (variant / "variant.txt").write_text(tag)
    shutil.copytree(evaluation, blessed)
    blessing = json.loads((blessed / "blessing.json").read_text())
    blessing["model_content_hash"] = content_hash(variant)
    (blessed / "blessing.json").write_text(json.dumps(blessing))
    return variant, blessed


def _push(model_dir, evaluation, out, db, name):
    return push(str(model_dir), str(evaluation), str(out), model_name=name, tracking_uri=str(db))


def assert_consistent(db: Path, name: str, rows: pd.DataFrame, loaded: set[str]) -> None:
    """Complete versions hold all their files; the champion is complete and predicts."""
    registry = Registry(str(db), name)
    complete = [v for v in registry.versions() if is_complete(v)]
    hashes = [v.tags[HASH_TAG] for v in complete]
    assert len(hashes) == len(set(hashes)), f"duplicate complete versions: {hashes}"
    with tempfile.TemporaryDirectory() as scratch:
        for version in complete:
            files = registry.files(version, scratch)
            assert content_hash(files) == version.tags[HASH_TAG], f"v{version.version} files"
        champion = registry.champion()
        if champion is None:
            return
        assert is_complete(champion), f"champion v{champion.version} is not complete"
        assert registry.history()[-1] == str(champion.version)
        if str(champion.version) not in loaded:  # loading a SavedModel costs ~1 s
            scores = model_io.predict(registry.files(champion, scratch), rows)
            assert np.all((scores >= 0) & (scores <= 1)), scores
            loaded.add(str(champion.version))


def test_push_registers_one_complete_version_and_moves_the_champion(model, rows, db, tmp_path):
    model_dir, evaluation = model
    first = _push(model_dir, evaluation, tmp_path / "p1", db, "reg")
    assert (first.version, first.reused, first.previous_champion) == ("1", False, None)
    assert json.loads((tmp_path / "p1" / "pushed.json").read_text())["version"] == "1"
    registry = Registry(str(db), "reg")
    (version,) = registry.versions()
    assert version.tags[HASH_TAG] == content_hash(model_dir) == first.content_hash
    assert version.tags[COMPLETE_TAG] == "true"
    assert registry.aliases() == {"champion": "1"}
    with tempfile.TemporaryDirectory() as scratch:
        stored = registry.files(version, scratch)
        assert np.array_equal(model_io.predict(stored, rows), model_io.predict(model_dir, rows))

    again = _push(model_dir, evaluation, tmp_path / "p2", db, "reg")
    assert (again.version, again.reused) == ("1", True)
    assert [v.version for v in registry.versions()] == [version.version]
    assert_consistent(db, "reg", rows, set())


def test_push_needs_a_blessing_of_this_very_model(model, db, tmp_path):
    model_dir, evaluation = model
    other, _ = _variant(model, tmp_path, "other")
    with pytest.raises(GateFailed, match="blesses model content"):
        _push(other, evaluation, tmp_path / "p", db, "bless")
    with pytest.raises(InputDataError, match="blessing.json: not found"):
        _push(model_dir, tmp_path, tmp_path / "p", db, "bless")
    with pytest.raises(InputDataError, match="feature_spec.json"):
        _push(tmp_path, evaluation, tmp_path / "p", db, "bless")
    assert Registry(str(db), "bless").versions() == []


def test_interrupted_push_is_repaired_not_duplicated(model, rows, db, tmp_path, monkeypatch):
    model_dir, evaluation = model

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    # interrupted after the version was created, before it was marked complete
    with monkeypatch.context() as patch:
        patch.setattr(Registry, "_mark_complete", crash)
        with pytest.raises(KeyboardInterrupt):
            _push(model_dir, evaluation, tmp_path / "p1", db, "repair")
    registry = Registry(str(db), "repair")
    (orphan,) = registry.versions()
    assert not is_complete(orphan) and registry.champion() is None
    with pytest.raises(ConfigurationError, match="not marked complete"):
        registry.promote(str(orphan.version))
    repaired = _push(model_dir, evaluation, tmp_path / "p2", db, "repair")
    assert (repaired.version, repaired.reused) == ("1", True)
    assert registry.aliases() == {"champion": "1"}

    # interrupted after the alias moved, before the history was written: the alias wins
    variant, blessed = _variant(model, tmp_path, "v2")
    with monkeypatch.context() as patch:
        patch.setattr(registry.client.__class__, "set_registered_model_tag", crash)
        with pytest.raises(KeyboardInterrupt):
            _push(variant, blessed, tmp_path / "p3", db, "repair")
    assert registry.aliases() == {"champion": "2"}
    assert registry.history() == ["1", "2"]
    assert registry.rollback() == ("2", "1")
    assert_consistent(db, "repair", rows, set())


def _portside(*args: str, db: Path) -> subprocess.CompletedProcess:
    command = [str(BIN / "portside"), "models", *args, "--model-name", "cli"]
    return run_command([*command, "--tracking-uri", str(db)])


def test_models_list_promote_rollback(model, db, tmp_path):
    model_dir, evaluation = model
    _push(model_dir, evaluation, tmp_path / "p1", db, "cli")
    _push(*_variant(model, tmp_path, "b"), tmp_path / "p2", db, "cli")
    registry = Registry(str(db), "cli")
    assert registry.history() == ["1", "2"]

    listing = _portside("list", db=db)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line.split() for line in listing.stdout.splitlines()}
    assert lines["1"][1:3] == ["-", "complete"]
    assert lines["2"][1:3] == ["champion", "complete"]
    assert "champion history: 1 -> 2" in listing.stdout

    done = _portside("rollback", db=db)
    assert done.returncode == 0, done.stderr
    assert "v2 -> v1" in done.stdout and registry.aliases() == {"champion": "1"}
    done = _portside("promote", "2", db=db)
    assert done.returncode == 0, done.stderr
    assert registry.aliases() == {"champion": "2"} and registry.history() == ["1", "2"]
    registry.rollback()
    with pytest.raises(ConfigurationError, match="no previous champion"):
        registry.rollback()
    assert registry.aliases() == {"champion": "1"}


# Runs the entrypoint (`components.__main__.main`, what `python -m components` calls) in forked
# children of one process that paid the imports once, so kills land in the push's own work
# (registry reads and writes), not in seconds of module imports. Each stdin line:
# {"argv": [...], "delay": seconds}; each stdout line: how that child ended.
KILLER = r"""
import json, os, signal, sys, time
import components.__main__ as entrypoint
import components.push.run, components.runtime, mlflow.artifacts, mlflow.tracking
import mlflow.store.model_registry.sqlalchemy_store, mlflow.store.tracking.sqlalchemy_store
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    order = json.loads(line)
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        os._exit(entrypoint.main(order["argv"]))
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() - started >= order["delay"]:
            os.kill(pid, signal.SIGKILL)
            done = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    status = done[1]
    print(json.dumps({
        "killed": os.WIFSIGNALED(status),
        "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "seconds": time.monotonic() - started,
    }), flush=True)
"""


def test_push_survives_sigkill_at_random_points(model, rows, db, tmp_path):
    rng = random.Random(20261127)
    name, loaded = "crash", set()
    variants = [_variant(model, tmp_path, "0")]

    def argv(model_dir: Path, evaluation: Path) -> list[str]:
        return [
            *("push", "--model", str(model_dir), "--evaluation", str(evaluation)),
            *("--pushed", str(tmp_path / "pushed"), "--model-name", name),
            *("--tracking-uri", str(db)),
        ]

    killer = subprocess.Popen(
        [sys.executable, "-c", KILLER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def push_and_kill(model_dir: Path, evaluation: Path, delay: float) -> dict:
        order = {"argv": argv(model_dir, evaluation), "delay": delay}
        killer.stdin.write(json.dumps(order) + "\n")
        killer.stdin.flush()
        return json.loads(killer.stdout.readline())

    try:
        assert json.loads(killer.stdout.readline()) == {"ready": True}
        baseline = push_and_kill(*variants[0], delay=120)  # new content, start to exit
        assert baseline["code"] == 0, baseline
        killed = 0
        for i in range(KILL_ITERATIONS):
            if rng.random() < 0.5:
                variants.append(_variant(model, tmp_path, str(i + 1)))
            chosen = variants[-1] if rng.random() < 0.7 else rng.choice(variants)
            # mostly late, where the registry is written; sometimes anywhere
            share = rng.uniform(0.5, 1.1) if rng.random() < 0.7 else rng.uniform(0, 1)
            ended = push_and_kill(*chosen, delay=share * baseline["seconds"])
            assert ended["killed"] or ended["code"] == 0, ended
            killed += ended["killed"]
            assert_consistent(db, name, rows, loaded)
    finally:
        killer.stdin.close()
        killer.wait(timeout=30)

    # the entrypoint as every runtime starts it, not killed
    last = _variant(model, tmp_path, "last")
    done = run_component(*argv(*last))
    assert done.returncode == 0, done.stderr
    champion = Registry(str(db), name).champion()
    assert champion.tags[HASH_TAG] == content_hash(last[0])
    assert_consistent(db, name, rows, loaded)
    assert killed >= KILL_ITERATIONS // 3, f"only {killed} of {KILL_ITERATIONS} pushes were killed"


@pytest.fixture
def vertex():
    """A loopback Vertex AI Model Registry, and anonymous credentials for the client. The
    client's configuration is process-global: it is restored afterwards."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    aiplatform.init(credentials=AnonymousCredentials())
    try:
        with Loopback(ModelRegistry().routes()) as server:
            yield server
    finally:
        vars(initializer.global_config).clear()
        vars(initializer.global_config).update(saved)


def _push_vertex(model, out, server, **overrides):
    params = {
        "registry": "vertex",
        "model_name": "fraud_model",
        "vertex_project": "proj-1",
        "vertex_location": "europe-west4",
        "vertex_artifact_uri": "gs://ml-artifacts/runs/42/model",
        "vertex_api_endpoint": server.url,
        **overrides,
    }
    return push(str(model[0]), str(model[1]), str(out), **params)


def test_vertex_upload_through_the_real_client(model, vertex, tmp_path):
    first = _push_vertex(model, tmp_path / "p1", vertex)
    upload_path = r"/v1/projects/proj-1/locations/europe-west4/models:upload"
    (request,) = vertex.find("POST", upload_path)
    sent = request.body["model"]
    assert sent["displayName"] == "fraud_model"
    assert sent["artifactUri"] == "gs://ml-artifacts/runs/42/model/saved_model"
    assert sent["containerSpec"]["imageUri"] == DEFAULT_VERTEX_SERVING_IMAGE
    assert "champion" in sent["versionAliases"]  # the client adds "default" as well
    assert sent["labels"] == {"content_hash": content_hash(model[0])[:63]}
    assert "parentModel" not in request.body
    assert first.version == "1" and first.location.endswith("/models/1000")

    second = _push_vertex(model, tmp_path / "p2", vertex)
    request = vertex.find("POST", upload_path)[-1]
    assert request.body["parentModel"] == first.location
    assert second.version == "2"
    assert json.loads((tmp_path / "p2" / "pushed.json").read_text())["registry"] == "vertex"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"vertex_artifact_uri": ""}, "needs vertex_artifact_uri"),
        ({"vertex_artifact_uri": "/tmp/model"}, "must be a gs:// folder"),
        ({"vertex_artifact_uri": "s3://bucket/model"}, "must be a gs:// folder"),
        ({"vertex_project": ""}, "needs vertex_project"),
    ],
)
def test_vertex_misconfiguration_fails_before_any_request(
    model, vertex, tmp_path, overrides, message
):
    with pytest.raises(ConfigurationError, match=message):
        _push_vertex(model, tmp_path / "p", vertex, **overrides)
    assert vertex.requests == []
    assert not (tmp_path / "p").exists()
