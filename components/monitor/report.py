"""The monitor's HTML report: the verdict, every feature's distances, an overlay per drift.

One self-contained file (plots embedded as SVG data), so a pipeline UI or an alert can link it
as a single artifact; the SVGs are also written beside it (`plots/<feature>.svg`).
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from portside.components.common.artifacts import MONITOR_PLOTS_DIR
from portside.components.validate.report import STYLE

if TYPE_CHECKING:
    from portside.components.monitor.history import WindowRecord
    from portside.components.monitor.run import FeatureDrift, ServingChecks, Verdict

MOST_BARS = 30  # bins beyond these (rare categories) are summed into one bar
STATUS_CLASS = {
    "drift": "fail",
    "skew": "fail",
    "quality-drop": "fail",
    "ok": "pass",
    "not enough data": "idle",
}


def render_report(
    verdict: Verdict,
    features: list[FeatureDrift],
    serving: ServingChecks,
    out: Path,
    past: list[WindowRecord] | None = None,
    threshold: float = 0.2,
) -> str:
    drifted = [f for f in features if f.status == "drift"]
    ordered = drifted + [f for f in features if f.status != "drift"]
    rows = "\n".join(_row(f) for f in ordered)
    plots = "\n".join(_plot(f, out) for f in drifted)
    reasons = "".join(f"<li>{escape(r)}</li>" for r in verdict.reasons)
    window = verdict.window
    span = f"{window['start'] or 'start'} to {window['end'] or 'end'}"
    css = "failed" if verdict.findings else "passed"
    summary = f"Window {span}: {window['rows']:,} rows, against the baseline {verdict.baseline}."
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Monitoring: {escape(verdict.verdict)}</title>
<style>{STYLE} tr.idle td.status {{ background: #eee; }}</style></head>
<body>
<h1>Monitoring: <span class="verdict-{css}">{escape(verdict.verdict)}</span></h1>
<p>{escape(summary)}</p>
<ul>{reasons}</ul>
<h2>Features</h2>
<table>
<tr><th>Status</th><th>Feature</th><th>Kind</th><th>Values</th><th>PSI</th><th>JS distance</th>
<th>Threshold</th><th>Missing (baseline / window)</th><th>New values</th></tr>
{rows}
</table>
{"<h2>Drifted features</h2>" + plots if plots else ""}
{_trend_section(past or [], verdict, threshold)}
{_skew_section(serving)}
{_quality_section(serving)}
</body></html>
"""


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _row(f: FeatureDrift) -> str:
    new = ", ".join(f"{escape(k)} ({v:,})" for k, v in f.new_categories.items()) or "-"
    return (
        f'<tr class="{STATUS_CLASS[f.status]}"><td class="status">{escape(f.status)}</td>'
        f"<td>{escape(f.feature)}</td><td>{f.kind}</td><td>{f.values:,}</td>"
        f"<td>{_number(f.psi)}</td><td>{_number(f.js_distance)}</td>"
        f"<td>{f.metric} {f.threshold:g}</td>"
        f"<td>{f.baseline_missing_rate:.1%} / {f.window_missing_rate:.1%}</td><td>{new}</td></tr>"
    )


def _bars(f: FeatureDrift) -> tuple[list[str], list[float], list[float]]:
    """The bins to draw: all of them, or the MOST_BARS - 1 largest and the rest summed."""
    rows = list(zip(f.bins, f.baseline_proportions, f.window_proportions, strict=True))
    if len(rows) <= MOST_BARS:
        kept, rest = rows, []
    else:
        ranked = sorted(rows, key=lambda row: -max(row[1], row[2]))
        kept, rest = ranked[: MOST_BARS - 1], ranked[MOST_BARS - 1 :]
    if rest:
        kept.append((f"({len(rest)} others)", sum(r[1] for r in rest), sum(r[2] for r in rest)))
    return [r[0] for r in kept], [r[1] for r in kept], [r[2] for r in kept]


def _plot(f: FeatureDrift, out: Path) -> str:
    """Baseline and window proportions per bin, side by side, as SVG: written and embedded.
    Drawn by hand (bars, axis, labels), so the report needs no plotting library: at a million
    rows, importing and running matplotlib took longer than counting the window."""
    svg = overlay_svg(f.feature, f"PSI {_number(f.psi)}, JS {_number(f.js_distance)}", *_bars(f))
    folder = out / MONITOR_PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{f.feature}.svg").write_text(svg)
    data = base64.b64encode(svg.encode()).decode()
    name = escape(f.feature)
    return f'<h3>{name}</h3><img alt="{name}" src="data:image/svg+xml;base64,{data}">'


BAR_COLOURS = ("#1f77b4", "#ff7f0e")  # baseline, window


