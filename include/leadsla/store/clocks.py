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
    c = schema.clocks
    stored = {
        tuple(r[k] for k in _KEY_COLUMNS): r
        for r in conn.execute(sa.select(*[c.c[k] for k in CLOCK_COLUMNS])).mappings()
    }
    todo = []
    for row in rows:
        old = stored.get(tuple(row[k] for k in _KEY_COLUMNS))
        if old is None or (old["evaluated_at"] <= row["evaluated_at"] and changed(row, old)):
            todo.append(row)
    if not todo:
        return {"clocks_written": 0, "clock_events": 0}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(c)
    stmt = stmt.on_conflict_do_update(
        index_elements=[c.c[k] for k in _KEY_COLUMNS],
        set_={k: stmt.excluded[k] for k in CLOCK_COLUMNS if k not in _KEY_COLUMNS},
        where=c.c.evaluated_at <= stmt.excluded.evaluated_at,
    ).returning(*[c.c[k] for k in _KEY_COLUMNS])
    written = {tuple(r) for r in conn.execute(stmt, todo)}  # a later evaluation's rows come back absent
    audits = []
    for row in todo:
        ident = tuple(row[k] for k in _KEY_COLUMNS)
        if ident not in written:
            continue
        old = stored.get(ident)
        base = {
            "object_type": row["object_type"],
            "record_id": row["record_id"],
            "sla_id": row["sla_id"],
            "clock_start": row["clock_start"],
            "policy_version": row["policy_version"],
            "actor": "sla_monitor",
        }
        if old is None:
            audits.append(
                {
                    **base,
                    "event": "clock_start",
                    "at": row["clock_start"],
                    "detail": {
                        "tier": row["tier"],
                        "target_seconds": row["target_seconds"],
                        "owner_id": row["owner_id"],
                    },
                }
            )
        if row["state"] in ("met", "met_late") and (old is None or old["state"] not in ("met", "met_late")):
            audits.append(
                {
                    **base,
                    "event": "clock_stop",
                    "at": row["stopped_at"] or now,
                    "detail": {"state": row["state"], "elapsed_seconds": row["elapsed_seconds"]},
                }
            )
    record_many(conn, audits, context=context)
    return {"clocks_written": len(written), "clock_events": len(audits)}


def record_evaluation(
    conn: sa.Connection, *, now: dt.datetime, read_at: dt.datetime, clocks: int, run_id: str | None
) -> None:
    """One `evaluations` row: the clocks reflect the store as read at `read_at`, decided at `now`."""
    conn.execute(
        schema.evaluations.insert().values(evaluated_at=now, read_at=read_at, clocks=clocks, run_id=run_id)
    )
