"""`portside monitor`: has recent data drifted from a model's training baseline? Does serving
skew from training, does the model still do as well?

    portside monitor --baseline RUN/train/model --entity-rows rows.parquet \\
        --from 2026-10-18 --until 2026-11-01
    portside monitor --baseline RUN/train/model --prediction-log data/prediction_log \\
        --from 2026-10-31 --labels data/sources/labels.parquet --param labels_key=transaction_id

With entity rows, builds the window's features with the `features` component (the rows in
[from, until), joined by Feast exactly as training joined them), then runs the `monitor`
component against the baseline (the model directory, or validate's output); the same two steps
the `model_monitoring` DAG runs daily. With a prediction log, the monitor reads the log itself:
the features and scores the server used in [from, until), the skew against the offline values
(the feature repo of the profile) and, with labels, the realized quality per version and arm.
Prints the verdict, its reasons and where the report is.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from portside.components.errors import ConfigurationError

DEFAULT_OUT = "data/monitoring"


def monitor_window(
    baseline: Path,
    entity_rows: Path,
    out: Path,
    rows_from: str = "",
    rows_until: str = "",
    settings: dict[str, object] | None = None,
) -> dict:
    """features over the window, then monitor; returns the verdict (verdict.json's content)."""
    from portside.components.registry import get_spec
    from portside.components.runtime import execute
    from portside.pipelines.training_pipeline import PipelineDefaults

    if not entity_rows.is_file():
        raise ConfigurationError(f"{entity_rows}: entity rows not found")
    defaults = PipelineDefaults()
    window = out / "window"
    features = execute(
        get_spec("features"),
        {
            "entity_rows": str(entity_rows.resolve()),
            "training_set": str(window),
            "feature_repo": defaults.feature_repo,
            "feature_service": defaults.feature_service,
            "label_column": defaults.label_column,
            "rows_from": rows_from,
            "rows_until": rows_until,
        },
    )
    rows = (features.result or {}).get("rows_out", 0)
    print(f"features: {rows:,} rows in the window -> {window}")
    return _run_monitor(baseline, window, out, settings or {})


def _run_monitor(baseline: Path, window: Path, out: Path, arguments: dict[str, object]) -> dict:
    """The monitor component on `window` into out/monitoring, named by the profile's model;
    its verdict (verdict.json's content)."""
    from portside.components.registry import get_spec
    from portside.components.runtime import execute
    from portside.pipelines.training_pipeline import PipelineDefaults

    manifest = execute(
        get_spec("monitor"),
        {
            "baseline": str(baseline),
            "window": str(window),
            "monitoring": str(out / "monitoring"),
            "model_name": PipelineDefaults().model_name,
            **arguments,
        },
    )
    return manifest.result or {}


def _settings(pairs: list[str]) -> dict[str, object]:
    """`--param` pairs typed as the monitor's spec declares them."""
    from portside.components.registry import get_spec
    from portside.pipelines.pipeline_commands import named_pairs

    declared = {p.name: p for p in get_spec("monitor").parameters}
    settings: dict[str, object] = {}
    for name, raw in named_pairs(pairs, set(declared), "the monitor").items():
        try:
            settings[name] = declared[name].type(raw)
        except ValueError as error:
            kind = declared[name].type.__name__
            raise ConfigurationError(f"--param {name}={raw!r}: {name} is a {kind}") from error
    return settings


def monitor_prediction_log(
    baseline: Path,
    prediction_log: Path,
    out: Path,
    rows_from: str = "",
    rows_until: str = "",
    labels: str = "",
    settings: dict[str, object] | None = None,
) -> dict:
    """monitor on the serving prediction log; returns the verdict (verdict.json's content)."""
    from portside.pipelines.training_pipeline import PipelineDefaults

    if not prediction_log.is_dir():
        raise ConfigurationError(f"{prediction_log}: no prediction log folder")
    arguments: dict[str, object] = {
        "window_start": rows_from,
        "window_end": rows_until,
        "timestamp_column": "timestamp",
        "feature_repo": PipelineDefaults().feature_repo,
        "labels": labels,
    }
    return _run_monitor(baseline, prediction_log, out, {**arguments, **(settings or {})})


def _monitor(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    out = Path(args.out)
    settings = _settings(args.param or [])
    if bool(args.entity_rows) == bool(args.prediction_log):
        raise ConfigurationError("name either --entity-rows or --prediction-log")
    if args.prediction_log:
        verdict = monitor_prediction_log(
            Path(args.baseline), Path(args.prediction_log), out, args.rows_from or "",
            args.rows_until or "", args.labels or "", settings,
        )  # fmt: skip
    else:
        if args.labels:
            raise ConfigurationError("--labels: the labels are matched to a --prediction-log")
        verdict = monitor_window(
            Path(args.baseline),
            Path(args.entity_rows),
            out,
            args.rows_from or "",
            args.rows_until or "",
            settings,
        )
    elapsed = time.perf_counter() - started
    window = verdict.get("window") or {}
    print(
        f"monitor: {verdict.get('verdict')} over {window.get('rows', 0):,} rows in {elapsed:.1f} s"
    )
    for reason in verdict.get("reasons") or []:
        print(f"  {reason}")
    print(f"  report {out / 'monitoring' / 'report.html'}")
    return 0


def add_monitor_commands(commands: argparse._SubParsersAction) -> None:
    monitor = commands.add_parser(
        "monitor",
        help="compare recent data or the prediction log with a model's baseline (drift, skew, "
        "quality)",
    )
    monitor.add_argument(
        "--baseline",
        required=True,
        help="the model's directory (train's output) or its training run's validate output",
    )
    monitor.add_argument("--entity-rows", help="Parquet entity rows to monitor")
    monitor.add_argument("--prediction-log", help="the server's prediction log folder")
    monitor.add_argument("--labels", help="with --prediction-log: labels that have arrived")
    monitor.add_argument("--from", dest="rows_from", help="window start (ISO; inclusive)")
    monitor.add_argument("--until", dest="rows_until", help="window end (ISO; exclusive)")
    monitor.add_argument("--out", default=DEFAULT_OUT, help="where the window and report go")
    monitor.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="monitor setting: drift_metric, drift_threshold, feature_thresholds, min_samples, "
        "skew_threshold, labels_key, label_column, min_labels, max_auc_drop, ...",
    )
    monitor.set_defaults(handler=_monitor)
