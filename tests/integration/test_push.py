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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    BIN,
    MODEL_NAME,
    ROOT,
    run_command,
    run_component,
    write_validation_summary,
)
from mlflow_server import mlflow_server_url  # noqa: F401  (the fixture)
from vertex_loopback import LOCATION, Loopback, ModelRegistry, ObjectStore

from portside.components.common import model_io
from portside.components.errors import ConfigurationError, GateFailed, InputDataError
from portside.components.lineage import content_hash
from portside.components.push.champion import identity
from portside.components.push.registry import (
    COMPLETE_TAG,
    HASH_TAG,
    HISTORY_TAG,
    Registry,
    RegistryError,
    is_complete,
)
from portside.components.push.run import run as push
from portside.components.push.spec import DEFAULT_VERTEX_SERVING_IMAGE

pytestmark = pytest.mark.integration

KILL_ITERATIONS = 20


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture(scope="module")
def model(training_set, db, tmp_path_factory):
    """A trained model and the evaluation that blessed it."""
    from portside.components.evaluate.run import run as evaluate
    from portside.components.train.run import run as train

    root = tmp_path_factory.mktemp("model")
    write_validation_summary(root / "validation", passed=True)
    args = (str(training_set), str(root / "validation"))
    train(*args, str(root / "model"), epochs=2, tracking_uri=str(db))
    result = evaluate(
        str(root / "model"), *args, str(root / "evaluation"), MODEL_NAME, tracking_uri=str(db)
    )
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


def rebless(evaluation: Path, out: Path, registry, champion: str | None | object = ...) -> Path:
    """The evaluation's (real) blessing, judged against `registry`'s champion: its current one
    unless `champion` names the version (None: first run), as evaluate records it."""
    if champion is ...:
        current = registry.current_champion()
        champion = current and current.version
    blessing = json.loads((evaluation / "blessing.json").read_text())
    blessing["registry"] = identity(registry)
    blessing["champion"] = None if champion is None else {"version": champion}
    out.mkdir(parents=True, exist_ok=True)
    (out / "blessing.json").write_text(json.dumps(blessing))
    return out


def _push(model_dir, evaluation, out, db, name, champion=...):
    """Push as the pipeline does: blessed against the registry's champion of the moment."""
    blessed = rebless(Path(evaluation), Path(f"{out}-blessing"), Registry(str(db), name), champion)
    return push(str(model_dir), str(blessed), str(out), model_name=name, tracking_uri=str(db))


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
        push(str(model_dir), str(tmp_path), str(tmp_path / "p"), model_name="bless")
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
    client_class = registry.client.__class__
    set_tag = client_class.set_registered_model_tag

    def crash_on_history(self, name, key, value):
        # only the history write: the lock's release (also a tag) still happens, as the
        # `finally` of a process that is not killed would; SIGKILLs are tested below
        if key == HISTORY_TAG:
            raise KeyboardInterrupt("killed")
        return set_tag(self, name, key, value)

    with monkeypatch.context() as patch:
        patch.setattr(client_class, "set_registered_model_tag", crash_on_history)
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


def test_blessing_must_say_which_champion_it_was_judged_against(model, db, tmp_path):
    model_dir, evaluation = model
    older = json.loads((evaluation / "blessing.json").read_text())
    del older["champion"], older["registry"]  # as evaluate wrote it before compare-and-swap
    (tmp_path / "older").mkdir()
    (tmp_path / "older" / "blessing.json").write_text(json.dumps(older))
    args = (str(model_dir), str(tmp_path / "older"), str(tmp_path / "p"))
    with pytest.raises(InputDataError, match=r"blessing.json: no 'registry' or 'champion' field"):
        push(*args, model_name="older", tracking_uri=str(db))
    other = rebless(evaluation, tmp_path / "other", Registry(str(db), "someone-else"), None)
    with pytest.raises(GateFailed, match="judged against the champion of .*someone-else"):
        push(
            str(model_dir),
            str(other),
            str(tmp_path / "p"),
            model_name="older",
            tracking_uri=str(db),
        )
    assert Registry(str(db), "older").versions() == []


