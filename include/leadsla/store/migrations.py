"""Create or upgrade the store's schema on first use, idempotently and safely under concurrency.

`upgrade(engine)` is called by `open_store`; it takes a lock (PostgreSQL advisory lock, SQLite's
write lock) so parallel tasks starting together don't race, creates what is missing, records
`SCHEMA_VERSION`, and, on every open, re-asserts the audit trail's guards (`store.guards`: a
dropped or disabled trigger is put back, not only on a version change). A store newer than this
code is refused rather than written to.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa

from leadsla.errors import StoreConfigError
from leadsla.store import chain, guards
from leadsla.store.schema import (
    JUDGED_CLOCKS_INDEX,
    SCHEMA_VERSION,
    activities,
    audit,
    audit_chain,
    clocks,
    crm_mapping_checks,
    metadata,
    schema_meta,
)

log = logging.getLogger(__name__)

_PG_LOCK_KEY = 0x1EAD51A  # arbitrary, constant: "lead sla"


def _add_missing_columns(conn: sa.Connection, table: sa.Table, names: list[str]) -> None:
    """ALTER TABLE ... ADD COLUMN for each of `names` the stored table lacks (its type from schema)."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    for name in names:
        if name in have:
            continue
        column = table.c[name]
        type_sql = column.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{name}" {type_sql}')


def _replace_judged_clocks_index(conn: sa.Connection) -> None:
    """The clocks index covering the judged clocks gains `state`: drop the unnamed version-1 index
    (same leading columns, a generated name) and create the named one."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(clocks.name):
        return
    for index in inspector.get_indexes(clocks.name):
        columns = index["column_names"]
        if columns[:3] == ["sla_id", "clock_start", "record_id"] and index["name"] != JUDGED_CLOCKS_INDEX:
            conn.exec_driver_sql(f'DROP INDEX "{index["name"]}"')
    next(ix for ix in clocks.indexes if ix.name == JUDGED_CLOCKS_INDEX).create(conn, checkfirst=True)


def _v2(conn: sa.Connection) -> None:
    """Version 2: activities record who created them, a Task's status and completion time."""
    if sa.inspect(conn).has_table(activities.name):
        _add_missing_columns(conn, activities, ["created_by", "status", "completed_at"])


def _v3(conn: sa.Connection) -> None:
    """Version 3: the mapping check keeps the org's picklist drift (and the lifecycle it checked);
    the judged-clocks index covers `state`; the configuration's snapshots (a new table, made by
    create_all after the steps)."""
    if sa.inspect(conn).has_table(crm_mapping_checks.name):
        _add_missing_columns(conn, crm_mapping_checks, ["lifecycle_digest", "drift"])
    _replace_judged_clocks_index(conn)


def _v4(conn: sa.Connection) -> None:
    """Version 4: the mapping check keeps the SLA stamp fields' types (`stamp_fields`)."""
    if sa.inspect(conn).has_table(crm_mapping_checks.name):
        _add_missing_columns(conn, crm_mapping_checks, ["stamp_fields"])


def _v5(conn: sa.Connection) -> None:
    """Version 5: the audit trail is a hash chain (`store.chain`): two hash columns, the chain's
    head, and every entry already written hashed in audit_id order from a genesis hash (the
    UPDATE guard lifted for it inside this transaction; `upgrade` re-asserts it)."""
    if not sa.inspect(conn).has_table(audit.name):
        return
    _add_missing_columns(conn, audit, ["prev_hash", "entry_hash"])
    audit_chain.create(conn, checkfirst=True)
    guards.lift_update_guards(conn)
    hashed = chain.start(conn, dt.datetime.now(dt.UTC))
    log.info("audit chain started: %d existing entries hashed", hashed)


#: Steps from version N to N+1, applied in order to stores older than SCHEMA_VERSION.
#: Each is a function of a connection; version 1 is the initial create_all.
_STEPS: dict[int, object] = {2: _v2, 3: _v3, 4: _v4, 5: _v5}


def current_version(conn: sa.Connection) -> int | None:
    """The recorded schema version, or None for an empty database."""
    if not sa.inspect(conn).has_table(schema_meta.name):
        return None
    return conn.execute(sa.select(sa.func.max(schema_meta.c.version))).scalar()


def upgrade(engine: sa.Engine) -> int:
    """Bring the store to SCHEMA_VERSION; returns the version now in place.

    Raises:
        StoreConfigError: the store was written by a newer version of this project.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        version = current_version(conn)
        if version is not None and version > SCHEMA_VERSION:
            raise StoreConfigError(
                f"the store has schema version {version}, newer than this code's {SCHEMA_VERSION}: "
                "upgrade leadsla before running it against this store"
            )
        if version == SCHEMA_VERSION:
            restored = guards.assert_guards(conn)
            if restored:
                log.warning("audit trail guards were missing or altered and are put back: %s", restored)
            return version
        for step in range((version or SCHEMA_VERSION) + 1, SCHEMA_VERSION + 1):
            _STEPS[step](conn)  # type: ignore[operator]
        metadata.create_all(conn, checkfirst=True)
        if (version or 0) < 4:  # the chain began with version 4: a store past it never gets a new head
            chain.start(conn, dt.datetime.now(dt.UTC))
        guards.assert_guards(conn)
        conn.execute(schema_meta.insert().values(version=SCHEMA_VERSION, upgraded_at=dt.datetime.now(dt.UTC)))
    return SCHEMA_VERSION
