"""The CRM mirror as the engine reads it: the store's records, history, activities, users, queues.

One read per table (or, for some records, per batch of their ids), instants parsed in one
vectorised pass, raw CRM fields decoded from their JSON text (`json_values`): the same frames on
SQLite and PostgreSQL. Deleted records are left out. Also what changed since an instant
(`landed_since`, from each row's `landed_at`), for the incremental monitor. Reads only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
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


_decode = msgspec.json.Decoder().decode

#: Ids per `IN (...)` list: well under SQLite's bound-parameter limit.
ID_BATCH = 2000

#: Per frame, the columns that name the record a row belongs to (activities: a Lead's who_id, an
#: Opportunity's what_id).
_RECORD_KEYS = {
    "records": ("record_id",),
    "field_history": ("record_id",),
    "activities": ("who_id", "what_id"),
}


@dataclass(frozen=True)
class KeyRange:
    """The record ids from `low` (included) to `high` (excluded) in the store's own order of them
    (None: no bound). A full evaluation reads the mirror a range at a time: one index range scan
    a table, where a list of ids is thousands of bound parameters to send and match."""

    low: str | None = None
    high: str | None = None

    def where(self, column: sa.ColumnElement) -> list[sa.ColumnElement]:
        """The conditions on a record-id column."""
        conditions = []
        if self.low is not None:
            conditions.append(column >= self.low)
        if self.high is not None:
            conditions.append(column < self.high)
        return conditions


def key_ranges(conn: sa.Connection, size: int) -> list[KeyRange]:
    """Every record id (deleted ones included: their clocks must go stale) in consecutive ranges
    of `size` ids, covering all ids (the first and last are open: a record landing later falls in
    one). The bounds come from the store's own ORDER BY, which its comparisons follow."""
    ids = sa.select(schema.records.c.record_id).distinct().subquery()
    numbered = sa.select(
        ids.c.record_id, sa.func.row_number().over(order_by=ids.c.record_id).label("n")
    ).subquery()
    bounds = list(
        conn.execute(
            sa.select(numbered.c.record_id)
            .where(numbered.c.n > 1, (numbered.c.n - 1) % max(1, size) == 0)
            .order_by(numbered.c.n)
        ).scalars()
    )
    edges = [None, *bounds, None]
    return [KeyRange(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]


def record_count(conn: sa.Connection) -> int:
    """How many distinct record ids the store holds (deleted records included)."""
    ids = sa.select(schema.records.c.record_id).distinct().subquery()
    return conn.execute(sa.select(sa.func.count()).select_from(ids)).scalar_one()


def load_frames(
    conn: sa.Connection,
    record_ids: Iterable[str] | None = None,
    *,
    tables: Iterable[str] | None = None,
    within: KeyRange | None = None,
) -> dict[str, pd.DataFrame]:
    """The store's CRM mirror as the engine's input frames (deleted records left out).

    Args:
        record_ids: only these records, their history and activities (users and queues whole);
            None: every record.
        tables: only these frames (default: all of FRAME_COLUMNS).
        within: only the records of this range of ids (with `record_ids` None).
    """
    ids = None if record_ids is None else sorted({str(i) for i in record_ids})
    if within is not None and ids is not None:
        raise ValueError("load_frames: record_ids or within, not both")
    frames: dict[str, pd.DataFrame] = {}
    for name in tables or FRAME_COLUMNS:
        cols = FRAME_COLUMNS[name]
        table = schema.metadata.tables[name]
        # Instants come back as the driver gives them (SQLite: UTC text) and are parsed below in one
        # vectorised pass: row-by-row type processing was a large share of a steady-state run.
        instants = [c for c in cols if isinstance(table.c[c].type, schema.UtcDateTime)]
        # Raw CRM fields come back as their JSON text and are decoded below (`json_values`).
        documents = [c for c in cols if isinstance(table.c[c].type, sa.JSON)]
        query = sa.select(
            *[
                sa.type_coerce(table.c[c], sa.String).label(c)
                if c in instants
                else sa.cast(table.c[c], sa.Text).label(c)
                if c in documents
                else table.c[c]
                for c in cols
            ]
        )
        if name == "records":
            query = query.where(table.c.is_deleted.is_(False))
        if within is not None and name in _RECORD_KEYS:  # one range scan per key column
            rows = [
                r for key in _RECORD_KEYS[name] for r in _rows(conn, query.where(*within.where(table.c[key])))
            ]
        elif ids is None or name not in _RECORD_KEYS:
            rows = _rows(conn, query)
        else:  # one indexed IN per key column (an OR of two would scan the table)
            rows = [
                r
                for key in _RECORD_KEYS[name]
                for batch in _batches(ids)
                for r in _rows(conn, query.where(table.c[key].in_(batch)))
            ]
        if name == "activities" and (within is not None or ids is not None):
            # An activity on both a Lead and an Opportunity: once.
            at = cols.index("activity_id")
            rows = list({r[at]: r for r in rows}.values())
        frame = pd.DataFrame(rows, columns=cols)
        for col in instants:
            frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
        for col in documents:
            frame[col] = json_values(frame[col].tolist())
        frames[name] = frame
    return frames


def json_values(texts: list[str | None]) -> list[Any]:
    """JSON texts as Python values, exactly as `json.loads` gives them (what the drivers and
    SQLAlchemy decode a JSON column with), None for NULL. msgspec's decoder takes a third of the
    time on the records' raw fields (a million of them in a full evaluation); what it refuses and
    `json.loads` accepts (NaN, out-of-range numbers, lone surrogates) is decoded by `json.loads`."""
    out: list[Any] = []
    for text in texts:
        if text is None:
            out.append(None)
            continue
        try:
            out.append(_decode(text))
        except msgspec.MsgspecError:
            out.append(json.loads(text))
    return out


def _rows(conn: sa.Connection, query: sa.Select) -> list[tuple]:
    """The query's rows as plain tuples, straight from the driver's cursor when no selected column
    needs SQLAlchemy to convert its values (PostgreSQL: psycopg decodes JSON and booleans itself;
    instants are selected as text), else through SQLAlchemy's rows (SQLite's JSON text, its 0/1
    booleans). The same values either way; a full evaluation reads millions of rows, and building
    a SQLAlchemy row for each was a third of the reading."""
    dialect = conn.dialect
    result = conn.execute(query)
    described = result.cursor.description
    if any(
        column.type.dialect_impl(dialect).result_processor(dialect, d[1]) is not None
        for column, d in zip(query.selected_columns, described, strict=True)
    ):
        return [tuple(r) for r in result.all()]
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _batches(ids: list[str]) -> Iterator[list[str]]:
    for at in range(0, len(ids), ID_BATCH):
        yield ids[at : at + ID_BATCH]


def landed_since(conn: sa.Connection, since: dt.datetime) -> tuple[set[str], set[str]]:
    """(record ids, user ids) whose mirror rows landed after `since` (or say not when: NULL).

    A record counts when its own row, a history row or an activity of it landed (deleted records
    included); a user when their row did (their records are the caller's to find).
    """
    records: set[str] = set()
    for table, keys in (
        (schema.records, ("record_id",)),
        (schema.field_history, ("record_id",)),
        (schema.activities, ("who_id", "what_id")),
    ):
        for fresh in _fresh(table, since):  # each on the landed_at index
            for key in keys:
                records |= set(conn.execute(sa.select(table.c[key]).distinct().where(fresh)).scalars())
    users = schema.users
    changed_users = {
        u
        for fresh in _fresh(users, since)
        for u in conn.execute(sa.select(users.c.user_id).where(fresh)).scalars()
    }
    records.discard(None)
    return records, changed_users


def _fresh(table: sa.Table, since: dt.datetime) -> tuple:
    """Landed after `since`, or not saying when: two conditions, so each can use the index."""
    return table.c.landed_at > since, table.c.landed_at.is_(None)


def owned_by(conn: sa.Connection, user_ids: Iterable[str]) -> set[str]:
    """Ids of the records these users own."""
    ids = sorted(set(user_ids))
    table = schema.records
    return {
        r
        for batch in _batches(ids)
        for r in conn.execute(sa.select(table.c.record_id).where(table.c.owner_id.in_(batch))).scalars()
    }


def converted_into(conn: sa.Connection, opportunity_ids: Iterable[str]) -> set[str]:
    """Ids of the Leads converted into these Opportunities (the alerts' triage context reads them)."""
    ids = sorted({str(i) for i in opportunity_ids})
    table = schema.records
    return {
        r
        for batch in _batches(ids)
        for r in conn.execute(
            sa.select(table.c.record_id).where(
                table.c.object_type == "Lead", table.c.converted_opportunity_id.in_(batch)
            )
        ).scalars()
    }
