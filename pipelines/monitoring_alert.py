"""Tell people about a drift, skew or quality-drop verdict: an Airflow notifier on the monitor
task, sending to whatever the Airflow connection names.

    monitor = BINDING.component_task(..., on_success_callback=[VerdictNotifier("portside_alerts")])

The connection decides the channel (set it like any Airflow connection, e.g.
`AIRFLOW_CONN_PORTSIDE_ALERTS='{"conn_type": "http", "host": "hooks.example.com", ...}'`):

- `http` / `https`: a JSON POST (`alert_payload`) to `<schema>://<host>:<port><extra.endpoint>`,
  with the connection's password as a bearer token and `extra.headers` added; a Slack or Teams
  incoming webhook takes the `text` field.
- `smtp` / `email`: a mail to `extra.to` through the SMTP provider's notifier.

No connection of that id: a warning in the task log, nothing sent (monitoring still runs and
still raises the drift event); a channel that refuses the alert fails the notification, logged
by Airflow, not the monitoring run. "ok" and "not enough data" send nothing.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from portside.pipelines.drift_alarm import ALARMING_VERDICTS

log = logging.getLogger("portside.alerts")
TIMEOUT_S = 10.0


def alert_payload(
    verdict: dict[str, Any], dag_id: str, run_id: str, report: str | None
) -> dict[str, Any]:
    """What an alert says: the verdict, its reasons, the window, and where the report is."""
    reasons = list(verdict.get("reasons") or [])
    window = verdict.get("window") or {}
    text = (
        f"Portside monitoring: {verdict.get('verdict')} in {dag_id} ({run_id}), window "
        f"{window.get('start') or 'start'} to {window.get('end') or 'end'}: " + "; ".join(reasons)
    )
    if report:
        text += f" Report: {report}"
    return {
        "text": text,
        "verdict": verdict.get("verdict"),
        "findings": list(verdict.get("findings") or []),
        "reasons": reasons,
        "drifted": list(verdict.get("drifted") or []),
        "skewed": list(verdict.get("skewed") or []),
        "window": window,
        "dag_id": dag_id,
        "run_id": run_id,
        "report": report,
    }


class VerdictNotifier(BaseNotifier):
    """On the monitor task: reads the verdict it returned; alerts on drift, skew, quality drop."""

    template_fields = ("conn_id",)

    def __init__(self, conn_id: str) -> None:
        super().__init__()
        self.conn_id = conn_id

    def notify(self, context: Any) -> None:
        ti = context["ti"]
        returned = ti.xcom_pull(task_ids=ti.task_id) or {}
        verdict = returned.get("result") or {}
        if verdict.get("verdict") not in ALARMING_VERDICTS:
            return
        report = next(iter((returned.get("reports") or {}).get("Report") or []), None)
        payload = alert_payload(verdict, ti.dag_id, ti.run_id, report)
        connection = _connection(self.conn_id)
        if connection is None:
            log.warning("no Airflow connection %r: monitoring alert not sent", self.conn_id)
            return
        if connection.conn_type in ("smtp", "email"):
            _send_email(connection, payload, context)
        else:
            _post(connection, payload)
        log.info("monitoring alert sent through %r: %s", self.conn_id, payload["verdict"])


def _connection(conn_id: str) -> Any:
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def webhook_url(connection: Any) -> str:
    extra = connection.extra_dejson
    schema = connection.schema or ("https" if connection.conn_type == "https" else "http")
    port = f":{connection.port}" if connection.port else ""
    host = connection.host or ""
    if "://" in host:  # a full URL in the host field
        return host.rstrip("/") + extra.get("endpoint", "")
    return f"{schema}://{host}{port}{extra.get('endpoint', '')}"


def _post(connection: Any, payload: dict[str, Any]) -> None:
    headers = {"Content-Type": "application/json", **connection.extra_dejson.get("headers", {})}
    if connection.password:
        headers["Authorization"] = f"Bearer {connection.password}"
    request = urllib.request.Request(
        webhook_url(connection), json.dumps(payload).encode(), headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:  # noqa: S310 (the URL is the operator's)
        answer.read()


def _send_email(connection: Any, payload: dict[str, Any], context: Any) -> None:
    from html import escape

    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    recipients = connection.extra_dejson.get("to")
    if not recipients:
        raise ValueError(f"connection {connection.conn_id!r}: extra.to names no recipient")
    items = "".join(f"<li>{escape(r)}</li>" for r in payload["reasons"])
    report = f"<p>Report: {escape(payload['report'])}</p>" if payload["report"] else ""
    SmtpNotifier(
        to=recipients,
        smtp_conn_id=connection.conn_id,
        subject=f"Portside monitoring: {payload['verdict']} in {payload['dag_id']}",
        html_content=f"<p>{escape(payload['text'])}</p><ul>{items}</ul>{report}",
    ).notify(context)
