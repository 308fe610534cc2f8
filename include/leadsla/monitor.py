"""The monitor's evaluate-and-enqueue step: store frames -> clocks -> outbox, in one transaction.

`run_monitor(engine, now, context)` loads the CRM mirror, evaluates every clock at `now` (the
run's own time, so a rerun of an old run decides the same), and in ONE transaction: upserts the
clocks (never over a newer evaluation), audits clock starts/stops, records due and superseded
checkpoints, queues the messages (`outbox.enqueue`), replaces a systemic team's VP breach
messages by one capacity alert (`leadsla.capacity`), rolls a person's warnings beyond the rate
limit into one digest (`notify.digest.roll_up`), and queues the breach actions (channel ``crm``,
see `leadsla.escalation`). Never sends anything and never reads the wall clock for a decision.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

import pandas as pd
import sqlalchemy as sa

from leadsla import alerts, capacity, escalation
from leadsla.engine import CLOCK_COLUMNS, evaluate
from leadsla.notify.digest import roll_up
from leadsla.notify.outbox import enqueue
from leadsla.policy import Policy, load_policy
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record_many

log = logging.getLogger(__name__)

DEFAULT_INSTANCE_URL = "https://login.salesforce.com"
_FRAMES = {
    "records": [
        "object_type",
        "record_id",
        "name",
        "company",
        "status",
        "owner_id",
        "lead_source",
        "lead_type",
        "account_tier",
        "country",
        "created_at",
        "fields",
        "lock_until",
    ],
    "field_history": [
        "object_type",
        "record_id",
        "field",
        "old_value",
        "new_value",
        "changed_at",
        "changed_by",
    ],
    "activities": [
        "activity_id",
        "kind",
        "who_id",
        "what_id",
        "owner_id",
        "type",
        "subtype",
        "created_at",
        "is_deleted",
    ],
    "users": ["user_id", "name", "email", "manager_id", "team", "timezone", "is_active"],
    "queues": ["queue_id", "name"],
}


def load_frames(conn: sa.Connection) -> dict[str, pd.DataFrame]:
    """The store's CRM mirror as the engine's input frames (deleted records left out)."""
    frames: dict[str, pd.DataFrame] = {}
    for name, cols in _FRAMES.items():
        table = schema.metadata.tables[name]
        # Instants come back as the driver gives them (SQLite: UTC text) and are parsed below in one
        # vectorised pass: row-by-row type processing was a large share of a steady-state run.
        instants = [c for c in cols if isinstance(table.c[c].type, schema.UtcDateTime)]
        query = sa.select(
            *[sa.type_coerce(table.c[c], sa.String).label(c) if c in instants else table.c[c] for c in cols]
        )
        if name == "records":
            query = query.where(table.c.is_deleted.is_(False))
        rows = conn.execute(query).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=cols)
        for col in instants:
            frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        frames[name] = frame
    return frames


def instance_url() -> str:
    """The Salesforce instance for record links: $LEADSLA_INSTANCE_URL, else the connection's host."""
    url = os.environ.get("LEADSLA_INSTANCE_URL")
    if url:
        return url.rstrip("/")
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection("salesforce_default")
        extra = conn.extra_dejson or {}
        host = extra.get("instance_url") or conn.host
        if host:
            return host if host.startswith("http") else f"https://{host}"
    except Exception:  # no Airflow or no connection: links point at the login host
        pass
    return DEFAULT_INSTANCE_URL


def _handled(conn: sa.Connection) -> set[tuple]:
    """Checkpoints already acted on: queued (outbox), superseded or due (audit)."""
    o, a = schema.outbox, schema.audit
    rows = conn.execute(
        sa.select(o.c.sla_id, o.c.record_id, o.c.clock_start, o.c.checkpoint)
        .distinct()
        .where(o.c.sla_id.is_not(None), o.c.clock_start.is_not(None))
    ).all()
    rows += conn.execute(
        sa.select(a.c.sla_id, a.c.record_id, a.c.clock_start, a.c.checkpoint)
        .distinct()
        .where(a.c.event.in_(["checkpoint_superseded", "checkpoint_due"]))
    ).all()
    return {tuple(r) for r in rows}


