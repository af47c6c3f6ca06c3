"""The artifact contract: one reader per kind of file a component hands on, errors that name
the file and the component that writes it, and no file name declared outside the contract."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from portside.components.common import artifacts
from portside.components.common.artifacts import (
    TRAINING_SET_FILE,
    VALIDATION_SUMMARY_FILE,
    read_json_object,
    read_labelled_training_set,
    read_record,
    validation_gate,
)
from portside.components.errors import InputDataError

COMPONENTS = Path(artifacts.__file__).resolve().parents[1]


@dataclass
class Written:
    name: str
    count: int
    tags: list[str] = field(default_factory=list)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_missing_or_broken_file_names_itself_and_its_writer(tmp_path):
    with pytest.raises(InputDataError, match=r"x\.json: not found; the evaluate component"):
        read_json_object(tmp_path / "x.json", "evaluate")
    broken = _write(tmp_path / "broken.json", "{not json")
    with pytest.raises(InputDataError, match=r"broken\.json: not valid JSON .*the push comp"):
        read_json_object(broken, "push")
    listed = _write(tmp_path / "list.json", "[1, 2]")
    with pytest.raises(InputDataError, match=r"list\.json: not a JSON object; the train comp"):
        read_json_object(listed, "train")


def test_a_record_needs_its_fields_without_defaults_and_ignores_unknown_ones(tmp_path):
    path = _write(tmp_path / "r.json", json.dumps({"name": "a", "count": 2, "newer": True}))
    assert read_record(Written, path, "features") == Written("a", 2)
    short = _write(tmp_path / "short.json", json.dumps({"tags": ["x"]}))
    with pytest.raises(InputDataError, match=r"short\.json: field\(s\) name, count missing"):
        read_record(Written, short, "features")


def test_the_validation_gate_says_why_it_did_not_pass(tmp_path):
    summary = tmp_path / "v" / VALIDATION_SUMMARY_FILE
    _write(summary, json.dumps({"passed": True, "failures": []}))
    assert validation_gate(summary.parent).passed
    failures = [f"column c{i}: bad" for i in range(7)]
    _write(summary, json.dumps({"passed": False, "failures": failures}))
    verdict = validation_gate(summary.parent)
    assert not verdict.passed
    assert str(summary) in verdict.reason and "column c4: bad" in verdict.reason
    assert "c5" not in verdict.reason and "(and 2 more)" in verdict.reason
    _write(summary, json.dumps({"passed": "yes"}))
    with pytest.raises(InputDataError, match="'passed' must be true or false, got 'yes'"):
        validation_gate(summary.parent)
    with pytest.raises(InputDataError, match="not found; the validate component writes it"):
        validation_gate(tmp_path / "empty")


@pytest.mark.parametrize(
    ("labels", "message"),
    [([0, 1, None], "has 1 nulls"), ([0, 1, 2], r"must be 0/1; found \[2"), (None, "is missing")],
)
def test_a_training_set_needs_a_binary_label(tmp_path, labels, message):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    if labels is not None:
        frame["y"] = pd.array(labels, dtype="Int64")
    frame.to_parquet(tmp_path / TRAINING_SET_FILE)
    with pytest.raises(InputDataError, match=f"{TRAINING_SET_FILE}: label column 'y' {message}"):
        read_labelled_training_set(tmp_path, "y")


def test_an_unreadable_training_set_is_named(tmp_path):
    with pytest.raises(InputDataError, match="training set not found; the features component"):
        read_labelled_training_set(tmp_path, "y")
    _write(tmp_path / TRAINING_SET_FILE, "not parquet")
    with pytest.raises(InputDataError, match="not a readable Parquet file"):
        read_labelled_training_set(tmp_path, "y")


def test_no_component_declares_an_artifact_file_name_of_its_own():
    names = {
        value
        for key, value in vars(artifacts).items()
        if re.fullmatch(r"[A-Z_]+_(FILE|DIR)", key) and isinstance(value, str)
    }
    assert {"training_set.parquet", "summary.json", "blessing.json", "split.json"} <= names
    found = [
        f"{path.relative_to(COMPONENTS)}: {name}"
        for path in COMPONENTS.rglob("*.py")
        if path.name != "artifacts.py"
        for name in names
        if f'"{name}"' in path.read_text()
    ]
    assert found == []
