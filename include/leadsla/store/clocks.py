"""The clocks table's writer: evaluated clocks persisted when new or changed, starts and stops audited.

Also records each evaluation (`evaluations`: the run's time, when it read the store, how it ran),
which the reports and the incremental monitor read, and the stored clocks the incremental monitor
reads back: those due a re-evaluation (`next_change_at`), and the current ones its decisions need.
The writes run in the monitor's short write transaction (`plan_writes` reads outside it,
`write_clocks` writes, re-checking inside only the rows it writes); never decides anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadsla.engine import CLOCK_COLUMNS
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record_many
from leadsla.store.mirror import KeyRange

#: The states of a clock that has ended (`leadsla.engine.STATES`).
ENDED = ("met", "met_late", "handed_on", "handed_on_late")

_VALUE_COLUMNS = [k for k in CLOCK_COLUMNS if k != "evaluated_at"]
_KEY_COLUMNS = ("sla_id", "record_id", "clock_start")
#: What the store keeps beside the engine's columns: when the clock can next change, and whether it
#: went stale (`store.schema.clocks`).
STORE_COLUMNS = [*CLOCK_COLUMNS, "next_change_at", "stale_since"]
#: States of a clock still running (the decisions count a rep's open clocks).
OPEN = ("running", "paused", "breached")
#: A stored clock row (a SQLAlchemy RowMapping) by its identity.
Stored = dict[tuple, Any]


def changed(row: dict[str, Any], stored: Any) -> bool:
    """Whether an evaluated clock differs from its stored row in anything but `evaluated_at`."""
    return any(row[k] != stored[k] for k in _VALUE_COLUMNS)


def _differs(row: dict[str, Any], stored: Any) -> bool:
    """`changed`, or its next change or staleness moved (those are written too)."""
    return changed(row, stored) or any(row.get(k) != stored[k] for k in ("next_change_at", "stale_since"))


def key_of(row: Any) -> tuple:
    return tuple(row[k] for k in _KEY_COLUMNS)


@dataclass
class ClockWrites:
    """What an evaluation writes to `clocks`: new or changed rows, and stored rows gone stale."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    stale: list[tuple] = field(default_factory=list)
    stored: Stored = field(default_factory=dict)


def read_stored(
    conn: sa.Connection, record_ids: Iterable[str] | None = None, *, within: KeyRange | None = None
) -> Stored:
    """The stored clock rows (all, these records', or those of a range of record ids), by identity."""
    clocks = schema.clocks
    query = sa.select(*[clocks.c[k] for k in STORE_COLUMNS])
    if within is not None:
        query = query.where(*within.where(clocks.c.record_id))
    if record_ids is None:
        return {key_of(r): r for r in conn.execute(query).mappings()}
    ids = sorted(set(record_ids))
    found: Stored = {}
    for at in range(0, len(ids), 2000):
        for r in conn.execute(query.where(clocks.c.record_id.in_(ids[at : at + 2000]))).mappings():
            found[key_of(r)] = r
    return found


def plan_writes(
    rows: list[dict[str, Any]], stored: Stored, now: dt.datetime, scope: Iterable[str] | None = None
) -> ClockWrites:
    """The rows to write (new, or changed and not from a later evaluation) and the stored current
    clocks of the evaluated records (`scope`; None: every record) the evaluation no longer gave."""
    todo = []
    for row in rows:
        old = stored.get(key_of(row))
        if old is None or (old["evaluated_at"] <= row["evaluated_at"] and _differs(row, old)):
            todo.append(row)
    given = {key_of(row) for row in rows}
    ids = None if scope is None else set(scope)
    stale = [
        key
        for key, old in stored.items()
        if key not in given
        and old["stale_since"] is None
        and (ids is None or key[1] in ids)
        and old["evaluated_at"] <= now
    ]
    return ClockWrites(todo, stale, stored)


def write_clocks(
    conn: sa.Connection,
    writes: ClockWrites,
    now: dt.datetime,
    context: AuditContext,
    *,
    actor: str = "sla_monitor",
) -> dict[str, int]:
    """Write planned clocks in the caller's (write) transaction; audit starts and stops as `actor`.

    The rows are re-read here (only those written; locked on PostgreSQL), so a clock a concurrent
    or retried run wrote since the plan was read is neither overwritten by an older evaluation nor
    audited twice, and a stored row is marked stale only by an evaluation at least as late as the
    one that last wrote it (the sync writes the clocks of what it landed beside the monitor:
    `tasks.landed_clocks`).
    """
    if not writes.rows and not writes.stale:
        return {"clocks_written": 0, "clock_events": 0}
    keys = [key_of(r) for r in writes.rows]
    current = _lock_rows(conn, keys + writes.stale)
    todo = [
        row
        for row in writes.rows
        if (old := current.get(key_of(row))) is None
        or (old["evaluated_at"] <= row["evaluated_at"] and _differs(row, old))
    ]
    written = _upsert_unless_newer(conn, todo) if todo else set()
    audits = [
        entry
        for row in todo
        if key_of(row) in written
        for entry in _clock_events(row, current.get(key_of(row)), now, actor)
    ]
    record_many(conn, audits, context=context)
    stale = [
        k
        for k in writes.stale
        if k in current and current[k]["stale_since"] is None and current[k]["evaluated_at"] <= now
    ]
    _mark_stale(conn, stale, now)
    return {"clocks_written": len(written), "clock_events": len(audits)}


