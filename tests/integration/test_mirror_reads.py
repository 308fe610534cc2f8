"""The CRM mirror's frames (`store.mirror.load_frames`) are the same whichever backend holds it:
the demo org's day landed in a SQLite store and a PostgreSQL one reads back as equal frames (the
same values of the same types, raw CRM fields as dicts, booleans as bools), read whole, for some
records, or a range of record ids at a time. PostgreSQL's rows come straight from the driver,
SQLite's through SQLAlchemy's conversions."""

from __future__ import annotations

import pandas as pd
import pytest

from leadsla.store import open_store
from leadsla.store.connection import read_only
from leadsla.store.mirror import FRAME_COLUMNS, key_ranges, load_frames
from tests.conftest import _new_postgres_url
from tests.integration.test_incremental_monitor import DAY_END, demo_mirror, land  # noqa: F401

pytestmark = pytest.mark.postgres


@pytest.fixture
def both(tmp_path, postgres_server, demo_mirror):  # noqa: F811
    rows, _ = demo_mirror
    engines = [
        open_store(f"sqlite:///{tmp_path / 'store.db'}"),
        open_store(_new_postgres_url(postgres_server)),
    ]
    land(engines, rows, None, DAY_END)
    yield engines
    for engine in engines:
        engine.dispose()


def frames(engine, **how) -> dict[str, pd.DataFrame]:
    with read_only(engine) as conn:
        return load_frames(conn, **how)


def assert_same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for name, frame in left.items():
        other = right[name]
        key = [c for c in ("record_id", "activity_id", "user_id", "queue_id") if c in frame][0]
        if name == "field_history":
            key = list(frame.columns)
        a = frame.sort_values(key, ignore_index=True)
        b = other.sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(a, b, obj=name)
        for col in frame.columns:  # object columns: the same Python types value by value
            if a[col].dtype == object:
                assert [type(v) for v in a[col]] == [type(v) for v in b[col]], (name, col)


def test_both_backends_read_the_same_frames(both) -> None:
    sqlite, postgres = both
    whole = frames(sqlite)
    assert all(len(whole[name]) for name in FRAME_COLUMNS)
    assert isinstance(whole["records"]["fields"].iloc[0], dict)
    assert whole["activities"]["is_deleted"].dtype == bool
    assert_same(whole, frames(postgres))

    some = sorted(whole["records"]["record_id"])[::3]
    assert_same(frames(sqlite, record_ids=some), frames(postgres, record_ids=some))

    with read_only(sqlite) as conn:
        ranges = key_ranges(conn, 7)
    assert len(ranges) > 2
    tables = ["records", "field_history", "activities"]
    for within in ranges:
        assert_same(
            frames(sqlite, tables=tables, within=within), frames(postgres, tables=tables, within=within)
        )


def test_a_range_of_record_ids_reads_history_by_its_index(both) -> None:
    """A full evaluation's history read for a range of ids is an index range scan on record_id,
    not a scan of the whole table (which led with object_type and could not serve a range)."""
    import sqlalchemy as sa

    for engine in both:
        statements: list[tuple[str, object]] = []

        def seen(conn, cursor, statement, parameters, context, executemany, statements=statements):
            if "FROM field_history" in statement:
                statements.append((statement, parameters))

        with read_only(engine) as conn:
            middle = key_ranges(conn, 20)[1]
            sa.event.listen(conn, "before_cursor_execute", seen)
            load_frames(conn, tables=["field_history"], within=middle)
            sa.event.remove(conn, "before_cursor_execute", seen)
            ((statement, parameters),) = statements
            if engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SET enable_seqscan = off")  # the demo day is small
                plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
            else:
                plan = "\n".join(
                    str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                )
        assert "ix_field_history_record_id_changed_at" in plan, plan
        if engine.dialect.name == "postgresql":
            assert "Index Cond: (((record_id)" in plan, plan
