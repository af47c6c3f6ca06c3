"""The `monitor` component: does a window of recent data still look like the training baseline?

Reads the baseline statistics validate wrote (statistics.json: each number's decile bins with
their counts, each category's frequencies, the feature service version), counts the window on
the same bins in DuckDB (components.monitor.window), and per feature computes the population
stability index and the Jensen-Shannon distance (components.monitor.drift). A feature drifts
when the chosen metric exceeds its threshold; below `min_samples` rows in the window its status
is "not enough data", never drift (missing values count: a column gone empty is drift).
Writes into the `monitoring` directory:

  metrics.json   per feature: both distances, threshold, status, missing rates, new categories,
                 the binned proportions on both sides
  verdict.json   ok / drift / not enough data, with one reason per drifted feature
  report.html    the verdict, a table of every feature, an overlay plot per drifted feature

Bad input (no rows in the window, a column the baseline has and the window lacks, a baseline of
another feature service version) raises before anything is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from components.common.artifacts import (
    MANIFEST_FILE,
    MONITOR_METRICS_FILE,
    MONITOR_PLOTS_DIR,
    MONITOR_REPORT_FILE,
    STATISTICS_FILE,
    VERDICT_FILE,
    read_json_object,
)
from components.errors import ConfigurationError, InputDataError

DRIFT_METRICS = ("psi", "js")
NEW = "(new or rare)"  # the bin of values outside the baseline's listed categories
MISSING = "(missing)"
TOP_NEW = 10

Status = Literal["ok", "drift", "not enough data"]
Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: Kind
    status: Status
    rows: int  # window rows (missing values included: a column gone empty is drift)
    values: int  # non-missing values of the feature in the window
    psi: float | None
    js_distance: float | None
    metric: str
    threshold: float
    baseline_missing_rate: float
    window_missing_rate: float
    bins: list[str]
    baseline_proportions: list[float]
    window_proportions: list[float]
    new_categories: dict[str, int] = field(default_factory=dict)  # most frequent first
    new_category_share: float = 0.0
    # False when the baseline kept only its most frequent categories: an unlisted value may
    # then be a rare known one rather than a new one
    categories_complete: bool = True

    @property
    def score(self) -> float | None:
        return self.psi if self.metric == "psi" else self.js_distance


@dataclass(frozen=True)
class Verdict:
    verdict: Status
    reasons: list[str]
    drifted: list[str]
    window: dict[str, Any]
    metric: str
    baseline: str


def run(
    baseline: str,
    window: str,
    monitoring: str,
    window_start: str = "",
    window_end: str = "",
    timestamp_column: str = "event_timestamp",
    drift_metric: str = "psi",
    drift_threshold: float = 0.2,
    feature_thresholds: str = "",
    min_samples: int = 500,
) -> Verdict:
    from components.monitor.window import count_window

    if drift_metric not in DRIFT_METRICS:
        raise ConfigurationError(
            f"drift_metric must be one of {DRIFT_METRICS}, got {drift_metric!r}"
        )
    if min_samples < 1:
        raise ConfigurationError(f"min_samples must be at least 1, got {min_samples}")
    _check_threshold("drift_threshold", drift_threshold)
    statistics_path = Path(baseline) / STATISTICS_FILE
    statistics = read_json_object(statistics_path, "validate")
    numeric_edges = _numeric_edges(statistics, statistics_path)
    categorical = list(statistics.get("categorical") or {})
    if not numeric_edges and not categorical:
        raise InputDataError(f"{statistics_path}: the baseline describes no features")
    thresholds = _thresholds(feature_thresholds, drift_threshold, [*numeric_edges, *categorical])
    window_path = Path(window)
    _check_feature_service(statistics, statistics_path, window_path)
    start, end = _time(window_start, "window_start"), _time(window_end, "window_end")
    counts = count_window(
        window_path,
        numeric_edges,
        categorical,
        timestamp_column,
        start,
        end,
    )
    if counts.rows == 0:
        between = f" between {window_start or 'the start'} and {window_end or 'the end'}"
        raise InputDataError(
            f"{window_path}: the window holds no rows{between if start or end else ''}"
        )
    features = [
        _numeric_drift(name, statistics["numeric"][name], counts.numeric[name])
        for name in numeric_edges
    ] + [
        _categorical_drift(name, statistics["categorical"][name], counts.categorical[name])
        for name in categorical
    ]
    features = [_judge(f, drift_metric, thresholds[f.feature], min_samples) for f in features]
    verdict = _verdict(features, counts.rows, window_start, window_end, drift_metric, baseline)
    _write(Path(monitoring), features, verdict, statistics)
    return verdict


def _numeric_edges(statistics: dict[str, Any], path: Path) -> dict[str, list[float]]:
    edges = {}
    for name, stats in (statistics.get("numeric") or {}).items():
        if stats.get("count") == 0:
            continue  # never observed in training: nothing to compare with
        if "drift_bins" not in stats:
            raise InputDataError(
                f"{path}: {name!r} has no drift_bins; the baseline was written by an older "
                "validate: run validate again to write one"
            )
        edges[name] = stats["drift_bins"]["edges"]
    return edges


def _thresholds(text: str, default: float, features: list[str]) -> dict[str, float]:
    """`{"feature": threshold, ...}` over the default; every name must be a baseline feature."""
    chosen = dict.fromkeys(features, float(default))
    if not text.strip():
        return chosen
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"feature_thresholds: not JSON ({error})") from error
    if not isinstance(overrides, dict):
        raise ConfigurationError('feature_thresholds: a JSON object {"feature": threshold}')
    unknown = sorted(set(overrides) - set(features))
    if unknown:
        raise ConfigurationError(
            f"feature_thresholds: {', '.join(unknown)} not in the baseline "
            f"(its features: {', '.join(features)})"
        )
    for name, value in overrides.items():
        _check_threshold(f"feature_thresholds: {name}", value)
        chosen[name] = float(value)
    return chosen


def _check_threshold(name: str, value: object) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):  # type: ignore[arg-type]
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")


def _check_feature_service(statistics: dict[str, Any], path: Path, window: Path) -> None:
    """A window built by the features component must come from the baseline's definition."""
    manifest_path = window / MANIFEST_FILE
    ours = statistics.get("feature_service") or {}
    if not (window.is_dir() and manifest_path.is_file() and ours.get("hash")):
        return
    theirs = read_json_object(manifest_path, "features")
    if theirs.get("feature_service_hash") != ours["hash"]:
        raise InputDataError(
            f"{window}: built from feature service {theirs.get('feature_service')!r} version "
            f"{str(theirs.get('feature_service_hash'))[:12]}, but the baseline {path} describes "
            f"{ours.get('name')!r} version {ours['hash'][:12]}: compare windows with the "
            "baseline of the same definition"
        )