def test_push_moves_the_champion_only_if_it_is_the_one_evaluated_against(model, db, tmp_path):
    first = _push(*_variant(model, tmp_path, "a"), tmp_path / "p1", db, "cas")
    b, c = _variant(model, tmp_path, "b"), _variant(model, tmp_path, "c")
    registry = Registry(str(db), "cas")
    judged_b = rebless(b[1], tmp_path / "bless-b", registry)  # both judged against v1
    judged_c = rebless(c[1], tmp_path / "bless-c", registry)
    second = push(
        str(b[0]), str(judged_b), str(tmp_path / "p2"), model_name="cas", tracking_uri=str(db)
    )
    assert (first.version, second.version, second.previous_champion) == ("1", "2", "1")
    before = _registry_state(db, "cas")
    refused = "champion changed since evaluation: evaluated against v1, the champion is now v2"
    with pytest.raises(GateFailed, match=f"{refused}; nothing moved"):
        push(str(c[0]), str(judged_c), str(tmp_path / "p3"), model_name="cas", tracking_uri=str(db))
    assert _registry_state(db, "cas") == before and not (tmp_path / "p3").exists()
    # judged against "no champion" (first run) while one exists: refused the same way
    with pytest.raises(GateFailed, match="evaluated against no champion .first run., the champ"):
        _push(*c, tmp_path / "p4", db, "cas", champion=None)
    # the same content as the champion: nothing to move, whatever it was judged against
    again = push(
        str(b[0]), str(judged_b), str(tmp_path / "p5"), model_name="cas", tracking_uri=str(db)
    )
    assert (again.version, again.reused) == ("2", True) and _registry_state(db, "cas") == before


def _registry_state(db, name):
    registry = Registry(str(db), name)
    return (
        [(v.version, dict(v.tags)) for v in registry.versions()],
        registry.aliases(),
        registry.history(),
    )


def test_unreadable_artifact_store_is_an_error_not_other_content(model, db, tmp_path, monkeypatch):
    """A version whose files cannot be read (network, permissions) is not "content differs":
    push stops naming the registry instead of registering the same content again."""
    from mlflow_server import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    model_dir, evaluation = model
    registry = Registry(str(db), "unreadable")
    registry.client.create_registered_model("unreadable")
    tags = {HASH_TAG: content_hash(model_dir)}
    gone = f"mlflow-artifacts://127.0.0.1:{free_port()}/0/run/artifacts"  # nothing listens
    registry.client.create_model_version("unreadable", gone, tags=tags)
    with pytest.raises(RegistryError, match=rf"{registry.tracking_uri}: cannot read {gone}"):
        _push(model_dir, evaluation, tmp_path / "p1", db, "unreadable")
    assert [str(v.version) for v in registry.versions()] == ["1"] and registry.champion() is None

    # files that are simply missing are "not this content": a whole new version is made
    registry.client.create_model_version("unreadable", (tmp_path / "gone").as_uri(), tags=tags)
    monkeypatch.setattr(Registry, "_holds", _holds_except(gone))
    pushed = _push(model_dir, evaluation, tmp_path / "p2", db, "unreadable")
    assert (pushed.version, pushed.reused) == ("3", False)


def _holds_except(unreadable: str):
    """Registry._holds, raising for the one source this test made unreadable on purpose."""
    original = Registry._holds

    def holds(self, source, digest):
        return False if source == unreadable else original(self, source, digest)

    return holds


