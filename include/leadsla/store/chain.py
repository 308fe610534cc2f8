"""The audit trail's hash chain: tamper evidence on top of the append-only guards.

Each audit entry carries `prev_hash`, the hash of the entry before it in the chain, and
`entry_hash`, SHA-256 over a canonical form of its content and `prev_hash` (`canonical`). The
chain's head (`audit_chain`, one row) holds the newest entry's id and hash and the count, so
cutting the newest entries, or emptying the table, breaks the chain too.

What "previous" means. Appends are serialised: `append` takes the head row first (SELECT ... FOR
UPDATE on PostgreSQL; on SQLite every store transaction already holds the write lock from BEGIN)
and keeps it until its transaction ends. So the chain runs in the order in which audit-writing
transactions commit: an entry's predecessor is the entry before it in its own transaction, or
else the newest entry of the last transaction that committed audit entries before this one took
the head. A rolled-back transaction leaves neither entries nor a moved head. Ids and
`recorded_at` are drawn under the lock, so audit_id order is chain order (and recorded_at never
goes back along it, on one clock).

`store.chain_verify` reads the chain back and names the first broken entry.

Limits. An attacker who can write the store, rewrites the chain from some entry on AND moves the
head is caught only against a copy of an earlier head: the daily health check logs the head, and
every export carries the hashes. Entries written before the chain existed were hashed when the
store was upgraded (`start`): the chain vouches for them as they were then.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from leadsla.errors import LeadSlaError
from leadsla.store.schema import audit, audit_chain

#: The one chain of a store (the head row's key).
CHAIN_ID = 1
#: The canonical form's version, hashed with every entry, so a later form can change safely.
FORMAT = "leadsla.audit/1"
GENESIS = "leadsla.audit.genesis/1"
TIME_FIELDS = ("at", "recorded_at", "clock_start")
TEXT_FIELDS = (
    "event",
    "object_type",
    "record_id",
    "sla_id",
    "checkpoint",
    "actor",
    "policy_version",
    "dag_id",
    "run_id",
    "task_id",
)
#: Every column an entry's hash covers, in the canonical order (all but audit_id and the hashes:
#: the id's order is checked by the chain itself).
HASHED = (
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
)
#: Rows read (and, when the chain starts, hashed) per statement.
PAGE = 5000


class AuditChainError(LeadSlaError):
    """The audit trail cannot be appended to as a chain (no head, or no write transaction)."""


# --- the canonical form ------------------------------------------------------------------------

_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
_TIME_AT = frozenset(HASHED.index(name) for name in TIME_FIELDS)
_TRY_AT = HASHED.index("try_number")
_DETAIL_AT = HASHED.index("detail")


@functools.lru_cache(maxsize=4096)  # a batch's entries share their instants (the run's time)
def _time(value: Any) -> str | None:
    """An instant as UTC text with its microseconds (``2026-11-02 09:00:00.000005+00:00``); equal
    instants give equal text whatever zone they are in."""
    if value is None:
        return None
    if type(value) is not dt.datetime:  # a subclass (pandas.Timestamp) prints differently
        if not isinstance(value, dt.datetime):
            raise ValueError(f"audit instants must be aware datetimes, got {value!r}")
        value = dt.datetime(*value.timetuple()[:6], value.microsecond, tzinfo=value.tzinfo)
    if value.tzinfo is not dt.UTC:
        if value.utcoffset() is None:
            raise ValueError(f"audit instants must be aware datetimes, got naive {value.isoformat()}")
        value = value.astimezone(dt.UTC)
    return str(value)


def canonical_values(prev_hash: str, values: Sequence[Any]) -> bytes:
    """The bytes an entry's hash is taken over, from its HASHED fields in that order: a JSON array
    of the format, `prev_hash` and the fields (instants as UTC text with microseconds, an empty
    text as null, `detail` with sorted keys)."""
    doc: list[Any] = [FORMAT, prev_hash]
    for i, value in enumerate(values):
        if i in _TIME_AT:
            value = _time(value)
        elif i == _TRY_AT:
            value = None if value is None or value == "" else int(value)
        elif value == "":
            value = None  # an export cannot tell "" from None, and neither carries meaning
        doc.append(value)
    try:
        text = _ENCODE(doc)
    except TypeError:  # object keys of mixed types: hash what the store keeps (JSON keys are strings)
        doc[2 + _DETAIL_AT] = json.loads(json.dumps(doc[2 + _DETAIL_AT]))
        text = _ENCODE(doc)
    return text.encode()


def canonical(prev_hash: str, entry: Mapping[str, Any]) -> bytes:
    """`canonical_values` of an entry given as a mapping (missing fields are None)."""
    return canonical_values(prev_hash, [entry.get(name) for name in HASHED])


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the entry's canonical form."""
    return hashlib.sha256(canonical(prev_hash, entry)).hexdigest()


