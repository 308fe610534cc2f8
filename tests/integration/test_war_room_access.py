"""Least privilege in the War Room, on SQLite and PostgreSQL, with SimpleAuthManager's roles: the
role x route x team matrix (tests/war_room_access_matrix.py), the 403 page and JSON, the audit of
every refusal, the range cache kept per scope, and the policy's `access:` section's errors."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from leadsla.reports.config import load_report_config
from leadsla.store import schema as s
from tests.war_room_access_matrix import (
    DRILLS,
    MATRIX_USERS,
    SLAS,
    TEAM_FILTERS,
    matrix_org,
    matrix_policy,
    war_room_authz_matrix,
    write_matrix_org,
)
from tests.war_room_fixtures import NOW, prepare_airflow_auth


def _client(app, name: str, role: str | None) -> TestClient:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from leadsla.war_room.app import auth_manager

    client = TestClient(app)
    client.cookies.set("_token", auth_manager().generate_jwt(SimpleAuthManagerUser(username=name, role=role)))
    return client


def _denials(store) -> list[dict]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(s.audit.c.actor, s.audit.c.record_id, s.audit.c.detail)
            .where(s.audit.c.event == "war_room_denied")
            .order_by(s.audit.c.audit_id)
        ).mappings()
        return [dict(row) for row in rows]


@pytest.fixture
def app(store):
    from leadsla.war_room.app import create_app

    prepare_airflow_auth()
    write_matrix_org(store)
    return create_app(
        engine=store,
        config=load_report_config(),
        policy=matrix_policy(),
        clock=lambda: NOW,
        range_ttl_seconds=60,
    )


def test_the_role_route_team_matrix_holds(store):
    """Every SimpleAuthManager role and mapping on every route, with and without a team filter:
    the status and the leads shown are what the policy's access section says; every refusal is
    one audit row."""
    prepare_airflow_auth()
    result = war_room_authz_matrix(store)
    users, leads = len(MATRIX_USERS), len(matrix_org().leads) + 1  # and a lead that does not exist
    assert result["authz_cases"] == users * (len(SLAS) * len(TEAM_FILTERS) * (1 + len(DRILLS)) + leads)
    assert result["authz_wrong"] == 0, result["wrong"]
    assert len(_denials(store)) == result["denials_expected"] > 0


def test_a_rep_sees_only_their_team(app):
    rita = _client(app, "rita", "USER")
    page = rita.get("/")
    assert page.status_code == 200 and 'id="scope">team A<' in page.text
    at_risk = re.findall(
        r'href="/lead/([^"]+)"', re.search(r'<table id="at-risk">(.*?)</table>', page.text, re.S)[1]
    )
    assert sorted(at_risk) == ["L3", "L5", "L6", "L7", "L8"]  # L9 (team B) is not listed
    owners = re.search(r'<select name="owner">(.*?)</select>', page.text, re.S)[1]
    assert "Rita" in owners and "Sam" not in owners and "Vera" not in owners
    assert rita.get("/lead/L4").status_code == 404  # team B's: as if it did not exist
    assert rita.get("/lead/NOPE").status_code == 404
    assert rita.get("/lead/L4").text.replace("L4", "X") == rita.get("/lead/X").text  # same answer
    assert rita.get("/lead/L1").status_code == 200


def test_a_viewer_who_is_not_mapped_is_told_why_and_audited(app, store):
    viewer = _client(app, "viewer", "VIEWER")
    page = viewer.get("/", headers={"accept": "text/html"})
    assert page.status_code == 403
    assert "not mapped to a CRM user" in page.text and "access.crm_users" in page.text
    assert "L1" not in page.text and 'id="open-red"' not in page.text
    api = viewer.get("/drill", params={"figure": "overall"}, headers={"accept": "application/json"})
    assert api.status_code == 403 and "not mapped to a CRM user" in api.json()["detail"]
    assert viewer.get("/lead/L1", headers={"accept": "application/json"}).status_code == 403
    denials = _denials(store)
    assert [(d["actor"], d["detail"]["route"]) for d in denials] == [
        ("viewer", "/"),
        ("viewer", "/drill"),
        ("viewer", "/lead/{record_id}"),  # the route's template: no record id in the audit
    ]
    assert all(d["record_id"] is None and "not mapped" in d["detail"]["reason"] for d in denials)


def test_the_auth_manager_is_asked_and_a_user_without_a_role_is_refused(app, store):
    nobody = _client(app, "norole", None)
    page = nobody.get("/", headers={"accept": "text/html"})
    assert page.status_code == 403 and "Airflow does not let this user read the website" in page.text
    assert _denials(store)[-1]["detail"]["reason"] == "Airflow does not let this user read the website"


def test_an_auth_manager_that_fails_is_a_refusal(app, store, monkeypatch):
    from leadsla.war_room import app as war_room_app

    manager = war_room_app.auth_manager()

    def broken(**kwargs):
        raise RuntimeError("the auth backend is down")

    monkeypatch.setattr(manager, "is_authorized_dag", broken)
    page = _client(app, "admin", "ADMIN").get("/", headers={"accept": "text/html"})
    assert page.status_code == 403 and "the auth manager could not decide (RuntimeError)" in page.text
    assert 'id="open-red"' not in page.text


def test_a_denied_dag_is_a_refusal(store, monkeypatch):
    """`requires.dags`: the auth manager is asked about each DAG the War Room shows."""
    from leadsla.war_room import app as war_room_app
    from leadsla.war_room.app import create_app

    prepare_airflow_auth()
    write_matrix_org(store)
    app = create_app(engine=store, config=load_report_config(), policy=matrix_policy(), clock=lambda: NOW)
    manager = war_room_app.auth_manager()
    asked = []

    def only_crm_sync(*, method, user, access_entity=None, details=None):
        asked.append((method, details.id))
        return details.id == "crm_sync"

    monkeypatch.setattr(manager, "is_authorized_dag", only_crm_sync)
    page = _client(app, "admin", "ADMIN").get("/", headers={"accept": "text/html"})
    assert page.status_code == 403 and "read the DAG sla_monitor" in page.text
    assert asked == [("GET", "crm_sync"), ("GET", "sla_monitor")]


def test_a_manager_sees_the_teams_of_the_people_who_report_to_them(app):
    vera = _client(app, "vera", "VIEWER")
    page = vera.get("/")
    assert page.status_code == 200 and 'id="scope">team A, leadership<' in page.text
    assert vera.get("/lead/LX").status_code == 200  # held by her (leadership)
    assert vera.get("/lead/L9").status_code == 404  # team B's
    mona = _client(app, "mona", "USER")  # no team of her own; the policy names her b_team's manager
    assert 'id="scope">team b_team<' in mona.get("/").text
    assert mona.get("/lead/LX").status_code == 200  # team B answers for its breach
    assert mona.get("/lead/L1").status_code == 404


def test_the_range_figures_are_kept_per_scope(app):
    """The cache that keeps a filter set's range figures for a minute never serves one team's
    figures to another."""
    admin, rita = _client(app, "admin", "ADMIN"), _client(app, "rita", "USER")
    params = {"start": "2026-11-01", "end": "2026-11-10"}
    everything = admin.get("/", params=params).text
    assert re.search(r"Overall: <b>50%</b> of <a[^>]*>4</a> decided clocks met", everything)
    team_a = rita.get("/", params=params).text
    assert re.search(r"Overall: <b>33%</b> of <a[^>]*>3</a> decided clocks met", team_a)
    drilled = rita.get("/drill", params={**params, "figure": "overall"}).text
    assert "L4" not in drilled
    assert rita.get("/drill", params={**params, "figure": "team:B"}).status_code == 404  # not on her page
    assert re.search(r"Overall: <b>50%</b> of <a[^>]*>4</a>", admin.get("/", params=params).text)


def test_the_findings_and_quarantine_are_for_those_who_see_every_team(app, store):
    with store.begin() as conn:
        conn.execute(
            s.quarantine.insert(),
            [
                {
                    "object_type": "Lead",
                    "record_id": "L9",
                    "reasons": ["bad e-mail"],
                    "payload": {},
                    "first_seen_at": NOW,
                    "last_seen_at": NOW,
                }
            ],
        )
    assert "bad e-mail" in _client(app, "admin", "ADMIN").get("/").text
    assert "bad e-mail" not in _client(app, "rita", "USER").get("/").text


@pytest.mark.parametrize(
    ("access", "error"),
    [
        ({"crm_users": {"rita": "rita"}}, "access.crm_users.rita: 'rita': expected an e-mail address"),
        ({"all_teams": {"roles": [" "]}}, "access.all_teams.roles[0]: ' ': expected a non-empty name"),
        ({"requires": {"dags": []}}, "access.requires.dags: []: List should have at least 1 item"),
        (
            {"requires": {"dags": ["no such/dag"]}},
            "access.requires.dags[0]: 'no such/dag': expected a DAG id",
        ),
        ({"all_teams": {"role": ["Admin"]}}, "access.all_teams.role: ['Admin']: unknown key"),
        ({"crm_users": ["rita"]}, "access.crm_users: ['rita']: Input should be a valid dictionary"),
    ],
)
def test_the_access_section_is_checked_with_the_policy(access, error, tmp_path):
    import yaml

    from leadsla.errors import LeadSlaError
    from leadsla.policy import DEFAULT_POLICY_PATH, load_policy

    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    data["access"] = access
    data["lifecycle"] = str(DEFAULT_POLICY_PATH.parent / "lifecycle.yaml")
    path = tmp_path / "sla_policy.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LeadSlaError) as raised:
        load_policy(path)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message and error in message


def test_every_route_the_plugin_mounts_asks_for_access():
    """A route added later without the access check fails here: every route of the app the plugin
    mounts depends on `allowed` (the auth manager and the team scope)."""
    from fastapi.routing import APIRoute
    from plugins.war_room import WarRoomPlugin

    from leadsla.war_room.app import allowed

    def calls(dependant) -> set:
        return {dependant.call} | {call for sub in dependant.dependencies for call in calls(sub)}

    app = WarRoomPlugin.fastapi_apps[0]["app"]
    routes = [route for route in app.routes if isinstance(route, APIRoute)]
    assert sorted(route.path for route in routes) == ["/", "/drill", "/lead/{record_id}"]
    assert all(allowed in calls(route.dependant) for route in routes)
