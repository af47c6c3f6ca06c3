"""deploy/grafana/portside.json: it loads as a dashboard, and every query names a metric the
code exports, with labels it has: the serving app's registry, and the metrics.prom a real
monitor run writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "portside.json"
METRIC = re.compile(r"\b(portside_[a-z0-9_]+)(\{[^}]*\})?")
BY = re.compile(r"\bby \(([^)]*)\)")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def _serving_metrics() -> dict[str, set[str]]:
    """Sample names the prediction server exposes, with their labels."""
    from portside.components.serve.app import Metrics
    from portside.components.serve.prediction_log import PredictionLog

    log = PredictionLog(Path("/nonexistent"), flush_interval_s=3600)
    try:
        metrics = Metrics.create(log)
        exported: dict[str, set[str]] = {}
        for collector in vars(metrics).values():
            labels = set(getattr(collector, "_labelnames", ()))
            for family in getattr(collector, "collect", lambda: [])():
                for suffix in SUFFIXES.get(family.type, ("",)):
                    exported[family.name + suffix] = labels | (
                        {"le"} if suffix == "_bucket" else set()
                    )
        for family in metrics.registry.collect():  # the custom collectors (log, batches)
            for suffix in SUFFIXES.get(family.type, ("",)):
                exported.setdefault(family.name + suffix, set())
        return exported
    finally:
        log.close()


def _monitor_metrics(tmp_path: Path) -> dict[str, set[str]]:
    """A real monitor run's metrics.prom, parsed."""
    from prometheus_client.parser import text_string_to_metric_families

    from portside.components.monitor.run import run
    from portside.components.validate.statistics import column_statistics
    from portside.components.validate.suite import Roles

    rng = np.random.default_rng(0)

    def rows(n: int, scale: float) -> pd.DataFrame:
        return pd.DataFrame({"amount": rng.lognormal(3, 1, n) * scale,
                             "category": rng.choice(["a", "b", "c"], n)})  # fmt: skip

    (tmp_path / "baseline").mkdir()
    statistics = column_statistics(rows(5_000, 1.0), Roles())
    (tmp_path / "baseline" / "statistics.json").write_text(json.dumps(statistics))
    rows(2_000, 2.0).to_parquet(tmp_path / "window.parquet")
    run(str(tmp_path / "baseline"), str(tmp_path / "window.parquet"), str(tmp_path / "out"),
        model_name="fraud_model")  # fmt: skip
    from portside.components.monitor.prometheus import METRICS

    text = (tmp_path / "out" / "metrics.prom").read_text()
    families = list(text_string_to_metric_families(text))
    assert {f.name for f in families} == set(METRICS)  # every declared metric, exported
    for family in families:  # the labels of every sample are the declared ones
        for sample in family.samples:
            assert set(sample.labels) == {"model", "check", *METRICS[family.name][1]}, sample
    samples = [s for f in families for s in f.samples]
    drift = [s for s in samples if s.name == "portside_monitor_feature_drift"]
    drift = [s for s in drift if s.labels["metric"] == "psi"]
    assert {s.labels["feature"] for s in drift} == {"amount", "category"}
    assert all(s.labels["model"] == "fraud_model" for s in drift)
    assert {s.labels["check"] for s in samples} == {"features"}
    return {name: {"model", "check", *labels} for name, (_, labels) in METRICS.items()}


def _queries(dashboard: dict) -> list[str]:
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_the_dashboard_is_a_grafana_dashboard():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "model"} <= variables
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"


def test_every_query_names_an_exported_metric_with_its_labels(tmp_path):
    exported = {**_serving_metrics(), **_monitor_metrics(tmp_path)}
    queries = _queries(json.loads(DASHBOARD.read_text()))
    named = set()
    for query in queries:
        for name, selector in METRIC.findall(query):
            assert name in exported, f"{query}: {name} is not exported"
            named.add(name)
            for label in re.findall(r"(\w+)\s*[=!~]+", selector or ""):
                assert label in exported[name], f"{query}: {name} has no label {label}"
        used = [m for m, _ in METRIC.findall(query)]
        for group in BY.findall(query):
            for label in (part.strip() for part in group.split(",")):
                assert any(label in exported[m] for m in used), f"{query}: no label {label}"
    # the panels: latency, errors, model version, drift per feature
    for wanted in ("portside_request_seconds_bucket", "portside_requests_total",
                   "portside_model_version", "portside_monitor_feature_drift"):  # fmt: skip
        assert wanted in named
