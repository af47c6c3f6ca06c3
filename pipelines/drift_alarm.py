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
SEVERITY = ("quality-drop", "skew", "drift", "ok", "not enough data")  # the first one found wins


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


def merge_verdicts(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several monitor verdicts of one run (the day's features, the day's prediction log) as
    one: the most severe verdict, every finding, the reasons of the alarming ones (of all when
    none alarms), the first one's window."""
    present = [v for v in verdicts if v]
    if not present:
        return {"verdict": "not enough data", "reasons": ["no monitor ran"]}
    statuses = [v.get("verdict") for v in present]
    status = next((s for s in SEVERITY if s in statuses), statuses[0])

    def union(key: str) -> list[str]:
        return list(dict.fromkeys(item for v in present for item in v.get(key) or []))

    alarming = [v for v in present if v.get("verdict") in ALARMING_VERDICTS] or present
    return {
        "verdict": status,
        "reasons": [r for v in alarming for r in v.get("reasons") or []],
        "drifted": union("drifted"),
        "skewed": union("skewed"),
        "findings": [s for s in SEVERITY if s in union("findings")],
        "window": present[0].get("window"),
    }
