"""The War Room's week-over-week trend as a line chart beside its table (an inline SVG, one point
per week with a decided clock, the compliance target dashed), and no `nan` / `inf` on a page whose
range has nothing to show - on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi.testclient import TestClient

from leadsla.reports.config import load_report_config
from leadsla.war_room.figures import trend_chart
from tests.war_room_fixtures import NOW, mint_token, org, prepare_airflow_auth

RANGE = {"start": "2026-11-01", "end": "2026-11-10"}


@pytest.fixture
def client(store):
    from leadsla.war_room.app import create_app

    prepare_airflow_auth()
    org().write(store)
    app = create_app(engine=store, config=load_report_config(), clock=lambda: NOW, range_ttl_seconds=0)
    c = TestClient(app)
    c.cookies.set("_token", mint_token("vera"))
    return c


def _trend_rows(html: str) -> list[list[str]]:
    body = re.search(r'<table id="trend">(.*?)</table>', html, re.S).group(1)
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)[1:]:
        rows.append(
            [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        )
    return rows


def test_the_trend_is_drawn_as_a_line_beside_its_table(client):
    html = client.get("/", params=RANGE).text
    svg = re.search(r'<svg id="trend-chart".*?</svg>', html, re.S)
    assert svg, "no trend chart on the page"
    tips = [unescape(tip) for tip in re.findall(r'<circle class="week"[^>]*><title>([^<]+)</title>', svg[0])]
    rows = _trend_rows(html)
    assert rows and tips == [
        f"week of {week}: {compliance} met, {violated} of {decided} violated"
        for week, decided, violated, compliance in rows
    ]
    assert 'class="target"' in svg[0] and "target 80%" in svg[0]
    points = re.search(r'<polyline points="([^"]+)"', svg[0])[1].split()
    assert len(points) == len(rows)


def test_a_range_with_nothing_decided_says_so_and_prints_no_nan(client):
    html = client.get("/", params={"start": "2026-10-01", "end": "2026-10-02"}).text
    assert "No decided clocks in the range: no trend to draw." in html
    assert "<b>n/a (no decided clocks)</b>" in html
    assert re.search(r"\b(nan|inf)\b", html, re.IGNORECASE) is None


def test_the_chart_skips_weeks_without_a_figure_and_escapes_its_labels():
    rows = [
        {"week": "2026-11-02", "decided": 4, "violated": 1, "compliance": 0.75},
        {"week": "2026-11-09", "decided": 0, "violated": 0, "compliance": None},
        {"week": "2026-11-16<b>", "decided": 2, "violated": 2, "compliance": 0.0},
    ]
    svg = str(trend_chart(rows, 0.8))
    assert svg.count('<circle class="week"') == 2 and "<b>" not in svg and "&lt;b&gt;" in svg
    # 0% sits on the bottom axis, 75% a quarter of the way down; the target line at 80%.
    assert re.search(r'<polyline points="[\d.]+,52\.0 [\d.]+,166\.0"', svg), svg
    assert 'y1="44.4"' in svg
    assert str(trend_chart([], 0.8)).startswith('<p class="note" id="trend-chart">')
