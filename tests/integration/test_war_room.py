"""The War Room app on a hand-built org (tests/war_room_fixtures.py), on SQLite and PostgreSQL:
Airflow login required, live panel, filters, drill-down, the lead's timeline, escaping, visit audit."""

from __future__ import annotations

import re
from html import unescape

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from leadsla.reports.config import load_report_config
from leadsla.store import schema as s
from tests.reports_data import Builder, t
from tests.war_room_fixtures import NOW, mint_token, org, prepare_airflow_auth

RANGE = {"start": "2026-11-01", "end": "2026-11-10"}


@pytest.fixture
def app(store):
    from leadsla.war_room.app import create_app

    prepare_airflow_auth()
    org().write(store)
    return create_app(engine=store, config=load_report_config(), clock=lambda: NOW, range_ttl_seconds=0)


@pytest.fixture
def client(app):
    c = TestClient(app)
    c.cookies.set("_token", mint_token("vera"))
    return c


def _cell(html: str, table: str, row_label: str) -> list[str]:
    """Texts of the cells of the row starting with `row_label` in table id=`table`."""
    body = re.search(rf'<table id="{table}">(.*?)</table>', html, re.S).group(1)
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = [
            unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        if cells and cells[0] == row_label:
            return cells
    raise AssertionError(f"no row {row_label!r} in table {table}")


def _drilled(html: str) -> list[str]:
    return re.findall(r'<a class="lead" href="[^"]*">([^<]+)</a>', html)


def test_login_is_required(app):
    anon = TestClient(app)
    r = anon.get("/", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/auth/login?next=")  # the auth manager's login page
    assert anon.get("/lead/L9", headers={"accept": "application/json"}).status_code == 401
    anon.cookies.set("_token", mint_token("vera")[:-4] + "AAAA")  # signature no longer matches
    assert (
        anon.get("/drill", params={"figure": "overall"}, headers={"accept": "application/json"}).status_code
        == 401
    )
    ok = anon.get("/", headers={"authorization": f"Bearer {mint_token('api-user')}"})
    assert ok.status_code == 200 and "War Room" in ok.text


def test_live_panel_colours_at_risk_breaches_and_systemic_banner(client):
    html = client.get("/").text
    tile = {
        c: re.search(rf'id="open-{c}"><b><a[^>]*>(\d+)</a>', html).group(1)
        for c in ("green", "yellow", "red")
    }
    assert tile == {"green": "1", "yellow": "1", "red": "4"}
    assert re.search(r'id="breaches-today"><b><a[^>]*>(\d+)</a>', html).group(1) == "3"
    banner = re.search(r'<div class="banner" id="systemic-A">(.*?)</div>', html, re.S).group(1)
    assert "3 A leads breached today across 2 of 2 reps" in banner
    assert 'id="systemic-B"' not in html
    at_risk = re.search(r'<table id="at-risk">(.*?)</table>', html, re.S).group(1)
    order = re.findall(r'href="/lead/(L\d)"', at_risk)
    assert order[-2:] == ["L6", "L9"]  # most time left last: L6 0.8 h, L9 2.5 h
    assert sorted(order) == ["L3", "L5", "L6", "L7", "L8", "L9"]
    assert (
        ">nan<" not in at_risk and ">None<" not in at_risk
    )  # a breached clock has no next checkpoint: blank
    red = client.get("/drill", params={"figure": "open:red"}).text
    assert _drilled(red) == ["L3", "L5", "L7", "L8"]
    assert _drilled(client.get("/drill", params={"figure": "systemic:A"}).text) == ["L5", "L7", "L8"]


def test_scorecards_funnel_and_reasons_for_a_range(client):
    html = client.get("/", params=RANGE).text
    assert re.search(r"Overall: <b>50%</b> of <a[^>]*>4</a> decided clocks met", html)
    assert _cell(html, "teams", "A")[1:5] == ["3", "2", "33%", "50%"]  # decided, violated, team, all teams
    assert _cell(html, "reps", "Rita")[1:6] == ["A", "2", "1", "50%", "33%"]  # rep beside the team average
    assert _cell(html, "reps", "Rob")[2:6] == ["1", "1", "0%", "33%"]
    assert [_cell(html, "funnel", st)[1] for st in ("MQL", "SAL", "SQL", "Opportunity")] == [
        "4",
        "3",
        "1",
        "0",
    ]
    assert _cell(html, "reasons", "No budget")[1:] == ["1", "100%"]


def test_filters_change_the_figures(client):
    web = client.get("/", params={**RANGE, "lead_source": "Webinar"}).text
    assert re.search(r"Overall: <b>100%</b> of <a[^>]*>1</a> decided", web)
    assert 'id="teams"' in web and "<td>A</td>" not in re.search(
        r'<table id="teams">(.*?)</table>', web, re.S
    ).group(1)
    rob = client.get("/", params={**RANGE, "owner": "R2"}).text
    assert re.search(r"Overall: <b>0%</b> of <a[^>]*>1</a> decided", rob)
    team_b = client.get("/", params={**RANGE, "team": "B"}).text
    assert [_cell(team_b, "funnel", st)[1] for st in ("MQL", "SAL")] == ["1", "1"]
    narrow = client.get("/", params={"start": "2026-11-04", "end": "2026-11-04"}).text
    assert re.search(r"Overall: <b>0%</b> of <a[^>]*>1</a> decided", narrow)  # only L3
    bad = client.get("/", params={"start": "yesterday"})
    assert bad.status_code == 400 and "start=&#39;yesterday&#39; is not a date" in bad.text


def test_drill_down_lists_the_records_behind_each_figure(client):
    def drill(figure: str, **extra: str) -> list[str]:
        r = client.get("/drill", params={**RANGE, "figure": figure, **extra})
        assert r.status_code == 200, r.text
        return _drilled(r.text)

    assert drill("overall") == ["L1", "L2", "L3", "L4"]
    assert drill("overall_violated") == ["L2", "L3"]
    assert drill("team_violated:A") == ["L2", "L3"]
    assert drill("rep:Rita") == ["L1", "L2"]
    assert drill("funnel:SAL") == ["L1", "L3", "L4"]
    assert drill("reason:No budget") == ["L2"]
    assert drill("overall", lead_source="Webinar") == ["L4"]
    page = client.get("/", params=RANGE).text
    link = re.search(r'href="(/drill\?[^"]*figure=team_violated%3AA[^"]*)"', page).group(1)
    assert _drilled(client.get(unescape(link)).text) == ["L2", "L3"]  # the page's own link keeps the filters
    assert client.get("/drill", params={**RANGE, "figure": "team:Z"}).status_code == 404


def test_timeline_shows_every_decision_with_rule_and_task_run_link(client):
    html = client.get("/lead/L9").text
    rows = re.findall(r'<tr class="event ([a-z_]+)">(.*?)</tr>', html, re.S)
    assert [event for event, _ in rows] == [
        "clock_start",
        "clock_pause",
        "checkpoint_due",
        "message_sent",
        "escalation",
        "reassignment",
    ]
    by = dict(rows)
    assert "sales_touch.pause.out_of_hours" in by["clock_pause"]
    assert "sales_touch.checkpoint.warn_50" in by["checkpoint_due"]
    assert (
        'href="/dags/sla_monitor/runs/scheduled__2026-11-20T12%3A00%3A00%2B00%3A00/tasks/deliver"'
        in by["message_sent"]
    )
    assert "(try 2)" in by["message_sent"]
    assert "to=M1" in by["reassignment"] and 'target="_top"' in by["escalation"]
    assert client.get("/lead/NOPE").status_code == 404


def test_the_timeline_says_how_each_clock_ended_in_plain_words(client, store):
    # L9's first clock is running (the fixture); earlier ones ended every other way.
    b = Builder()
    ends = [
        ("2026-11-10 10:00", {"stopped_at": t("2026-11-10 11:00")}, "met"),
        (
            "2026-11-11 10:00",
            {"stopped_at": t("2026-11-11 16:00"), "breached_at": t("2026-11-11 14:00")},
            "met late",
        ),
        ("2026-11-12 10:00", {"stopped_at": t("2026-11-12 11:00"), "handed_on": True}, "handed on"),
        (
            "2026-11-13 10:00",
            {"stopped_at": t("2026-11-13 16:00"), "breached_at": t("2026-11-13 14:00"), "handed_on": True},
            "handed on late",
        ),
        ("2026-11-14 10:00", {"breached_at": t("2026-11-14 14:00")}, "breached"),
    ]
    for start, end, _ in ends:
        b.clock("L9", t(start), target_h=4, elapsed_h=2, owner="R3", team="B", **end)
    b.clocks[-1]["elapsed_seconds"] = 6 * 3600
    paused = t("2026-11-15 10:00")
    b.clock("L9", paused, target_h=4, elapsed_h=1, owner="R3", team="B")
    b.clocks[-1]["state"] = "paused"
    b.event(
        "clock_stop",
        t("2026-11-12 11:00"),
        "L9",
        clock_start=t("2026-11-12 10:00"),
        actor="sla_monitor",
        detail={"state": "handed_on", "outcome": "handed_on", "elapsed_seconds": 3600},
    )
    b.write(store)
    html = client.get("/lead/L9").text
    body = re.search(r'<table id="clocks">(.*?)</table>', html, re.S).group(1)
    states = re.findall(r'<td class="state">([^<]*)</td>', body)
    assert states == [label for _, _, label in ends] + ["paused", "running"]
    stops = re.findall(r'<tr class="event clock_stop">(.*?)</tr>', html, re.S)
    assert len(stops) == 1 and "outcome=handed_on" in stops[0]


def test_lead_text_is_escaped(client):
    for html in (
        client.get("/").text,
        client.get("/lead/L9").text,
        client.get("/drill", params={"figure": "open:green"}).text,
    ):
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_visits_are_audited_with_the_user(client, store):
    client.get("/", params=RANGE)
    client.get("/lead/L9")  # only the page counts as opening the War Room
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(s.audit.c.actor, s.audit.c.at, s.audit.c.detail).where(
                s.audit.c.event == "war_room_visit"
            )
        ).all()
    assert [(r.actor, r.at, r.detail["user_id"]) for r in rows] == [("vera", NOW, "vera")]


def test_quarantine_and_health_findings_are_shown(client, store):
    with store.begin() as conn:
        conn.execute(
            s.quarantine.insert(),
            [
                {
                    "object_type": "Lead",
                    "record_id": "L9",
                    "payload": {},
                    "reasons": ["Email is not an address"],
                    "first_seen_at": NOW,
                    "last_seen_at": NOW,
                }
            ],
        )
    page = client.get("/").text
    assert _cell(page, "quarantine", "Lead")[1] == "1" and "Email is not an address" in page
    assert "No health findings recorded." in page  # main's store has no health_findings table yet
    health = sa.Table(
        "health_findings",
        sa.MetaData(),
        sa.Column("finding_id", sa.Integer, primary_key=True),
        sa.Column("run_at", s.UtcDateTime()),
        sa.Column("check_name", sa.String(80)),
        sa.Column("severity", sa.String(20)),
        sa.Column("summary", sa.Text),
        sa.Column("record_ids", sa.JSON),
        sa.Column("how_to_fix", sa.Text),
    )
    health.create(store, checkfirst=True)
    with store.begin() as conn:
        conn.execute(
            health.insert(),
            [
                {
                    "run_at": NOW,
                    "check_name": "owner_inactive",
                    "severity": "critical",
                    "summary": "L9 owned by an inactive user",
                    "record_ids": ["L9"],
                    "how_to_fix": "Reassign the lead",
                }
            ],
        )
    assert "L9 owned by an inactive user" in client.get("/").text
    lead = client.get("/lead/L9").text
    assert "owner_inactive (critical)" in lead and "Email is not an address" in lead


def test_the_header_says_how_crm_changes_are_heard(client, store):
    from leadsla.store import stream

    assert 'id="crm-feed"' not in client.get("/").text  # no listener ever reported
    with store.begin() as conn:
        stream.set_mode(conn, stream.POLLING, "the change stream failed: 403::Handshake denied", NOW)
    feed = re.search(r'<span id="crm-feed">(.*?)</span>', client.get("/").text, re.S).group(1)
    assert feed.startswith("CRM changes: polling since ") and "403::Handshake denied" in unescape(feed)
    with store.begin() as conn:
        stream.set_mode(conn, stream.STREAMING, "listening", NOW)
    feed = re.search(r'<span id="crm-feed">(.*?)</span>', client.get("/").text, re.S).group(1)
    assert feed.startswith("CRM changes: streaming since ") and "Handshake" not in feed
