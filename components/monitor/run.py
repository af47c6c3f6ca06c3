"""The `monitor` component: does a window of recent data still look like the training baseline,
and does the served model still do as well?

The baseline is a model directory (train copies validate's statistics.json into it and adds
its validation scores, reference_scores.json) or a validate output (features only). The window
is a features output or the serving prediction log. Checks:

- data drift: the window counted on the baseline's bins in DuckDB (components.monitor.window),
  per feature the population stability index and the Jensen-Shannon distance
  (components.monitor.drift). A feature drifts when the chosen metric exceeds its threshold;
  below `min_samples` rows its status is "not enough data", never drift (missing values count:
  a column gone empty is drift). With a model baseline, only the model's inputs are compared.
- prediction drift: the window's scores (a prediction log's `score_column`) on the bins of the
  model's validation scores, as a feature named by the score column.
  On a prediction log, drift and skew read the rows of one serving arm (`arm`, the champion's:
  the model the baseline describes; a canary's or shadow's rows are another model's); quality
  reads every arm.
- training/serving skew (with `feature_repo`, on a prediction log): components.monitor.skew.
- realized quality (with `labels`): components.monitor.quality; a quality drop when the
  champion arm's ROC AUC is below the model's validation AUC by more than `max_auc_drop` even
  at the top of its 95% interval; the canary's A/B readout against the champion.

Writes into the `monitoring` directory:

  metrics.json   every check's numbers (per feature: both distances, threshold, status,
                 missing rates, new categories, the binned proportions on both sides)
  verdict.json   ok / drift / skew / quality-drop / not enough data (the most severe finding),
                 every finding's reason
  report.html    the verdict, a table per check, an overlay plot per drifted feature
  metrics.prom   the numbers as Prometheus metrics (components.monitor.prometheus), also
                 pushed to a Pushgateway when one is named

With a `history` file, each window's numbers are kept there (components.monitor.history) and
the report draws each feature's trend over the past windows.

Bad input (no rows in the window, a column the baseline has and the window lacks, a baseline of
another feature service version) raises before anything is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from portside.components.common.artifacts import (
    FEATURE_SPEC_FILE,
    MANIFEST_FILE,
    MONITOR_METRICS_FILE,
    MONITOR_PLOTS_DIR,
    MONITOR_PROMETHEUS_FILE,
    MONITOR_REPORT_FILE,
    REFERENCE_SCORES_FILE,
    STATISTICS_FILE,
    VERDICT_FILE,
    read_json_object,
)
from portside.components.errors import ConfigurationError, InputDataError

if TYPE_CHECKING:
    from portside.components.monitor.history import WindowRecord
    from portside.components.monitor.quality import AbReadout, ArmQuality
    from portside.components.monitor.skew import FeatureSkew
    from portside.components.monitor.window import WindowCounts, WindowScan

DRIFT_METRICS = ("psi", "js")
NEW = "(new or rare)"  # the bin of values outside the baseline's listed categories
MISSING = "(missing)"
TOP_NEW = 10

Status = Literal["ok", "drift", "not enough data"]
VerdictStatus = Literal["ok", "drift", "skew", "quality-drop", "not enough data"]
SEVERITY: tuple[VerdictStatus, ...] = ("quality-drop", "skew", "drift")  # the verdict: first found
Kind = Literal["numeric", "categorical", "prediction"]
CHAMPION_ARM = "champion"  # the serving arm whose quality is judged (components.serve.arms)


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
    verdict: VerdictStatus
    reasons: list[str]
    drifted: list[str]
    window: dict[str, Any]
    metric: str
    baseline: str
    findings: list[str] = field(default_factory=list)  # drift, skew, quality-drop: all found
    skewed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Baseline:
    """What the window is compared with (see the module's docstring)."""

    path: Path
    statistics: dict[str, Any]
    numeric_edges: dict[str, list[float]]
    categorical: list[str]
    reference_scores: dict[str, Any] | None  # a model baseline's validation scores
    label: str  # a model baseline's label column ("" for a validate output)


@dataclass(frozen=True)
class ServingChecks:
    """The checks on a prediction log; empty where a check was not asked for."""

    skew_rows: int = 0
    skew: list[FeatureSkew] = field(default_factory=list)
    quality: list[ArmQuality] = field(default_factory=list)
    ab: list[AbReadout] = field(default_factory=list)
    reference_auc: float | None = None
    quality_drops: list[str] = field(default_factory=list)


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
    score_column: str = "score",
    feature_repo: str = "",
    skew_threshold: float = 0.01,
    skew_sample_rows: int = 20_000,
    labels: str = "",
    labels_key: str = "",
    label_column: str = "",
    min_labels: int = 500,
    max_auc_drop: float = 0.05,
    model_name: str = "",
    pushgateway: str = "",
    history: str = "",
    arm: str = "champion",
) -> Verdict:
    from portside.components.monitor.window import WindowScan

    _check_settings(drift_metric, min_samples, drift_threshold, skew_threshold, skew_sample_rows)
    if min_labels < 1:
        raise ConfigurationError(f"min_labels must be at least 1, got {min_labels}")
    if not (isinstance(max_auc_drop, (int, float)) and 0 <= max_auc_drop < 1):
        raise ConfigurationError(f"max_auc_drop must be in [0, 1), got {max_auc_drop!r}")
    base = load_baseline(Path(baseline))
    label_column = label_column or base.label
    if labels and not (labels_key and label_column):
        raise ConfigurationError(
            "labels: name the labels' key column (labels_key) and, unless the baseline is a "
            "model directory, its label column (label_column)"
        )
    window_path = Path(window)
    _check_feature_service(base.statistics, base.path / STATISTICS_FILE, window_path)
    start, end = _time(window_start, "window_start"), _time(window_end, "window_end")
    with WindowScan(window_path, timestamp_column, start, end, arm) as scan:
        numeric_edges = dict(base.numeric_edges)
        is_log = {"request_id", "arm"} <= set(scan.types)  # the serving prediction log
        if base.reference_scores and score_column in scan.types:
            numeric_edges[score_column] = base.reference_scores["drift_bins"]["edges"]
        counts = scan.counts(numeric_edges, base.categorical)
        if counts.rows == 0:
            between = f" between {window_start or 'the start'} and {window_end or 'the end'}"
            of_arm = f" of the {arm} arm" if is_log and arm else ""
            raise InputDataError(
                f"{window_path}: the window holds no rows{of_arm}{between if start or end else ''}"
            )
        serving = _serving_checks(
            scan, base, timestamp_column, feature_repo, skew_threshold, skew_sample_rows,
            labels, labels_key, label_column, min_labels, max_auc_drop,
        )  # fmt: skip
    thresholds = _thresholds(
        feature_thresholds, drift_threshold, [*numeric_edges, *base.categorical]
    )
    features = _feature_drift(base, counts, score_column if score_column in numeric_edges else "")
    features = [_judge(f, drift_metric, thresholds[f.feature], min_samples) for f in features]
    verdict = _verdict(
        features, serving, counts.rows, window_start, window_end, drift_metric, baseline
    )
    model = model_name or (base.statistics.get("feature_service") or {}).get("name") or "model"
    past = _past_windows(history, verdict, features, serving)  # a bad file: before any write
    _write(Path(monitoring), features, serving, verdict, base.statistics, past, drift_threshold)
    check = "prediction_log" if is_log else "features"
    _export_metrics(Path(monitoring), verdict, features, serving, model, check, pushgateway)
    if history:
        from portside.components.monitor.history import write_history

        write_history(Path(history), past)
    return verdict


