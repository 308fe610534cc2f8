"""Who a checkpoint tells, and when they can be told: roles resolved to people, working hours.

Roles (policy `notify` lists): ``owner`` (the clock's owner), ``owner_manager`` (the owner's
User.ManagerId), ``owner_director`` (that manager's ManagerId: the escalation ladder's director),
``team_manager`` (the policy's `manager` of the owner's team, else of the SLA's
team; ``crm``: whom most of that team reports to), ``vp_*`` and any other name in
the policy's `contacts`, ``queue:<name>`` (the Slack channel of the team whose queue it is) and
``channel:<name>`` (that Slack channel).
A role that resolves to nobody resolves to an empty list, never to a guess. Quiet hours: a
person is told when their team calendar is open (or, for contacts without a team, outside the
policy's quiet hours). Pure: no store, no wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadsla.decisions.cells import cell_text
from leadsla.decisions.phones import normalise_phone
from leadsla.policy import CRM_MANAGER, Policy


@dataclass(frozen=True)
class Person:
    """Someone (or a shared channel) to tell, with where and when they can be reached."""

    role: str
    name: str
    email: str | None
    slack: str | None  # an e-mail (DM via users.lookupByEmail) or a channel id
    timezone: str
    calendar: str | None  # the team calendar whose hours are this person's working hours
    user_id: str | None = None
    fallback_channel: str | None = None
    #: The CRM user's MobilePhone in international form (`leadsla.decisions.phones`); None: no number.
    mobile: str | None = None

    def address(self, channel: str) -> str | None:
        if channel == "sms":
            return self.mobile
        return self.email if channel == "email" else self.slack


class Directory:
    """Users, queues and policy contacts, to resolve roles to people."""

    def __init__(self, policy: Policy, users: pd.DataFrame, queues: pd.DataFrame | None = None) -> None:
        self.policy = policy
        self.users = {str(r["user_id"]): r for r in users.to_dict("records")}
        self.queues = (
            {} if queues is None else {str(r["name"]): str(r["queue_id"]) for r in queues.to_dict("records")}
        )

    def team_timezone(self, team: str | None) -> str:
        return self.policy.calendar(self.policy.team_calendar(team)).timezone

    def team_channel(self, team: str | None) -> str | None:
        found = self.policy.team(team)
        return found.slack_channel if found is not None else None

    def user(self, user_id: str | None, role: str) -> Person | None:
        row = self.users.get(str(user_id)) if user_id else None
        if row is None or not cell_text(row.get("email")):
            return None
        team = cell_text(row.get("team"))
        email = str(row["email"])
        return Person(
            role=role,
            name=cell_text(row.get("name")) or email,
            email=email,
            slack=email,
            timezone=cell_text(row.get("timezone")) or self.team_timezone(team),
            calendar=self.policy.team_calendar(team),
            user_id=str(user_id),
            fallback_channel=self.team_channel(team),
            mobile=normalise_phone(_field(row, "MobilePhone")),
        )

    def manager_of(self, user_id: str | None) -> str | None:
        row = self.users.get(str(user_id)) if user_id else None
        return cell_text(row.get("manager_id")) if row is not None else None

    def team_manager(self, team: str | None, sla_team: str | None = None) -> str | None:
        """The CRM user id of the manager accountable for a clock of `team`: that team's manager,
        else (the owner's team names none) the SLA's own team's. A manager of ``crm`` is whom most
        of the team's active members report to (User.ManagerId; ties: the lowest id)."""
        for key in (self.policy.team_key(team), sla_team):
            found = self.policy.teams.get(key) if key else None
            if found is None or not found.manager:
                continue
            if found.manager != CRM_MANAGER:
                return found.manager
            return self._reported_to(key)
        return None

    def _reported_to(self, team_key: str) -> str | None:
        managers = Counter(
            manager
            for row in self.users.values()
            if self.policy.team_key(cell_text(row.get("team"))) == team_key
            and bool(row.get("is_active", True))
            and (manager := cell_text(row.get("manager_id")))
        )
        if not managers:
            return None
        most = max(managers.values())
        return min(m for m, n in managers.items() if n == most)

    def resolve(
        self, role: str, owner_id: str | None, team: str | None, sla_team: str | None = None
    ) -> list[Person]:
        """The people a role names for a clock owned by `owner_id` in `team` of an SLA accountable
        to `sla_team` (empty: nobody)."""
        if role == "owner":
            found = self.user(owner_id, role)
        elif role == "owner_manager":
            found = self.user(self.manager_of(owner_id), role)
        elif role == "owner_director":
            found = self.user(self.manager_of(self.manager_of(owner_id)), role)
        elif role == "team_manager":
            found = self.user(self.team_manager(team, sla_team), role)
        elif role.startswith("channel:"):
            # A Slack channel named in the policy (an id such as C0123, or #name): Slack only.
            channel = role.split(":", 1)[1].strip()
            found = (
                Person(
                    role=role,
                    name=channel,
                    email=None,
                    slack=channel,
                    timezone=self.team_timezone(team),
                    calendar=self.policy.team_calendar(team),
                )
                if channel
                else None
            )
        elif role.startswith("queue:"):
            name = role.split(":", 1)[1]
            channel = next((t.slack_channel for t in self.policy.teams.values() if t.queue == name), None)
            found = (
                None
                if channel is None
                else Person(
                    role=role,
                    name=name,
                    email=None,
                    slack=channel,
                    timezone=self.team_timezone(team),
                    calendar=self.policy.team_calendar(team),
                )
            )
        elif role in self.policy.contacts:
            contact = self.policy.contacts[role]
            qh = self.policy.quiet_hours
            found = Person(
                role=role,
                name=contact.name if getattr(contact, "name", None) else role.replace("_", " ").title(),
                email=contact.email,
                slack=contact.slack,
                timezone=contact.timezone or (qh.default_timezone if qh else self.team_timezone(None)),
                calendar=None,
                user_id=contact.user_id,
            )
        else:
            found = None
        return [found] if found is not None else []


def _field(row: dict, name: str) -> str | None:
    """A raw CRM field of a user row (its `fields` JSON, when the frame carries it)."""
    fields = row.get("fields")
    return cell_text(fields.get(name)) if isinstance(fields, dict) else None


def _quiet_hours_open(policy: Policy, at: dt.datetime, timezone: str) -> dt.datetime:
    """The first instant at or after `at` outside the policy's quiet hours, in `timezone`."""
    qh = policy.quiet_hours
    if qh is None:
        return at
    from zoneinfo import ZoneInfo

    local = at.astimezone(ZoneInfo(timezone))
    start = dt.time.fromisoformat(qh.start)
    end = dt.time.fromisoformat(qh.end)
    t = local.time()
    quiet = (t >= start or t < end) if start > end else (start <= t < end)
    if not quiet:
        return at
    day = local.date() if t < end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=ZoneInfo(timezone)).astimezone(dt.UTC)


def next_opening(policy: Policy, person: Person, at: dt.datetime) -> dt.datetime:
    """When `person` is next at work at or after `at`: their team calendar, else the quiet-hours window."""
    if person.calendar is None:
        return _quiet_hours_open(policy, at, person.timezone)
    cal = policy.calendar(person.calendar)
    if cal.is_open(np.array([int(at.timestamp())]))[0]:
        return at
    # One open second after `at` has passed at opening + 1 s: the opening is one second before.
    return cal.deadline(at, 1) - dt.timedelta(seconds=1)
