"""The artifacts the components hand each other: what each directory holds, and how a later
component reads what an earlier one wrote (as `model_io` is for the model's serving contract).

  training_set/   features: training_set.parquet, manifest.json
  validation/     validate: result.json, report.html, statistics.json, summary.json
  model/          train: saved_model/, feature_spec.json, split.json, metrics.json,
                  training_curves.png, and the monitoring baseline that travels with the
                  model: statistics.json (validate's, copied) and reference_scores.json
  evaluation/     evaluate: metrics.json, blessing.json, roc.png, pr.png, calibration.png
  pushed/         push: pushed.json
  predictions/    batch_predict: predictions.parquet, metrics.json
  monitoring/     monitor: metrics.json, verdict.json, report.html, plots/, metrics.prom

Every reader names the file and the component that writes it when the file is missing or
unreadable, so a miswired pipeline says which step's output it lacks.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from portside.components.errors import InputDataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# training_set/, written by features
TRAINING_SET_FILE = "training_set.parquet"
MANIFEST_FILE = "manifest.json"
# validation/, written by validate
VALIDATION_RESULT_FILE = "result.json"
VALIDATION_REPORT_FILE = "report.html"
STATISTICS_FILE = "statistics.json"
VALIDATION_SUMMARY_FILE = "summary.json"
# model/, written by train
SAVED_MODEL_DIR = "saved_model"
FEATURE_SPEC_FILE = "feature_spec.json"
SPLIT_FILE = "split.json"
TRAINING_METRICS_FILE = "metrics.json"
TRAINING_CURVES_FILE = "training_curves.png"
# The scores of the validation split (decile bins, ROC AUC): prediction drift's reference.
REFERENCE_SCORES_FILE = "reference_scores.json"
# evaluation/, written by evaluate
EVALUATION_METRICS_FILE = "metrics.json"
BLESSING_FILE = "blessing.json"
ROC_PLOT_FILE = "roc.png"
PR_PLOT_FILE = "pr.png"
CALIBRATION_PLOT_FILE = "calibration.png"
# pushed/, written by push
PUSHED_FILE = "pushed.json"
# predictions/, written by batch_predict
PREDICTIONS_FILE = "predictions.parquet"
BATCH_METRICS_FILE = "metrics.json"
# monitoring/, written by monitor
MONITOR_METRICS_FILE = "metrics.json"
VERDICT_FILE = "verdict.json"
MONITOR_REPORT_FILE = "report.html"
MONITOR_PLOTS_DIR = "plots"
MONITOR_PROMETHEUS_FILE = "metrics.prom"  # for node_exporter's textfile collector

Record = TypeVar("Record")


def read_json(path: Path, writer: str) -> Any:
    """The JSON file `writer` (the component that writes it) left at `path`."""
    if not path.is_file():
        raise InputDataError(f"{path}: not found; the {writer} component writes it")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputDataError(
            f"{path}: not valid JSON ({error}); the {writer} component writes it"
        ) from error


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` in one step (a temporary file of this process, then a rename): a reader
    never sees half a file, a crash never leaves one."""
    import os

    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def read_json_object(path: Path, writer: str) -> dict[str, Any]:
    written = read_json(path, writer)
    if not isinstance(written, dict):
        raise InputDataError(f"{path}: not a JSON object; the {writer} component writes it")
    return written


def read_record(kind: type[Record], path: Path, writer: str) -> Record:
    """A dataclass that `writer` saved as a JSON object. Every field without a default must
    be there; fields the dataclass does not know (a newer writer's) are left out."""
    written = read_json_object(path, writer)
    declared = fields(kind)  # type: ignore[arg-type]
    required = [f.name for f in declared if f.default is f.default_factory is MISSING]
    missing = [name for name in required if name not in written]
    if missing:
        raise InputDataError(
            f"{path}: field(s) {', '.join(missing)} missing; run the {writer} component again "
            "to write them"
        )
    names = {f.name for f in declared}
    return kind(**{k: v for k, v in written.items() if k in names})


def read_training_table(path: Path) -> pa.Table:
    """A training set file (`<training_set>/training_set.parquet`) with its Arrow types."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputDataError(f"{path}: training set not found; the features component writes it")
    try:
        return pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for unreadable files
        raise InputDataError(f"{path}: not a readable Parquet file ({error})") from error


def read_labelled_training_set(training_set: Path, label_column: str) -> pd.DataFrame:
    """The training set as train fits on it and evaluate scores it: a binary label (0/1,
    no nulls) in `label_column`."""
    path = training_set / TRAINING_SET_FILE
    frame = read_training_table(path).to_pandas()
    if label_column not in frame.columns:
        raise InputDataError(f"{path}: label column {label_column!r} is missing")
    label = frame[label_column]
    if label.isna().any():
        raise InputDataError(
            f"{path}: label column {label_column!r} has {label.isna().sum()} nulls"
        )
    if not label.isin([0, 1]).all():
        bad = label[~label.isin([0, 1])].unique()[:5].tolist()
        raise InputDataError(f"{path}: label column {label_column!r} must be 0/1; found {bad}")
    return frame


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    reason: str  # one line naming the summary it read


def validation_gate(validation: Path) -> GateVerdict:
    """What the validate component's summary says of the training set: passed or not, and
    why not (its first failures). Only data the gate passed may be trained on or blessed."""
    path = validation / VALIDATION_SUMMARY_FILE
    summary = read_json_object(path, "validate")
    passed = summary.get("passed")
    if not isinstance(passed, bool):
        raise InputDataError(f"{path}: field 'passed' must be true or false, got {passed!r}")
    if passed:
        return GateVerdict(True, f"validation gate passed ({path})")
    failures = summary.get("failures") or []
    shown = "; ".join(str(f) for f in failures[:5]) or "no failures listed"
    more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
    return GateVerdict(False, f"validation gate did not pass ({path}): {shown}{more}")
