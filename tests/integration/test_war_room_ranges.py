"""The War Room answers an unbounded date range with a 400 naming the limit (page and drill-down),
on SQLite and PostgreSQL, and still shows a full two-year range."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from leadsla.reports.config import load_report_config
from tests.war_room_fixtures import NOW, mint_token, org, prepare_airflow_auth


@pytest.fixture
def client(store):
    from leadsla.war_room.app import create_app

    prepare_airflow_auth()
    org().write(store)
    app = create_app(engine=store, config=load_report_config(), clock=lambda: NOW, range_ttl_seconds=0)
    c = TestClient(app, raise_server_exceptions=False)
    c.cookies.set("_token", mint_token("vera"))
    return c


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"start": "0001-01-01", "end": "9999-12-31"}, "end=&#39;9999-12-31&#39; is outside the dates"),
        ({"start": "9999-12-30", "end": "9999-12-31"}, "end=&#39;9999-12-31&#39; is outside the dates"),
        ({"start": "1970-01-01", "end": "2026-11-20"}, "spans 20778 days: the War Room shows at most 731"),
        ({"start": "2023-01-01"}, "the War Room shows at most 731 days"),
    ],
)
def test_a_range_beyond_two_years_is_a_400_naming_the_limit(client, params, says) -> None:
    for path, extra in (("/", {}), ("/drill", {"figure": "overall:decided"})):
        r = client.get(path, params={**params, **extra})
        assert r.status_code == 400, (path, r.status_code)
        assert says in r.text
        assert len(r.content) < 20_000


def test_a_two_year_range_is_shown(client) -> None:
    r = client.get("/", params={"start": "2024-11-21", "end": "2026-11-20"})
    assert r.status_code == 200
    assert "2024-11-21" in r.text
