"""Score every model of bench/tfx.py on the same later window, with the same metric code:

    .venv-tfx/bin/python -m bench.tfx_standard.score --training-set X.parquet --split split.json \
        --standard DIR --schema schema.pbtxt --portside NAME=DIR [--portside ...] --output R.json

The window is the test window Portside's train held out (cut at the boundaries in a Portside
model's split.json; neither pipeline trained or early-stopped on it). Portside models score
through their serving signature (components.common.model_io); the standard TFX model through
its serving_default, which takes serialized tf.Examples typed as its schema says. Runs in the
TFX environment: the standard model needs tensorflow_transform's ops, and Portside's models
serve in either environment.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

SCORE_BATCH = 8192


def test_window(training_set: str, split: str):
    import pandas as pd

    from portside.components.common.splits import SplitBoundaries

    boundaries = SplitBoundaries.load(Path(split).parent)
    frame = pd.read_parquet(training_set)
    return boundaries.cut(frame).test


def score_standard(model_dir: str, schema_path: str, frame, label: str) -> np.ndarray:
    import pyarrow as pa
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx_bsl.coders.example_coder import RecordBatchToExamples

    from portside.pipelines.tfx_shim import as_feature_list

    schema = text_format.Parse(Path(schema_path).read_text(), schema_pb2.Schema())
    kinds = {
        schema_pb2.INT: pa.int64(),
        schema_pb2.FLOAT: pa.float64(),
        schema_pb2.BYTES: pa.string(),
    }
    features = [f for f in schema.feature if f.name != label]
    table = pa.Table.from_pandas(frame[[f.name for f in features]], preserve_index=False)
    columns = [table[f.name].cast(kinds[f.type], safe=False) for f in features]
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    scores = []
    for start in range(0, table.num_rows, SCORE_BATCH):
        lists = [as_feature_list(c.slice(start, SCORE_BATCH).combine_chunks()) for c in columns]
        batch = pa.RecordBatch.from_arrays(lists, names=[f.name for f in features])
        examples = tf.constant(RecordBatchToExamples(batch))
        scores.append(serve(examples=examples)["probability"].numpy().reshape(-1))
    return np.concatenate(scores)


def metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | int]:
    from portside.components.evaluate.metrics import curve, pr_auc, roc_auc

    c = curve(labels, scores)
    return {
        "roc_auc": round(roc_auc(c), 5),
        "pr_auc": round(pr_auc(c), 5),
        "rows": int(labels.size),
        "positives": int(labels.sum()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tfx_standard.score")
    parser.add_argument("--training-set", required=True)
    parser.add_argument("--split", required=True, help="a Portside model's split.json")
    parser.add_argument("--label", required=True)
    parser.add_argument("--standard", help="the standard pipeline's pushed model")
    parser.add_argument("--schema", help="its SchemaGen schema.pbtxt")
    parser.add_argument("--portside", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from portside.components.common.model_io import predict

    test = test_window(args.training_set, args.split)
    labels = test[args.label].to_numpy(dtype=np.int64)
    results = {}
    if args.standard:
        results["standard"] = metrics(
            labels, score_standard(args.standard, args.schema, test, args.label)
        )
    for pair in args.portside:
        name, _, model_dir = pair.partition("=")
        results[name] = metrics(labels, predict(model_dir, test))
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
