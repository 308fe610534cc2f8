"""A record's "why" timeline from the audit trail: every clock start, pause, checkpoint, message,
escalation and reassignment with the rule that fired, the policy version and the Airflow task run
that did it (linked as /dags/{dag_id}/runs/{run_id}/tasks/{task_id}). Read-only, on read-only
connections (`store.connection.read_only`): a long export never takes or waits for the write lock.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import sqlalchemy as sa

from leadsla.store.connection import read_only
from leadsla.store.schema import audit

EXPORT_COLUMNS = [
    "audit_id",
    "at",
    "recorded_at",
    "event",
    "object_type",
    "record_id",
    "sla_id",
    "clock_start",
    "checkpoint",
    "actor",
    "policy_version",
    "dag_id",
    "run_id",
    "task_id",
    "try_number",
    "detail",
]


def task_link(dag_id: str | None, run_id: str | None, task_id: str | None) -> str | None:
    """The Airflow UI path of the task run, or None for entries made outside Airflow."""
    if not (dag_id and run_id and task_id):
        return None
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"


def record_timeline(engine: sa.Engine, record_id: str) -> list[dict]:
    """Audit entries of one record, oldest first, each with `link` to its task run."""
    with read_only(engine) as conn:
        rows = (
            conn.execute(
                sa.select(audit).where(audit.c.record_id == record_id).order_by(audit.c.at, audit.c.audit_id)
            )
            .mappings()
            .all()
        )
    return [dict(r, link=task_link(r["dag_id"], r["run_id"], r["task_id"])) for r in rows]


def entries_between(engine: sa.Engine, start: dt.datetime, end: dt.datetime):
    """Audit rows with start <= at < end, in order (an iterator of mappings, streamed)."""
    with read_only(engine) as conn:
        result = conn.execution_options(stream_results=True).execute(
            sa.select(audit)
            .where(audit.c.at >= start, audit.c.at < end)
            .order_by(audit.c.at, audit.c.audit_id)
        )
        yield from result.mappings()
