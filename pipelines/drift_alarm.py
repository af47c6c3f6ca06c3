"""Whether a monitoring run raises the "drift detected" alarm (the Asset event that queues
`training_pipeline`), and with which reason: the one rule, kept apart from the DAG file so it
is tested without Airflow.

A verdict of drift, skew or a quality drop raises it (the event's extra says which: a skew,
which retraining does not cure, is visible as such), unless the last alarm is more recent than
the cooldown: a drifted week must not start a retraining every day while the first retraining
is still being judged. "ok" and "not enough data" never raise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

ALARMING_VERDICTS = ("drift", "skew", "quality-drop")


@dataclass(frozen=True)
class AlarmDecision:
    raise_alarm: bool
    reason: str
    extra: dict[str, Any]  # the Asset event's extra when raised


def decide(
    verdict: dict[str, Any], last_alarm: datetime | None, now: datetime, cooldown: timedelta
) -> AlarmDecision:
    """`verdict`: the monitor component's verdict.json (its task's result)."""
    status = verdict.get("verdict")
    reasons = list(verdict.get("reasons") or [])
    if status not in ALARMING_VERDICTS:
        return AlarmDecision(False, f"verdict {status}: no alarm", {})
    if last_alarm is not None and now - last_alarm < cooldown:
        since = now - last_alarm
        return AlarmDecision(
            False,
            f"verdict {status}, but the last alarm was {since} ago (cooldown {cooldown}): "
            "no new retraining",
            {},
        )
    extra = {
        "verdict": status,
        "reasons": reasons,
        "drifted": list(verdict.get("drifted") or []),
        "skewed": list(verdict.get("skewed") or []),
        "findings": list(verdict.get("findings") or []),
        "window": verdict.get("window"),
    }
    return AlarmDecision(True, f"verdict {status}: " + "; ".join(reasons), extra)
