"""The War Room's and the reports' figures of open clocks the incremental monitor did not
re-evaluate, on both store backends: a stored open clock holds its elapsed and remaining time as of
its own evaluation, and the page, the drill-down, the lead's timeline and the reports' clocks show
them as of the monitor's latest run, exactly as a store where every run re-evaluated every clock
shows them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsla.engine import MOVING_COLUMNS
from leadsla.reports.data import load
from leadsla.store import open_store, schema
from leadsla.tasks.monitor import run_monitor
from leadsla.war_room import queries
from leadsla.war_room.filters import Filters
from tests.conftest import _new_postgres_url
from tests.integration.test_incremental_monitor import LEADS, POLICY, SAL_AT, URL, ctx, seed

SLA = "sales_touch"
FIRST = SAL_AT + dt.timedelta(minutes=1)  # Tuesday 10:01 New York
LATER = SAL_AT + dt.timedelta(minutes=47)  # 46 open minutes on: no change due, nothing landed
FILTERS = Filters(start=LATER.date(), end=LATER.date(), timezone="America/New_York", sla=SLA)


@pytest.fixture
def stores(store: sa.Engine, tmp_path: Path, request: pytest.FixtureRequest):
    """The incremental store and one where every run is a full evaluation, fed the same org."""
    url = (
        f"sqlite:///{tmp_path / 'full.db'}"
        if store.url.get_backend_name() == "sqlite"
        else _new_postgres_url(request.getfixturevalue("postgres_server"))
    )
    full = open_store(url)
    for engine in (store, full):
        seed(engine)
    run_monitor(store, FIRST, ctx("r1"), policy=POLICY, url=URL)
    run_monitor(full, FIRST, ctx("r1"), policy=POLICY, url=URL, mode="full")
    quiet = run_monitor(store, LATER, ctx("r2"), policy=POLICY, url=URL)
    assert quiet["mode"] == "incremental" and quiet["records_evaluated"] == 0
    run_monitor(full, LATER, ctx("r2"), policy=POLICY, url=URL, mode="full")
    try:
        yield store, full
    finally:
        full.dispose()


def stored(engine: sa.Engine, record_id: str) -> dict:
    c = schema.clocks
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.select(c).where(c.c.record_id == record_id, c.c.sla_id == SLA)).mappings().one()
        )


def test_the_page_drill_down_and_timeline_show_an_unevaluated_open_clocks_live_time(stores) -> None:
    incremental, full = stores
    kept, fresh = stored(incremental, LEADS[0]), stored(full, LEADS[0])
    assert kept["evaluated_at"] == FIRST and fresh["evaluated_at"] == LATER  # not re-evaluated
    assert kept["remaining_seconds"] - fresh["remaining_seconds"] == 46 * 60
    page_at = LATER + dt.timedelta(seconds=30)  # the page between two runs

    def at_risk(engine: sa.Engine, policy=POLICY) -> list[dict]:
        return queries.now_panel(engine, FILTERS, page_at, SLA, policy=policy)["at_risk"]

    shown = at_risk(incremental)
    assert shown == at_risk(full)
    assert [r["remaining_seconds"] for r in shown] == [fresh["remaining_seconds"]] * len(LEADS)
    assert at_risk(incremental, policy=None) != shown  # the stored rows alone are 46 minutes old

    def drill(engine: sa.Engine) -> list[dict]:
        return queries.records_for(engine, tuple(LEADS), SLA, policy=POLICY, now=page_at)

    assert drill(incremental) == drill(full)
    assert drill(incremental)[0]["elapsed_hours"] == fresh["elapsed_seconds"] / 3600

    def timeline(engine: sa.Engine) -> list[tuple]:
        clocks = queries.lead_timeline(engine, LEADS[0], None, POLICY, page_at)["clocks"]
        return [
            (c["sla_id"], c["elapsed_seconds"], c["remaining_seconds"], c["percent_elapsed"]) for c in clocks
        ]

    assert timeline(incremental) == timeline(full)


def test_the_at_risk_list_ranks_on_live_remaining_time(stores) -> None:
    """More open clocks than the list shows, all evaluated at the latest run but one kept from the
    first run: its stored remaining time is the largest, its live one the smallest. It heads the
    list with its live time (the stored order alone would leave it off)."""
    incremental, _ = stores
    c = schema.clocks
    template = stored(incremental, LEADS[0])
    target, hour = template["target_seconds"], 3600
    copies = [
        dict(
            template,
            record_id=f"00Q000000000C{i:05d}",
            evaluated_at=LATER,
            elapsed_seconds=hour,
            remaining_seconds=target - hour,
        )
        for i in range(queries.AT_RISK_ROWS + 5)
    ]
    kept = dict(  # 30 minutes under the others as of the first run; 46 open minutes ran since
        template,
        record_id="00Q000000000KEPT00",
        evaluated_at=FIRST,
        elapsed_seconds=hour - 30 * 60,
        remaining_seconds=target - hour + 30 * 60,
    )
    with incremental.begin() as conn:
        conn.execute(c.insert(), [*copies, kept])
    shown = queries.now_panel(incremental, FILTERS, LATER, SLA, policy=POLICY)["at_risk"]
    assert len(shown) == queries.AT_RISK_ROWS
    assert shown[0]["record_id"] == kept["record_id"]
    assert shown[0]["remaining_seconds"] == target - hour - 16 * 60
    assert [r["remaining_seconds"] for r in shown[1:]] == [target - hour] * (queries.AT_RISK_ROWS - 1)
    assert [r["record_id"] for r in shown[1:]] == [r["record_id"] for r in copies[: queries.AT_RISK_ROWS - 1]]


def test_the_reports_read_an_unevaluated_open_clocks_time_as_of_the_latest_run(stores) -> None:
    incremental, full = stores
    columns = ["record_id", "state", *MOVING_COLUMNS]

    def clocks(engine: sa.Engine, policy=POLICY) -> list[list]:
        return load(engine, SLA, policy=policy).clocks[columns].values.tolist()

    assert clocks(incremental) == clocks(full)
    assert clocks(incremental, policy=None) != clocks(full)  # the stored rows alone are 46 minutes old