def persist_clocks(
    conn: sa.Connection,
    rows: list[dict[str, Any]],
    now: dt.datetime,
    context: AuditContext,
    *,
    scope: Iterable[str] | None = None,
) -> dict[str, int]:
    """Write the clocks that are new or changed, unless the stored row is from a later evaluation;
    audit starts and stops; mark stale the stored clocks of the evaluated records (`scope`, None:
    all) it no longer gave.

    Only changed clocks are written: a stopped clock, or a running one outside business hours,
    reads the same every minute, and rewriting thousands of identical rows each run was most of
    the monitor's time. `evaluated_at` is therefore the time of the evaluation that last changed
    the row. All writes are one executemany upsert whose WHERE keeps a row a later evaluation
    wrote; RETURNING says which rows this run did write, and only those are audited.
    """
    rows = [{"next_change_at": None, "stale_since": None, **row} for row in rows]
    stored = read_stored(conn, None if scope is None else set(scope))
    return write_clocks(conn, plan_writes(rows, stored, now, scope), now, context)


def record_evaluation(
    conn: sa.Connection,
    *,
    now: dt.datetime,
    read_at: dt.datetime,
    clocks: int,
    run_id: str | None,
    mode: str | None = None,
    policy_digest: str | None = None,
) -> None:
    """One `evaluations` row: the clocks reflect the store as read at `read_at`, decided at `now`,
    evaluated `mode` (full or incremental) under the policy of `policy_digest`."""
    conn.execute(
        schema.evaluations.insert().values(
            evaluated_at=now,
            read_at=read_at,
            clocks=clocks,
            run_id=run_id,
            mode=mode,
            policy_digest=policy_digest,
        )
    )


def record_reconcile(
    conn: sa.Connection, now: dt.datetime, found: dict[str, Any], *, run_id: str | None
) -> None:
    """One `reconciles` row: a full evaluation compared with the incremental state (`found`:
    reason, clocks compared, differences, detail)."""
    conn.execute(
        schema.reconciles.insert().values(
            evaluated_at=now,
            reason=found["reason"],
            clocks=found["clocks"],
            differences=found["differences"],
            detail=found["detail"],
            run_id=run_id,
        )
    )


def recent_evaluations(conn: sa.Connection, limit: int) -> list[Any]:
    """The latest `limit` evaluations, newest first (mode, policy digest, read_at, evaluated_at)."""
    ev = schema.evaluations
    return list(
        conn.execute(
            sa.select(ev.c.evaluated_at, ev.c.read_at, ev.c.mode, ev.c.policy_digest)
            .order_by(ev.c.evaluation_id.desc())
            .limit(limit)
        )
    )


def last_run_at(conn: sa.Connection, now: dt.datetime | None = None) -> dt.datetime | None:
    """The `now` of the monitor's latest evaluation (at most `now`), or None before the first: the
    instant a reader shows stored open clocks' moving columns at (`engine.as_of`), as they stood
    when every run re-evaluated every open clock."""
    ev = schema.evaluations
    at = conn.execute(
        sa.select(ev.c.evaluated_at).order_by(ev.c.evaluation_id.desc()).limit(1)
    ).scalar_one_or_none()
    return at if at is None or now is None else min(at, now)


def due_for_change(conn: sa.Connection, until: dt.datetime) -> set[str]:
    """Ids of the records with a current clock whose next change is due by `until`."""
    clocks = schema.clocks
    query = (
        sa.select(clocks.c.record_id)
        .distinct()
        .where(clocks.c.next_change_at <= until, clocks.c.stale_since.is_(None))
    )
    return set(conn.execute(query).scalars())


def open_clocks_of(conn: sa.Connection, user_ids: Iterable[str]) -> set[str]:
    """Ids of the records with an open clock these users own or answer for."""
    ids = sorted(set(user_ids))
    clocks = schema.clocks
    found: set[str] = set()
    for at in range(0, len(ids), 1000):
        batch = ids[at : at + 1000]
        found |= set(
            conn.execute(
                sa.select(clocks.c.record_id).where(
                    clocks.c.state.in_(OPEN),
                    sa.or_(clocks.c.owner_id.in_(batch), clocks.c.accountable_owner_id.in_(batch)),
                )
            ).scalars()
        )
    return found


