"""The monitor's numbers as Prometheus metrics, beside the serving metrics on one dashboard
(deploy/grafana/portside.json).

Written as `metrics.prom` in the text exposition format, which node_exporter's textfile
collector reads from a folder; with a Pushgateway URL, also pushed under the job
`portside_monitor` (grouped by model), for runs that leave no file behind (a Vertex or
Kubernetes task). Names and labels are the dashboard's contract: tests check every query of the
dashboard against `METRICS` and a real export.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from portside.components.monitor.run import FeatureDrift, ServingChecks, Verdict

log = logging.getLogger("portside.monitor")
JOB = "portside_monitor"
VERDICTS = ("ok", "drift", "skew", "quality-drop", "not enough data")
ARM = ("model_version", "arm")
# name: (help, labels besides "model"): the dashboard's contract
METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "portside_monitor_verdict": ("1 for the last run's verdict, 0 for the others", ("verdict",)),
    "portside_monitor_window_rows": ("Rows in the monitored window", ()),
    "portside_monitor_feature_drift": ("Drift distance per feature", ("feature", "metric")),
    "portside_monitor_feature_drifted": ("1: the feature drifted", ("feature",)),
    "portside_monitor_skew_mismatch_rate": ("Share of served values != offline", ("feature",)),
    "portside_monitor_roc_auc": ("Realized ROC AUC on labelled predictions", ARM),
    "portside_monitor_roc_auc_low": ("The realized ROC AUC's 95% lower bound", ARM),
    "portside_monitor_labelled_predictions": ("Predictions whose label arrived", ARM),
    "portside_monitor_last_run_timestamp_seconds": ("When the monitor last ran", ()),
}


def monitoring_registry(
    verdict: Verdict, features: list[FeatureDrift], serving: ServingChecks, model: str, check: str
) -> CollectorRegistry:
    """`check`: what was monitored ("features", "prediction_log"), a label of every metric, so
    the two monitors of a day export different series."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    g = {
        name: _CheckGauge(Gauge(name, doc, ["model", "check", *labels], registry=registry), check)
        for name, (doc, labels) in METRICS.items()
    }
    for name in VERDICTS:
        g["portside_monitor_verdict"].labels(model, name).set(float(verdict.verdict == name))
    g["portside_monitor_window_rows"].labels(model).set(verdict.window.get("rows") or 0)
    for f in features:
        for metric, value in (("psi", f.psi), ("js", f.js_distance)):
            if value is not None:
                g["portside_monitor_feature_drift"].labels(model, f.feature, metric).set(value)
        g["portside_monitor_feature_drifted"].labels(model, f.feature).set(f.status == "drift")
    for s in serving.skew:
        g["portside_monitor_skew_mismatch_rate"].labels(model, s.feature).set(s.mismatch_rate)
    for arm in serving.quality:
        key = (model, arm.model_version, arm.arm)
        g["portside_monitor_labelled_predictions"].labels(*key).set(arm.labelled)
        if arm.roc_auc is not None and arm.roc_auc_low is not None:
            g["portside_monitor_roc_auc"].labels(*key).set(arm.roc_auc)
            g["portside_monitor_roc_auc_low"].labels(*key).set(arm.roc_auc_low)
    g["portside_monitor_last_run_timestamp_seconds"].labels(model).set_to_current_time()
    return registry


def export(
    registry: CollectorRegistry, path: Path, pushgateway: str, model: str, check: str
) -> None:
    """The text file (written under a temporary name, then renamed: the collector never reads
    half a file), and the push when a gateway is named."""
    from prometheus_client import generate_latest, push_to_gateway

    from portside.components.common.artifacts import write_atomically

    write_atomically(path, generate_latest(registry))
    if pushgateway:
        try:
            push_to_gateway(
                pushgateway,
                job=JOB,
                registry=registry,
                grouping_key={"model": model, "check": check},
            )
        except OSError as error:  # the verdict and the file stand; an outage must not hide them
            log.warning("monitoring metrics not pushed to %s: %s", pushgateway, error)


class _CheckGauge:
    """A gauge whose `check` label is filled in: labels(model, *rest)."""

    def __init__(self, gauge: object, check: str) -> None:
        self.gauge, self.check = gauge, check

    def labels(self, model: str, *rest: str) -> object:
        return self.gauge.labels(model, self.check, *rest)  # type: ignore[attr-defined]