_VALUE_COLUMNS = [k for k in CLOCK_COLUMNS if k != "evaluated_at"]
_KEY_COLUMNS = ("sla_id", "record_id", "clock_start")


def _changed(row: dict[str, Any], stored: Any) -> bool:
    """Whether an evaluated clock differs from its stored row in anything but `evaluated_at`."""
    return any(row[k] != stored[k] for k in _VALUE_COLUMNS)


def _persist_clocks(
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
        if old is None or (old["evaluated_at"] <= row["evaluated_at"] and _changed(row, old)):
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


def run_monitor(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    policy: Policy | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Evaluate at `now` and queue what is due, all in one transaction (module docstring).

    Returns:
        Small counts for XCom: clocks, due, superseded, queued, breaches, unresolved.
    """
    policy = policy or load_policy(os.environ.get("LEADSLA_POLICY_PATH") or None)
    with engine.begin() as conn:
        # Bookkeeping only (which sync the clocks reflect, for the reports): decisions use `now`.
        read_at = dt.datetime.now(dt.UTC)
        frames = load_frames(conn)
        ev = evaluate(
            records=frames["records"],
            field_history=frames["field_history"],
            activities=frames["activities"],
            users=frames["users"],
            policy=policy,
            now=now,
        )
        counts = _persist_clocks(conn, ev.clock_rows(), now, context)
        directory = alerts.Directory(policy, frames["users"], frames["queues"])
        decided = alerts.plan(
            ev.clocks,
            ev.checkpoints,
            frames["records"],
            directory,
            now=now,
            handled=_handled(conn),
            instance_url=url or instance_url(),
        )
        entries = []
        for event, rows in (("checkpoint_due", decided.due), ("checkpoint_superseded", decided.superseded)):
            for cp in rows:
                entries.append(
                    {
                        "event": event,
                        "at": now,
                        "object_type": None,
                        "record_id": cp["record_id"],
                        "sla_id": cp["sla_id"],
                        "clock_start": alerts._ts(cp["clock_start"]),
                        "checkpoint": cp["checkpoint"],
                        "policy_version": cp["policy_version"],
                        "actor": "sla_monitor",
                        "detail": {
                            "reached_at": alerts._ts(cp["reached_at"]).isoformat(),
                            "offset_seconds": int(cp["offset_seconds"]),
                            **({"sent": False} if event == "checkpoint_superseded" else {}),
                        },
                    }
                )
        record_many(conn, entries, context=context)
        queued = enqueue(conn, decided.actions, now, context)
        systemic = capacity.roll_up_capacity(conn, ev.clocks, policy, now, context)
        digests = roll_up(
            conn,
            now,
            max_alerts=policy.rate_limit.max_alerts,
            window_minutes=policy.rate_limit.window_minutes,
            context=context,
        )
        breach_keys = escalation.enqueue_breaches(conn, decided.breaches, directory, now, context)
        conn.execute(
            schema.evaluations.insert().values(
                evaluated_at=now, read_at=read_at, clocks=len(ev.clocks), run_id=context.run_id
            )
        )
    summary = {
        **counts,
        "clocks": len(ev.clocks),
        "due": len(decided.due),
        "superseded": len(decided.superseded),
        "queued": len(queued),
        "digests": len(digests),
        "capacity_alerts": systemic["alerts"],
        "rolled_up": systemic["rolled_up"],
        "breaches": len(breach_keys),
        "unresolved": len(decided.unresolved),
    }
    if decided.unresolved:
        log.warning("roles that resolve to nobody: %s", "; ".join(decided.unresolved[:20]))
    log.info("monitor at %s: %s", now.isoformat(), summary)
    return summary
