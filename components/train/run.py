"""The `train` component: a Keras binary classifier, with its preprocessing inside, from a
validated training set; exported as a SavedModel with training metrics, curves and an MLflow run.

The model's inputs are the training set's declared features (the FeatureService's, plus the
request fields its on-demand views read), from the features component's manifest: never
"every other column", so an extra entity-row column cannot become an input serving lacks."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portside.components.common.artifacts import (
    REFERENCE_SCORES_FILE,
    SAVED_MODEL_DIR,
    STATISTICS_FILE,
    TRAINING_CURVES_FILE,
    TRAINING_METRICS_FILE,
    read_labelled_training_set,
    validation_gate,
)
from portside.components.common.model_io import FeatureSpec, to_signature_inputs
from portside.components.common.splits import TimeSplit, boundaries, time_split
from portside.components.common.tracking import log_run
from portside.components.errors import ConfigurationError, GateFailed, InputDataError

if TYPE_CHECKING:
    import keras
    import numpy as np
    import pandas as pd

    from portside.components.features.run import FeaturesManifest
    from portside.components.train.model import Preprocessing

CLASS_WEIGHTING = "output bias initialised to log(p/(1-p)) of the train split; no class weights"
PREDICT_BATCH = 8192
EARLY_STOPPING_PATIENCE = 2


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int = 8
    batch_size: int = 1024
    learning_rate: float = 1e-3
    hidden_units: tuple[int, ...] = (64, 32)
    seed: int = 7


@dataclass
class TrainedModel:
    """The fitted Keras model (best validation epoch) and how it got there."""

    model: keras.Model
    preprocessing: Preprocessing
    history: dict[str, list[float]]  # Keras metrics per epoch, plus elapsed_seconds
    best_epoch: int  # 1-based; its weights are the model's
    fit_seconds: float
    devices: list[str]


@dataclass
class TrainResult:
    model_dir: str
    saved_model_dir: str
    mlflow_run_id: str
    rows: dict[str, int]
    epochs_run: int
    best_epoch: int
    train_loss: float
    validation_loss: float
    validation_roc_auc: float
    validation_pr_auc: float
    examples_per_second: float
    seconds: float


def run(
    training_set: str,
    validation: str,
    model: str,
    epochs: int = 8,
    batch_size: int = 1024,
    learning_rate: float = 1e-3,
    hidden_units: str = "64,32",
    seed: int = 7,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    output_name: str = "probability",
    tracking_uri: str = "",
    experiment: str = "portside-training",
) -> TrainResult:
    """Train, export `<model>/saved_model`, write feature_spec.json (the model contract),
    split.json, metrics.json and training_curves.png, and log the run to MLflow. The label,
    timestamp and feature columns come from the training set's manifest. Raises GateFailed
    unless validation passed."""
    from portside.components.features.run import load_manifest

    started = time.perf_counter()
    check_validation_gate(Path(validation))
    hyper = Hyperparameters(
        epochs, batch_size, learning_rate, parse_hidden_units(hidden_units), seed
    )
    check_hyperparameters(hyper)
    if not output_name:
        raise ConfigurationError("output_name: the serving output needs a name")
    manifest = load_manifest(Path(training_set))
    frame = read_labelled_training_set(Path(training_set), manifest.label_column)
    spec = derive_feature_spec(frame, manifest, output_name)
    split = time_split(frame, spec.timestamp, validation_fraction, test_fraction)
    check_both_classes(split, spec.label)

    trained = train_model(split, spec, hyper)
    out = Path(model)
    out.mkdir(parents=True, exist_ok=True)
    export_model(trained.model, spec, out)
    boundaries(split, spec.timestamp, validation_fraction, test_fraction).save(out)
    validation_scores = predict_keras(trained.model, split.validation, spec)
    final = {
        "train": score(trained.model, split.train, spec),
        "validation": score(trained.model, split.validation, spec, validation_scores),
    }
    write_monitoring_baseline(Path(validation), out, validation_scores, final["validation"])
    metrics = training_metrics(trained, split, spec, hyper, final)
    metrics["split"] |= {"validation_fraction": validation_fraction, "test_fraction": test_fraction}
    metrics["seconds"] = round(time.perf_counter() - started, 3)
    write_json(out / TRAINING_METRICS_FILE, metrics)
    plot_curves(trained.history, trained.best_epoch, out / TRAINING_CURVES_FILE)

    run_id = log_run(
        tracking_uri,
        run_name="train",
        params=mlflow_params(metrics),
        metrics=mlflow_metrics(metrics),
        artifact_dir=out,
        tags={"component": "train"},
        experiment=experiment,
    )
    # The run id cannot be inside the copy MLflow stores; the local file gets it afterwards.
    metrics["mlflow_run_id"] = run_id
    write_json(out / TRAINING_METRICS_FILE, metrics)
    return TrainResult(
        model_dir=str(out.resolve()),
        saved_model_dir=str((out / SAVED_MODEL_DIR).resolve()),
        mlflow_run_id=run_id,
        rows=metrics["split"]["rows"],
        epochs_run=metrics["epochs_run"],
        best_epoch=trained.best_epoch,
        train_loss=final["train"]["loss"],
        validation_loss=final["validation"]["loss"],
        validation_roc_auc=final["validation"]["roc_auc"],
        validation_pr_auc=final["validation"]["pr_auc"],
        examples_per_second=metrics["examples_per_second"],
        seconds=metrics["seconds"],
    )


def check_validation_gate(validation_dir: Path) -> None:
    """Train only on data the validate component passed."""
    verdict = validation_gate(validation_dir)
    if not verdict.passed:
        raise GateFailed(verdict.reason)


def parse_hidden_units(text: str) -> tuple[int, ...]:
    try:
        units = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise ConfigurationError(
            f"hidden_units: expected comma-separated positive integers, got {text!r}"
        )
    return units


def check_hyperparameters(hyper: Hyperparameters) -> None:
    if hyper.epochs < 1:
        raise ConfigurationError(f"epochs must be >= 1, got {hyper.epochs}")
    if hyper.batch_size < 1:
        raise ConfigurationError(f"batch_size must be >= 1, got {hyper.batch_size}")
    if not hyper.learning_rate > 0:
        raise ConfigurationError(f"learning_rate must be > 0, got {hyper.learning_rate}")


def derive_feature_spec(
    frame: pd.DataFrame, manifest: FeaturesManifest, output_name: str
) -> FeatureSpec:
    """The model's inputs: the manifest's features and request fields; the dtype says which
    kind. A feature added to the FeatureService reaches the model without a code change."""
    from pandas.api import types

    declared = {*manifest.features, *manifest.request_fields}
    missing = sorted(declared - set(frame.columns))
    if missing:
        raise InputDataError(
            f"the training set lacks column(s) {', '.join(missing)} that its manifest declares"
        )
    numeric, categorical = [], []
    for column, dtype in frame.dtypes.items():
        if column not in declared:
            continue  # keys, time, label and any other entity-row column: not an input
        if types.is_bool_dtype(dtype) or types.is_numeric_dtype(dtype):
            numeric.append(column)
        elif types.is_string_dtype(dtype) or isinstance(dtype, types.CategoricalDtype):
            categorical.append(column)
        else:
            raise InputDataError(
                f"column {column!r} has type {dtype}: a feature must be numeric or string"
            )
    if not numeric and not categorical:
        raise InputDataError("the training set's manifest declares no feature columns")
    return FeatureSpec(
        numeric,
        categorical,
        label=manifest.label_column,
        timestamp=manifest.timestamp_column,
        output=output_name,
        feature_service=manifest.feature_service,
        entity_keys=list(manifest.entity_keys),
        request_fields=list(manifest.request_fields),
    )


def check_both_classes(split: TimeSplit, label_column: str) -> None:
    for name in ("train", "validation"):
        part = getattr(split, name)
        positives = int(part[label_column].sum())
        if positives in (0, len(part)):
            raise InputDataError(
                f"the {name} split ({len(part)} rows) has only one class of {label_column!r}; "
                "training needs both"
            )


def train_model(split: TimeSplit, spec: FeatureSpec, hyper: Hyperparameters) -> TrainedModel:
    """Fit on the train split, early-stop on validation ROC AUC, keep the best epoch's weights.

    Seeded and with TensorFlow op determinism enabled (process-wide, it stays on), so the same
    inputs and seed give the same model.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    from portside.components.train.model import build_model, fit_preprocessing, make_dataset

    keras.utils.set_random_seed(hyper.seed)
    tf.config.experimental.enable_op_determinism()
    devices = [device.name for device in tf.config.list_logical_devices()]
    print(f"train: devices {', '.join(devices)}", flush=True)

    train_inputs, train_labels = _inputs_and_labels(split.train, spec)
    val_inputs, val_labels = _inputs_and_labels(split.validation, spec)
    prep = fit_preprocessing(train_inputs, train_labels, spec)
    model = build_model(spec, prep, list(hyper.hidden_units), hyper.learning_rate)

    elapsed: list[float] = []
    started = time.perf_counter()
    clock = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: elapsed.append(time.perf_counter() - started)
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc",
        mode="max",
        patience=EARLY_STOPPING_PATIENCE,
        restore_best_weights=True,  # Keras 3 restores at the end even without stopping early
    )
    history = model.fit(
        make_dataset(train_inputs, train_labels, hyper.batch_size, shuffle_seed=hyper.seed),
        validation_data=make_dataset(val_inputs, val_labels, PREDICT_BATCH),
        epochs=hyper.epochs,
        callbacks=[clock, stop],
        shuffle=False,  # the dataset shuffles itself
        verbose=2,
    )
    fit_seconds = time.perf_counter() - started
    curves = {name: [float(v) for v in values] for name, values in history.history.items()}
    curves["elapsed_seconds"] = [round(s, 3) for s in elapsed]
    best_epoch = int(np.argmax(curves["val_auc"])) + 1  # the epoch EarlyStopping restored
    return TrainedModel(model, prep, curves, best_epoch, fit_seconds, devices)


