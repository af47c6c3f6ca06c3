"""The `batch_predict` component with real Feast, TensorFlow and an MLflow registry: its scores
are the serving signature's on the features component's own training set for the same rows,
whatever the chunk size, and bad input fails naming the file and column."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import EXAMPLE, MODEL_NAME, run_component, write_validation_summary

from portside.components.common.artifacts import (
    BATCH_METRICS_FILE,
    PREDICTIONS_FILE,
    TRAINING_SET_FILE,
)
from portside.components.common.model_io import ServingModel
from portside.components.errors import ConfigurationError, InputDataError
from portside.components.lineage import content_hash

pytestmark = pytest.mark.integration

OUTPUT = "fraud_probability"  # train's output name: the score column must take it
ROWS = 3_000
KEYS = ["user_id", "event_timestamp"]


@pytest.fixture(scope="module")
def registry(training_set, tmp_path_factory):
    """Two versions of one trained model in an MLflow registry: v1, then v2 (the champion)
    with the same weights but other content."""
    from portside.components.push.registry import Registry
    from portside.components.train.run import run as train

    root = tmp_path_factory.mktemp("batch_model")
    validation = write_validation_summary(root / "validation", passed=True)
    tracking_uri = str(root / "mlflow.db")
    model_dir = root / "model"
    train(
        str(training_set),
        str(validation),
        str(model_dir),
        epochs=1,
        output_name=OUTPUT,
        tracking_uri=tracking_uri,
    )
    registered = Registry(tracking_uri, MODEL_NAME)
    assert registered.publish(model_dir, content_hash(model_dir), None).version == "1"
    second = root / "model_v2"
    shutil.copytree(model_dir, second)
    (second / "note.txt").write_text("same weights, another version")
    assert registered.publish(second, content_hash(second), "1").version == "2"
    return tracking_uri, model_dir


@pytest.fixture(scope="module")
def entity_rows(workspace, tmp_path_factory):
    """Transactions without their label, in shuffled order: what a scoring job gets."""
    rows = pd.read_parquet(workspace.sources / "transactions.parquet")
    rows = rows.sample(ROWS, random_state=3).drop(columns=[EXAMPLE["label_column"]])
    path = tmp_path_factory.mktemp("batch_rows") / "rows.parquet"
    rows.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def reference(workspace, entity_rows, registry, tmp_path_factory):
    """The features component's training set for the same rows (label added back: it needs
    one) and the serving signature's scores on it."""
    from portside.components.features.run import run as build_training_set

    root = tmp_path_factory.mktemp("batch_reference")
    labelled = pd.read_parquet(entity_rows).assign(**{EXAMPLE["label_column"]: 0})
    labelled.to_parquet(root / "rows.parquet", index=False)
    build_training_set(
        str(root / "rows.parquet"),
        str(root / "training_set"),
        feature_repo=str(workspace.repo),
        **EXAMPLE,
    )
    frame = pd.read_parquet(root / "training_set" / TRAINING_SET_FILE)
    return frame, ServingModel(registry[1]).predict(frame)


def _score(workspace, registry, rows, out, **params):
    from portside.components.batch_predict.run import run

    result = run(
        str(rows),
        str(out),
        MODEL_NAME,
        tracking_uri=registry[0],
        feature_repo=str(workspace.repo),
        **params,
    )
    return result, pd.read_parquet(out / PREDICTIONS_FILE)


def test_scores_are_the_serving_signatures_on_the_features_components_features(
    workspace, registry, entity_rows, reference, tmp_path
):
    frame, expected = reference
    result, scored = _score(
        workspace, registry, entity_rows, tmp_path / "out", model_version="1", chunk_rows=1_000
    )
    assert list(scored.columns) == [*KEYS, OUTPUT, "model_version"]
    assert len(scored) == ROWS and result.rows == ROWS and result.chunks == 3
    assert (scored["user_id"].to_numpy() == frame["user_id"].to_numpy()).all()
    assert (scored["event_timestamp"] == frame["event_timestamp"]).all()  # input order, UTC
    np.testing.assert_allclose(scored[OUTPUT].to_numpy(), expected, rtol=0, atol=1e-6)
    assert (scored["model_version"] == "1").all()
    metrics = json.loads((tmp_path / "out" / BATCH_METRICS_FILE).read_text())
    assert metrics["model_version"] == "1" and metrics["rows"] == ROWS
    assert metrics["feature_service"] == EXAMPLE["feature_service"]
    assert metrics["output"] == OUTPUT and metrics["columns"] == list(scored.columns)
    assert metrics["score"]["mean"] == pytest.approx(float(expected.mean()), abs=1e-6)
    assert metrics["model_content_hash"] == content_hash(registry[1])


