"""Change Data Capture's bookkeeping in the store: the replay ids crm_sync has landed (the listener
resumes after them) and the stream's mode (streaming or polling, since when, why, its last
keep-alive, the last safety-net query).

A replay id is committed only by the crm_sync run that landed its changes, never moved back; the
mode row is written by the listener (mode, heartbeat) and by crm_sync (the safety net).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from leadsla.store.schema import crm_stream_replay, crm_stream_status
from leadsla.store.upsert import upsert

#: The one stream this project listens to.
SALESFORCE = "salesforce"
STREAMING = "streaming"
POLLING = "polling"


@dataclass(frozen=True)
class StreamStatus:
    """The stream's row (`crm_stream_status`)."""

    mode: str
    since: dt.datetime
    reason: str | None
    heartbeat_at: dt.datetime | None
    safety_net_at: dt.datetime | None


def committed(conn: sa.Connection) -> dict[str, int]:
    """The committed replay id per channel."""
    return {
        c: int(r)
        for c, r in conn.execute(sa.select(crm_stream_replay.c.channel, crm_stream_replay.c.replay_id))
    }


def commit(
    conn: sa.Connection, replay: Mapping[str, int], now: dt.datetime, run_id: str | None
) -> dict[str, int]:
    """Move each channel's replay id forward (never back) in the caller's transaction; returns
    what is kept."""
    current = committed(conn)
    kept = {c: max(int(r), current.get(c, -1)) for c, r in replay.items()}
    if kept:
        upsert(
            conn,
            crm_stream_replay,
            [{"channel": c, "replay_id": r, "committed_at": now, "run_id": run_id} for c, r in kept.items()],
        )
    return kept


def forget(conn: sa.Connection, channels: list[str]) -> None:
    """Drop channels' replay ids (they fell out of the org's retention: resume from new events)."""
    conn.execute(crm_stream_replay.delete().where(crm_stream_replay.c.channel.in_(channels)))


def status(conn: sa.Connection, stream: str = SALESFORCE) -> StreamStatus | None:
    row = conn.execute(sa.select(crm_stream_status).where(crm_stream_status.c.stream == stream)).first()
    if row is None:
        return None
    return StreamStatus(row.mode, row.since, row.reason, row.heartbeat_at, row.safety_net_at)


def set_mode(
    conn: sa.Connection, mode: str, reason: str, now: dt.datetime, *, stream: str = SALESFORCE
) -> bool:
    """Record the mode (its `since` moves only when the mode changes; a streaming mode is also a
    heartbeat). Returns whether the mode changed."""
    if mode not in (STREAMING, POLLING):
        raise ValueError(f"stream mode {mode!r}: expected {STREAMING} or {POLLING}")
    current = status(conn, stream)
    changed = current is None or current.mode != mode
    values = {
        "stream": stream,
        "mode": mode,
        "since": now if changed else current.since,
        "reason": reason[:300],
        "heartbeat_at": now if mode == STREAMING else (current.heartbeat_at if current else None),
        "safety_net_at": current.safety_net_at if current else None,
    }
    upsert(conn, crm_stream_status, [values])
    return changed


def heartbeat(conn: sa.Connection, now: dt.datetime, *, stream: str = SALESFORCE) -> None:
    """The stream answered (an event or a keep-alive)."""
    conn.execute(
        crm_stream_status.update().where(crm_stream_status.c.stream == stream).values(heartbeat_at=now)
    )


def mark_safety_net(conn: sa.Connection, now: dt.datetime, *, stream: str = SALESFORCE) -> None:
    """The watermark queries ran while streaming (the periodic safety net)."""
    conn.execute(
        crm_stream_status.update().where(crm_stream_status.c.stream == stream).values(safety_net_at=now)
    )
