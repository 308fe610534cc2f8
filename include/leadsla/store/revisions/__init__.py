"""The store's schema history as Alembic revisions, and the helpers they share.

Each file in `versions/` is one revision: `revision` is the next number in four digits ("0006"),
`down_revision` the one before, `upgrade()` what it changes, written with Alembic's `op` against
tables frozen in the file (never the live `store.schema` tables: a revision must do the same thing
after schema.py has moved on). Revisions 0001-0005 are the hand-written schema versions 1-5 of the
releases before Alembic; a store carrying one of those versions in `schema_meta` is stamped at the
matching revision when it first opens (`store.migrations`), so the number of a revision is the
schema version `schema_meta` records.

To change the schema: edit `store/schema.py`, add `versions/NNNN_what_it_does.py` (copy the
latest), and bump `schema.SCHEMA_VERSION` to NNNN. `tests/integration/test_store_revisions.py`
fails until an empty database upgraded through every revision equals schema.py (Alembic's
autogenerate comparison, on SQLite and PostgreSQL) and SCHEMA_VERSION is the head. Revisions only
go forward (no `downgrade`): going back means restoring a backup, as for any audit trail.

The audit trail's guards (triggers) are not revisions: `store.guards` puts them back on every open.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import op

#: The store's naming convention, frozen (schema.metadata uses the same): generated index names
#: are the same whether a table came from a revision or from `metadata.create_all`.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

#: What `schema.UtcDateTime` stores (the type decorator only converts values).
UTC = sa.DateTime(timezone=True)


def frozen_metadata() -> sa.MetaData:
    """A metadata for a revision's own frozen tables, named as the store names them."""
    return sa.MetaData(naming_convention=NAMING)


def add_missing_columns(table: str, columns: Iterable[sa.Column]) -> list[str]:
    """ADD COLUMN for each of `columns` the stored `table` lacks; returns the names added."""
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    added = []
    for column in columns:
        if column.name not in have:
            op.add_column(table, column)
            added.append(column.name)
    return added


def index(table: str, *columns: str, name: str | None = None, **kw) -> sa.Index:
    """An index of `table` on `columns`, named by the store's convention unless `name` is given."""
    holder = sa.Table(table, frozen_metadata(), *(sa.Column(c, sa.Integer) for c in columns))
    return sa.Index(name, *(holder.c[c] for c in columns), **kw)


def create_missing_indexes(indexes: Iterable[sa.Index]) -> list[str]:
    """Create each of `indexes` unless its table has an index of that name or on those columns
    (a name PostgreSQL truncated is found by its columns); returns the names created."""
    bind = op.get_bind()
    created = []
    for ix in indexes:
        existing = sa.inspect(bind).get_indexes(ix.table.name)
        columns = [c.name for c in ix.columns]
        if any(e["name"] == ix.name or e["column_names"] == columns for e in existing):
            continue
        ix.create(bind)
        created.append(str(ix.name))
    return created


def has_table(name: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(name)
