"""Routing in the War Room, on SQLite and PostgreSQL: a lead's timeline tells its routing (to whom,
from whom, the rule, the reason written to Routing_Reason__c, the policy version, the Airflow run),
its unowned-lead alerts once per reminder and its mis-routed findings once per owner; the page
lists the leads nobody working owns, how long each has waited, linked to their timelines."""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi.testclient import TestClient

from leadsla.reports.config import load_report_config
from leadsla.store import schema as s
from tests.war_room_fixtures import (
    NOW,
    REASON,
    ROUTE_RUN,
    mint_token,
    org,
    prepare_airflow_auth,
    routed_org,
    write_routed_org,
)


@pytest.fixture
def store_with_routing(store):
    write_routed_org(store)
    return store


@pytest.fixture
def client(store_with_routing):
    from leadsla.war_room.app import create_app

    prepare_airflow_auth()
    app = create_app(
        engine=store_with_routing, config=load_report_config(), clock=lambda: NOW, range_ttl_seconds=0
    )
    c = TestClient(app)
    c.cookies.set("_token", mint_token("vera"))
    return c


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())


def _rows(html: str, table: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table}">(.*?)</table>', html, re.S).group(1)
    return [
        [_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
        if "<td" in row
    ]


def _events(html: str, event: str) -> list[str]:
    return re.findall(rf'<tr class="event {event}">(.*?)</tr>', html, re.S)


def test_the_timeline_tells_who_routed_the_lead_to_whom_and_why(client):
    html = client.get("/lead/RT1").text
    (row,) = _events(html, "routing")
    cells = [_text(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    when, event, rule, _, policy, detail, run = cells
    assert (when, event, rule, policy) == (
        "2026-11-20 13:01 UTC",
        "routing",
        "territory:americas",
        "2026.11-tiered",
    )
    assert detail == f"to Rita (sdr_east), from queue Lead Intake: {REASON}"
    assert run == f"lead_routing / route (try 1) {ROUTE_RUN}"
    assert 'href="/dags/lead_routing/runs/scheduled__2026-11-20T13%3A00%3A00%2B00%3A00/tasks/route"' in row
    summary = _text(re.search(r'<p id="routing">(.*?)</p>', html, re.S).group(1))
    assert summary.startswith(
        "Routed to Rita (sdr_east) 2026-11-20 13:01 UTC by rule territory:americas, policy 2026.11-tiered, "
        f"Airflow run lead_routing / {ROUTE_RUN}: {REASON}."
    )
    assert (
        f"On the record: Routing_Reason__c {REASON}, rule territory:americas, policy 2026.11-tiered."
        in summary
    )


def test_routing_reason_is_escaped(client):
    html = client.get("/lead/RT1").text
    assert "<script>alert(2)</script>" not in html
    assert html.count("&lt;script&gt;alert(2)&lt;/script&gt;") == 3  # the entry, the summary, the record's


def test_unowned_alerts_show_once_per_reminder_and_misrouted_once_per_owner(client):
    alerts = [_text(row) for row in _events(client.get("/lead/UQ1").text, "unowned_alert_queued")]
    assert len(alerts) == 2  # 8 audit rows: 2 alerts to 4 recipients each
    assert (
        "first alert: held by queue Lead Intake since 2026-11-20 12:00 UTC, team none (no territory); "
        "routing could not place it: no territory matches (4 messages queued)" in alerts[0]
    )
    assert "reminder 1: held by queue Lead Intake" in alerts[1] and "(4 messages queued)" in alerts[1]
    misrouted = [_text(row) for row in _events(client.get("/lead/RT2").text, "misrouted_lead")]
    assert len(misrouted) == 2
    assert "with Sam: owner outside sdr_emea (4 messages queued)" in misrouted[0]
    assert "with Rob: owner outside sdr_emea (2 messages queued)" in misrouted[1]
    assert all("territory:emea" in row for row in misrouted)


def test_the_page_lists_the_unowned_leads_longest_waiting_first(client, store_with_routing):
    html = client.get("/").text
    count = re.search(r'id="unowned-count"><b><a[^>]*href="([^"]*)">(\d+)</a>', html)
    assert count.group(2) == "2"
    assert _rows(html, "unowned") == [
        ["Waiting Lead", "MQL", "queue Lead Intake", "none (no territory)", "2026-11-20 12:00 UTC", "3h 00m"],
        ["Orphan Lead", "MQL", "inactive user Xavier Gone", "sdr_east", "2026-11-20 14:00 UTC", "1h 00m"],
    ]
    table = re.search(r'<table id="unowned">(.*?)</table>', html, re.S).group(1)
    assert re.findall(r'<a class="lead" href="/lead/(\w+)">', table) == ["UQ1", "UX1"]
    drilled = client.get(unescape(count.group(1))).text
    assert re.findall(r'<a class="lead" href="[^"]*">([^<]+)</a>', drilled) == ["UQ1", "UX1"]
    with store_with_routing.begin() as conn:  # someone takes the queue's lead
        conn.execute(s.records.update().where(s.records.c.record_id == "UQ1").values(owner_id="R2"))
    html = client.get("/").text
    assert [row[0] for row in _rows(html, "unowned")] == ["Orphan Lead"]


def test_no_unowned_lead_says_so(store):
    from leadsla.war_room.app import create_app

    prepare_airflow_auth()
    org().write(store)
    c = TestClient(create_app(engine=store, config=load_report_config(), clock=lambda: NOW))
    c.cookies.set("_token", mint_token("vera"))
    html = c.get("/").text
    assert re.search(r'id="unowned-count"><b><a[^>]*>0</a>', html)
    assert _rows(html, "unowned") == [["Every watched lead has a working owner."]]


def test_a_policy_that_does_not_load_closes_the_war_room(store, tmp_path, monkeypatch):
    """The policy says who sees which team: without it nobody is let in (fail closed), told why."""
    from leadsla.war_room.app import create_app

    broken = tmp_path / "sla_policy.yaml"
    broken.write_text("version: [not, a, version\n")
    monkeypatch.setenv("LEADSLA_POLICY_PATH", str(broken))
    prepare_airflow_auth()
    routed_org().write(store)
    c = TestClient(create_app(engine=store, config=load_report_config(), clock=lambda: NOW))
    c.cookies.set("_token", mint_token("vera"))
    page = c.get("/", headers={"accept": "text/html"})
    assert page.status_code == 403
    assert "the SLA policy did not load" in page.text and str(broken) in page.text
    assert 'id="open-red"' not in page.text and "RT1" not in page.text
