"""Least privilege in the War Room: what Airflow's auth manager allows, and which teams' leads a
user sees (the policy's `access:` section, `leadsla.access`).

Two questions before any route reads a lead:

1. `authorize`: does the auth manager let this user read the website, each DAG the page shows
   (`access.requires.dags`) and, when named, the War Room's custom view? Asked through the auth
   manager's public API (`is_authorized_view`, `is_authorized_dag`, `is_authorized_custom_view`),
   so SimpleAuthManager's roles, FAB's permissions or any other manager decide.
2. `team_scope`: every team (a role or user name in `access.all_teams`), else the teams of the CRM
   user the Airflow user is (matched by e-mail against the store's active CRM users): their own
   team and the teams of everyone who reports to them, directly or not, and the policy teams whose
   `manager` they are.

Both fail closed: any error, a missing permission, an unmapped user or a CRM user with no team is a
`Denied` (the page answers 403 and audits it), never data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from leadsla.access import Access
from leadsla.policy import Policy
from leadsla.store import schema
from leadsla.store.connection import read_only


class Denied(Exception):
    """The War Room refuses this request; `reason` says why in words (no lead data)."""

    def __init__(self, reason: str, *, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Scope:
    """The teams a user's War Room shows. `teams` None = every team; else the policy team keys (or
    CRM team names the policy does not know) and `names`: every spelling of them the store holds
    (the policy key, its `crm_names`, the CRM users' team values that map to it)."""

    who: str
    teams: frozenset[str] | None
    names: frozenset[str] | None
    crm_user_id: str | None = None

    @property
    def all_teams(self) -> bool:
        return self.teams is None

    def describe(self) -> str:
        """The scope in words, for the page."""
        return "every team" if self.teams is None else "team " + ", ".join(sorted(self.teams))


def airflow_roles(user: Any) -> list[str]:
    """The user's Airflow roles as the auth manager's user carries them: SimpleAuthManager's `role`
    (one name), FAB's `roles` (Role objects with a `name`); none for a user type with neither."""
    roles: list[str] = []
    single = getattr(user, "role", None)
    if isinstance(single, str) and single:
        roles.append(single)
    for role in getattr(user, "roles", None) or []:
        name = role if isinstance(role, str) else getattr(role, "name", None)
        if isinstance(name, str) and name:
            roles.append(name)
    return roles


def airflow_email(user: Any) -> str | None:
    """The e-mail the auth manager's user carries (FAB: `email`), or None."""
    email = getattr(user, "email", None)
    return email if isinstance(email, str) and email else None


def authorize(manager: Any, user: Any, access: Access) -> None:
    """Ask the auth manager whether `user` may read the War Room (module docstring, 1).

    Raises:
        Denied: a permission is missing, or the auth manager failed to answer.
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView, DagDetails

    try:
        if not manager.is_authorized_view(access_view=AccessView.WEBSITE, user=user):
            raise Denied("Airflow does not let this user read the website")
        for dag_id in access.requires.dags:
            if not manager.is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user):
                raise Denied(f"Airflow does not let this user read the DAG {dag_id}")
        view = access.requires.custom_view
        if view and not manager.is_authorized_custom_view(method="GET", resource_name=view, user=user):
            raise Denied(f"Airflow does not let this user read the view {view!r}")
    except Denied:
        raise
    except Exception as exc:  # fail closed: a broken or unexpected auth manager shows nothing
        raise Denied(f"the auth manager could not decide ({type(exc).__name__})") from exc


def team_scope(engine: sa.Engine, policy: Policy, user: Any) -> Scope:
    """The teams `user` sees (module docstring, 2).

    Raises:
        Denied: the user sees no team: unmapped, no active CRM user with their e-mail (or several),
            or a CRM user with no team who manages nobody.
    """
    name = str(user.get_name())
    access = policy.access
    why = access.sees_all_teams(name, airflow_roles(user))
    if why is not None:
        return Scope(who=why, teams=None, names=None)
    email = access.email_of(name, airflow_email(user))
    if email is None:
        raise Denied(
            f"the Airflow user {name} is not mapped to a CRM user: the policy's access.crm_users does not "
            "name them and their account carries no e-mail"
        )
    users = _crm_users(engine)
    matches = [
        u for u in users if u["is_active"] and (u["email"] or "").strip().casefold() == email.casefold()
    ]
    if len(matches) != 1:
        found = "no active CRM user" if not matches else f"{len(matches)} active CRM users"
        raise Denied(f"the Airflow user {name} is mapped to {email}, and {found} has that e-mail")
    me = matches[0]
    teams = _teams_of(policy, me, users)
    if not teams:
        raise Denied(f"the CRM user {me['user_id']} ({email}) has no team and manages no one")
    return Scope(
        who=f"CRM user {me['user_id']}",
        teams=frozenset(teams),
        names=frozenset(_spellings(policy, teams, users)),
        crm_user_id=me["user_id"],
    )


def _crm_users(engine: sa.Engine) -> list[dict]:
    users = schema.users
    with read_only(engine) as conn:
        rows = conn.execute(
            sa.select(users.c.user_id, users.c.email, users.c.team, users.c.manager_id, users.c.is_active)
        ).mappings()
        return [dict(row) for row in rows]


def _team(policy: Policy, crm_team: str | None) -> str | None:
    """A CRM team value as the scope names it: the policy's key, else the CRM's name."""
    if not crm_team:
        return None
    return policy.team_key(crm_team) or crm_team


def _teams_of(policy: Policy, me: dict, users: list[dict]) -> set[str]:
    """`me`'s team, the teams of the active users reporting to them (directly or not) and the policy
    teams whose `manager` they are."""
    reports: dict[str, list[dict]] = {}
    for u in users:
        if u["manager_id"] and u["is_active"]:
            reports.setdefault(u["manager_id"], []).append(u)
    teams = {_team(policy, me["team"])}
    seen, todo = {me["user_id"]}, [me["user_id"]]
    while todo:
        for report in reports.get(todo.pop(), []):
            if report["user_id"] not in seen:
                seen.add(report["user_id"])
                todo.append(report["user_id"])
                teams.add(_team(policy, report["team"]))
    teams |= {key for key, team in policy.teams.items() if team.manager == me["user_id"]}
    return {team for team in teams if team}


def _spellings(policy: Policy, teams: Iterable[str], users: list[dict]) -> set[str]:
    """Every value the store may hold for the teams: clocks carry the policy key, users the CRM's name."""
    keys = set(teams)
    names = set(keys)
    for key in keys:
        team = policy.teams.get(key)
        if team is not None:
            names.update(team.crm_names)
    names.update(u["team"] for u in users if u["team"] and _team(policy, u["team"]) in keys)
    return names
