"""The clocks table's writer: evaluated clocks persisted when new or changed, starts and stops audited.

Also records each evaluation (`evaluations`: the run's time and when it read the store), which
the reports wait for. Runs in the monitor's transaction; never decides anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.engine import CLOCK_COLUMNS
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record_many

#: The states of a clock that has ended (`leadsla.engine.STATES`).
ENDED = ("met", "met_late", "handed_on", "handed_on_late")

_VALUE_COLUMNS = [k for k in CLOCK_COLUMNS if k != "evaluated_at"]
_KEY_COLUMNS = ("sla_id", "record_id", "clock_start")


def changed(row: dict[str, Any], stored: Any) -> bool:
    """Whether an evaluated clock differs from its stored row in anything but `evaluated_at`."""
    return any(row[k] != stored[k] for k in _VALUE_COLUMNS)


def persist_clocks(
    conn: sa.Connection, rows: list[dict[str, Any]], now: dt.datetime, context: AuditContext
) -> dict[str, int]:
    """Write the clocks that are new or changed, unless the stored row is from a later evaluation;
    audit starts and stops.

    Only changed clocks are written: a stopped clock, or a running one outside business hours,
    reads the same every minute, and rewriting thousands of identical rows each run was most of
    the monitor's time. `evaluated_at` is therefore the time of the evaluation that last changed
    the row. All writes are one executemany upsert whose WHERE keeps a row a later evaluation
    wrote; RETURNING says which rows this run did write, and only those are audited.
    """
    clocks = schema.clocks
    stored = {
        tuple(r[k] for k in _KEY_COLUMNS): r
        for r in conn.execute(sa.select(*[clocks.c[k] for k in CLOCK_COLUMNS])).mappings()
    }
    todo = []
    for row in rows:
        old = stored.get(tuple(row[k] for k in _KEY_COLUMNS))
        if old is None or (old["evaluated_at"] <= row["evaluated_at"] and changed(row, old)):
            todo.append(row)
    if not todo:
        return {"clocks_written": 0, "clock_events": 0}
    written = _upsert_unless_newer(conn, todo)
    audits = [
        entry
        for row in todo
        if tuple(row[k] for k in _KEY_COLUMNS) in written
        for entry in _clock_events(row, stored.get(tuple(row[k] for k in _KEY_COLUMNS)), now)
    ]
    record_many(conn, audits, context=context)
    return {"clocks_written": len(written), "clock_events": len(audits)}


def record_evaluation(
    conn: sa.Connection, *, now: dt.datetime, read_at: dt.datetime, clocks: int, run_id: str | None
) -> None:
    """One `evaluations` row: the clocks reflect the store as read at `read_at`, decided at `now`."""
    conn.execute(
        schema.evaluations.insert().values(evaluated_at=now, read_at=read_at, clocks=clocks, run_id=run_id)
    )


def _upsert_unless_newer(conn: sa.Connection, rows: list[dict[str, Any]]) -> set[tuple]:
    """One executemany upsert that keeps a row a later evaluation wrote; the identities written."""
    clocks = schema.clocks
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(clocks)
    stmt = stmt.on_conflict_do_update(
        index_elements=[clocks.c[k] for k in _KEY_COLUMNS],
        set_={k: stmt.excluded[k] for k in CLOCK_COLUMNS if k not in _KEY_COLUMNS},
        where=clocks.c.evaluated_at <= stmt.excluded.evaluated_at,
    ).returning(*[clocks.c[k] for k in _KEY_COLUMNS])
    return {tuple(r) for r in conn.execute(stmt, rows)}  # a later evaluation's rows come back absent


def _clock_events(row: dict[str, Any], old: Any, now: dt.datetime) -> list[dict[str, Any]]:
    """The audit entries a written clock row calls for: its start (new), its stop (newly met)."""
    base = {
        "object_type": row["object_type"],
        "record_id": row["record_id"],
        "sla_id": row["sla_id"],
        "clock_start": row["clock_start"],
        "policy_version": row["policy_version"],
        "actor": "sla_monitor",
    }
    events = []
    if old is None:
        detail = {"tier": row["tier"], "target_seconds": row["target_seconds"], "owner_id": row["owner_id"]}
        events.append({**base, "event": "clock_start", "at": row["clock_start"], "detail": detail})
    if row["state"] in ENDED and (old is None or old["state"] not in ENDED):
        # How it ended: met by a stop rule, or handed on (the record left the watched state).
        outcome = "handed_on" if row["state"].startswith("handed_on") else "met"
        detail = {"state": row["state"], "outcome": outcome, "elapsed_seconds": row["elapsed_seconds"]}
        events.append({**base, "event": "clock_stop", "at": row["stopped_at"] or now, "detail": detail})
    return events
