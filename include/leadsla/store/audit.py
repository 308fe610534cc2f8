"""The append-only audit trail: every clock event, message, escalation and CRM write, with the
Airflow task run that did it.

`AuditContext` carries dag_id/run_id/task_id/try_number; it is built from a task's context dict
without importing Airflow. The table refuses UPDATE, DELETE and TRUNCATE (`store.guards`), and
every entry is chained to the one before it by its hash (`store.chain`): `record_many` is the
only code that writes audit rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from leadsla.store import chain
from leadsla.store.schema import AUDIT_EVENTS


@dataclass(frozen=True)
class AuditContext:
    """Who did it: the Airflow task run, or a named tool (CLI, sandbox) outside Airflow."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None

    @classmethod
    def from_task_context(cls, context: Mapping[str, Any]) -> AuditContext:
        """From an Airflow task's context (`get_current_context()` or `**context`)."""
        ti = context.get("ti") or context.get("task_instance")
        return cls(
            dag_id=getattr(ti, "dag_id", None),
            run_id=getattr(ti, "run_id", None),
            task_id=getattr(ti, "task_id", None),
            try_number=getattr(ti, "try_number", None),
        )


def record(
    conn: sa.Connection,
    event: str,
    *,
    at: dt.datetime,
    context: AuditContext,
    detail: Mapping[str, Any] | None = None,
    **fields: Any,
) -> None:
    """Append one audit entry (see `record_many`)."""
    record_many(conn, [dict(fields, event=event, at=at, detail=dict(detail or {}))], context=context)


def record_many(conn: sa.Connection, entries: Iterable[Mapping[str, Any]], *, context: AuditContext) -> int:
    """Append audit entries in one statement, chained in order onto the trail's head; each needs
    `event` and `at`. `recorded_at` is the wall time under the chain's lock. Call it in a write
    transaction (`engine.begin()`): the head stays locked until that transaction ends, so keep
    audit writes last in it where you can.

    Raises:
        ValueError: an entry names an event outside AUDIT_EVENTS, or lacks `at`.
        AuditChainError: a read-only or autocommit connection, or a store without its chain head.
    """
    rows, run = [], asdict(context)
    for entry in entries:
        if entry.get("event") not in AUDIT_EVENTS:
            raise ValueError(f"unknown audit event {entry.get('event')!r}; known: {sorted(AUDIT_EVENTS)}")
        if entry.get("at") is None:
            raise ValueError(f"audit entry {entry['event']!r} has no 'at' time")
        rows.append(chain.stored({"detail": {}, **entry, **run}))
    if rows:
        chain.append(conn, rows)
    return len(rows)