def _time(text: str, name: str) -> datetime | None:
    from datetime import timezone

    if not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise ConfigurationError(f"{name}: not an ISO date/time: {text!r}") from error
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _numeric_drift(name: str, stats: dict[str, Any], window: list[int]) -> FeatureDrift:
    edges, counts = stats["drift_bins"]["edges"], stats["drift_bins"]["counts"]
    labels = [f"<= {edges[0]:.4g}"] if edges else ["all"]
    labels += [f"({low:.4g}, {high:.4g}]" for low, high in zip(edges[:-1], edges[1:], strict=True)]
    labels += [f"> {edges[-1]:.4g}"] if edges else []
    baseline = [*counts, stats["null_count"]]
    return _distances(name, "numeric", [*labels, MISSING], baseline, window)


def _categorical_drift(name: str, stats: dict[str, Any], window: dict[Any, int]) -> FeatureDrift:
    known = stats["frequencies"]
    seen = stats["count"]
    labels = list(known)
    baseline = [frequency * seen for frequency in known.values()]
    baseline += [stats["other_frequency"] * seen, stats["null_count"]]
    missing = window.get(None, 0)
    new = {str(k): v for k, v in window.items() if k is not None and str(k) not in known}
    counts = [window.get(label, 0) for label in labels] + [sum(new.values()), missing]
    drift = _distances(name, "categorical", [*labels, NEW, MISSING], baseline, counts)
    present = sum(counts) - missing
    top = dict(sorted(new.items(), key=lambda item: -item[1])[:TOP_NEW])
    share = sum(new.values()) / present if present else 0.0
    complete = stats["other_frequency"] == 0
    return replace(
        drift, new_categories=top, new_category_share=share, categories_complete=complete
    )


