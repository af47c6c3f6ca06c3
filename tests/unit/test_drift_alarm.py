"""The rule that turns a monitoring verdict into the "drift detected" alarm."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pipelines.drift_alarm import decide

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
