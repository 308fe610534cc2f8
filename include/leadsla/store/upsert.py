"""Insert-or-update on a primary key, for both backends, in bounded batches.

A real upsert (ON CONFLICT ... DO UPDATE), so a re-synced row replaces its older self and a rerun
writes the same state; `insert_new` is the other, explicit choice: keep what is there (used where
a row, once written, must never change, e.g. an outbox entry).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

#: Rows per statement: under SQLite's 32,766 bound-parameter limit for our widest table.
BATCH_ROWS = 500


def _insert_for(conn: sa.Connection, table: sa.Table):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def _batches(rows: Iterable[Mapping], size: int) -> Iterable[list[Mapping]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Iterable[Mapping],
    *,
    key: Sequence[str] | None = None,
    update: Sequence[str] | None = None,
) -> int:
    """Insert rows, updating the non-key columns of rows whose key already exists.

    Args:
        key: conflict columns; defaults to the table's primary key.
        update: columns to overwrite on conflict; defaults to every non-key column present.

    Returns:
        The number of rows written.
    """
    key = list(key or [c.name for c in table.primary_key.columns])
    written = 0
    for batch in _batches(rows, BATCH_ROWS):
        # executemany of one cached statement (SQLAlchemy's insertmanyvalues batches it): a
        # .values(batch) multi-row VALUES is recompiled for every batch and cost ~20x more.
        stmt = _insert_for(conn, table)
        cols = update if update is not None else [c for c in batch[0] if c not in key]
        if cols:
            stmt = stmt.on_conflict_do_update(index_elements=key, set_={c: stmt.excluded[c] for c in cols})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=key)
        conn.execute(stmt, [dict(row) for row in batch])
        written += len(batch)
    return written


def insert_new(conn: sa.Connection, table: sa.Table, rows: Iterable[Mapping], *, key: Sequence[str]) -> int:
    """Insert rows whose key is not there yet; existing rows are left exactly as they are.

    Returns:
        How many rows were actually inserted.
    """
    inserted = 0
    for batch in _batches(rows, BATCH_ROWS):
        stmt = (
            _insert_for(conn, table)
            .values(batch)
            .on_conflict_do_nothing(index_elements=list(key))
            .returning(table.c[key[0]])  # rowcount is -1 on some drivers; RETURNING counts exactly
        )
        inserted += len(conn.execute(stmt).all())
    return inserted