def values_hash(prev_hash: str, values: Sequence[Any]) -> str:
    """SHA-256 (hex) of `canonical_values`."""
    return hashlib.sha256(canonical_values(prev_hash, values)).hexdigest()


def genesis_hash(started_at: dt.datetime) -> str:
    """The first entry's `prev_hash`: SHA-256 of the chain's start."""
    return hashlib.sha256(_ENCODE([GENESIS, _time(started_at)]).encode()).hexdigest()


# --- writing -----------------------------------------------------------------------------------


def stored(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as it is stored and hashed: text fields as str (SQLite would turn 12 into '12')."""
    row = dict(entry)
    for name in TEXT_FIELDS:
        value = row.get(name)
        if value is not None and not isinstance(value, str):
            row[name] = str(value)
    return row


def _refuse_unserialised(conn: sa.Connection) -> None:
    """The head must stay locked until the entries commit: refuse a connection that is not in a
    database transaction (any backend in autocommit, where each statement commits on its own). A
    `store.connection.read_only` connection is in a transaction but cannot write (SQLite's
    `query_only`, PostgreSQL's READ ONLY): its insert fails in the database."""
    dbapi = conn.connection.dbapi_connection
    held = dbapi.in_transaction if conn.dialect.name == "sqlite" else not getattr(dbapi, "autocommit", False)
    if not held:
        raise AuditChainError(
            "audit entries are appended in a write transaction (engine.begin()), never on a read-only "
            "or autocommit connection: the chain's head must stay locked until the entries commit"
        )


_LOCK_HEAD = sa.select(audit_chain.c.head_hash).where(audit_chain.c.chain_id == CHAIN_ID).with_for_update()
_INSERT = audit.insert()
_ADVANCE_HEAD = (
    audit_chain.update()
    .where(audit_chain.c.chain_id == CHAIN_ID)
    .values(
        entries=audit_chain.c.entries + sa.bindparam("added", type_=sa.Integer),
        head_hash=sa.bindparam("head"),
        head_audit_id=sa.select(sa.func.max(audit.c.audit_id)).scalar_subquery(),
    )
)


def append(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Chain `rows` (audit rows as `stored` makes them, without recorded_at or hashes) onto the
    head, in order, and insert them; the head stays locked until the caller's transaction ends.

    Raises:
        AuditChainError: the head row is missing, or `conn` cannot hold a lock.
    """
    head = conn.execute(_LOCK_HEAD).first()
    _refuse_unserialised(conn)  # after the first statement: it began the transaction
    if head is None:
        raise AuditChainError(
            "the audit trail's chain head (table audit_chain) is missing, so no entry can be chained: "
            "the store was tampered with; run `leadsla audit verify` and restore the store from a backup"
        )
    now = dt.datetime.now(dt.UTC)
    prev = head.head_hash
    for row in rows:
        row["recorded_at"] = now
        row["prev_hash"] = prev
        prev = row["entry_hash"] = entry_hash(prev, row)
    conn.execute(_INSERT, rows)
    conn.execute(_ADVANCE_HEAD, {"added": len(rows), "head": prev})


def start(conn: sa.Connection, now: dt.datetime) -> int:
    """Begin the store's chain, once: hash every entry already written (oldest first, from the
    genesis hash) and record the head. The caller has lifted the guard against UPDATE (see
    `migrations`); returns how many entries were hashed. A store that has a head is left alone,
    so a deleted head is never silently re-created.
    """
    if conn.execute(sa.select(audit_chain.c.chain_id).where(audit_chain.c.chain_id == CHAIN_ID)).first():
        return 0
    genesis = genesis_hash(now)
    prev, count, newest = genesis, 0, None
    columns = [audit.c.audit_id, *(audit.c[name] for name in HASHED)]
    update = (
        audit.update()
        .where(audit.c.audit_id == sa.bindparam("b_id"))
        .values(prev_hash=sa.bindparam("b_prev"), entry_hash=sa.bindparam("b_hash"))
    )
    while True:
        page = conn.execute(
            sa.select(*columns)
            .where(audit.c.audit_id > (newest if newest is not None else -1))
            .order_by(audit.c.audit_id)
            .limit(PAGE)
        ).mappings()
        hashes = []
        for row in page:
            digest = entry_hash(prev, row)
            hashes.append({"b_id": row["audit_id"], "b_prev": prev, "b_hash": digest})
            prev, newest = digest, row["audit_id"]
        if not hashes:
            break
        conn.execute(update, hashes)
        count += len(hashes)
    conn.execute(
        audit_chain.insert().values(
            chain_id=CHAIN_ID,
            genesis_hash=genesis,
            started_at=now,
            backfilled=count,
            entries=count,
            head_audit_id=newest,
            head_hash=prev,
        )
    )
    return count
