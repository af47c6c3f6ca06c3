"""Run manifests and content-addressed caching, on a toy component defined here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from portside.components.errors import ConfigurationError, GateFailed
from portside.components.lineage import RUN_MANIFEST_FILE, content_hash
from portside.components.runtime import execute
from portside.components.spec import Artifact, ComponentSpec, Parameter

CALLS: list[dict] = []


def toy(data: str, out: str, factor: int = 2, gate: bool = True) -> dict:
    """Doubles the numbers in a file; the gate fails when asked to."""
    CALLS.append({"data": data, "factor": factor})
    numbers = [int(x) for x in Path(data).read_text().split()]
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "numbers.txt").write_text(" ".join(str(n * factor) for n in numbers))
    if not gate:
        raise GateFailed("the toy gate said no")
    if factor < 0:
        raise ValueError("negative factor")
    return {"count": len(numbers)}


TOY = ComponentSpec(
    name="toy",
    doc="A toy component.",
    implementation="test_runtime:toy",
    inputs=(Artifact("data", "dataset", "numbers"),),
    outputs=(Artifact("out", "directory", "doubled numbers"),),
    parameters=(Parameter("factor", int, 2, "multiplier"), Parameter("gate", bool, True, "")),
)


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def _args(tmp_path: Path, factor: int = 2, gate: bool = True) -> dict:
    data = tmp_path / "data.txt"
    if not data.exists():
        data.write_text("1 2 3")
    return {"data": str(data), "out": str(tmp_path / "out"), "factor": factor, "gate": gate}


def test_manifest_records_lineage(tmp_path):
    manifest = execute(TOY, _args(tmp_path), cache_dir=tmp_path / "cache")
    written = json.loads((tmp_path / "out" / RUN_MANIFEST_FILE).read_text())
    assert written["status"] == manifest.status == "succeeded"
    assert written["inputs"]["data"]["sha256"] == content_hash(tmp_path / "data.txt")
    assert written["outputs"]["out"]["sha256"] == content_hash(tmp_path / "out")
    assert written["parameters"] == {"factor": 2, "gate": True}
    assert written["code_version"]["package"] and len(written["code_version"]["source_hash"]) == 64
    assert written["result"] == {"count": 3}
    assert written["host"] and written["started_at"] <= written["finished_at"]


def test_same_inputs_twice_is_a_cache_hit_with_identical_outputs(tmp_path):
    first = execute(TOY, _args(tmp_path), cache_dir=tmp_path / "cache")
    (tmp_path / "out" / "numbers.txt").write_text("tampered")
    second = execute(TOY, _args(tmp_path), cache_dir=tmp_path / "cache")
    assert len(CALLS) == 1
    assert second.status == "cached" and second.cache_key == first.cache_key
    assert (tmp_path / "out" / "numbers.txt").read_text() == "2 4 6"
    assert second.outputs == first.outputs
    assert second.result == {"count": 3}


def test_changed_input_parameter_or_opt_out_runs_again(tmp_path):
    cache = tmp_path / "cache"
    execute(TOY, _args(tmp_path), cache_dir=cache)
    execute(TOY, _args(tmp_path, factor=3), cache_dir=cache)
    (tmp_path / "data.txt").write_text("1 2 3 4")
    execute(TOY, _args(tmp_path, factor=3), cache_dir=cache)
    execute(TOY, _args(tmp_path, factor=3), cache_dir=None)
    assert len(CALLS) == 4
    assert (tmp_path / "out" / "numbers.txt").read_text() == "3 6 9 12"


def test_failures_are_recorded_and_never_cached(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(GateFailed):
        execute(TOY, _args(tmp_path, gate=False), cache_dir=cache)
    written = json.loads((tmp_path / "out" / RUN_MANIFEST_FILE).read_text())
    assert written["status"] == "gate_failed" and "toy gate" in written["error"]
    with pytest.raises(ValueError):
        execute(TOY, _args(tmp_path, factor=-1), cache_dir=cache)
    assert json.loads((tmp_path / "out" / RUN_MANIFEST_FILE).read_text())["status"] == "failed"
    with pytest.raises(GateFailed):
        execute(TOY, _args(tmp_path, gate=False), cache_dir=cache)
    assert len(CALLS) == 3


def test_missing_input_is_named(tmp_path):
    args = _args(tmp_path)
    args["data"] = str(tmp_path / "missing.txt")
    with pytest.raises(Exception, match="input 'data' not found"):
        execute(TOY, args, cache_dir=None)


def test_directory_hash_ignores_the_run_manifest_but_not_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    before = content_hash(tmp_path / "d")
    (tmp_path / "d" / RUN_MANIFEST_FILE).write_text("{}")
    assert content_hash(tmp_path / "d") == before
    (tmp_path / "d" / "a.txt").write_text("b")
    assert content_hash(tmp_path / "d") != before


CLOCKED = ComponentSpec(
    name="toy",
    doc="A toy component that reads a file parameter and the clock.",
    implementation="test_runtime:toy",
    inputs=(Artifact("data", "dataset", "numbers"),),
    outputs=(Artifact("out", "directory", "doubled numbers"),),
    parameters=(
        Parameter("factor", int, 2, "multiplier"),
        Parameter("gate", bool, True, ""),
        Parameter("rules", str, "", "a rules file", file=True),
        Parameter("as_of", str, "", "empty means now", now_if_empty=True),
    ),
)


def _clocked_toy(
    data: str, out: str, factor: int = 2, gate: bool = True, rules: str = "", as_of: str = ""
) -> dict:
    return toy(data, out, factor, gate)


def test_file_parameters_are_keyed_by_content_and_now_is_never_cached(tmp_path, monkeypatch):
    import dataclasses

    spec = dataclasses.replace(CLOCKED, implementation="test_runtime:_clocked_toy")
    rules = tmp_path / "rules.json"
    rules.write_text("{}")
    args = {**_args(tmp_path), "rules": str(rules), "as_of": "2026-11-01"}
    cache = tmp_path / "cache"
    execute(spec, args, cache_dir=cache)
    assert execute(spec, args, cache_dir=cache).status == "cached"
    rules.write_text('{"changed": true}')  # same path, new content
    assert execute(spec, args, cache_dir=cache).status == "succeeded"
    now = {**args, "as_of": ""}
    execute(spec, now, cache_dir=cache)
    assert execute(spec, now, cache_dir=cache).status == "succeeded"
    assert len(CALLS) == 4


# A toy component run in a fresh interpreter on a copy of the `components` package, so the
# copy's code (not this checkout's) decides the key.
_COPY_RUN = """
import sys
from pathlib import Path
import portside.components as components
from portside.components.runtime import execute
from portside.components.spec import Artifact, ComponentSpec
assert Path(components.__file__).is_relative_to(sys.argv[1]), components.__file__
spec = ComponentSpec("toy", "toy", "toy_impl:run", (Artifact("data", "dataset", ""),),
                     (Artifact("out", "directory", ""),))