def _past_windows(
    history: str, verdict: Verdict, features: list[FeatureDrift], serving: ServingChecks
) -> list[WindowRecord]:
    """The history with this window in it (empty without a history file)."""
    if not history:
        return []
    from portside.components.monitor.history import record, updated_history

    return updated_history(Path(history), record(verdict, features, serving))


def _export_metrics(
    out: Path,
    verdict: Verdict,
    features: list[FeatureDrift],
    serving: ServingChecks,
    model: str,
    check: str,
    pushgateway: str,
) -> None:
    from portside.components.monitor.prometheus import export, monitoring_registry

    registry = monitoring_registry(verdict, features, serving, model, check)
    export(registry, out / MONITOR_PROMETHEUS_FILE, pushgateway, model, check)


def _check_settings(
    metric: str, min_samples: int, drift_threshold: float, skew_threshold: float, sample: int
) -> None:
    if metric not in DRIFT_METRICS:
        raise ConfigurationError(f"drift_metric must be one of {DRIFT_METRICS}, got {metric!r}")
    if min_samples < 1:
        raise ConfigurationError(f"min_samples must be at least 1, got {min_samples}")
    if sample < 1:
        raise ConfigurationError(f"skew_sample_rows must be at least 1, got {sample}")
    _check_threshold("drift_threshold", drift_threshold)
    _check_threshold("skew_threshold", skew_threshold)


def load_baseline(path: Path) -> Baseline:
    """statistics.json, and, in a model directory, the model's inputs and reference scores."""
    from portside.components.common.model_io import FeatureSpec

    statistics_path = path / STATISTICS_FILE
    statistics = read_json_object(statistics_path, "validate (copied into the model by train)")
    numeric_edges = _numeric_edges(statistics, statistics_path)
    categorical = list(statistics.get("categorical") or {})
    reference, label = None, ""
    if (path / FEATURE_SPEC_FILE).is_file():  # a model: monitor its inputs only
        spec = FeatureSpec.load(path)
        numeric_edges = {k: v for k, v in numeric_edges.items() if k in spec.columns}
        categorical = [name for name in categorical if name in spec.columns]
        label = spec.label
    if (path / REFERENCE_SCORES_FILE).is_file():
        reference = read_json_object(path / REFERENCE_SCORES_FILE, "train")
    if not numeric_edges and not categorical:
        raise InputDataError(f"{statistics_path}: the baseline describes no features")
    return Baseline(path, statistics, numeric_edges, categorical, reference, label)