# Runs commands (`components.__main__.main`, what `python -m portside.components` calls, or the
# `portside` CLI) in forked children of one process that paid the imports once, all at once,
# so they race for the registry and kills land in their own work, not in seconds of imports.
# Each stdin line: {"orders": [{"cli", "argv", "delay", "log"}, ...]}; each stdout line: how
# each child ended, killed at `delay` seconds if still running.
FORKER = r"""
import json, os, signal, sys, time
import portside.components.__main__ as entrypoint
import portside.pipelines.cli
import portside.components.push.run, portside.components.runtime, mlflow.artifacts, mlflow.tracking
import mlflow.store.model_registry.sqlalchemy_store, mlflow.store.tracking.sqlalchemy_store
import mlflow.store.model_registry.rest_store, mlflow.store.tracking.rest_store
MAINS = {"components": entrypoint.main, "portside": portside.pipelines.cli.main}
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    orders = json.loads(line)["orders"]
    started, children = time.monotonic(), {}
    for i, order in enumerate(orders):
        pid = os.fork()
        if pid == 0:
            log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(log, 1)
            os.dup2(log, 2)
            code = MAINS[order["cli"]](order["argv"])
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        children[pid] = i
    ended = [None] * len(orders)
    while children:
        for pid, i in list(children.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0 and time.monotonic() - started >= orders[i]["delay"]:
                os.kill(pid, signal.SIGKILL)
                done, status = os.waitpid(pid, 0)
            if done:
                del children[pid]
                ended[i] = {
                    "killed": os.WIFSIGNALED(status),
                    "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                    "seconds": time.monotonic() - started,
                    "output": open(orders[i]["log"]).read()[-2000:],
                }
        time.sleep(0.002)
    print(json.dumps(ended), flush=True)
"""


