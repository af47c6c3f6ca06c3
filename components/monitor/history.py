"""The monitor's memory of past windows: one JSON line per window in a history file, so the
report can show each metric's trend (is the drift growing, or a one-day blip?).

A run replaces the line of its own window (a re-run or backfill of a day does not count twice)
and keeps the last MAX_WINDOWS windows, ordered by window. The file is rewritten whole, in one
step (`write_atomically`): a reader never sees half of it. One writer at a time (the
monitoring DAG runs one run at a time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from portside.components.errors import InputDataError

if TYPE_CHECKING:
    from portside.components.monitor.run import FeatureDrift, ServingChecks, Verdict

MAX_WINDOWS = 90


@dataclass(frozen=True)
class WindowRecord:
    window_start: str | None
    window_end: str | None
    rows: int
    verdict: str
    metric: str
    scores: dict[str, float]  # the deciding distance per feature
    skew: dict[str, float]  # mismatch rate per feature
    roc_auc: dict[str, float]  # per "arm vVERSION"
    recorded_at: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.window_start or "", self.window_end or "")


def record(verdict: Verdict, features: list[FeatureDrift], serving: ServingChecks) -> WindowRecord:
    return WindowRecord(
        window_start=verdict.window.get("start"),
        window_end=verdict.window.get("end"),
        rows=int(verdict.window.get("rows") or 0),
        verdict=verdict.verdict,
        metric=verdict.metric,
        scores={f.feature: f.score for f in features if f.score is not None},
        skew={s.feature: s.mismatch_rate for s in serving.skew},
        roc_auc={
            f"{a.arm} v{a.model_version}": a.roc_auc
            for a in serving.quality
            if a.roc_auc is not None
        },
        recorded_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def read_history(path: Path) -> list[WindowRecord]:
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(WindowRecord(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as error:
            raise InputDataError(
                f"{path}:{number}: not a monitoring history line ({error}); the monitor "
                "writes this file: move it away to start a new history"
            ) from error
    return records


def updated_history(path: Path, latest: WindowRecord) -> list[WindowRecord]:
    """The history with `latest` in its window's place, ordered by window, at most
    MAX_WINDOWS; checked before anything is written."""
    kept = {r.key: r for r in read_history(path)}
    kept[latest.key] = latest
    return sorted(kept.values(), key=lambda r: r.key)[-MAX_WINDOWS:]


def write_history(path: Path, records: list[WindowRecord]) -> None:
    from dataclasses import asdict

    from portside.components.common.artifacts import write_atomically

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, "".join(json.dumps(asdict(r)) + "\n" for r in records).encode())


def trend_features(records: list[WindowRecord], drifted: list[str], most: int = 6) -> list[str]:
    """The features to draw: the drifted ones, then the highest in the latest window."""
    latest = records[-1].scores if records else {}
    ranked = sorted(latest, key=lambda name: -latest[name])
    return list(dict.fromkeys([*drifted, *ranked]))[:most]


def _label(record: WindowRecord) -> str:
    return (record.window_end or record.window_start or record.recorded_at)[:10]


def trend_svg(records: list[WindowRecord], features: list[str], threshold: float) -> str:
    """One line per feature: its deciding distance over the windows, the threshold dashed."""
    from html import escape

    width, height, left, top, plot_w, plot_h = 820, 260, 56, 20, 520, 200
    values = [r.scores.get(f) for r in records for f in features]
    highest = max([v for v in values if v is not None] + [threshold * 1.2, 1e-9])
    n = len(records)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / highest

    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<line x1="{left}" x2="{left + plot_w}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
        f'stroke="#d62728" stroke-dasharray="4 3"/>',
        f'<text x="{left + plot_w + 4}" y="{y(threshold) + 4:.1f}">threshold {threshold:g}</text>',
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        'stroke="#333"/>',
    ]
    for k in range(5):
        v = highest * k / 4
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for i in sorted({0, n - 1, n // 2}):
        parts.append(
            f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{escape(_label(records[i]))}</text>"
        )
    for k, feature in enumerate(features):
        colour = colours[k % len(colours)]
        points = [
            (x(i), y(r.scores[feature])) for i, r in enumerate(records) if feature in r.scores
        ]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in points
        )
        ly = top + 8 + 16 * k
        parts.append(
            f'<rect x="{left + plot_w + 90}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>'
        )
        parts.append(f'<text x="{left + plot_w + 108}" y="{ly + 1}">{escape(feature)}</text>')
    parts.append("</svg>")
    return "".join(parts)
