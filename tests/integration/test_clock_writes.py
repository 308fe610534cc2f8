"""The clocks writer's upsert on both store backends (`store.clocks.write_clocks`; on PostgreSQL
one statement over arrays a page of rows at a time): new and changed rows are written with every
column as given, a row a later evaluation wrote is kept and not reported written, and a naive
instant is refused."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from leadsla.store import clocks as clock_store
from leadsla.store import schema
from leadsla.store.audit import AuditContext
from leadsla.store.clocks import STORE_COLUMNS, ClockWrites, key_of, write_clocks

CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="evaluate", try_number=1)
NOW = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)


def clock(n: int, **values) -> dict:
    """A running clock row of record n (every store column)."""
    start = NOW - dt.timedelta(hours=1, seconds=n)
    return {
        "sla_id": "sales_touch",
        "record_id": f"00Q{n:015d}",
        "clock_start": start,
        "object_type": "Lead",
        "policy_version": "v1",
        "tier": "standard",
        "calendar": "ny",
        "target_seconds": 7200,
        "owner_id": f"005{n % 3:015d}",
        "team": "sdr_east" if n % 2 else None,
        "accountable_owner_id": f"005{n % 3:015d}",
        "accountable_team": "sdr_east" if n % 2 else None,
        "state": "running",
        "elapsed_seconds": 3600 + n,
        "remaining_seconds": 3600 - n,
        "percent_elapsed": 50.0 + n / 1000,
        "colour": "green",
        "deadline": start + dt.timedelta(hours=2),
        "stopped_at": None,
        "breached_at": None,
        "critical": bool(n % 2),
        "next_checkpoint": "warn",
        "next_checkpoint_at": start + dt.timedelta(minutes=90),
        "evaluated_at": NOW,
        "next_change_at": NOW,
        "stale_since": None,
        **values,
    }


def stored(engine: sa.Engine) -> dict[tuple, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*[schema.clocks.c[k] for k in STORE_COLUMNS])).mappings()
        return {key_of(r): dict(r) for r in rows}


def write(engine: sa.Engine, rows: list[dict], now: dt.datetime = NOW) -> dict[str, int]:
    with engine.begin() as conn:
        return write_clocks(conn, ClockWrites(rows=rows), now, CTX)


def audits(engine: sa.Engine) -> list[tuple]:
    a = schema.audit
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(a.c.event, a.c.record_id)).all())


def test_new_and_changed_rows_are_written_whole_page_by_page(store, monkeypatch) -> None:
    monkeypatch.setattr(clock_store, "ARRAY_PAGE", 2)  # several statements
    first = [clock(n) for n in range(5)]
    assert write(store, first) == {"clocks_written": 5, "clock_events": 5}
    assert stored(store) == {key_of(r): r for r in first}

    later = NOW + dt.timedelta(minutes=1)
    moved = [clock(n, elapsed_seconds=3660 + n, evaluated_at=later, next_change_at=None) for n in range(3)]
    met = clock(
        3, state="met", stopped_at=later, evaluated_at=later, next_checkpoint=None, next_checkpoint_at=None
    )
    assert write(store, [*moved, met], later) == {"clocks_written": 4, "clock_events": 1}
    assert stored(store) == {key_of(r): r for r in [*moved, met, first[4]]}
    assert audits(store) == sorted(
        [*[("clock_start", r["record_id"]) for r in first], ("clock_stop", met["record_id"])]
    )


def test_a_row_a_later_evaluation_wrote_is_kept_and_not_reported(store) -> None:
    later = NOW + dt.timedelta(minutes=5)
    newer = clock(1, elapsed_seconds=4000, evaluated_at=later)
    write(store, [newer], later)
    older = clock(1)  # an evaluation at NOW, written after the later one landed
    with store.begin() as conn:
        assert clock_store._upsert_unless_newer(conn, [older, clock(2)]) == {key_of(clock(2))}
    assert stored(store)[key_of(newer)] == newer
    assert write(store, [older]) == {"clocks_written": 0, "clock_events": 0}
    assert stored(store)[key_of(newer)] == newer


def test_a_naive_instant_is_refused_and_nothing_is_written(store) -> None:
    naive = clock(1, deadline=dt.datetime(2026, 11, 17, 17, 0))
    with pytest.raises((ValueError, sa.exc.StatementError), match="naive datetime"):
        write(store, [clock(2), naive])
    assert stored(store) == {}
