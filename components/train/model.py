"""The Keras model with its preprocessing inside, its input pipeline, and its SavedModel export.

Every statistic the preprocessing needs comes from the train split only. The model takes the
raw feature columns exactly as the serving signature does (`model_io.to_signature_inputs`:
float32 with NaN = missing, strings with "" = missing), so serving applies the training
transformation by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from portside.components.common.model_io import FeatureSpec

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

# A nonnegative column with a longer right tail than this is modelled as log1p(x).
LOG_SKEW_THRESHOLD = 1.0


@dataclass(frozen=True)
class Preprocessing:
    """Train-split statistics baked into the model's preprocessing layers."""

    log_columns: list[str]  # numeric columns transformed with log1p(max(x, 0))
    mean: list[float]  # per numeric column, after the log transform; also the imputed value
    variance: list[float]
    vocabularies: dict[str, list[str]]  # per categorical column; anything else is OOV
    positive_rate: float


def fit_preprocessing(
    inputs: dict[str, np.ndarray], labels: np.ndarray, spec: FeatureSpec
) -> Preprocessing:
    """Statistics of the train split: the same numbers `Normalization.adapt` would compute on
    the non-missing values, plus sorted vocabularies (deterministic, unlike adapt's ties)."""
    import pandas as pd

    log_columns, means, variances = [], [], []
    for column in spec.numeric:
        values = inputs[column].astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size and values.min() >= 0 and pd.Series(values).skew() > LOG_SKEW_THRESHOLD:
            log_columns.append(column)
            values = np.log1p(values)
        means.append(float(values.mean()) if values.size else 0.0)
        variances.append(float(values.var()) if values.size else 1.0)
    vocabularies = {column: sorted(set(inputs[column].tolist())) for column in spec.categorical}
    return Preprocessing(log_columns, means, variances, vocabularies, float(labels.mean()))


def build_model(
    spec: FeatureSpec, prep: Preprocessing, hidden_units: list[int], learning_rate: float
) -> keras.Model:
    """Functional model: raw rank-1 inputs -> preprocessing -> dense layers -> probability.

    Class imbalance is handled by the output bias, initialised to log(p / (1 - p)) of the train
    split: training starts at the base rate and predictions stay calibrated probabilities
    (class weights would inflate them).
    """
    import keras

    inputs = {c: keras.Input(shape=(), dtype="float32", name=c) for c in spec.numeric}
    inputs |= {c: keras.Input(shape=(), dtype="string", name=c) for c in spec.categorical}
    parts = _numeric_features(inputs, spec, prep) if spec.numeric else []
    for column in spec.categorical:
        lookup = keras.layers.StringLookup(
            vocabulary=prep.vocabularies[column],
            num_oov_indices=1,
            output_mode="one_hot",
            name=f"{column}_lookup",
        )
        parts.append(lookup(inputs[column]))
    x = keras.layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    p = prep.positive_rate
    logit_bias = keras.initializers.Constant(math.log(p / (1 - p)))
    x = keras.layers.Dense(1, activation="sigmoid", bias_initializer=logit_bias, name="output")(x)
    outputs = keras.ops.squeeze(x, axis=-1)
    model = keras.Model(inputs, outputs, name="portside_model")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.AUC(curve="PR", name="pr_auc")],
    )
    return model


def _numeric_features(inputs: dict, spec: FeatureSpec, prep: Preprocessing) -> list:
    """Per numeric column: missing indicator, log1p if heavy-tailed, mean imputation, scaling.

    Non-finite values (NaN, and inf, which no feature should produce) count as missing.
    """
    import keras

    ops = keras.ops
    x = ops.stack([inputs[c] for c in spec.numeric], axis=1)
    missing = ops.logical_not(ops.isfinite(x))
    log_mask = np.array([c in prep.log_columns for c in spec.numeric])
    x = ops.where(log_mask, ops.log1p(ops.maximum(x, 0.0)), x)
    x = ops.where(missing, np.array(prep.mean, dtype=np.float32), x)
    scaled = keras.layers.Normalization(mean=prep.mean, variance=prep.variance, name="scale")(x)
    return [scaled, ops.cast(missing, "float32")]


def make_dataset(
    inputs: dict[str, np.ndarray],
    labels: np.ndarray | None,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of feature dicts (Keras 3 `fit` rejects numpy string arrays, tf.data does not).

    Shuffling permutes row indices each epoch and gathers whole batches, which is much cheaper
    than shuffling a million dict elements one by one.
    """
    import tensorflow as tf

    columns = {name: tf.constant(values) for name, values in inputs.items()}
    if labels is not None:
        columns["__label__"] = tf.constant(labels.astype(np.float32))
    rows = len(next(iter(inputs.values())))
    indices = tf.data.Dataset.range(rows)
    if shuffle_seed is not None:
        indices = indices.shuffle(rows, seed=shuffle_seed, reshuffle_each_iteration=True)

    def gather(index: tf.Tensor) -> tuple:
        batch = {name: tf.gather(values, index) for name, values in columns.items()}
        label = batch.pop("__label__", None)
        return batch if label is None else (batch, label)

    return indices.batch(batch_size).map(gather).prefetch(tf.data.AUTOTUNE)


def export_saved_model(model: keras.Model, spec: FeatureSpec, path: str | Path) -> None:
    """SavedModel whose `serving_default` takes one rank-1 tensor per raw feature column and
    returns {spec.output: float32 [batch]} (the contract in `model_io`)."""
    import keras
    import tensorflow as tf

    signature = {c: tf.TensorSpec([None], tf.float32, name=c) for c in spec.numeric}
    signature |= {c: tf.TensorSpec([None], tf.string, name=c) for c in spec.categorical}

    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {spec.output: model(features, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serving_default", fn=serve, input_signature=[signature])
    archive.write_out(str(path), verbose=False)
