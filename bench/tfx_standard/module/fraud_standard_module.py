"""The standard TFX pipeline's user module (Transform's preprocessing_fn, Trainer's run_fn), as a
TFX user writes it after the TFX tutorials (penguin, taxi): the peer of Portside's train step
in bench/tfx.py.

It lives alone in its folder because TFX fingerprints every file beside the module file. The
features are whatever the schema holds besides the label (`custom_config["label"]`): text
columns get a vocabulary, numeric ones a missing indicator, a signed log and a z-score, so the
model sees the same kinds of transformation Portside's model does (imputation with missing
indicators, log of heavy tails, scaling, one-hot vocabulary). The network is Portside's default
(dense 64, 32, sigmoid), trained with the same batch size, epochs and learning rate.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

OOV_BUCKETS = 1


def _label(custom_config: dict) -> str:
    return custom_config["label"]


def _dense(value: tf.Tensor | tf.SparseTensor, default: object) -> tf.Tensor:
    """A feature absent from some examples arrives sparse: densify it to one value per row."""
    if not isinstance(value, tf.SparseTensor):
        return tf.reshape(value, [-1])
    shaped = tf.SparseTensor(value.indices, value.values, [value.dense_shape[0], 1])
    return tf.squeeze(tf.sparse.to_dense(shaped, default), axis=1)


def _present(value: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    if not isinstance(value, tf.SparseTensor):
        return tf.ones_like(tf.reshape(value, [-1]), dtype=tf.float32)
    shaped = tf.SparseTensor(
        value.indices, tf.ones_like(value.values, tf.float32), [value.dense_shape[0], 1]
    )
    return tf.squeeze(tf.sparse.to_dense(shaped, 0.0), axis=1)


def preprocessing_fn(inputs: dict, custom_config: dict) -> dict:
    label = _label(custom_config)
    outputs = {}
    if label in inputs:  # absent at serving time (the transform layer of serving_default)
        outputs[label] = _dense(inputs[label], tf.constant(0, inputs[label].dtype))
    for name in sorted(set(inputs) - {label}):
        value = inputs[name]
        if value.dtype == tf.string:
            outputs[name] = tft.compute_and_apply_vocabulary(
                _dense(value, ""), num_oov_buckets=OOV_BUCKETS, vocab_filename=name
            )
            continue
        present = _present(value)
        number = tf.cast(_dense(value, tf.constant(0, value.dtype)), tf.float32)
        signed_log = tf.sign(number) * tf.math.log1p(tf.abs(number))
        outputs[name] = tft.scale_to_z_score(signed_log) * present
        outputs[f"{name}__missing"] = 1.0 - present
    return outputs


def _dataset(files, data_accessor, transform_output, label: str, batch_size: int, seed: int):
    return data_accessor.tf_dataset_factory(
        files,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=label, shuffle_seed=seed),
        transform_output.transformed_metadata.schema,
    ).repeat()


def _model(transform_output, label: str, hidden_units: list[int], learning_rate: float):
    keras = tf.keras  # tf_keras (Keras 2) with TF_USE_LEGACY_KERAS=1, as TFX 1.16 needs
    spec = transform_output.transformed_feature_spec()
    inputs, parts = {}, []
    for name in sorted(set(spec) - {label}):
        if spec[name].dtype == tf.int64:  # a vocabulary index
            inputs[name] = keras.Input(shape=(), name=name, dtype=tf.int64)
            depth = transform_output.vocabulary_size_by_name(name) + OOV_BUCKETS
            parts.append(keras.layers.CategoryEncoding(depth, output_mode="one_hot")(inputs[name]))
        else:
            inputs[name] = keras.Input(shape=(), name=name, dtype=tf.float32)
            parts.append(keras.layers.Reshape((1,))(inputs[name]))
    x = keras.layers.concatenate(parts)
    for units in hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)
    output = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inputs, output)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    return model


def _serving_fn(model, transform_output, label: str):
    """serving_default: serialized tf.Examples of raw features -> fraud probability."""
    model.tft_layer = transform_output.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(serialized):
        raw_spec = transform_output.raw_feature_spec()
        raw_spec.pop(label)
        parsed = tf.io.parse_example(serialized, raw_spec)
        transformed = model.tft_layer(parsed)
        transformed.pop(label, None)
        return {"probability": tf.reshape(model(transformed), [-1])}

    return serve


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    config = fn_args.custom_config
    label, batch_size = _label(config), int(config["batch_size"])
    transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(
        fn_args.train_files, fn_args.data_accessor, transform_output, label, batch_size, 7
    )
    evaluation = _dataset(
        fn_args.eval_files, fn_args.data_accessor, transform_output, label, batch_size, 7
    )
    tf.keras.utils.set_random_seed(int(config["seed"]))
    model = _model(
        transform_output,
        label,
        [int(units) for units in config["hidden_units"].split(",")],
        float(config["learning_rate"]),
    )
    epochs = int(config["epochs"])
    model.fit(
        train,
        epochs=epochs,
        steps_per_epoch=max(1, fn_args.train_steps // epochs),
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        verbose=2,
    )
    serve = _serving_fn(model, transform_output, label)
    model.save(fn_args.serving_model_dir, save_format="tf", signatures={"serving_default": serve})
