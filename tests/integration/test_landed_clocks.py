"""The sync writes the clocks of what it landed (`tasks.landed_clocks`), beside the monitor, on both
store backends: the clock rows are there before any monitor run, with their starts audited once;
the monitor run after it takes the same decisions as one on a store the sync never wrote clocks to,
and audits no start twice; an evaluation at an earlier instant (a late or retried monitor run)
neither overwrites, re-audits nor un-stales what a later one wrote; a backfill is left to the
monitor."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsla.store import open_store, schema
from leadsla.store.audit import AuditContext
from leadsla.store.clocks import ClockWrites, key_of, write_clocks
from leadsla.store.connection import read_only
from leadsla.tasks import evaluation, landed_clocks
from leadsla.tasks.landed_clocks import plan_landed, write_landed_clocks
from leadsla.tasks.monitor import run_monitor
from tests.conftest import _new_postgres_url
from tests.integration.test_incremental_monitor import (
    LEADS,
    POLICY,
    SAL_AT,
    URL,
    call,
    clock_rows,
    seed,
    snapshot,
)

WARNING_DUE = SAL_AT + dt.timedelta(hours=2, minutes=5)  # the flat policy's warning is reached


def sync_ctx(run: str) -> AuditContext:
    return AuditContext(dag_id="crm_sync", run_id=run, task_id="sync_leads", try_number=1)


def monitor_ctx(run: str) -> AuditContext:
    return AuditContext(dag_id="sla_monitor", run_id=run, task_id="evaluate", try_number=1)


@pytest.fixture
def second(store_url: str, tmp_path: Path, request: pytest.FixtureRequest):
    """Another fresh store on the same backend as `store`."""
    if store_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'second.db'}"
    else:
        url = _new_postgres_url(request.getfixturevalue("postgres_server"))
    engine = open_store(url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def no_landing_overlap(monkeypatch) -> None:
    """What landed during the previous run counts as new, and no more: rows land seconds apart here."""
    monkeypatch.setattr(evaluation, "LANDING_OVERLAP", dt.timedelta(0))
    monkeypatch.setattr(landed_clocks, "LANDED_MARGIN", dt.timedelta(0))


def audited(engine: sa.Engine, event: str) -> list[tuple]:
    a = schema.audit
    with engine.connect() as conn:
        return sorted(
            tuple(r)
            for r in conn.execute(sa.select(a.c.record_id, a.c.actor, a.c.dag_id).where(a.c.event == event))
        )


def decided(engine: sa.Engine) -> dict:
    """What the runs left (`snapshot`) but the clock start and stop entries' actor and run and the
    clocks' `evaluated_at` (the sync's instant, when it wrote them first): they differ by design."""
    snap = snapshot(engine, POLICY, WARNING_DUE)  # its clocks replaced below
    return {
        **snap,
        "clocks": clock_rows(engine, without=("evaluated_at",)),
        "audit": [e for e in snap["audit"] if "'clock_st" not in e],
        "clock_audits": sorted((r.event, r.record_id, r.at) for r in _clock_audits(engine)),
    }


def _clock_audits(engine: sa.Engine) -> list:
    a = schema.audit
    with engine.connect() as conn:
        return conn.execute(
            sa.select(a.c.event, a.c.record_id, a.c.at).where(a.c.event.in_(["clock_start", "clock_stop"]))
        ).all()


def test_the_sync_writes_the_clocks_and_the_monitor_decides_as_without_it(store, second) -> None:
    before = dt.datetime.now(dt.UTC)
    seed(store, landed_at=dt.datetime.now(dt.UTC))
    seed(second, landed_at=dt.datetime.now(dt.UTC))

    written = write_landed_clocks(store, POLICY, before, sync_ctx("event_1"), now=WARNING_DUE)
    assert written == {"records": 5, "clocks_written": 5, "clock_events": 5}
    assert [r[0] for r in audited(store, "clock_start")] == sorted(LEADS)
    assert {r[1:] for r in audited(store, "clock_start")} == {("crm_sync", "crm_sync")}
    with store.connect() as conn:  # clock rows only: no decision, no message, no evaluation
        for table in (schema.outbox, schema.handled_checkpoints, schema.evaluations):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
    assert audited(store, "checkpoint_due") == []

    synced = run_monitor(store, WARNING_DUE, monitor_ctx("m1"), policy=POLICY, url=URL)
    alone = run_monitor(second, WARNING_DUE, monitor_ctx("m1"), policy=POLICY, url=URL)
    assert synced["clocks_written"] == synced["clock_events"] == 0  # the rows were there: no start twice
    assert alone["clocks_written"] == alone["clock_events"] == 5
    skip = ("clocks_written", "clock_events")
    assert {k: v for k, v in synced.items() if k not in skip} == {
        k: v for k, v in alone.items() if k not in skip
    }
    assert synced["due"] == 5 and synced["queued"] > 0  # no decision lost
    assert decided(store) == decided(second)
    assert [r[0] for r in audited(store, "clock_start")] == sorted(LEADS)  # once each

    # A touch lands: the sync stops the clock (audited once), the monitor after it writes nothing more.
    landed = dt.datetime.now(dt.UTC)
    call(store, LEADS[0], WARNING_DUE + dt.timedelta(seconds=20))
    call(second, LEADS[0], WARNING_DUE + dt.timedelta(seconds=20))
    touched_at = WARNING_DUE + dt.timedelta(seconds=30)
    stopped = write_landed_clocks(store, POLICY, landed, sync_ctx("e2"), now=touched_at)
    assert stopped["records"] == 1 and stopped["clock_events"] == 1
    later = WARNING_DUE + dt.timedelta(minutes=1)
    run_monitor(store, later, monitor_ctx("m2"), policy=POLICY, url=URL)
    run_monitor(second, later, monitor_ctx("m2"), policy=POLICY, url=URL)
    assert audited(store, "clock_stop") == [(LEADS[0], "crm_sync", "crm_sync")]
    assert decided(store) == decided(second)


def test_an_earlier_evaluation_neither_overwrites_nor_re_audits_what_the_sync_wrote(store) -> None:
    seed(store)
    early = SAL_AT + dt.timedelta(minutes=10)
    run_monitor(store, early, monitor_ctx("m1"), policy=POLICY, url=URL)
    with read_only(store) as conn:  # a monitor run reads before the touch lands ...
        stale_plan = plan_landed(conn, POLICY, early + dt.timedelta(minutes=1), {LEADS[0]})
    assert stale_plan.rows  # a running clock a minute on: a row to write
    landed = dt.datetime.now(dt.UTC)
    call(store, LEADS[0], early + dt.timedelta(minutes=1, seconds=10))
    synced = write_landed_clocks(store, POLICY, landed, sync_ctx("e1"), now=early + dt.timedelta(minutes=2))
    assert synced["clock_events"] == 1  # the stop
    after_sync = clock_rows(store)
    with store.begin() as conn:  # ... and writes after the sync: its older rows are refused
        late = write_clocks(conn, stale_plan, early + dt.timedelta(minutes=1), monitor_ctx("m2"))
    assert late == {"clocks_written": 0, "clock_events": 0}
    gone = ClockWrites(stale=[key_of(stale_plan.rows[0])])  # nor does it mark stale a newer row
    with store.begin() as conn:
        write_clocks(conn, gone, early + dt.timedelta(minutes=1), monitor_ctx("m2"))
    assert clock_rows(store) == after_sync
    assert len(audited(store, "clock_stop")) == 1


def test_a_clock_marked_stale_stays_stale_for_an_earlier_evaluation(store) -> None:
    seed(store)
    t1 = SAL_AT + dt.timedelta(minutes=10)
    run_monitor(store, t1, monitor_ctx("m1"), policy=POLICY, url=URL)
    with read_only(store) as conn:
        plan = plan_landed(conn, POLICY, t1 + dt.timedelta(minutes=1), {LEADS[0]})
    key = key_of(plan.rows[0]) if plan.rows else next(k for k in plan.stored if k[1] == LEADS[0])
    rows = [{**dict(plan.stored[key]), "elapsed_seconds": 1}]  # a changed row from the earlier instant
    rows[0]["evaluated_at"] = t1 + dt.timedelta(minutes=1)
    gone_at = t1 + dt.timedelta(minutes=3, microseconds=500)
    with store.begin() as conn:  # a later evaluation no longer gives the clock: stale, and a change
        write_clocks(conn, ClockWrites(stale=[key]), gone_at, sync_ctx("e1"))
    with store.begin() as conn:  # an earlier one refused: a stale mark is not undone ...
        assert write_clocks(conn, ClockWrites(rows=rows), gone_at, monitor_ctx("m2"))["clocks_written"] == 0
    with store.begin() as conn:  # ... nor made again by an evaluation older than the row
        write_clocks(conn, ClockWrites(stale=[key]), t1, monitor_ctx("m3"))
    c = schema.clocks
    with store.connect() as conn:
        row = conn.execute(
            sa.select(c.c.stale_since, c.c.evaluated_at, c.c.elapsed_seconds).where(c.c.record_id == LEADS[0])
        ).one()
    assert row.stale_since == gone_at and row.evaluated_at == gone_at.replace(microsecond=0)
    assert row.elapsed_seconds != 1


def test_a_backfill_is_left_to_the_monitor(store) -> None:
    before = dt.datetime.now(dt.UTC)
    seed(store, landed_at=dt.datetime.now(dt.UTC))
    left = write_landed_clocks(store, POLICY, before, sync_ctx("first"), now=WARNING_DUE, limit=4)
    assert left["left_to_monitor"] == 5 and left["clocks_written"] == 0
    assert clock_rows(store) == []
    nothing = write_landed_clocks(store, POLICY, dt.datetime.now(dt.UTC), sync_ctx("quiet"), now=WARNING_DUE)
    assert nothing["records"] == 0 and clock_rows(store) == []