print(execute(spec, {"data": sys.argv[2], "out": sys.argv[3]}, cache_dir=sys.argv[4]).status)
"""
_TOY_IMPL = """
from pathlib import Path
def run(data, out):
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "copy.txt").write_text(Path(data).read_text())
"""


@pytest.mark.parametrize(
    "edited", ["common/splits.py", "features/run.py", "push/registry.py", "runtime.py"]
)
def test_editing_any_code_of_the_package_changes_the_key(tmp_path, edited):
    import shutil
    import subprocess
    import sys

    import portside
    import portside.components as components

    site = tmp_path / "site"
    shutil.copytree(Path(components.__file__).parent, site / "portside" / "components")
    shutil.copy(portside.__file__, site / "portside" / "__init__.py")
    (site / "toy_impl.py").write_text(_TOY_IMPL)
    (tmp_path / "data.txt").write_text("1 2 3")

    def run() -> str:
        argv = [str(site), str(tmp_path / "data.txt"), str(tmp_path / "out"), str(tmp_path / "c")]
        done = subprocess.run(
            [sys.executable, "-c", _COPY_RUN, *argv],
            cwd=tmp_path,  # not the checkout, whose `components` would come first
            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert (run(), run()) == ("succeeded", "cached")
    with (site / "portside" / "components" / edited).open("a") as source:
        source.write("\n# an edit\n")
    assert run() == "succeeded"


def test_a_different_installed_version_changes_the_key(tmp_path, monkeypatch):
    from portside.components import lineage

    cache = tmp_path / "cache"
    installed = lineage.installed_distributions()
    assert any(d.startswith("tensorflow") for d in installed)
    execute(TOY, _args(tmp_path), cache_dir=cache)
    upgraded = tuple(
        "tensorflow-cpu==99.0" if d.startswith("tensorflow-cpu==") else d for d in installed
    )
    assert upgraded != installed
    monkeypatch.setattr(lineage, "installed_distributions", lambda: upgraded)
    assert execute(TOY, _args(tmp_path), cache_dir=cache).status == "succeeded"
    monkeypatch.undo()
    assert execute(TOY, _args(tmp_path), cache_dir=cache).status == "cached"
    assert len(CALLS) == 2


def test_installed_distributions_are_what_importlib_metadata_finds():
    import importlib.metadata
    import re

    from portside.components.lineage import installed_distributions

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    expected = {
        f"{norm(d.metadata['Name'])}=={d.version}" for d in importlib.metadata.distributions()
    }
    assert set(installed_distributions()) == expected


@pytest.mark.parametrize("component", ["train", "evaluate", "push"])
def test_an_empty_tracking_uri_keys_by_the_database_it_resolves_to(
    tmp_path, monkeypatch, component
):
    from portside.components.lineage import code_version
    from portside.components.registry import get_spec
    from portside.components.runtime import cache_key

    spec, code = get_spec(component), code_version()
    keys = {}
    for cwd in ("a", "b"):
        (tmp_path / cwd).mkdir()
        monkeypatch.chdir(tmp_path / cwd)
        keys[cwd] = cache_key(spec, {}, {"tracking_uri": ""}, code)
        assert cache_key(spec, {}, {}, code) == keys[cwd]  # the default is resolved too
    assert keys["a"] != keys["b"]
    database = tmp_path / "b" / "data" / "mlflow" / "mlflow.db"
    assert cache_key(spec, {}, {"tracking_uri": f"sqlite:///{database}"}, code) == keys["b"]


def test_no_parameter_defaults_to_the_worked_examples_names():
    from portside.components.registry import component_names, get_spec

    example = ("fraud", "user_id", "transaction_id")
    for name in component_names():
        for param in get_spec(name).parameters:
            assert not any(word in str(param.default) for word in example), (name, param.name)


@pytest.mark.parametrize(
    ("component", "flags"),
    [
        ("features", ["--feature-service", "--label-column"]),
        ("validate", ["--suite"]),
        ("evaluate", ["--model-name"]),
        ("push", ["--model-name"]),
    ],
)
def test_the_entrypoint_requires_the_names_only_the_caller_knows(component, flags, capsys):
    from portside.components.__main__ import main
    from portside.components.registry import get_spec

    spec = get_spec(component)
    assert {p.name for p in spec.parameters if p.required} == {
        f.removeprefix("--").replace("-", "_") for f in flags
    }
    artifacts = [a.name for a in (*spec.inputs, *spec.outputs)]
    argv = [component, *(x for a in artifacts for x in (f"--{a.replace('_', '-')}", "p"))]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"required: {', '.join(flags)}")


def _foreign(tmp_path: Path) -> Path:
    foreign = tmp_path / "runs" / "x"
    (foreign / "training_set").mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    (foreign / "training_set" / "rows.parquet").write_text("data")
    return foreign


def test_a_cache_hit_into_a_directory_the_run_does_not_own_is_refused(tmp_path):
    cache = tmp_path / "cache"
    execute(TOY, _args(tmp_path), cache_dir=cache)
    foreign = _foreign(tmp_path)
    before = content_hash(foreign)
    for cache_dir in (cache, None):  # a hit and a run
        with pytest.raises(ConfigurationError, match=f"'out' is {foreign}, which is not empty"):
            execute(TOY, {**_args(tmp_path), "out": str(foreign)}, cache_dir=cache_dir)
    assert content_hash(foreign) == before and not (foreign / RUN_MANIFEST_FILE).exists()
    assert len(CALLS) == 1


def test_outputs_of_another_component_or_a_file_are_not_owned(tmp_path):
    import dataclasses

    other = tmp_path / "other"
    execute(dataclasses.replace(TOY, name="other"), {**_args(tmp_path), "out": str(other)})
    (tmp_path / "file").write_text("x")
    cache = tmp_path / "cache"
    stored = cache / "toy" / execute(TOY, _args(tmp_path), cache_dir=cache).cache_key
    for path in (other, tmp_path / "file", stored, cache / "new"):
        with pytest.raises(ConfigurationError, match=str(path)):
            execute(TOY, {**_args(tmp_path), "out": str(path)}, cache_dir=cache)
    assert json.loads((other / RUN_MANIFEST_FILE).read_text())["component"] == "other"
    assert (stored / "out" / "numbers.txt").read_text() == "2 4 6"  # the cache entry is intact
    (tmp_path / "empty").mkdir()
    assert execute(TOY, {**_args(tmp_path), "out": str(tmp_path / "empty")}).status == "succeeded"


def test_an_owned_directory_holds_only_what_the_last_run_wrote(tmp_path):
    cache = tmp_path / "cache"
    execute(TOY, _args(tmp_path), cache_dir=cache)
    (tmp_path / "out" / "stale.txt").write_text("from an older run")
    second = execute(TOY, _args(tmp_path, factor=3), cache_dir=cache)
    written = ["numbers.txt", RUN_MANIFEST_FILE]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == written
    stored = cache / "toy" / second.cache_key / "out"
    assert [p.name for p in stored.iterdir()] == ["numbers.txt"]


_KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from portside.components.runtime import execute
from portside.components.spec import Artifact, ComponentSpec
spec = ComponentSpec("toy", "toy", "killed_impl:run", (), (Artifact("out", "directory", ""),))
execute(spec, {"out": sys.argv[1]})
"""
_KILLED_IMPL = """
import os, signal
from pathlib import Path
def run(out):
    (Path(out) / "half.txt").write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_midway_leaves_its_directory_owned_for_the_retry(tmp_path):
    import subprocess
    import sys

    (tmp_path / "killed_impl.py").write_text(_KILLED_IMPL)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(out)],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -9 and (out / "half.txt").is_file()
    assert json.loads((out / RUN_MANIFEST_FILE).read_text())["status"] == "running"
    assert execute(TOY, _args(tmp_path), cache_dir=tmp_path / "cache").status == "succeeded"
    assert sorted(p.name for p in out.iterdir()) == ["numbers.txt", RUN_MANIFEST_FILE]


def test_a_cache_entry_edited_after_it_was_stored_is_not_reused(tmp_path):
    cache = tmp_path / "cache"
    first = execute(TOY, _args(tmp_path), cache_dir=cache)
    (cache / "toy" / first.cache_key / "out" / "numbers.txt").write_text("9 9 9")
    assert execute(TOY, _args(tmp_path), cache_dir=cache).status == "succeeded"
    assert (tmp_path / "out" / "numbers.txt").read_text() == "2 4 6"
    assert execute(TOY, _args(tmp_path), cache_dir=cache).status == "cached"
    assert len(CALLS) == 2


VERDICTS: list[bool] = []


def verdict(parameters: dict, result: dict | None) -> bool:
    """A revalidation hook whose answer the test sets."""
    return VERDICTS[-1]


def test_a_cached_result_is_reused_only_while_its_hook_says_it_holds(tmp_path):
    import dataclasses

    spec = dataclasses.replace(TOY, revalidate="test_runtime:verdict")
    cache = tmp_path / "cache"
    VERDICTS.append(True)
    execute(spec, _args(tmp_path), cache_dir=cache)
    assert execute(spec, _args(tmp_path), cache_dir=cache).status == "cached"
    VERDICTS.append(False)
    assert execute(spec, _args(tmp_path), cache_dir=cache).status == "succeeded"
    assert len(CALLS) == 2