def test_chunk_size_does_not_change_the_result(workspace, registry, entity_rows, tmp_path):
    small, by_small = _score(workspace, registry, entity_rows, tmp_path / "small", chunk_rows=97)
    large, by_large = _score(workspace, registry, entity_rows, tmp_path / "large")
    assert (small.chunks, large.chunks) == (31, 1)
    pd.testing.assert_frame_equal(by_small.drop(columns=[OUTPUT]), by_large.drop(columns=[OUTPUT]))
    np.testing.assert_allclose(by_small[OUTPUT], by_large[OUTPUT], rtol=0, atol=1e-6)
    assert small.rows_without_history == large.rows_without_history


def test_the_output_is_written_in_chunks(workspace, registry, entity_rows, tmp_path):
    _score(workspace, registry, entity_rows, tmp_path / "out", chunk_rows=1_000)
    written = pq.ParquetFile(tmp_path / "out" / PREDICTIONS_FILE).metadata
    assert [written.row_group(i).num_rows for i in range(written.num_row_groups)] == [1_000] * 3


def test_model_version_names_the_version_that_scored(workspace, registry, entity_rows, tmp_path):
    champion, by_champion = _score(workspace, registry, entity_rows, tmp_path / "champion")
    assert champion.model_version == "2" and set(by_champion["model_version"]) == {"2"}
    first, by_first = _score(workspace, registry, entity_rows, tmp_path / "v1", model_version="1")
    assert first.model_version == "1" and set(by_first["model_version"]) == {"1"}
    assert champion.model_content_hash != first.model_content_hash
    with pytest.raises(ConfigurationError, match=r"has no version 9 \(versions: 1, 2\)"):
        _score(workspace, registry, entity_rows, tmp_path / "v9", model_version="9")


def test_kept_columns_travel_with_the_scores(workspace, registry, entity_rows, tmp_path):
    _, scored = _score(
        workspace, registry, entity_rows, tmp_path / "out", keep_columns="transaction_id"
    )
    assert list(scored.columns) == [*KEYS, "transaction_id", OUTPUT, "model_version"]
    assert (scored["transaction_id"] == pd.read_parquet(entity_rows)["transaction_id"]).all()


BAD_ROWS = {
    "no key": (lambda rows: rows.drop(columns=["user_id"]), r"missing column\(s\) 'user_id'"),
    "no request field": (lambda rows: rows.drop(columns=["amount"]), r"column\(s\) 'amount'"),
    "empty": (lambda rows: rows.head(0), r"no entity rows; nothing to score"),
    "text key": (lambda rows: rows.astype({"user_id": str}), r"'user_id' has type string"),
}


@pytest.mark.parametrize(("change", "message"), BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_bad_entity_rows_fail_naming_the_file_and_column(
    workspace, registry, entity_rows, tmp_path, change, message
):
    bad = tmp_path / "rows.parquet"
    change(pd.read_parquet(entity_rows)).to_parquet(bad, index=False)
    with pytest.raises(InputDataError, match=re.escape(str(bad)) + ".*" + message):
        _score(workspace, registry, bad, tmp_path / "out")


def test_the_entrypoint_scores_and_reports_bad_input(
    workspace, registry, entity_rows, reference, tmp_path
):
    args = ["--model-name", MODEL_NAME, "--tracking-uri", registry[0]]
    args += ["--feature-repo", str(workspace.repo), "--model-version", "1"]
    rows = ["--entity-rows", str(entity_rows), "--chunk-rows", "1000"]
    done = run_component("batch_predict", *rows, "--predictions", str(tmp_path / "out"), *args)
    assert done.returncode == 0, done.stderr
    scored = pd.read_parquet(tmp_path / "out" / PREDICTIONS_FILE)
    np.testing.assert_allclose(scored[OUTPUT].to_numpy(), reference[1], rtol=0, atol=1e-6)
    manifest = json.loads((tmp_path / "out" / "run_manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["result"]["model_version"] == "1"

    bad = tmp_path / "keyless.parquet"
    pd.read_parquet(entity_rows).drop(columns=["user_id"]).to_parquet(bad, index=False)
    done = run_component(
        "batch_predict", "--entity-rows", str(bad), "--predictions", str(tmp_path / "bad"), *args
    )
    assert done.returncode == 1
    assert f"{bad}: missing column(s) 'user_id'" in done.stderr
