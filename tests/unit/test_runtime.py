"""Run manifests and content-addressed caching, on a toy component defined here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.errors import GateFailed
from components.lineage import RUN_MANIFEST_FILE, content_hash
from components.runtime import execute
from components.spec import Artifact, ComponentSpec, Parameter

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


def test_source_hash_covers_the_component_and_shared_code_only():
    from components.lineage import code_version

    features, validate = code_version("features"), code_version("validate")
    assert features.source_hash != validate.source_hash
    assert code_version("features").source_hash == features.source_hash
    assert code_version().source_hash not in (features.source_hash, validate.source_hash)


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
