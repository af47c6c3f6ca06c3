"""The rule that turns a monitoring verdict into the "drift detected" alarm."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from portside.pipelines.drift_alarm import decide

NOW = datetime(2026, 11, 2, 2, tzinfo=timezone.utc)
COOLDOWN = timedelta(hours=72)
DRIFT = {
    "verdict": "drift",
    "reasons": ["amount: PSI 0.412 > 0.2"],
    "drifted": ["amount"],
    "window": {"start": None, "end": None, "rows": 5000},
}


def test_a_drift_verdict_raises_the_alarm_with_its_reasons():
    decision = decide(DRIFT, None, NOW, COOLDOWN)
    assert decision.raise_alarm
    assert decision.extra["reasons"] == DRIFT["reasons"]
    assert decision.extra["drifted"] == ["amount"]
    assert "amount: PSI 0.412" in decision.reason


def test_ok_and_not_enough_data_never_raise_it():
    for verdict in ("ok", "not enough data"):
        decision = decide({**DRIFT, "verdict": verdict}, None, NOW, COOLDOWN)
        assert not decision.raise_alarm and decision.extra == {}
        assert verdict in decision.reason


def test_the_cooldown_holds_back_a_second_alarm_and_then_lets_it_through():
    recent = decide(DRIFT, NOW - timedelta(hours=10), NOW, COOLDOWN)
    assert not recent.raise_alarm and "cooldown 3 days" in recent.reason
    assert decide(DRIFT, NOW - timedelta(hours=73), NOW, COOLDOWN).raise_alarm
    assert decide(DRIFT, NOW - timedelta(minutes=1), NOW, timedelta(0)).raise_alarm


def test_an_alert_says_the_verdict_its_reasons_and_where_the_report_is():
    from portside.pipelines.monitoring_alert import alert_payload

    verdict = {
        "verdict": "skew",
        "findings": ["skew", "drift"],
        "reasons": ["txn_count_7d: served differs", "amount: PSI 0.31 > 0.2"],
        "skewed": ["txn_count_7d"],
        "drifted": ["amount"],
        "window": {"start": "2026-11-30", "end": "2026-12-01", "rows": 9},
    }
    payload = alert_payload(verdict, "model_monitoring", "scheduled__1", "/runs/report.html")
    assert payload["verdict"] == "skew" and payload["findings"] == ["skew", "drift"]
    assert payload["text"].startswith("Portside monitoring: skew in model_monitoring")
    assert "2026-11-30 to 2026-12-01" in payload["text"]
    assert "amount: PSI 0.31 > 0.2" in payload["text"] and "/runs/report.html" in payload["text"]


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        ({"conn_type": "http", "host": "hooks.local", "port": 8080,
          "extra": '{"endpoint": "/alerts"}'}, "http://hooks.local:8080/alerts"),
        ({"conn_type": "https", "host": "hooks.slack.com",
          "extra": '{"endpoint": "/services/T/B/x"}'}, "https://hooks.slack.com/services/T/B/x"),
        ({"conn_type": "http", "host": "https://example.com/hook/"}, "https://example.com/hook"),
    ],
)  # fmt: skip
def test_the_webhook_url_comes_from_the_connection(fields, url):
    from airflow.sdk import Connection

    from portside.pipelines.monitoring_alert import webhook_url

    assert webhook_url(Connection(conn_id="portside_alerts", **fields)) == url


def test_the_days_verdicts_merge_into_the_most_severe_with_every_finding():
    from portside.pipelines.drift_alarm import merge_verdicts

    features = {"verdict": "drift", "reasons": ["amount: PSI 0.3 > 0.2"], "drifted": ["amount"],
                "findings": ["drift"], "window": {"rows": 10}}  # fmt: skip
    serving = {"verdict": "skew", "reasons": ["txn_count_7d: served differs"],
               "skewed": ["txn_count_7d"], "drifted": ["amount"],
               "findings": ["skew", "drift"]}  # fmt: skip
    merged = merge_verdicts([features, serving])
    assert merged["verdict"] == "skew" and merged["findings"] == ["skew", "drift"]
    assert merged["reasons"] == ["amount: PSI 0.3 > 0.2", "txn_count_7d: served differs"]
    assert merged["drifted"] == ["amount"] and merged["skewed"] == ["txn_count_7d"]
    assert merged["window"] == {"rows": 10}
    quiet = {"verdict": "ok", "reasons": []}
    assert merge_verdicts([quiet, {}])["verdict"] == "ok"  # the serving checks skipped
    assert merge_verdicts([quiet, serving])["reasons"] == serving["reasons"]
    scarce = {"verdict": "not enough data", "reasons": ["no feature has enough values"]}
    assert merge_verdicts([scarce, quiet])["verdict"] == "ok"
    assert merge_verdicts([scarce])["reasons"] == scarce["reasons"]
