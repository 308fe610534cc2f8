"""Read paths use read-only connections (`store.connection.read_only`), on SQLite and PostgreSQL:
a write through one fails, and on SQLite a reader neither takes nor waits for the write lock - a
War Room timeline is served and an audit export streams while a pipeline holds it, and a pipeline
writes while an export is half read."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
import sqlalchemy as sa

from leadsla.reports.timeline import entries_between, record_timeline
from leadsla.store import schema as s
from leadsla.store.audit import AuditContext, record
from leadsla.store.connection import read_only
from leadsla.war_room import queries
from tests.war_room_fixtures import org

START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def _audit_rows(engine: sa.Engine, n: int) -> None:
    with engine.begin() as conn:
        for i in range(n):
            record(
                conn,
                "clock_start",
                at=START + dt.timedelta(minutes=i),
                context=AuditContext(dag_id="sla_monitor"),
                record_id=f"00Q{i:06d}",
            )


def test_a_read_only_connection_refuses_writes_and_leaves_the_store_writable(store) -> None:
    _audit_rows(store, 1)
    with read_only(store) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.audit)).scalar() == 1
        with pytest.raises(sa.exc.DBAPIError, match="(?i)read.?only"):
            record(conn, "clock_start", at=START, context=AuditContext(), record_id="00Qwrite")
    # The pooled PostgreSQL connection (and a fresh SQLite one) writes again for the pipelines.
    _audit_rows(store, 2)
    with read_only(store) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.audit)).scalar() == 3


def _sqlite_file(engine: sa.Engine) -> str:
    return engine.url.database


def test_the_war_room_timeline_and_an_export_are_served_while_a_pipeline_holds_the_write_lock(
    tmp_path,
) -> None:
    from leadsla.store import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        org().write(engine)
        writer = sqlite3.connect(_sqlite_file(engine), timeout=0, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # a pipeline's transaction, mid-way
        writer.execute("UPDATE records SET name = 'renamed' WHERE record_id = 'L1'")
        try:
            # Each of these waited the 30 s busy timeout for the write lock, then failed.
            timeline = queries.lead_timeline(engine, "L9")
            assert timeline is not None and timeline["events"]
            assert [e["event"] for e in record_timeline(engine, "L9")] == [
                e["event"] for e in timeline["events"]
            ]
            exported = list(
                entries_between(engine, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), START.replace(2100))
            )
            assert len(exported) >= len(timeline["events"])
            # The reader sees the committed store, not the pipeline's uncommitted change.
            with read_only(engine) as conn:
                names = conn.execute(
                    sa.select(s.records.c.name).where(s.records.c.record_id == "L1")
                ).scalar()
            assert names != "renamed"
        finally:
            writer.execute("ROLLBACK")
            writer.close()
    finally:
        engine.dispose()


def test_a_pipeline_writes_while_an_audit_export_is_half_read(store) -> None:
    _audit_rows(store, 500)
    rows = entries_between(store, START, START + dt.timedelta(days=1))
    first = [next(rows) for _ in range(10)]  # the export's connection is open, its statement running
    if store.dialect.name == "sqlite":
        writer = sqlite3.connect(_sqlite_file(store), timeout=0, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # fails at once ("database is locked") if the export held it
            writer.execute("CREATE TABLE pipeline_wrote (x INTEGER)")
            writer.execute("COMMIT")
        finally:
            writer.close()
    _audit_rows(store, 1)  # and through the store's own engine
    rest = list(rows)
    # The export reads one snapshot: the rows that were there when it started, in order.
    assert len(first) + len(rest) == 500
    assert [r["record_id"] for r in first + rest] == [f"00Q{i:06d}" for i in range(500)]
    with read_only(store) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.audit)).scalar() == 501
