"""Leads qualified or rejected without a task end their clocks, and the audit trail and the War Room
say how each clock ended (`run_monitor` with the flat policy, then the War Room's lead page)."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from fastapi.testclient import TestClient

from leadsla.reports.config import load_report_config
from leadsla.store import schema
from tests.integration.test_monitor_clocks import CTX, LEADS, POLICY, REP, SAL_AT, URL, seed
from tests.war_room_fixtures import mint_token, prepare_airflow_auth


def leave_sal(engine, record_id: str, status: str, at: dt.datetime, n: int) -> None:
    """The lead leaves SAL for `status` at `at`, nobody having logged a task."""
    with engine.begin() as conn:
        conn.execute(
            schema.field_history.insert().values(
                history_id=f"017{n:015d}",
                object_type="Lead",
                record_id=record_id,
                field="Status",
                old_value="SAL",
                new_value=status,
                changed_by=REP,
                changed_at=at,
            )
        )
        conn.execute(
            schema.records.update()
            .where(schema.records.c.record_id == record_id)
            .values(status=status, rejection_reason="No budget" if status == "Recycled" else None)
        )


def test_qualified_or_rejected_without_a_task_ends_the_clock_as_handed_on(store) -> None:
    from leadsla.tasks.monitor import run_monitor

    seed(store)
    run_monitor(store, SAL_AT + dt.timedelta(minutes=30), CTX, policy=POLICY, url=URL)
    leave_sal(store, LEADS[0], "SQL", SAL_AT + dt.timedelta(hours=1), 10)  # within the 4 h target
    leave_sal(store, LEADS[1], "Recycled", SAL_AT + dt.timedelta(hours=5), 11)  # after it
    run_monitor(store, SAL_AT + dt.timedelta(hours=6), CTX, policy=POLICY, url=URL)

    c, a = schema.clocks, schema.audit
    with store.connect() as conn:
        states = dict(
            conn.execute(sa.select(c.c.record_id, c.c.state).where(c.c.sla_id == "sales_touch")).all()
        )
        stops = conn.execute(
            sa.select(a.c.record_id, a.c.detail).where(a.c.event == "clock_stop", a.c.sla_id == "sales_touch")
        ).all()
    assert states == {LEADS[0]: "handed_on", LEADS[1]: "handed_on_late"}
    assert {rid: (d["state"], d["outcome"]) for rid, d in stops} == {
        LEADS[0]: ("handed_on", "handed_on"),
        LEADS[1]: ("handed_on_late", "handed_on"),
    }

    from leadsla.war_room.app import create_app

    prepare_airflow_auth()
    client = TestClient(create_app(engine=store, config=load_report_config(), range_ttl_seconds=0))
    client.cookies.set("_token", mint_token("vera"))
    for record_id, label in ((LEADS[0], "handed on"), (LEADS[1], "handed on late")):
        html = client.get(f"/lead/{record_id}").text
        clock_rows = re.findall(r"<tr class=\"[a-z]*\"><td>sales_touch</td>.*?</tr>", html, re.S)
        assert any(f'<td class="state">{label}</td>' in row for row in clock_rows), html
        (stop,) = re.findall(r'<tr class="event clock_stop">(.*?)</tr>', html, re.S)
        assert "outcome=handed_on" in stop
