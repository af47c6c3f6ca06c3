"""The model artifact's contract, shared by train (writes it), evaluate, push and serving.

A model directory holds:
  saved_model/        TensorFlow SavedModel (the layout Vertex AI prebuilt containers and TF
                      Serving load); its `serving_default` signature takes one rank-1 tensor per
                      raw feature column (float32 numeric, NaN = missing; string categorical,
                      "" = missing) and returns {<output>: float32 [batch]}, the probability
                      of the positive label.
  feature_spec.json   the model's inputs (numeric / categorical), where they come from (the
                      feature service and its request fields, the entity keys), the label,
                      timestamp and serving output names: everything serving needs to know.
  split.json          the time boundaries of train's split (`components.common.splits`).
  metrics.json        training metrics.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from portside.components.common.artifacts import FEATURE_SPEC_FILE, SAVED_MODEL_DIR, read_record
from portside.components.errors import InputDataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa


@dataclass(frozen=True)
class FeatureSpec:
    numeric: list[str]
    categorical: list[str]
    label: str
    timestamp: str
    output: str  # the serving signature's output name
    feature_service: str = ""
    entity_keys: list[str] = field(default_factory=list)
    request_fields: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def save(self, model_dir: str | Path) -> None:
        (Path(model_dir) / FEATURE_SPEC_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, model_dir: str | Path) -> FeatureSpec:
        return read_record(cls, Path(model_dir) / FEATURE_SPEC_FILE, "train")


def to_signature_inputs(frame: pd.DataFrame | pa.Table, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Raw feature columns as the serving signature takes them, from pandas (training) or
    Arrow (the server's lookups, without a pandas round trip); the same values either way."""
    import numpy as np

    names = frame.column_names if hasattr(frame, "column_names") else frame.columns
    missing = [c for c in spec.columns if c not in names]
    if missing:
        raise InputDataError(f"feature column(s) missing: {', '.join(missing)}")
    if hasattr(frame, "column_names"):
        return {
            **{c: _arrow_numeric(frame.column(c)) for c in spec.numeric},
            **{c: _arrow_categorical(frame.column(c)) for c in spec.categorical},
        }
    inputs: dict[str, np.ndarray] = {}
    for column in spec.numeric:
        inputs[column] = frame[column].astype("float64").to_numpy(np.float32, na_value=np.nan)
    for column in spec.categorical:
        inputs[column] = frame[column].astype("string").fillna("").to_numpy(dtype=object)
    return inputs


def _arrow_numeric(column: pa.ChunkedArray) -> np.ndarray:
    import numpy as np
    import pyarrow.compute as pc

    # a floating array's nulls become NaN in to_numpy
    values = pc.cast(column, "float64").to_numpy(zero_copy_only=False)
    return values.astype(np.float32)


def _arrow_categorical(column: pa.ChunkedArray) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        # pandas' text of other types (True, 1.0) is what training saw
        series = column.to_pandas()
        return series.astype("string").fillna("").to_numpy(dtype=object)
    return pc.fill_null(column, "").to_numpy(zero_copy_only=False)


class ServingModel:
    """A model directory loaded once: its contract and its exported serving signature."""

    def __init__(self, model_dir: str | Path) -> None:
        import tensorflow as tf

        self.model_dir = Path(model_dir)
        self.spec = FeatureSpec.load(model_dir)
        self._serve = tf.saved_model.load(str(self.model_dir / SAVED_MODEL_DIR)).signatures[
            "serving_default"
        ]

    def predict(self, frame: pd.DataFrame | pa.Table, batch_size: int = 65_536) -> np.ndarray:
        """The model's output (positive-label probability) for every row of `frame`."""
        import numpy as np
        import tensorflow as tf

        inputs = to_signature_inputs(frame, self.spec)
        parts = []
        rows = frame.num_rows if hasattr(frame, "num_rows") else len(frame)
        for start in range(0, rows, batch_size):
            batch = {k: tf.constant(v[start : start + batch_size]) for k, v in inputs.items()}
            parts.append(self._serve(**batch)[self.spec.output].numpy().reshape(-1))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def predict(model_dir: str | Path, frame: pd.DataFrame, batch_size: int = 65_536) -> np.ndarray:
    """The model's output (positive-label probability) for every row of `frame`, through the
    exported serving signature (loaded for this call: a server keeps a `ServingModel`)."""
    return ServingModel(model_dir).predict(frame, batch_size)
