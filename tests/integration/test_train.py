"""The `train` component with real TensorFlow, MLflow and a training set built through Feast."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import (
    FEATURE_SERVICE,
    LABEL,
    NUMERIC_FEATURES,
    copy_training_set,
    run_component,
    write_validation_summary,
)

from portside.components.common import model_io
from portside.components.common.splits import time_split
from portside.components.errors import GateFailed, InputDataError
from portside.components.features.run import load_manifest

pytestmark = pytest.mark.integration

EPOCHS = 4
OUTPUT = "fraud_probability"


@pytest.fixture(scope="module")
def passed(tmp_path_factory):
    return write_validation_summary(tmp_path_factory.mktemp("validation"), passed=True)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One MLflow database for the module: creating one costs seconds."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


def _train(training_set, validation, model_dir, tracking, **params):
    from portside.components.train.run import run

    return run(
        str(training_set),
        str(validation),
        str(model_dir),
        **{"epochs": EPOCHS, "output_name": OUTPUT, **params},
        tracking_uri=str(tracking),
    )


@pytest.fixture(scope="module")
def trained(training_set, passed, tracking, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("train") / "model"
    return model_dir, _train(training_set, passed, model_dir, tracking)


def test_training_writes_the_model_directory(trained, tracking):
    from mlflow.tracking import MlflowClient

    model_dir, result = trained
    for name in ("saved_model/saved_model.pb", "feature_spec.json", "training_curves.png"):
        assert (model_dir / name).is_file(), name
    spec = model_io.FeatureSpec.load(model_dir)
    assert spec.numeric == list(NUMERIC_FEATURES)  # the service's order
    assert spec.categorical == ["merchant_category", "country"]
    # The contract names come from the training set's manifest and train's parameters.
    assert (spec.label, spec.timestamp, spec.output) == (LABEL, "event_timestamp", OUTPUT)
    assert spec.feature_service == FEATURE_SERVICE
    assert spec.entity_keys == ["user_id"]
    assert spec.request_fields == ["amount", "merchant_category"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["mlflow_run_id"] == result.mlflow_run_id
    assert len(metrics["history"]["val_auc"]) == result.epochs_run <= EPOCHS
    assert sum(metrics["split"]["rows"].values()) == 20_000
    assert metrics["split"]["validation_start"] < metrics["split"]["test_start"]
    assert result.examples_per_second > 0
    # prediction drift's reference: the validation split's scores
    reference = json.loads((model_dir / "reference_scores.json").read_text())
    assert reference["roc_auc"] == pytest.approx(result.validation_roc_auc)
    assert sum(reference["drift_bins"]["counts"]) == metrics["split"]["rows"]["validation"]

    client = MlflowClient(f"sqlite:///{tracking}")
    logged = client.get_run(result.mlflow_run_id).data
    assert logged.metrics["validation_roc_auc"] == pytest.approx(result.validation_roc_auc)
    assert logged.params["hidden_units"] == "64,32"
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id)}
    assert {"saved_model", "metrics.json", "training_curves.png"} <= artifacts


def test_validation_roc_auc_is_well_above_chance(trained):
    _, result = trained
    # The synthetic label depends on amount vs history, category, account age and bursts.
    assert result.validation_roc_auc > 0.8
    assert result.validation_pr_auc > 0.1  # base rate is ~0.03


def test_serving_signature_equals_the_keras_model(training_set, tmp_path):
    from portside.components.train.run import (
        Hyperparameters,
        derive_feature_spec,
        export_model,
        predict_keras,
        train_model,
    )

    frame = pd.read_parquet(training_set / "training_set.parquet")
    spec = derive_feature_spec(frame, load_manifest(training_set), "score")
    split = time_split(frame)
    trained = train_model(split, spec, Hyperparameters(epochs=1))
    export_model(trained.model, spec, tmp_path)

    rows = split.validation.head(500).copy()
    # Missing and never-seen values must take the same path in both.
    rows.loc[rows.index[:50], "txn_count_7d"] = np.nan
    rows.loc[rows.index[50:100], "merchant_category"] = "never_seen"
    rows.loc[rows.index[100:150], "country"] = None
    served = model_io.predict(tmp_path, rows)
    in_training = predict_keras(trained.model, rows, spec)
    assert served.dtype == np.float32 and served.shape == (len(rows),)
    np.testing.assert_allclose(served, in_training, rtol=0, atol=1e-6)
    assert served.std() > 0  # not a constant model


def test_same_seed_same_model_other_seed_other_model(
    trained, training_set, passed, tracking, tmp_path
):
    model_dir, result = trained
    again = _train(training_set, passed, tmp_path / "again", tracking)
    _train(training_set, passed, tmp_path / "other", tracking, seed=8)
    test_rows = time_split(pd.read_parquet(training_set / "training_set.parquet")).test
    first = model_io.predict(model_dir, test_rows)
    # Op determinism makes repeated CPU runs bit-identical.
    np.testing.assert_array_equal(model_io.predict(tmp_path / "again", test_rows), first)
    assert again.validation_roc_auc == result.validation_roc_auc
    assert np.abs(model_io.predict(tmp_path / "other", test_rows) - first).max() > 1e-4


def test_refuses_when_validation_failed(training_set, tracking, tmp_path):
    failed = write_validation_summary(tmp_path / "validation", False, ["amount: values below 0"])
    with pytest.raises(GateFailed, match="amount: values below 0"):
        _train(training_set, failed, tmp_path / "model", tracking)
    assert not (tmp_path / "model").exists()


def test_refuses_without_validation_summary(training_set, tracking, tmp_path):
    (tmp_path / "validation").mkdir()
    with pytest.raises(InputDataError, match="summary.json"):
        _train(training_set, tmp_path / "validation", tmp_path / "model", tracking)


def test_model_inputs_are_the_declared_features_never_other_columns(training_set):
    from portside.components.train.run import derive_feature_spec

    manifest = load_manifest(training_set)
    frame = pd.read_parquet(training_set / "training_set.parquet")
    # Entity-row columns the feature service does not declare: ids, notes, a stray score.
    frame = frame.assign(merchant_id=7, note="web", risk_score=0.5)
    spec = derive_feature_spec(frame, manifest, "score")
    assert set(spec.columns) == {*manifest.features, *manifest.request_fields}
    assert not {"merchant_id", "note", "risk_score", "transaction_id"} & set(spec.columns)
    # A feature the manifest declares reaches the model whatever its name; a missing or
    # non-numeric, non-string one is refused by name.
    renamed = dataclasses.replace(manifest, features=[*manifest.features, "risk_score"])
    assert "risk_score" in derive_feature_spec(frame, renamed, "score").numeric
    with pytest.raises(InputDataError, match="lacks column.*txn_count_7d"):
        derive_feature_spec(frame.drop(columns=["txn_count_7d"]), manifest, "score")
    frame["credit_limit"] = frame["event_timestamp"]
    with pytest.raises(InputDataError, match="credit_limit"):
        derive_feature_spec(frame, manifest, "score")


def test_serving_output_is_named_by_the_contract(trained):
    import tensorflow as tf

    model_dir, _ = trained
    serve = tf.saved_model.load(str(model_dir / "saved_model")).signatures["serving_default"]
    assert set(serve.structured_outputs) == {OUTPUT}


def test_evaluate_holds_out_exactly_trains_test_window(training_set, passed, tracking, tmp_path):
    from portside.components.evaluate.run import load_test_window
    from portside.components.evaluate.spec import SPEC as EVALUATE

    model_dir = tmp_path / "model"
    _train(training_set, passed, model_dir, tracking, epochs=1, test_fraction=0.25)
    spec = model_io.FeatureSpec.load(model_dir)
    frame = pd.read_parquet(training_set / "training_set.parquet")
    held_out = load_test_window(training_set, model_dir, spec)
    expected = time_split(frame, "event_timestamp", 0.15, 0.25).test
    assert held_out.index.tolist() == expected.index.tolist()
    assert len(held_out) > len(time_split(frame).test)  # not evaluate's old 0.15 default
    # evaluate has no split parameters of its own to disagree with.
    assert not {"validation_fraction", "test_fraction"} & {p.name for p in EVALUATE.parameters}
    # A different training set than the model's is refused, naming the files.
    other = copy_training_set(training_set, tmp_path / "other", frame.iloc[::2])
    with pytest.raises(InputDataError, match="not the training set the model was trained on"):
        load_test_window(other, model_dir, spec)


def test_refuses_a_training_set_without_its_manifest(training_set, passed, tracking, tmp_path):
    (tmp_path / "bare").mkdir()
    shutil.copy(training_set / "training_set.parquet", tmp_path / "bare")
    with pytest.raises(InputDataError, match="manifest.json: not found"):
        _train(tmp_path / "bare", passed, tmp_path / "model", tracking)


def _entrypoint(training_set, validation, model_dir, tracking, *extra):
    args = ["--training-set", str(training_set), "--validation", str(validation)]
    args += ["--model", str(model_dir), "--tracking-uri", str(tracking)]
    return run_component("train", *args, "--no-cache", *extra)


def test_entrypoint_trains_and_exits_0(training_set, passed, tracking, tmp_path):
    done = _entrypoint(training_set, passed, tmp_path / "model", tracking, "--epochs", "1")
    assert done.returncode == 0, done.stderr
    assert "val_auc" in done.stdout  # one progress line per epoch
    assert (tmp_path / "model" / "saved_model" / "saved_model.pb").is_file()


def test_entrypoint_exits_3_when_the_gate_fails(training_set, tracking, tmp_path):
    failed = write_validation_summary(tmp_path / "validation", passed=False)
    done = _entrypoint(training_set, failed, tmp_path / "model", tracking)
    assert done.returncode == 3, done.stderr
    assert "GateFailed" in done.stderr
