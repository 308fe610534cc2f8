"""The War Room under the FAB auth manager (apache-airflow-providers-fab), on SQLite and PostgreSQL
stores: FAB's own users, roles and permissions in the test's Airflow database (the default roles
exactly as FAB defines them, `ROLE_CONFIGS`), tokens minted and read back by `FabAuthManager`
(`get_user_from_token` loads the user and their roles from that database), and the War Room asking
it through the public `is_authorized_*` API. FAB users carry their e-mail, so no `crm_users`
entry is needed: a FAB Viewer whose e-mail is a CRM rep's sees that rep's team."""

from __future__ import annotations

import re

import pytest
from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager
from airflow.providers.fab.auth_manager.models import Action, Permission, Resource, Role, User, metadata
from airflow.providers.fab.auth_manager.security_manager.override import FabAirflowSecurityManagerOverride
from airflow.providers.fab.www.security import permissions
from cachetools import TTLCache
from fastapi.testclient import TestClient

from leadsla.reports.config import load_report_config
from tests.war_room_access_matrix import matrix_policy, write_matrix_org
from tests.war_room_fixtures import NOW, prepare_airflow_auth

READ = permissions.ACTION_CAN_READ
#: Roles beyond FAB's defaults: RevOps (a Viewer the policy lets see every team), one that may read
#: the website but no DAG, one that may read exactly the War Room's DAGs (FAB's per-DAG resources)
#: and one granted the War Room as a custom view.
EXTRA_ROLES = {
    "RevOps": FabAirflowSecurityManagerOverride.VIEWER_PERMISSIONS,
    "WebsiteOnly": [(READ, permissions.RESOURCE_WEBSITE)],
    "WarRoomDags": [
        (READ, permissions.RESOURCE_WEBSITE),
        *[
            (READ, permissions.resource_name(dag, permissions.RESOURCE_DAG))
            for dag in ("crm_sync", "sla_monitor", "lead_routing")
        ],
    ],
    "WarRoomView": [*FabAirflowSecurityManagerOverride.VIEWER_PERMISSIONS, (READ, "War Room")],
}
#: FAB users: user name -> (role, e-mail).
FAB_USERS = {
    "fab_admin": ("Admin", "admin@corp.example"),
    "fab_revops": ("RevOps", "revops@corp.example"),
    "fab_rita": ("Viewer", "R1@example.com"),  # the CRM's rep R1 (team A), any case
    "fab_sam": ("WarRoomDags", "r3@example.com"),  # R3, team B, with per-DAG permissions only
    "fab_stranger": ("Viewer", "stranger@corp.example"),  # no CRM user has this e-mail
    "fab_public": ("Public", "r2@example.com"),  # R2's e-mail, but FAB's Public role may read nothing
    "fab_web": ("WebsiteOnly", "r2+web@example.com"),
    "fab_view": ("WarRoomView", "m1@example.com"),
}


def _fab_database() -> dict[str, User]:
    """FAB's tables in the test's Airflow database, its default roles and `EXTRA_ROLES`, `FAB_USERS`."""
    from airflow import settings

    metadata.drop_all(settings.engine)
    metadata.create_all(settings.engine)
    session = settings.Session()
    actions: dict[str, Action] = {}
    resources: dict[str, Resource] = {}
    perms: dict[tuple[str, str], Permission] = {}
    roles: dict[str, Role] = {}
    configs = [*FabAirflowSecurityManagerOverride.ROLE_CONFIGS]
    configs += [{"role": name, "perms": perms} for name, perms in EXTRA_ROLES.items()]
    for config in configs:
        role = roles[config["role"]] = Role(name=config["role"])
        for action_name, resource_name in dict.fromkeys(config["perms"]):  # Op repeats a User one
            action = actions.setdefault(action_name, Action(name=action_name))
            resource = resources.setdefault(resource_name, Resource(name=resource_name))
            if (action_name, resource_name) not in perms:
                perms[action_name, resource_name] = Permission(action=action, resource=resource)
            role.permissions.append(perms[action_name, resource_name])
        session.add(role)
    users = {}
    for name, (role, email) in FAB_USERS.items():
        users[name] = User(
            first_name=name, last_name="Test", username=name, email=email, active=True, roles=[roles[role]]
        )
        session.add(users[name])
    session.commit()
    session.close()
    return users


@pytest.fixture
def fab(store, monkeypatch):
    """The FAB auth manager in the API server's place (what `[core] auth_manager` selects), its users."""
    from airflow.api_fastapi import app as api_app

    prepare_airflow_auth()
    users = _fab_database()
    manager = FabAuthManager()
    manager.cache = TTLCache(maxsize=64, ttl=30)  # deserialize_user's cache: this test's users only
    monkeypatch.setattr(api_app._AuthManagerState, "instance", manager)
    write_matrix_org(store)
    return manager, users


def _app(store, **access):
    from leadsla.war_room.app import create_app

    policy = matrix_policy()
    if access:
        policy = policy.model_copy(update={"access": policy.access.model_copy(update=access)})
    return create_app(engine=store, config=load_report_config(), policy=policy, clock=lambda: NOW)


def _get(app, manager, user, path="/"):
    client = TestClient(app)
    client.cookies.set("_token", manager.generate_jwt(user))
    return client.get(path, headers={"accept": "text/html"})


def test_fab_roles_and_e_mails_decide_what_each_user_sees(fab, store):
    manager, users = fab
    app = _app(store)
    scope = {}
    for name in FAB_USERS:
        page = _get(app, manager, users[name])
        found = re.search(r'id="scope">([^<]*)<', page.text)
        scope[name] = (page.status_code, found[1] if found else None)
    assert scope == {
        "fab_admin": (200, "every team"),
        "fab_revops": (200, "every team"),  # the policy's all_teams roles name RevOps
        "fab_rita": (200, "team A"),
        "fab_sam": (200, "team b_team"),  # per-DAG read permissions are enough
        "fab_stranger": (403, None),
        "fab_public": (403, None),
        "fab_web": (403, None),
        "fab_view": (200, "team A, leadership"),
    }
    stranger = _get(app, manager, users["fab_stranger"]).text
    assert "mapped to stranger@corp.example, and no active CRM user has that e-mail" in stranger
    assert "read the website" in _get(app, manager, users["fab_public"]).text
    assert "read the DAG crm_sync" in _get(app, manager, users["fab_web"]).text
    rita = users["fab_rita"]
    assert _get(app, manager, rita, "/lead/L1").status_code == 200
    assert _get(app, manager, rita, "/lead/L9").status_code == 404


def test_a_custom_view_permission_is_asked_when_the_policy_names_one(fab, store):
    """`access.requires.custom_view`: FAB answers from its permissions, so even Admin needs the
    "can_read on War Room" permission once the policy asks for it."""
    from leadsla.access import Requires

    manager, users = fab
    app = _app(store, requires=Requires(custom_view="War Room"))
    assert _get(app, manager, users["fab_view"]).status_code == 200
    refused = _get(app, manager, users["fab_admin"])
    assert refused.status_code == 403 and "read the view &#39;War Room&#39;" in refused.text


def test_a_deactivated_fab_user_is_not_let_in(fab, store):
    """FAB re-reads the user on every request: a token of a user deactivated since is refused at
    login (401), before any War Room data."""
    from airflow import settings

    manager, users = fab
    token = manager.generate_jwt(users["fab_admin"])
    with settings.Session() as session:
        session.get(User, users["fab_admin"].id).active = False
        session.commit()
    client = TestClient(_app(store))
    client.cookies.set("_token", token)
    assert client.get("/", headers={"accept": "application/json"}).status_code == 401