def current_count(conn: sa.Connection) -> int:
    """How many current (not stale) clocks the store holds."""
    clocks = schema.clocks
    return conn.execute(sa.select(sa.func.count()).where(clocks.c.stale_since.is_(None))).scalar_one()


def open_count(conn: sa.Connection) -> int:
    """How many current (not stale) clocks are open: running, paused or breached."""
    clocks = schema.clocks
    return conn.execute(
        sa.select(sa.func.count()).where(clocks.c.state.in_(OPEN), clocks.c.stale_since.is_(None))
    ).scalar_one()


def current_clocks(
    conn: sa.Connection,
    *,
    started_since: dt.datetime,
    breached_since: dt.datetime,
    sla_ids: Iterable[str] = (),
) -> pd.DataFrame:
    """The stored current clocks the decisions can read (the engine's clock columns): every open
    clock, those started since `started_since` (of `sla_ids`) and those breached since
    `breached_since`. Three indexed reads, not one OR (a scan of every clock)."""
    clocks = schema.clocks
    instants = [c for c in CLOCK_COLUMNS if isinstance(clocks.c[c].type, schema.UtcDateTime)]
    epoch = conn.dialect.name == "postgresql"
    query = sa.select(
        *[_instant(clocks.c[c], epoch=epoch) if c in instants else clocks.c[c] for c in CLOCK_COLUMNS]
    ).where(clocks.c.stale_since.is_(None))
    # Each read leaves out the rows an earlier one gave (most clocks started today are open), so
    # no row is fetched twice; a NULL breached_at is no breach since.
    is_open = clocks.c.state.in_(OPEN)
    breached = clocks.c.breached_at >= breached_since
    not_breached = sa.or_(clocks.c.breached_at.is_(None), clocks.c.breached_at < breached_since)
    rows: list[tuple] = []
    for which in (
        is_open,
        sa.and_(breached, ~is_open),
        sa.and_(
            clocks.c.sla_id.in_(sorted(set(sla_ids))),
            clocks.c.clock_start >= started_since,
            ~is_open,
            not_breached,
        ),
    ):
        rows += _tuples(conn, query.where(which))
    frame = pd.DataFrame(rows, columns=CLOCK_COLUMNS)
    for col in instants:
        values = frame[col]
        frame[col] = _from_epoch(values) if epoch else pd.to_datetime(values, utc=True, format="ISO8601")
    return frame


def _tuples(conn: sa.Connection, query: sa.Select) -> list[tuple]:
    """`current_clocks`' rows as plain tuples. On PostgreSQL straight from the driver's cursor: no
    column read there has a result processor (text, numbers, booleans, and the instants as whole
    numbers), so SQLAlchemy's rows would hold the very same values, and building 50,000 of them
    and copying each into a tuple was most of the read's CPU. On SQLite through SQLAlchemy (its
    booleans arrive as 0/1 and are made bools by their processor)."""
    result = conn.execute(query)
    try:
        if conn.dialect.name == "postgresql":
            return result.cursor.fetchall()
        return [tuple(r) for r in result.all()]
    finally:
        result.close()


def _instant(column: sa.Column, *, epoch: bool) -> sa.ColumnElement:
    """How a bulk read fetches an instant column for pandas to parse in one pass: PostgreSQL's
    microseconds since the epoch (whole numbers: a third of the time text takes to become a
    frame), else the text SQLite stores."""
    if epoch:
        return sa.cast(sa.extract("epoch", column) * 1_000_000, sa.BigInteger).label(column.name)
    return sa.type_coerce(column, sa.String).label(column.name)


def _from_epoch(micros: pd.Series) -> pd.Series:
    """Microseconds since the epoch (NULL: missing) as aware UTC instants, exactly (whole numbers:
    a float column of them holds each exactly, being below 2**53)."""
    missing = micros.isna().to_numpy()
    whole = micros.fillna(0).to_numpy().astype("int64").astype("datetime64[us]")
    whole[missing] = np.datetime64("NaT")
    return pd.Series(whole, index=micros.index).dt.tz_localize("UTC")


