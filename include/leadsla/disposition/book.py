"""What recycling reads from the store: the candidate leads (in the recycle SLA's watched status or
the recycle status), their history and activities, the users and queues, in the engine's frame
shapes (`store.mirror.FRAME_COLUMNS`). Reads only, and only those leads: an org's other leads,
however many, cost nothing here.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from leadsla.policy import Policy
from leadsla.store import schema, watermarks
from leadsla.store.mirror import FRAME_COLUMNS


def _frame(conn: sa.Connection, table: sa.Table, columns: list[str], where) -> pd.DataFrame:
    """Rows of `table` as a frame; instants read as text and parsed in one vectorised pass (as the
    mirror does, the same on SQLite and PostgreSQL)."""
    instants = [c for c in columns if isinstance(table.c[c].type, schema.UtcDateTime)]
    query = sa.select(
        *[sa.type_coerce(table.c[c], sa.String).label(c) if c in instants else table.c[c] for c in columns]
    )
    if where is not None:
        query = query.where(where)
    rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
    for col in instants:
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame


def candidates(conn: sa.Connection, policy: Policy, reengagement_field: str) -> dict[str, pd.DataFrame]:
    """The frames `decisions.recycling.decide` reads: records, field_history, activities, users,
    queues (empty records when the policy has no `recycle:` section).

    The candidates are the leads in the SLA's watched status and, when the policy re-enters
    recycled leads, the recycled ones with a re-engagement date (`reengagement_field`, the API
    name): an org's years of recycled leads without one are never read.
    """
    rule = policy.recycle
    r, h, a = schema.records, schema.field_history, schema.activities
    wanted = sa.false()
    if rule is not None:
        wanted = r.c.status == policy.sla(rule.sla).start.becomes
        if rule.nurture.reenter is not None:
            dated = r.c.fields[reengagement_field].as_string().is_not(None)
            wanted = sa.or_(wanted, sa.and_(r.c.status == rule.status, dated))
    where = sa.and_(r.c.object_type == "Lead", r.c.is_deleted.is_(False), wanted)
    ids = sa.select(r.c.record_id).where(where)
    return {
        "records": _frame(conn, r, FRAME_COLUMNS["records"], where),
        "field_history": _frame(
            conn,
            h,
            FRAME_COLUMNS["field_history"],
            sa.and_(h.c.object_type == "Lead", h.c.record_id.in_(ids)),
        ),
        "activities": _frame(conn, a, FRAME_COLUMNS["activities"], a.c.who_id.in_(ids)),
        "users": _frame(conn, schema.users, FRAME_COLUMNS["users"], None),
        "queues": _frame(conn, schema.queues, FRAME_COLUMNS["queues"], None),
    }


def views(conn: sa.Connection, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(the Lead view, the activity view): the instants the store's copy of Leads, and of their
    Tasks and Events, is complete up to (their sync watermarks; `now` before a first sync)."""
    lead = watermarks.read(conn, "Lead") or now
    acts = [w for w in (watermarks.read(conn, "Task"), watermarks.read(conn, "Event")) if w is not None]
    return lead, min(acts) if acts else lead


def known_activities(conn: sa.Connection, ids: list[str]) -> set[str]:
    """The ids among `ids` of activities the store already holds."""
    a = schema.activities
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        found.update(
            conn.execute(
                sa.select(a.c.activity_id).where(a.c.activity_id.in_(ids[start : start + 500]))
            ).scalars()
        )
    return found
