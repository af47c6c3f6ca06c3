"""A self-contained HTML report of a GX suite result: one row per expectation, failures first.

GX 1.x ephemeral contexts have no Data Docs site, and a single file is what a pipeline UI
(KFP, Vertex, Airflow logs) can show as an artifact.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from portside.components.validate.failures import describe, table_columns

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr.fail td.status { background: #f8d7da; font-weight: bold; }
tr.pass td.status { background: #d4edda; }
code { font-size: 12px; white-space: pre-wrap; word-break: break-word; }
.verdict-failed { color: #a00; } .verdict-passed { color: #070; }
"""

HIDDEN_KWARGS = {"column", "batch_id"}


def render_report(result: dict[str, Any], header: dict[str, Any]) -> str:
    """`header`: facts shown above the table (training set, rows, as_of, ...)."""
    outcomes = result["results"]
    failed = [r for r in outcomes if not r["success"]]
    ordered = failed + [r for r in outcomes if r["success"]]
    verdict = "FAILED" if failed else "PASSED"
    facts = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in header.items()
    )
    columns = table_columns(result)
    rows = "\n".join(_row(r, columns) for r in ordered)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Validation: {escape(result.get("suite_name", ""))} {verdict}</title>
<style>{STYLE}</style></head>
<body>
<h1>Validation of suite {escape(result.get("suite_name", ""))}:
<span class="verdict-{verdict.lower()}">{verdict}</span></h1>
<p>{len(failed)} of {len(outcomes)} expectations failed.</p>
<table>{facts}</table>
<h2>Expectations</h2>
<table>
<tr><th>Status</th><th>Column</th><th>Rule</th><th>Expectation</th><th>Observed</th></tr>
{rows}
</table>
</body></html>
"""


def _row(outcome: dict[str, Any], columns: set[str] | None) -> str:
    config = outcome["expectation_config"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k not in HIDDEN_KWARGS}
    status = "pass" if outcome["success"] else "fail"
    observed = _observed(outcome["result"])
    if not outcome["success"]:
        observed = describe(outcome, columns).message
    cells = [
        f'<td class="status">{status.upper()}</td>',
        f"<td>{escape(str(config['kwargs'].get('column') or '(table)'))}</td>",
        f"<td>{escape(config['type'])}</td>",
        f"<td><code>{escape(json.dumps(kwargs, default=str))}</code></td>",
        f"<td>{escape(observed)}</td>",
    ]
    return f'<tr class="{status}">{"".join(cells)}</tr>'


def _observed(result: dict[str, Any]) -> str:
    if "unexpected_count" in result:
        share = result.get("unexpected_percent") or 0.0
        count = f"{result['unexpected_count']} of {result.get('element_count')}"
        return f"{count} unexpected ({share:.3g}%)"
    value = result.get("observed_value")
    text = json.dumps(value, default=str) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 300 else text[:297] + "..."