def _serving_checks(
    scan: WindowScan,
    base: Baseline,
    timestamp_column: str,
    feature_repo: str,
    skew_threshold: float,
    skew_sample_rows: int,
    labels: str,
    labels_key: str,
    label_column: str,
    min_labels: int,
    max_auc_drop: float,
) -> ServingChecks:
    from portside.components.monitor.quality import ab_readouts, quality_drop, realized_quality
    from portside.components.monitor.skew import training_serving_skew

    checks = ServingChecks()
    if feature_repo:
        service = (base.statistics.get("feature_service") or {}).get("name")
        if not service:
            raise InputDataError(
                f"{base.path / STATISTICS_FILE}: names no feature service, so the skew check "
                "cannot join the offline values; run validate again"
            )
        features = [*base.numeric_edges, *base.categorical]
        rows, skew = training_serving_skew(
            scan, feature_repo, service, timestamp_column, features, skew_threshold,
            skew_sample_rows,
        )  # fmt: skip
        checks = replace(checks, skew_rows=rows, skew=skew)
    if labels:
        arms = realized_quality(scan, Path(labels), labels_key, label_column, min_labels)
        reference = (base.reference_scores or {}).get("roc_auc")
        drops = [
            f"{a.arm} v{a.model_version}: ROC AUC {a.roc_auc:.3f} "
            f"(95% {a.roc_auc_low:.3f}-{a.roc_auc_high:.3f}) on {a.labelled:,} labelled, "
            f"validation {reference:.3f}, allowed drop {max_auc_drop:g}"
            for a in arms
            if a.arm == CHAMPION_ARM
            and reference is not None
            and quality_drop(a, reference, max_auc_drop)
        ]
        checks = replace(
            checks,
            quality=arms,
            ab=ab_readouts(arms, CHAMPION_ARM),
            reference_auc=reference,
            quality_drops=drops,
        )
    return checks


def _feature_drift(base: Baseline, counts: WindowCounts, score_column: str) -> list[FeatureDrift]:
    numeric = base.statistics["numeric"]
    features = [
        _numeric_drift(name, numeric[name]["drift_bins"], numeric[name]["null_count"],
                       counts.numeric[name])
        for name in base.numeric_edges
    ]  # fmt: skip
    if score_column:
        bins = base.reference_scores["drift_bins"]  # type: ignore[index]
        scores = _numeric_drift(score_column, bins, 0, counts.numeric[score_column])
        features.append(replace(scores, kind="prediction"))
    return features + [
        _categorical_drift(name, base.statistics["categorical"][name], counts.categorical[name])
        for name in base.categorical
    ]


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


def _numeric_drift(
    name: str, bins: dict[str, list], null_count: int, window: list[int]
) -> FeatureDrift:
    edges, counts = bins["edges"], bins["counts"]
    labels = [f"<= {edges[0]:.4g}"] if edges else ["all"]
    labels += [f"({low:.4g}, {high:.4g}]" for low, high in zip(edges[:-1], edges[1:], strict=True)]
    labels += [f"> {edges[-1]:.4g}"] if edges else []
    baseline = [*counts, null_count]
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
    from portside.components.monitor.drift import (
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
    features: list[FeatureDrift],
    serving: ServingChecks,
    rows: int,
    start: str,
    end: str,
    metric: str,
    baseline: str,
) -> Verdict:
    drifted = [f for f in features if f.status == "drift"]
    skewed = [s for s in serving.skew if s.status == "skew"]
    found: dict[VerdictStatus, list[str]] = {
        "quality-drop": [f"quality drop: {d}" for d in serving.quality_drops],
        "skew": [
            f"{s.feature}: served differs from offline in {s.mismatch_rate:.1%} of "
            f"{s.compared:,} rows > {s.threshold:.1%}"
            for s in skewed
        ],
        "drift": [_reason(f) for f in drifted],
    }
    findings = [status for status in SEVERITY if found[status]]
    reasons = [reason for status in SEVERITY for reason in found[status]]
    status: VerdictStatus
    if findings:
        status = findings[0]
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
        findings=list(findings),
        skewed=[s.feature for s in skewed],
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


def _write(
    out: Path,
    features: list[FeatureDrift],
    serving: ServingChecks,
    verdict: Verdict,
    statistics: dict,
    past: list[WindowRecord],
    threshold: float,
) -> None:
    import shutil

    from portside.components.monitor.report import render_report

    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / MONITOR_PLOTS_DIR, ignore_errors=True)  # an earlier run's plots
    metrics = {
        "verdict": verdict.verdict,
        "window": verdict.window,
        "metric": verdict.metric,
        "baseline_rows": statistics.get("rows"),
        "features": [asdict(f) for f in features],
        "skew": {"rows": serving.skew_rows, "features": [asdict(s) for s in serving.skew]},
        "quality": {
            "reference_roc_auc": serving.reference_auc,
            "arms": [asdict(a) for a in serving.quality],
            "ab": [asdict(r) for r in serving.ab],
        },
    }
    (out / MONITOR_METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    report = render_report(verdict, features, serving, out, past, threshold)
    (out / MONITOR_REPORT_FILE).write_text(report)
    (out / VERDICT_FILE).write_text(json.dumps(asdict(verdict), indent=2))  # last: complete