class Forker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", FORKER],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.process.stdout.readline()) == {"ready": True}

    def run(self, orders: list[dict]) -> list[dict]:
        self.process.stdin.write(json.dumps({"orders": orders}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def forker():
    started = Forker()
    yield started
    started.close()


def push_order(
    model_dir: Path, blessed: Path, out: Path, uri: str, name: str, delay: float = 300
) -> dict:
    argv = [
        *("push", "--model", str(model_dir), "--evaluation", str(blessed), "--pushed", str(out)),
        *("--model-name", name, "--tracking-uri", uri, "--no-cache"),
    ]
    return {"cli": "components", "argv": argv, "delay": delay, "log": f"{out}.log"}


def push_round(forker, model, uri, name, root: Path, tags: list[str], delays=None) -> list:
    """Push one variant per tag at once (equal tags: equal content), every blessing judged
    against the champion of the moment, as concurrent pipeline runs would."""
    registry = Registry(uri, name)
    for tag in dict.fromkeys(tags):
        if not (root / f"model-{tag}").exists():
            _variant(model, root, tag)
    orders = []
    for i, tag in enumerate(tags):
        model_dir, evaluation = root / f"model-{tag}", root / f"evaluation-{tag}"
        blessed = rebless(evaluation, root / f"blessed-{tag}-{i}", registry)
        order = push_order(model_dir, blessed, root / f"pushed-{tag}-{i}", uri, name)
        if delays is not None:
            order["delay"] = delays[i]
        orders.append(order)
    return forker.run(orders)


def check_registry(uri: str, name: str, rows: pd.DataFrame, loaded: set[str]) -> Registry:
    """Consistent: no duplicate content, complete versions whole, the champion complete and
    predicting, a history of complete versions ending at it, the lock free."""
    assert_consistent(uri, name, rows, loaded)
    registry = Registry(uri, name)
    complete = {str(v.version) for v in registry.versions() if is_complete(v)}
    history = registry.history()
    assert set(history) <= complete, (history, complete)
    assert all(a != b for a, b in zip(history, history[1:], strict=False)), history
    slots = registry.lock.slots()
    assert all(
        tags.get("portside.lock.released") == "true" or not _alive(tags) for tags in slots.values()
    )
    return registry


def _alive(tags: dict) -> bool:
    from portside.components.push.lock import _free

    return not _free(tags, time.time())


def exercise_registry(forker, model, uri: str, rows, root: Path) -> None:
    """Concurrent pushes of same and different content, then SIGKILLs among them, then
    concurrent promotes: the registry ends with exactly the expected versions and history."""
    name, loaded = "race", set()
    registry = Registry(uri, name)
    (first,) = push_round(forker, model, uri, name, root, ["base"])
    assert first["code"] == 0, first["output"]

    tags = ["same"] * 3 + [f"new-{i}" for i in range(3)]
    ended = push_round(forker, model, uri, name, root, tags)
    champion = registry.current_champion()
    won = {t for t in tags if content_hash(root / f"model-{t}") == champion.content_hash}
    assert len(won) == 1, (won, [e["output"] for e in ended])
    # exactly one content moved the champion; pushes of it succeed, the others are refused
    assert [e["code"] for e in ended] == [0 if t in won else 3 for t in tags], ended
    refused = f"evaluated against v1, the champion is now v{champion.version}"
    assert all(refused in e["output"] for e, t in zip(ended, tags, strict=True) if t not in won)
    assert registry.history() == ["1", champion.version] and champion.version == "2"
    assert [str(v.version) for v in registry.versions()] == ["1", "2"]
    check_registry(uri, name, rows, loaded)

    rng = random.Random(20261201)
    took = max(e["seconds"] for e in ended)
    tags = ["kill"] * 2 + [f"kill-{i}" for i in range(4)]
    delays = [rng.uniform(0.2, 1.2) * took if i % 2 == 0 else 300 for i in range(6)]
    before = registry.history()
    ended = push_round(forker, model, uri, name, root, tags, delays)
    assert all(e["killed"] or e["code"] in (0, 3) for e in ended), ended
    after = check_registry(uri, name, rows, loaded).history()
    # all were judged against one champion: it moved at most once, to one of these contents
    assert after in (before, [*before, after[-1]]), (before, after)
    if after != before:
        hashes = {content_hash(root / f"model-{t}") for t in tags}
        assert registry.current_champion().content_hash in hashes

    # a killed holder does not block the next push for the lease's two minutes
    (last,) = push_round(forker, model, uri, name, root, ["last"])
    assert last["code"] == 0 and last["seconds"] < 90, last
    assert registry.current_champion().content_hash == content_hash(root / "model-last")
    check_registry(uri, name, rows, loaded)

    # promotes racing: every move lands in the history, in order, none lost
    versions = [str(v.version) for v in registry.versions() if is_complete(v)][-3:]
    before = registry.history()
    orders = [
        {
            "cli": "portside",
            "argv": [
                "models",
                "promote",
                versions[i % 3],
                "--model-name",
                name,
                "--tracking-uri",
                uri,
            ],
            "delay": 300,
            "log": str(root / f"promote-{i}.log"),
        }
        for i in range(6)
    ]
    ended = forker.run(orders)
    assert all(e["code"] == 0 for e in ended), ended
    moves = [e["output"] for e in ended if "->" in e["output"]]
    after = registry.history()
    assert after[: len(before)] == before and len(after) == len(before) + len(moves), (
        before,
        after,
        moves,
    )
    assert after[-1] == registry.aliases()["champion"]
    current, previous = registry.rollback()
    assert (current, previous) == (after[-1], after[-2])
    assert registry.history() == after[:-1] and registry.aliases()["champion"] == after[-2]


def test_concurrent_pushes_and_kills_on_sqlite(forker, model, rows, tmp_path):
    exercise_registry(forker, model, f"sqlite:///{tmp_path / 'race.db'}", rows, tmp_path)


def test_concurrent_pushes_and_kills_on_the_postgresql_mlflow_server(
    forker,
    model,
    rows,
    mlflow_server_url,  # noqa: F811
    tmp_path,
):
    exercise_registry(forker, model, mlflow_server_url, rows, tmp_path)


def test_push_survives_sigkill_at_random_points(forker, model, rows, db, tmp_path):
    rng = random.Random(20261127)
    name, loaded = "crash", set()
    registry = Registry(str(db), name)
    variants = [_variant(model, tmp_path, "0")]

    def push_and_kill(model_dir: Path, evaluation: Path, delay: float, i: int) -> dict:
        blessed = rebless(evaluation, tmp_path / f"blessed-{i}", registry)
        order = push_order(model_dir, blessed, tmp_path / f"pushed-{i}", str(db), name, delay)
        return forker.run([order])[0]

    baseline = push_and_kill(*variants[0], delay=120, i=0)  # new content, start to exit
    assert baseline["code"] == 0, baseline
    # Kill points are shares of the baseline's time; on a loaded machine a push can take longer
    # or shorter than that, so go on (up to 3x the rounds) until enough pushes were killed.
    killed, wanted = 0, KILL_ITERATIONS // 3
    for i in range(3 * KILL_ITERATIONS):
        if i >= KILL_ITERATIONS and killed >= wanted:
            break
        if rng.random() < 0.5:
            variants.append(_variant(model, tmp_path, str(i + 1)))
        chosen = variants[-1] if rng.random() < 0.7 else rng.choice(variants)
        # mostly late, where the registry is written; sometimes anywhere
        share = rng.uniform(0.5, 1.1) if rng.random() < 0.7 else rng.uniform(0, 1)
        ended = push_and_kill(*chosen, delay=share * baseline["seconds"], i=i + 1)
        assert ended["killed"] or ended["code"] == 0, ended
        killed += ended["killed"]
        check_registry(str(db), name, rows, loaded)

    # the entrypoint as every runtime starts it, not killed
    last = _variant(model, tmp_path, "last")
    blessed = rebless(last[1], tmp_path / "blessed-last", registry)
    done = run_component(
        *push_order(last[0], blessed, tmp_path / "pushed-last", str(db), name)["argv"]
    )
    assert done.returncode == 0, done.stderr
    champion = registry.champion()
    assert champion.tags[HASH_TAG] == content_hash(last[0])
    check_registry(str(db), name, rows, loaded)
    assert killed >= wanted, f"only {killed} of {i + 1} pushes were killed"


PROJECT, REGION, STAGED = "proj-1", "europe-west4", "gs://ml-artifacts/runs/42/model"


@dataclass
class VertexLoopback:
    server: Loopback
    registry: ModelRegistry
    storage: ObjectStore


@pytest.fixture
def vertex(monkeypatch):
    """A loopback Vertex AI Model Registry and Cloud Storage, and anonymous credentials for
    the client. The client's configuration is process-global: it is restored afterwards."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform
    from google.cloud.aiplatform import initializer

    saved = dict(vars(initializer.global_config))
    aiplatform.init(credentials=AnonymousCredentials())
    registry, storage = ModelRegistry(), ObjectStore()
    try:
        with Loopback({**registry.routes(), **storage.routes()}) as server:
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
            yield VertexLoopback(server, registry, storage)
    finally:
        vars(initializer.global_config).clear()
        vars(initializer.global_config).update(saved)


def _vertex_registry(vertex: VertexLoopback):
    from portside.components.push.vertex import VertexRegistry

    return VertexRegistry(PROJECT, REGION, vertex.server.url, MODEL_NAME)


VERTEX_PARAMS = {
    "registry": "vertex",
    "model_name": MODEL_NAME,
    "vertex_project": PROJECT,
    "vertex_location": REGION,
}


def _push_vertex(model, out, vertex: VertexLoopback, champion=..., **overrides):
    params = {
        **VERTEX_PARAMS,
        "vertex_artifact_uri": STAGED,
        "vertex_api_endpoint": vertex.server.url,
        **overrides,
    }
    blessed = rebless(Path(model[1]), Path(f"{out}-blessing"), _vertex_registry(vertex), champion)
    return push(str(model[0]), str(blessed), str(out), **params)


def test_vertex_upload_through_the_real_client(model, vertex, tmp_path):
    first = _push_vertex(model, tmp_path / "p1", vertex)
    upload_path = r"/v1/projects/proj-1/locations/europe-west4/models:upload"
    (request,) = vertex.server.find("POST", upload_path)
    sent = request.body["model"]
    assert sent["displayName"] == MODEL_NAME
    assert sent["artifactUri"] == "gs://ml-artifacts/runs/42/model/saved_model"
    assert sent["containerSpec"]["imageUri"] == DEFAULT_VERTEX_SERVING_IMAGE
    assert sent["labels"] == {"content_hash": content_hash(model[0])[:63]}
    assert "parentModel" not in request.body
    assert first.version == "1" and first.location.endswith("/models/1000")
    assert vertex.registry.version("1000", "champion")["versionId"] == "1"

    second = _push_vertex(_variant(model, tmp_path, "2"), tmp_path / "p2", vertex)
    request = vertex.server.find("POST", upload_path)[-1]
    assert request.body["parentModel"] == first.location
    assert second.version == "2" and second.previous_champion == "1"
    assert request.body["model"]["labels"]["previous_champion"] == "1"
    assert json.loads((tmp_path / "p2" / "pushed.json").read_text())["registry"] == "vertex"
    aliases = {v: e["versionAliases"] for v, e in vertex.registry.models["1000"].items()}
    assert aliases == {"1": [], "2": ["champion", "default"]}


def test_vertex_evaluate_compares_against_the_vertex_champion_and_push_swaps_it(
    model, training_set, vertex, db, tmp_path
):
    from portside.components.evaluate.run import run as evaluate

    validation = write_validation_summary(tmp_path / "validation", passed=True)
    _push_vertex(model, tmp_path / "p1", vertex, champion=None)  # first run: v1
    vertex.storage.put_tree(model[0], STAGED)  # where the pipeline staged v1's directory
    b, c = _variant(model, tmp_path, "b"), _variant(model, tmp_path, "c")

    def judged(candidate, out):
        args = (str(candidate[0]), str(training_set), str(validation), str(out))
        endpoint = {"vertex_api_endpoint": vertex.server.url}
        return evaluate(*args, tracking_uri=str(db), **VERTEX_PARAMS, **endpoint)

    result = judged(b, tmp_path / "eval-b")
    blessing = json.loads((tmp_path / "eval-b" / "blessing.json").read_text())
    assert result.blessed, result.reasons
    assert blessing["registry"] == {
        "kind": "vertex",
        "uri": f"projects/{PROJECT}/locations/{REGION}",
        "model_name": MODEL_NAME,
    }
    assert blessing["champion"]["version"] == "1"
    assert blessing["champion"]["content_hash"] == content_hash(model[0])[:63]
    assert "vs champion v1" in result.reasons[2]
    # the champion's files came from Cloud Storage: its score is the model's own score
    assert blessing["champion"]["roc_auc"] == pytest.approx(result.metrics["roc_auc"])
    judged(c, tmp_path / "eval-c")

    common = {
        **VERTEX_PARAMS,
        "vertex_artifact_uri": STAGED,
        "vertex_api_endpoint": vertex.server.url,
    }
    pushed = push(str(b[0]), str(tmp_path / "eval-b"), str(tmp_path / "p2"), **common)
    assert (pushed.version, pushed.previous_champion) == ("2", "1")
    uploads = len(vertex.server.find("POST", r".*/models:upload"))
    with pytest.raises(GateFailed, match="evaluated against v1, the champion is now v2; nothing"):
        push(str(c[0]), str(tmp_path / "eval-c"), str(tmp_path / "p3"), **common)
    assert len(vertex.server.find("POST", r".*/models:upload")) == uploads  # nothing sent
    assert vertex.registry.version("1000", "champion")["versionId"] == "2"


def test_vertex_champion_moved_during_the_upload_is_not_overwritten(model, vertex, tmp_path):
    """Vertex cannot swap atomically; push checks again after the upload and leaves the
    champion that another run set meanwhile."""
    _push_vertex(model, tmp_path / "p1", vertex, champion=None)
    _push_vertex(_variant(model, tmp_path, "b"), tmp_path / "p2", vertex)  # v2, champion
    upload = vertex.registry.upload

    def upload_while_another_run_promotes(request, match):
        reply = upload(request, match)
        vertex.registry._assign("1000", vertex.registry.models["1000"]["1"], ["champion"])
        return reply

    route = ("POST", LOCATION + r"/models:upload")
    vertex.server.routes[route] = upload_while_another_run_promotes
    with pytest.raises(GateFailed, match="evaluated against v2, the champion is now v1"):
        _push_vertex(_variant(model, tmp_path, "c"), tmp_path / "p3", vertex, champion="2")
    assert vertex.registry.version("1000", "champion")["versionId"] == "1"
    assert vertex.registry.models["1000"]["3"]["versionAliases"] == []  # uploaded, not champion


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
    params = {
        **VERTEX_PARAMS,
        "vertex_artifact_uri": STAGED,
        "vertex_api_endpoint": vertex.server.url,
        **overrides,
    }
    with pytest.raises(ConfigurationError, match=message):
        push(str(model[0]), str(model[1]), str(tmp_path / "p"), **params)
    assert vertex.server.requests == []
    assert not (tmp_path / "p").exists()
