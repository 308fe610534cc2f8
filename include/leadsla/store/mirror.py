"""The CRM mirror as the engine reads it: the store's records, history, activities, users, queues.

One read per table, instants parsed in one vectorised pass (the same frames on SQLite and
PostgreSQL). Deleted records are left out. Reads only.
"""

from __future__ import annotations

from collections.abc import Collection

import pandas as pd
import sqlalchemy as sa

from leadsla.store import schema

FRAME_COLUMNS = {
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
        "created_by",
        "status",
        "completed_at",
        "is_deleted",
    ],
    # fields: the raw CRM fields kept beside the columns (MobilePhone, for text messages).
    "users": ["user_id", "name", "email", "manager_id", "team", "timezone", "is_active", "fields"],
    "queues": ["queue_id", "name"],
}


def load_frames(conn: sa.Connection, record_ids: Collection[str] | None = None) -> dict[str, pd.DataFrame]:
    """The store's CRM mirror as the engine's input frames (deleted records left out).

    Args:
        record_ids: only these records, their history and their activities (every user and
            queue): one lead's clock re-evaluated right before its warning goes.
    """
    frames: dict[str, pd.DataFrame] = {}
    for name, cols in FRAME_COLUMNS.items():
        table = schema.metadata.tables[name]
        # Instants come back as the driver gives them (SQLite: UTC text) and are parsed below in one
        # vectorised pass: row-by-row type processing was a large share of a steady-state run.
        instants = [c for c in cols if isinstance(table.c[c].type, schema.UtcDateTime)]
        query = sa.select(
            *[sa.type_coerce(table.c[c], sa.String).label(c) if c in instants else table.c[c] for c in cols]
        )
        if name == "records":
            query = query.where(table.c.is_deleted.is_(False))
        if record_ids is not None and name in ("records", "field_history"):
            query = query.where(table.c.record_id.in_(list(record_ids)))
        elif record_ids is not None and name == "activities":
            query = query.where(
                sa.or_(table.c.who_id.in_(list(record_ids)), table.c.what_id.in_(list(record_ids)))
            )
        rows = conn.execute(query).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=cols)
        for col in instants:
            frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        frames[name] = frame
    return frames
