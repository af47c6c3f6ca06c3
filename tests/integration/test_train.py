"""The `train` component with real TensorFlow, MLflow and a training set built through Feast."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_component, write_validation_summary

from components.common import model_io
from components.common.splits import time_split
from components.errors import GateFailed, InputDataError

pytestmark = pytest.mark.integration

EPOCHS = 4
NUMERIC = [
    "amount",
    "account_age_days",
    "credit_limit",
    "txn_count_1d",
    "txn_amount_1d",
    "txn_count_7d",
    "txn_amount_7d",
    "txn_count_30d",
    "txn_amount_30d",
    "avg_amount_30d",
    "amount_to_avg_30d",
    "amount_to_credit_limit",
]


@pytest.fixture(scope="module")
def passed(tmp_path_factory):
    return write_validation_summary(tmp_path_factory.mktemp("validation"), passed=True)


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One MLflow database for the module: creating one costs seconds."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


def _train(training_set, validation, model_dir, tracking, **params):
    from components.train.run import run

    return run(
        str(training_set),
        str(validation),
        str(model_dir),
        epochs=EPOCHS,
        tracking_uri=str(tracking),
        **params,
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
    assert spec.numeric == NUMERIC
    assert spec.categorical == ["merchant_category", "country"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["mlflow_run_id"] == result.mlflow_run_id
    assert len(metrics["history"]["val_auc"]) == result.epochs_run <= EPOCHS
    assert sum(metrics["split"]["rows"].values()) == 20_000
    assert metrics["split"]["validation_start"] < metrics["split"]["test_start"]
    assert result.examples_per_second > 0

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
    from components.train.run import (
        Hyperparameters,
        derive_feature_spec,
        export_model,
        predict_keras,
        train_model,
    )

    frame = pd.read_parquet(training_set / "training_set.parquet")
    spec = derive_feature_spec(frame, "is_fraud")
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


def test_new_feature_columns_flow_into_the_spec():
    from components.train.run import derive_feature_spec

    frame = pd.DataFrame(
        {
            "transaction_id": [1],
            "user_id": [2],
            "event_timestamp": pd.to_datetime(["2026-10-01"], utc=True),
            "is_fraud": [0],
            "amount": [3.0],
            "is_online": [True],
            "channel": pd.Series(["web"], dtype="string"),
        }
    )
    spec = derive_feature_spec(frame, "is_fraud")
    assert (spec.numeric, spec.categorical) == (["amount", "is_online"], ["channel"])
    frame["first_seen"] = frame["event_timestamp"]
    with pytest.raises(InputDataError, match="first_seen"):
        derive_feature_spec(frame, "is_fraud")


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
