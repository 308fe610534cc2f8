"""Exactly once per (report, period): the audit trail's `report_sent` entries say which report of
which period was e-mailed, by which Airflow task run, with which Message-ID.

A period's key is its label, plus the cut for a period reported to date ("2026-11.to20261123T1440Z",
as in the Message-ID), so a to-date report is its own period. A run that finds its report+period
already sent records `report_skipped` and sends nothing, unless it is asked to re-send. Never sends
mail itself; the entries are written by `leadsla.reports.run.send_report`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.reports.builders import Report, period_key
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record

ACTOR = "reports"
__all__ = ["ACTOR", "last_sent", "period_key", "record_outcome"]


def last_sent(conn: sa.Connection, name: str, key: str) -> dict[str, Any] | None:
    """The latest `report_sent` entry for report `name` and period `key` (at = the run's time,
    recorded_at = when it was sent, the task run, detail), or None.

    A handful of entries a week, so the JSON detail is matched here rather than in SQL (portable).
    """
    a = schema.audit
    rows = conn.execute(
        sa.select(a.c.at, a.c.recorded_at, a.c.dag_id, a.c.run_id, a.c.task_id, a.c.try_number, a.c.detail)
        .where(a.c.event == "report_sent", a.c.actor == ACTOR)
        .order_by(a.c.audit_id.desc())
    ).mappings()
    for row in rows:
        detail = row["detail"] or {}
        if detail.get("report") == name and detail.get("period") == key:
            return dict(row)
    return None


def record_outcome(
    conn: sa.Connection,
    event: str,
    report: Report,
    *,
    at: dt.datetime,
    context: AuditContext,
    message_id: str,
    recipients: list[str],
    **extra: Any,
) -> None:
    """Audit `report_sent` or `report_skipped` for this report and period."""
    record(
        conn,
        event,
        at=at,
        context=context,
        actor=ACTOR,
        detail={
            "report": report.name,
            "period": period_key(report),
            "title": report.period.title,
            "message_id": message_id,
            "recipients": recipients,
            **extra,
        },
    )
