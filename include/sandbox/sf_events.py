"""The stand-in org's Change Data Capture event bus: every create, update and delete of a
CDC-enabled object the org makes (the simulator's writes and the API's) becomes one change event,
kept in the org's SQLite file with an increasing replay id.

An event is written in the same transaction as the change, so the simulator in another process
and the API server agree on it, and the Streaming API (`sf_cometd`) reads it from here. The
message is Salesforce's change event message: `payload` with its `ChangeEventHeader` (entityName,
recordIds, changeType, changeOrigin, transactionKey, sequenceNumber, commitTimestamp, commitUser,
commitNumber, changedFields, nulledFields, diffFields) and the changed fields, `event.replayId`.
Retention is by the wall clock of publication (a real org keeps 72 hours).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from typing import Any

from sandbox.soql import parse_datetime

#: The objects whose changes are published (the monitor's watched objects), and their channels.
CDC_ENTITIES = ("Lead", "Opportunity", "Task", "Event", "User")
CHANNEL_PREFIX = "/data/"
ALL_CHANGES = "/data/ChangeEvents"
#: How long events stay replayable by default (seconds): a real org keeps 72 hours.
DEFAULT_RETENTION_S = 72 * 3600.0
#: Fields a real change event leaves out of the payload (system audit fields of the header).
_NOT_IN_PAYLOAD = {"Id", "SystemModstamp", "IsDeleted", "LastModifiedById", "CreatedById"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS change_events (
    replay_id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    published_at REAL NOT NULL,
    message TEXT NOT NULL
);
"""


def channel_of(entity: str) -> str:
    """The entity's change event channel, e.g. /data/LeadChangeEvent."""
    return f"{CHANNEL_PREFIX}{entity}ChangeEvent"


def entity_of(channel: str) -> str | None:
    """The entity a single-entity channel carries (None for /data/ChangeEvents or an unknown one)."""
    if channel.startswith(CHANNEL_PREFIX) and channel.endswith("ChangeEvent"):
        name = channel[len(CHANNEL_PREFIX) : -len("ChangeEvent")]
        return name if name in CDC_ENTITIES else None
    return None


def is_channel(channel: str) -> bool:
    return channel == ALL_CHANGES or entity_of(channel) is not None


def _millis(stamp: str) -> int:
    return int(parse_datetime(stamp).timestamp() * 1000)


def publish(
    db: sqlite3.Connection,
    entity: str,
    change_type: str,
    row: dict[str, Any],
    *,
    changed: list[str] | None,
    stamp: str,
    user: str,
) -> None:
    """Write one change event, inside the caller's transaction (a no-op for other objects).

    Args:
        change_type: CREATE, UPDATE or DELETE.
        changed: the fields an UPDATE changed (LastModifiedDate added, as Salesforce does).
    """
    if entity not in CDC_ENTITIES:
        return
    if change_type == "CREATE":
        fields = {k: v for k, v in row.items() if k not in _NOT_IN_PAYLOAD and v is not None}
        changed_fields: list[str] = []
    elif change_type == "UPDATE":
        changed_fields = sorted({*(changed or []), "LastModifiedDate"})
        fields = {k: row.get(k) for k in changed_fields}
    else:
        fields, changed_fields = {}, []
    header = {
        "entityName": entity,
        "recordIds": [row["Id"]],
        "changeType": change_type,
        "changeOrigin": "com/salesforce/api/rest/59.0",
        "transactionKey": str(uuid.uuid4()),
        "sequenceNumber": 1,
        "commitTimestamp": _millis(stamp),
        "commitUser": user,
        "changedFields": changed_fields,
        "nulledFields": sorted(k for k in changed_fields if row.get(k) is None),
        "diffFields": [],
    }
    message = {"ChangeEventHeader": header, **fields}
    db.execute(
        "INSERT INTO change_events (entity, published_at, message) VALUES (?, ?, ?)",
        (entity, time.time(), json.dumps(message, separators=(",", ":"))),
    )


def bounds(db: sqlite3.Connection, retention_s: float) -> tuple[int | None, int]:
    """(the oldest replay id still retained or None, the newest replay id ever published or 0)."""
    cutoff = time.time() - retention_s
    oldest = db.execute(
        "SELECT MIN(replay_id) FROM change_events WHERE published_at >= ?", (cutoff,)
    ).fetchone()
    # AUTOINCREMENT never reuses an id, and sqlite_sequence remembers the newest after a purge.
    newest = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'change_events'").fetchone()
    return oldest[0], (newest[0] if newest else 0)


def after(
    db: sqlite3.Connection, replay_id: int, entities: set[str] | None, retention_s: float, limit: int
) -> list[dict[str, Any]]:
    """Retained events after `replay_id`, oldest first, as {entity, replay_id, payload} (at most `limit`)."""
    cutoff = time.time() - retention_s
    sql = "SELECT replay_id, entity, message FROM change_events WHERE replay_id > ? AND published_at >= ?"
    args: list[Any] = [replay_id, cutoff]
    if entities is not None:
        sql += f" AND entity IN ({','.join('?' * len(entities))})"
        args += sorted(entities)
    sql += " ORDER BY replay_id LIMIT ?"
    out = []
    for rid, entity, message in db.execute(sql, [*args, limit]).fetchall():
        payload = json.loads(message)
        payload["ChangeEventHeader"]["commitNumber"] = rid
        out.append({"entity": entity, "replay_id": rid, "payload": payload})
    return out


def purge(db: sqlite3.Connection, retention_s: float) -> int:
    """Forget events past retention (their replay ids stay used); returns how many went."""
    return db.execute(
        "DELETE FROM change_events WHERE published_at < ?", (time.time() - retention_s,)
    ).rowcount