def _distances(
    name: str, kind: Kind, labels: list[str], baseline: list[float], window: list[float]
) -> FeatureDrift:
    from components.monitor.drift import (
        jensen_shannon_distance,
        population_stability_index,
        proportions,
    )

    values = int(sum(window) - window[-1])
    have = sum(baseline) > 0 and sum(window) > 0
    return FeatureDrift(
        feature=name,
        kind=kind,
        status="ok",
        rows=int(sum(window)),
        values=values,
        psi=population_stability_index(baseline, window) if have else None,
        js_distance=jensen_shannon_distance(baseline, window) if have else None,
        metric="psi",
        threshold=0.0,
        baseline_missing_rate=baseline[-1] / sum(baseline) if sum(baseline) else 0.0,
        window_missing_rate=window[-1] / sum(window) if sum(window) else 0.0,
        bins=labels,
        baseline_proportions=[float(p) for p in proportions(baseline)] if sum(baseline) else [],
        window_proportions=[float(p) for p in proportions(window)] if sum(window) else [],
    )


def _judge(drift: FeatureDrift, metric: str, threshold: float, min_samples: int) -> FeatureDrift:
    judged = replace(drift, metric=metric, threshold=threshold)
    if judged.rows < min_samples or judged.score is None:
        status: Status = "not enough data"
    else:
        status = "drift" if judged.score > threshold else "ok"
    return replace(judged, status=status)


def _verdict(
    features: list[FeatureDrift], rows: int, start: str, end: str, metric: str, baseline: str
) -> Verdict:
    drifted = [f for f in features if f.status == "drift"]
    reasons = [_reason(f) for f in drifted]
    if drifted:
        status: Status = "drift"
    elif all(f.status == "not enough data" for f in features):
        status = "not enough data"
        reasons = [f"no feature has enough values in the window ({rows:,} rows)"]
    else:
        status = "ok"
    return Verdict(
        verdict=status,
        reasons=reasons,
        drifted=[f.feature for f in drifted],
        window={"start": start or None, "end": end or None, "rows": rows},
        metric=metric,
        baseline=baseline,
    )


def _reason(f: FeatureDrift) -> str:
    label = "PSI" if f.metric == "psi" else "JS distance"
    text = f"{f.feature}: {label} {f.score:.3f} > {f.threshold:g}"
    if f.new_categories:
        what = "new values" if f.categories_complete else "values outside the baseline's list"
        text += f"; {f.new_category_share:.1%} {what} ({', '.join(f.new_categories)})"
    if abs(f.window_missing_rate - f.baseline_missing_rate) > 0.05:
        text += f"; missing {f.baseline_missing_rate:.1%} -> {f.window_missing_rate:.1%}"
    return text


def _write(out: Path, features: list[FeatureDrift], verdict: Verdict, statistics: dict) -> None:
    import shutil

    from components.monitor.report import render_report

    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / MONITOR_PLOTS_DIR, ignore_errors=True)  # an earlier run's plots
    metrics = {
        "verdict": verdict.verdict,
        "window": verdict.window,
        "metric": verdict.metric,
        "baseline_rows": statistics.get("rows"),
        "features": [asdict(f) for f in features],
    }
    (out / MONITOR_METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    (out / MONITOR_REPORT_FILE).write_text(render_report(verdict, features, out))
    (out / VERDICT_FILE).write_text(json.dumps(asdict(verdict), indent=2))  # last: complete