def _inputs_and_labels(
    frame: pd.DataFrame, spec: FeatureSpec
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    # The serving signature's own conversion, so training sees exactly what serving sees.
    return to_signature_inputs(frame, spec), frame[spec.label].to_numpy("float32")


def predict_keras(model: keras.Model, frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """Probabilities from the in-memory Keras model on raw feature rows."""
    from portside.components.train.model import make_dataset

    dataset = make_dataset(to_signature_inputs(frame, spec), None, PREDICT_BATCH)
    return model.predict(dataset, verbose=0).reshape(-1)


def score(
    model: keras.Model,
    frame: pd.DataFrame,
    spec: FeatureSpec,
    probabilities: np.ndarray | None = None,
) -> dict[str, float]:
    """Exact log loss, ROC AUC and PR AUC (average precision) of the final model (on
    `probabilities` when they were predicted already)."""
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    labels = frame[spec.label].to_numpy()
    if probabilities is None:
        probabilities = predict_keras(model, frame, spec)
    probabilities = probabilities.astype("float64")
    return {
        "loss": float(log_loss(labels, probabilities, labels=[0, 1])),
        "roc_auc": float(roc_auc_score(labels, probabilities)),
        "pr_auc": float(average_precision_score(labels, probabilities)),
    }


def write_monitoring_baseline(
    validation: Path, out: Path, scores: np.ndarray, scored: dict[str, float]
) -> None:
    """The model carries what monitoring compares it with: the training set's statistics
    (validate's statistics.json, copied) and its scores on the validation split (decile bins
    for prediction drift, ROC AUC for the realized-quality check)."""
    from portside.components.validate.statistics import drift_bins

    if (validation / STATISTICS_FILE).is_file():  # a validate output always has it
        shutil.copyfile(validation / STATISTICS_FILE, out / STATISTICS_FILE)
    else:  # never leave an earlier model's baseline in a reused directory
        (out / STATISTICS_FILE).unlink(missing_ok=True)
    reference = {
        "split": "validation",
        "rows": int(len(scores)),
        "roc_auc": scored["roc_auc"],
        "positive_rate_predicted": float(scores.mean()) if len(scores) else None,
        "drift_bins": drift_bins(scores.astype("float64")),
    }
    write_json(out / REFERENCE_SCORES_FILE, reference)


def export_model(model: keras.Model, spec: FeatureSpec, out: Path) -> None:
    """`<out>/saved_model` (replacing an older one) and `<out>/feature_spec.json`."""
    from portside.components.train.model import export_saved_model

    target = out / SAVED_MODEL_DIR
    if target.exists():
        shutil.rmtree(target)
    export_saved_model(model, spec, target)
    spec.save(out)


def training_metrics(
    trained: TrainedModel,
    split: TimeSplit,
    spec: FeatureSpec,
    hyper: Hyperparameters,
    final: dict[str, dict[str, float]],
) -> dict[str, Any]:
    epochs_run = len(trained.history["loss"])
    rows = {"train": len(split.train), "validation": len(split.validation)}
    rows["test"] = len(split.test)
    return {
        "final": final,  # the best epoch's weights, scored on each whole split
        "history": trained.history,
        "epochs_run": epochs_run,
        "best_epoch": trained.best_epoch,
        "hyperparameters": asdict(hyper),
        "label_column": spec.label,
        "class_weighting": CLASS_WEIGHTING,
        "train_positive_rate": trained.preprocessing.positive_rate,
        "features": {
            "numeric": spec.numeric,
            "categorical": spec.categorical,
            "log1p": trained.preprocessing.log_columns,
        },
        "split": {
            "validation_start": str(split.validation_start),
            "test_start": str(split.test_start),
            "rows": rows,
        },
        # Includes the per-epoch validation pass and the first epoch's graph tracing.
        "examples_per_second": round(rows["train"] * epochs_run / trained.fit_seconds, 1),
        "fit_seconds": round(trained.fit_seconds, 3),
        "devices": trained.devices,
    }


def mlflow_params(metrics: dict[str, Any]) -> dict[str, Any]:
    hyper = metrics["hyperparameters"]
    params = {**hyper, "hidden_units": ",".join(str(u) for u in hyper["hidden_units"])}
    params["label_column"] = metrics["label_column"]
    params |= {k: metrics["split"][k] for k in ("validation_fraction", "test_fraction")}
    params |= {kind: ",".join(columns) for kind, columns in metrics["features"].items()}
    params["class_weighting"] = metrics["class_weighting"]
    return params


def mlflow_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics MLflow gets (the per-epoch history travels in metrics.json)."""
    flat = {
        f"{part}_{name}": value
        for part, values in metrics["final"].items()
        for name, value in values.items()
    }
    for name in ("epochs_run", "best_epoch", "examples_per_second", "fit_seconds", "seconds"):
        flat[name] = metrics[name]
    return flat


def plot_curves(history: dict[str, list[float]], best_epoch: int, path: Path) -> None:
    """Loss and ROC AUC per epoch, train and validation; the kept epoch is marked."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    epochs = range(1, len(history["loss"]) + 1)
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, metric, title in zip(
        figure.subplots(1, 2), ("loss", "auc"), ("log loss", "ROC AUC"), strict=True
    ):
        axes.plot(epochs, history[metric], marker="o", label="train")
        axes.plot(epochs, history[f"val_{metric}"], marker="o", label="validation")
        axes.axvline(best_epoch, color="grey", linestyle="--", label="kept epoch")
        axes.set(title=title, xlabel="epoch")
        axes.legend()
    figure.savefig(path, dpi=100)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2))
