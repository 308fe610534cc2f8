"""Sync watermarks: the highest SystemModstamp committed per object, advanced only with its batch."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.store.schema import sync_watermarks
from leadsla.store.upsert import upsert


def read(conn: sa.Connection, object_type: str) -> dt.datetime | None:
    """The committed watermark of an object, or None before its first sync."""
    return conn.execute(
        sa.select(sync_watermarks.c.watermark).where(sync_watermarks.c.object_type == object_type)
    ).scalar()


def advance(conn: sa.Connection, object_type: str, watermark: dt.datetime) -> dt.datetime:
    """Move the watermark forward (never back) in the caller's transaction; returns the value kept."""
    current = read(conn, object_type)
    kept = max(current, watermark) if current else watermark
    upsert(
        conn,
        sync_watermarks,
        [{"object_type": object_type, "watermark": kept, "updated_at": dt.datetime.now(dt.UTC)}],
    )
    return kept
