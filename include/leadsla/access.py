"""The policy's `access:` section: who may open the War Room, and which teams' leads each sees.

Declared in the SLA policy and versioned with it; validated on load (all-or-nothing, with the
rest of the policy). What it says:

- `requires`: what Airflow's auth manager must allow before the War Room shows anything: read
  (GET) access to each of `dags` (the DAGs whose output the page shows) and, when named, the
  `custom_view` (a plugin view the auth manager knows, e.g. a FAB "can_read on War Room"
  permission). The website itself (`AccessView.WEBSITE`) is always asked too.
- `all_teams`: the Airflow roles (as the auth manager's user carries them: SimpleAuthManager's
  `role`, FAB's `roles`; compared case-insensitively) and Airflow user names that see every team:
  RevOps, admins.
- `crm_users`: Airflow user name -> the e-mail of the CRM user they are, for auth managers whose
  users carry no e-mail (SimpleAuthManager). Everyone else is matched by their own e-mail (FAB's
  `email`), or by a user name that is an e-mail address. Anyone else not seeing all teams sees
  only their CRM user's team and the teams of the people who report to them (the War Room reads
  the CRM users from the store: `leadsla.war_room.access`).

Pure: no store, no Airflow. The policy checks the section's shape; the War Room applies it.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: The DAGs whose output the War Room shows: the CRM mirror, the clocks, routing's decisions.
READ_DAGS = ("crm_sync", "sla_monitor", "lead_routing")
#: Airflow's admin role, as SimpleAuthManager (ADMIN) and FAB (Admin) spell it.
ADMIN_ROLE = "Admin"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DAG_ID = re.compile(r"^[A-Za-z0-9_.~:+-]+$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("expected an e-mail address such as rita@example.com")
    return value.strip()


def _dag_id(value: str) -> str:
    if not _DAG_ID.match(value):
        raise ValueError("expected a DAG id (letters, digits, _ . ~ : + -)")
    return value


def _name(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a non-empty name")
    return value.strip()


Email = Annotated[str, AfterValidator(_email)]
DagId = Annotated[str, AfterValidator(_dag_id)]
Name = Annotated[str, AfterValidator(_name)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Requires(_Rule):
    """What the auth manager must allow (all of it) before the War Room answers."""

    dags: list[DagId] = Field(default_factory=lambda: list(READ_DAGS), min_length=1)
    custom_view: Name | None = None


class AllTeams(_Rule):
    """Who sees every team's leads."""

    roles: list[Name] = Field(default_factory=lambda: [ADMIN_ROLE])
    users: list[Name] = Field(default_factory=list)


class Access(_Rule):
    """Who may open the War Room and what each sees (module docstring)."""

    requires: Requires = Field(default_factory=Requires)
    all_teams: AllTeams = Field(default_factory=AllTeams)
    crm_users: dict[Name, Email] = Field(default_factory=dict)

    def sees_all_teams(self, user_name: str, roles: list[str]) -> str | None:
        """Why the user sees every team (`role Admin`, `user revops`), or None."""
        if user_name in self.all_teams.users:
            return f"user {user_name}"
        wanted = {role.casefold(): role for role in self.all_teams.roles}
        return next((f"role {wanted[r.casefold()]}" for r in roles if r.casefold() in wanted), None)

    def email_of(self, user_name: str, own_email: str | None) -> str | None:
        """The e-mail an Airflow user is matched on: `crm_users`' entry, else their own, else a user
        name that is an e-mail address; None when there is none."""
        for candidate in (self.crm_users.get(user_name), own_email, user_name):
            if candidate and _EMAIL.match(candidate.strip()):
                return candidate.strip()
        return None
