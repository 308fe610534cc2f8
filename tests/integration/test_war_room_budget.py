"""The War Room's landing page costs what its range and the live panel show, not what the store
holds (a million-lead org: bench/scale.py), on SQLite and PostgreSQL: the same queries whatever
the number of leads, rows read that do not grow with leads outside the range, and the open clocks
counted in the store, their ids read only when a drill-down lists them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from leadsla.reports.config import load_report_config
from leadsla.war_room.queries import AT_RISK_ROWS
from tests.reports_data import Builder, t
from tests.war_room_fixtures import NOW, mint_token, org, prepare_airflow_auth

RANGE = {"start": "2026-11-01", "end": "2026-11-10"}
#: The landing page's statements for one user, whatever the store holds (today 41: the matrix,
#: the live and range panels, unowned leads, filter options, findings, quarantine, how the CRM's
#: changes are heard (streaming or polling), the access check and the visit's audit row, each
#: read in its own short read-only transaction).
QUERY_BUDGET = 45
OLD_LEADS = 300
OPEN_RED = 200


def _more_leads() -> Builder:
    """Leads worked long before the range (their clocks met then), and untouched leads whose clocks
    breached long ago and are still open (red), on team A's reps."""
    b = Builder()
    for i in range(OLD_LEADS):
        lead = f"OLD{i:04d}"
        b.lead(lead, owner="R1", stages={"MQL": t("2025-03-02 09:00"), "SAL": t("2025-03-02 10:00")})
        b.clock(
            lead,
            t("2025-03-02 15:00"),
            target_h=4,
            elapsed_h=1,
            owner="R1",
            team="A",
            stopped_at=t("2025-03-02 16:00"),
        )
    for i in range(OPEN_RED):
        lead = f"RED{i:04d}"
        b.lead(lead, owner="R2", stages={"MQL": t("2026-10-01 08:00")})
        b.clock(
            lead,
            t("2026-10-01 09:00"),
            target_h=4,
            elapsed_h=30,
            owner="R2",
            team="A",
            breached_at=t("2026-10-01 13:00"),
            now=NOW,
        )
    for row in b.history:  # history ids apart from org()'s
        row["history_id"] = "X" + row["history_id"][1:]
    return b


@contextmanager
def _statements(engine: sa.Engine) -> Iterator[list[tuple[str, object]]]:
    """The statements run on `engine` inside the block (text and parameters)."""
    seen: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)


def _rows_read(engine: sa.Engine, statements: list[tuple[str, object]]) -> int:
    """How many rows the SELECTs among `statements` return, run again as they were."""
    raw = engine.raw_connection()
    try:
        total = 0
        for statement, parameters in statements:
            if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                cursor = raw.cursor()
                cursor.execute(statement, parameters)
                total += len(cursor.fetchall())
                cursor.close()
        return total
    finally:
        raw.rollback()
        raw.close()


def _landing(store: sa.Engine) -> tuple[TestClient, int, int]:
    """A client on the store, and the statements and rows of one cold landing page for RANGE."""
    from leadsla.war_room.app import create_app

    app = create_app(engine=store, config=load_report_config(), clock=lambda: NOW, range_ttl_seconds=0)
    client = TestClient(app)
    client.cookies.set("_token", mint_token("vera"))
    assert client.get("/").status_code == 200  # the first request: policy, handoffs, templates
    with _statements(store) as seen:
        page = client.get("/", params=RANGE)
    assert page.status_code == 200
    return client, len(seen), _rows_read(store, seen)


@pytest.fixture
def small(store: sa.Engine) -> sa.Engine:
    prepare_airflow_auth()
    org().write(store)
    return store


def test_the_landing_page_reads_the_range_and_the_live_panel_not_the_store(small: sa.Engine) -> None:
    _, queries_before, rows_before = _landing(small)
    _more_leads().write(small)
    client, queries_after, rows_after = _landing(small)

    assert queries_after == queries_before <= QUERY_BUDGET
    # 300 leads outside the range add nothing; 200 more open clocks add at most the at-risk list's
    # rows (the tiles are counts, not 200 ids).
    assert rows_after - rows_before <= AT_RISK_ROWS
    page = client.get("/", params=RANGE).text
    red = re.search(r'id="open-red"><b><a[^>]*>(\d+)</a>', page).group(1)
    assert int(red) == 4 + OPEN_RED


def test_a_drill_down_lists_the_open_clocks_the_page_counted(small: sa.Engine) -> None:
    _more_leads().write(small)
    client, _, _ = _landing(small)
    drill = client.get("/drill", params={**RANGE, "figure": "open:red"}).text
    listed = re.findall(r'<a class="lead" href="[^"]*">([^<]+)</a>', drill)
    assert {"L3", "L5", "L7", "L8", "RED0000", "RED0199"} <= set(listed)
    assert len(listed) == 4 + OPEN_RED  # under the drill-down's 500-row limit
    assert client.get("/drill", params={**RANGE, "figure": "open:blue"}).status_code == 404