def _lock_rows(conn: sa.Connection, keys: list[tuple]) -> Stored:
    """The stored rows of these identities (FOR UPDATE on PostgreSQL: a concurrent run waits)."""
    clocks = schema.clocks
    found: Stored = {}
    by_record: dict[str, set[tuple]] = {}
    for key in keys:
        by_record.setdefault(key[1], set()).add(key)
    ids = sorted(by_record)
    for at in range(0, len(ids), 2000):
        query = sa.select(*[clocks.c[k] for k in STORE_COLUMNS]).where(
            clocks.c.record_id.in_(ids[at : at + 2000])
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        for r in conn.execute(query).mappings():
            if key_of(r) in by_record.get(r["record_id"], ()):
                found[key_of(r)] = r
    return found


def _mark_stale(conn: sa.Connection, keys: list[tuple], now: dt.datetime) -> None:
    """Mark these current clocks stale at `now`, which becomes their `evaluated_at` in whole seconds,
    as the engine counts (going stale is a change): an older evaluation, running beside this one,
    then leaves them alone."""
    clocks = schema.clocks
    if not keys:
        return
    stmt = (
        clocks.update()
        .where(
            clocks.c.sla_id == sa.bindparam("k_sla"),
            clocks.c.record_id == sa.bindparam("k_record"),
            clocks.c.clock_start == sa.bindparam("k_start"),
            clocks.c.stale_since.is_(None),
            clocks.c.evaluated_at <= now,
        )
        .values(stale_since=now, evaluated_at=now.replace(microsecond=0))
    )
    conn.execute(stmt, [{"k_sla": k[0], "k_record": k[1], "k_start": k[2]} for k in keys])


def _upsert_unless_newer(conn: sa.Connection, rows: list[dict[str, Any]]) -> set[tuple]:
    """One executemany upsert that keeps a row a later evaluation wrote; the identities written
    (on PostgreSQL, `_upsert_columns`: the same statement over arrays)."""
    clocks = schema.clocks
    if conn.dialect.name == "postgresql":
        return _upsert_columns(conn, rows)
    from sqlalchemy.dialects.sqlite import insert

    stmt = insert(clocks)
    stmt = stmt.on_conflict_do_update(
        index_elements=[clocks.c[k] for k in _KEY_COLUMNS],
        set_={k: stmt.excluded[k] for k in STORE_COLUMNS if k not in _KEY_COLUMNS},
        where=clocks.c.evaluated_at <= stmt.excluded.evaluated_at,
    ).returning(*[clocks.c[k] for k in _KEY_COLUMNS])
    return {tuple(r) for r in conn.execute(stmt, rows)}  # a later evaluation's rows come back absent


#: Rows per array upsert on PostgreSQL: a statement's arrays are built in memory at once.
ARRAY_PAGE = 10_000


def _upsert_columns(conn: sa.Connection, rows: list[dict[str, Any]]) -> set[tuple]:
    """`_upsert_unless_newer` on PostgreSQL: the same upsert (ON CONFLICT ... WHERE the stored row
    is not from a later evaluation, RETURNING the identities written), its rows sent as one array
    a column and unnested by the server, `ARRAY_PAGE` rows a statement.

    A multi-row VALUES list has a placeholder per value (tens of thousands a statement at a full
    reconcile's 50,000 changed clocks), which the driver parses again for every statement, too long
    for its cache: most of the write's time. Here a statement has one placeholder per column. The
    values are the column types' own bind values (an instant refused when naive, as UTC)."""
    clocks = schema.clocks
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    columns = [clocks.c[k] for k in STORE_COLUMNS]
    arrays = ", ".join(f"%(c{i})s::{c.type.compile(dialect=dialect)}[]" for i, c in enumerate(columns))
    keys = ", ".join(quote(k) for k in _KEY_COLUMNS)
    updated = ", ".join(
        f"{quote(c.name)} = excluded.{quote(c.name)}" for c in columns if c.name not in _KEY_COLUMNS
    )
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(clocks)}"
        f" ({', '.join(quote(c.name) for c in columns)}) SELECT * FROM unnest({arrays})"
        f" ON CONFLICT ({keys}) DO UPDATE SET {updated}"
        f" WHERE clocks.evaluated_at <= excluded.evaluated_at RETURNING {keys}"
    )
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    written: set[tuple] = set()
    for at in range(0, len(rows), ARRAY_PAGE):
        page = rows[at : at + ARRAY_PAGE]
        params = {
            f"c{i}": [row[c.name] for row in page]
            if process is None
            else [process(row[c.name]) for row in page]
            for i, (c, process) in enumerate(zip(columns, processors, strict=True))
        }
        for sla_id, record_id, start in conn.exec_driver_sql(sql, params):
            written.add((sla_id, record_id, start.astimezone(dt.UTC)))
    return written  # a later evaluation's rows come back absent


def _clock_events(row: dict[str, Any], old: Any, now: dt.datetime, actor: str) -> list[dict[str, Any]]:
    """The audit entries a written clock row calls for: its start (new), its stop (newly met)."""
    base = {
        "object_type": row["object_type"],
        "record_id": row["record_id"],
        "sla_id": row["sla_id"],
        "clock_start": row["clock_start"],
        "policy_version": row["policy_version"],
        "actor": actor,
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