def overlay_svg(
    feature: str, subtitle: str, bins: list[str], baseline: list[float], window: list[float]
) -> str:
    """A grouped bar chart of two distributions over the same bins."""
    step, left, top, plot_h, label_h = 44, 56, 48, 220, 110
    width = left + step * len(bins) + 150
    height = top + plot_h + label_h
    highest = max([*baseline, *window, 1e-9])
    scale = plot_h / highest
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(feature)}</text>',
        f'<text x="{left}" y="38">{escape(subtitle)}</text>',
    ]
    for k in range(5):  # horizontal grid and the share axis
        share = highest * k / 4
        y = top + plot_h - share * scale
        parts.append(f'<line x1="{left}" x2="{width - 150}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#ddd"/>')  # fmt: skip
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{share:.0%}</text>')
    for i, (name, b, w) in enumerate(zip(bins, baseline, window, strict=True)):
        x = left + i * step + 4
        for offset, value, colour in ((0, b, BAR_COLOURS[0]), (18, w, BAR_COLOURS[1])):
            h = value * scale
            parts.append(
                f'<rect x="{x + offset}" y="{top + plot_h - h:.1f}" width="16" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(name)}: '
                f"{value:.2%}</title></rect>"
            )
        ty = top + plot_h + 12
        parts.append(
            f'<text x="{x + 18}" y="{ty}" text-anchor="end" '
            f'transform="rotate(-45 {x + 18} {ty})">{escape(_short(name))}</text>'
        )
    legend_x = width - 140
    for k, (label, colour) in enumerate(zip(("baseline", "window"), BAR_COLOURS, strict=True)):
        y = top + 10 + 18 * k
        parts.append(f'<rect x="{legend_x}" y="{y - 9}" width="12" height="12" fill="{colour}"/>')
        parts.append(f'<text x="{legend_x + 18}" y="{y + 1}">{label}</text>')
    parts.append(
        f'<line x1="{left}" x2="{width - 150}" y1="{top + plot_h}" y2="{top + plot_h}" '
        'stroke="#333"/></svg>'
    )
    return "".join(parts)


def _short(label: str, most: int = 18) -> str:
    return label if len(label) <= most else label[: most - 1] + "…"


def _trend_section(past: list[WindowRecord], verdict: Verdict, threshold: float) -> str:
    """Each drawn feature's deciding distance over the past windows of the history file."""
    if len(past) < 2:
        return ""
    from portside.components.monitor.history import trend_features, trend_svg

    features = trend_features(past, verdict.drifted)
    svg = trend_svg(past, features, threshold)
    data = base64.b64encode(svg.encode()).decode()
    label = "PSI" if verdict.metric == "psi" else "JS distance"
    return (
        f"<h2>Trend over the past {len(past)} windows</h2><p>{label} per window, the drifted "
        "features and the highest others.</p>"
        f'<img alt="trend" src="data:image/svg+xml;base64,{data}">'
    )


def _skew_section(serving: ServingChecks) -> str:
    if not serving.skew:
        return ""
    rows = "\n".join(
        f'<tr class="{STATUS_CLASS[s.status]}"><td class="status">{s.status}</td>'
        f"<td>{escape(s.feature)}</td><td>{s.compared:,}</td><td>{s.mismatched:,}</td>"
        f"<td>{s.mismatch_rate:.2%}</td><td>{s.threshold:.2%}</td>"
        f"<td>{s.served_missing:,} / {s.offline_missing:,}</td>"
        f"<td>{escape(_example(s.examples))}</td></tr>"
        for s in sorted(serving.skew, key=lambda s: -s.mismatch_rate)
    )
    return f"""<h2>Training/serving skew</h2>
<p>Served feature values against the point-in-time (as known) offline values for the same
entities and times, on {serving.skew_rows:,} sampled predictions.</p>
<table><tr><th>Status</th><th>Feature</th><th>Compared</th><th>Differ</th><th>Share</th>
<th>Threshold</th><th>Missing (served / offline)</th><th>First difference</th></tr>
{rows}</table>"""


def _example(examples: list[dict]) -> str:
    if not examples:
        return "-"
    first = dict(examples[0])
    served, offline = first.pop("served"), first.pop("offline")
    where = ", ".join(f"{k}={v}" for k, v in first.items())
    return f"{where}: served {served}, offline {offline}"


def _interval(low: float | None, value: float | None, high: float | None) -> str:
    if value is None or low is None or high is None:
        return "-"
    return f"{value:.4f} ({low:.4f}-{high:.4f})"


def _quality_section(serving: ServingChecks) -> str:
    if not serving.quality:
        return ""
    reference = serving.reference_auc
    rows = "\n".join(
        f'<tr class="{STATUS_CLASS[a.status]}"><td class="status">{a.status}</td>'
        f"<td>{escape(a.model_version)}</td><td>{escape(a.arm)}</td><td>{a.predictions:,}</td>"
        f"<td>{a.labelled:,}</td><td>{a.positives:,}</td>"
        f"<td>{_interval(a.roc_auc_low, a.roc_auc, a.roc_auc_high)}</td>"
        f"<td>{a.mean_score:.4f}</td></tr>"
        for a in serving.quality
    )
    ab = "\n".join(
        f"<tr><td>{escape(r.challenger_arm)} v{escape(r.challenger_version)} vs champion "
        f"v{escape(r.champion_version)}</td><td>{r.difference:+.4f} ({r.low:+.4f} to "
        f"{r.high:+.4f})</td><td>{escape(r.conclusion)}</td></tr>"
        for r in serving.ab
    )
    ab_table = (
        "<h3>A/B readout (ROC AUC difference, 95% interval)</h3><table><tr><th>Arms</th>"
        f"<th>Difference</th><th>Conclusion</th></tr>{ab}</table>"
        if ab
        else ""
    )
    said = f"the model's validation ROC AUC {reference:.4f}" if reference is not None else ""
    return f"""<h2>Realized quality</h2>
<p>Scores against the labels that have arrived, per model version and serving arm (ROC AUC with
DeLong's 95% interval){"; reference: " + said if said else ""}.</p>
<table><tr><th>Status</th><th>Version</th><th>Arm</th><th>Predictions</th><th>Labelled</th>
<th>Positives</th><th>ROC AUC (95%)</th><th>Mean score</th></tr>
{rows}</table>
{ab_table}"""
