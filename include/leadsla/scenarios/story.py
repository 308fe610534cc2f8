"""A scenario's story: the people it involves and what happened to its leads, as store-shaped frames.

`Cast` is the small sales org every scenario uses, built from the policy it is given (the rep on
the team of the SLA under test, their manager, a teammate, a rep on the team whose calendar is
furthest away in time, an automation user, and whoever the policy names as a team manager).
`Story` records a lead's life (status and owner changes, calls, e-mails, to-dos) and gives the
frames `leadsla.engine.evaluate` reads, with the store's column names (`leadsla.store.mirror`),
so the same story can be evaluated in memory or written into a store and run by `sla_monitor`.

Pure: never imports Airflow, the store or the network; every instant is given by the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pandas as pd

from leadsla.policy import CRM_MANAGER, Policy, Sla

#: The frames' columns, as `leadsla.store.mirror.load_frames` gives them.
COLUMNS = {
    "records": [
        "object_type",
        "record_id",
        "name",
        "company",
        "status",
        "owner_id",
        "lead_source",
        "lead_type",
        "account_tier",
        "country",
        "created_at",
        "fields",
        "lock_until",
    ],
    "field_history": [
        "object_type",
        "record_id",
        "field",
        "old_value",
        "new_value",
        "changed_at",
        "changed_by",
    ],
    "activities": [
        "activity_id",
        "kind",
        "who_id",
        "what_id",
        "owner_id",
        "type",
        "subtype",
        "created_at",
        "created_by",
        "status",
        "completed_at",
        "is_deleted",
    ],
    "users": ["user_id", "name", "email", "manager_id", "team", "timezone", "is_active"],
    "queues": ["queue_id", "name"],
}
_INSTANTS = ("created_at", "lock_until", "changed_at", "completed_at")
#: Columns holding a user, record or queue id (renamed by `Frames.with_ids`).
_ID_COLUMNS = (
    "record_id",
    "owner_id",
    "who_id",
    "what_id",
    "user_id",
    "manager_id",
    "created_by",
    "changed_by",
)


@dataclass(frozen=True)
class Person:
    """A CRM user in a scenario."""

    user_id: str
    name: str
    email: str
    team: str | None  # as the CRM spells it (User.Department)
    timezone: str
    manager_id: str | None = None

    def row(self) -> dict:
        return {
            "user_id": self.user_id,
            "name": self.name,
            "email": self.email,
            "manager_id": self.manager_id,
            "team": self.team,
            "timezone": self.timezone,
            "is_active": True,
        }


def _crm_team_name(policy: Policy, team_key: str | None) -> str | None:
    """How the CRM spells a policy team (its first crm_name), or the key itself."""
    if team_key is None:
        return None
    team = policy.teams[team_key]
    return team.crm_names[0] if team.crm_names else team_key


def _user_id(n: int) -> str:
    return f"005SCN{n:09d}AAA"


@dataclass(frozen=True)
class Cast:
    """The people of every scenario, placed on the policy's teams.

    `rep` owns the leads, on the SLA's own team (else the policy's first team); `manager` is the
    rep's manager (User.ManagerId) on the same team; `teammate` shares both; `far_rep` is on the
    team whose calendar's timezone is furthest from the rep's (None when every team shares one
    timezone); `outsider` is on no team; `automation` is the first of the policy's automation
    users, or an integration user the policy does not list; `others` are the users the policy
    names as team managers.
    """

    rep: Person
    manager: Person
    teammate: Person
    far_rep: Person | None
    outsider: Person
    automation: Person
    team_key: str | None
    far_team_key: str | None
    others: tuple[Person, ...] = ()

    @classmethod
    def of(cls, policy: Policy, sla: Sla | None = None) -> Cast:
        team_key = (
            sla.team if sla is not None and sla.team in policy.teams else next(iter(policy.teams), None)
        )
        team = _crm_team_name(policy, team_key)
        tz = policy.calendar(policy.team_calendar(team_key)).timezone
        manager = Person(_user_id(2), "Max Manager", "max.manager@example.com", team, tz)
        rep = Person(_user_id(1), "Rita Rep", "rita.rep@example.com", team, tz, manager.user_id)
        teammate = Person(_user_id(3), "Tom Teammate", "tom.teammate@example.com", team, tz, manager.user_id)
        far_key = _far_team(policy, team_key)
        far_rep = None
        if far_key is not None:
            far_tz = policy.calendar(policy.team_calendar(far_key)).timezone
            far_rep = Person(
                _user_id(4),
                "Fiona Far",
                "fiona.far@example.com",
                _crm_team_name(policy, far_key),
                far_tz,
                manager.user_id,
            )
        outsider = Person(_user_id(5), "Olga Outsider", "olga.outsider@example.com", None, tz)
        automation_id = policy.automation_user_ids[0] if policy.automation_user_ids else _user_id(6)
        automation = Person(automation_id, "Integration User", "integration@example.com", None, tz)
        known = {p.user_id for p in (rep, manager, teammate, far_rep, outsider, automation) if p is not None}
        others = []
        for key, t in policy.teams.items():
            if t.manager and t.manager != CRM_MANAGER and t.manager not in known:
                known.add(t.manager)
                others.append(
                    Person(
                        t.manager,
                        f"Manager of {key}",
                        f"manager.{key}@example.com",
                        _crm_team_name(policy, key),
                        policy.calendar(policy.team_calendar(key)).timezone,
                    )
                )
        return cls(rep, manager, teammate, far_rep, outsider, automation, team_key, far_key, tuple(others))

    @property
    def people(self) -> list[Person]:
        found = [
            self.rep,
            self.manager,
            self.teammate,
            self.far_rep,
            self.outsider,
            self.automation,
            *self.others,
        ]
        return [p for p in found if p is not None]


def _far_team(policy: Policy, team_key: str | None) -> str | None:
    """The team whose calendar's UTC offset differs most from `team_key`'s (on a November
    Tuesday), or None when no team's calendar is in another timezone."""
    at = dt.datetime(2026, 11, 17, 12, tzinfo=dt.UTC)

    def offset(key: str | None) -> float:
        tz = policy.calendar(policy.team_calendar(key)).timezone
        return pd.Timestamp(at).tz_convert(tz).utcoffset().total_seconds()

    home = offset(team_key)
    best, gap = None, 0.0
    for key in policy.teams:
        d = abs(offset(key) - home)
        if d > gap:
            best, gap = key, d
    return best


@dataclass
class Lead:
    """A lead's current fields (its history is in the `Story`)."""

    record_id: str
    owner_id: str
    status: str
    created_at: dt.datetime
    lead_source: str | None = None
    lead_type: str | None = None
    account_tier: str | None = None
    country: str | None = None
    name: str = "Ada Lovelace"
    company: str = "Analytical Engines"
    extra: dict[str, object] = field(default_factory=dict)

    def row(self) -> dict:
        return {
            "object_type": "Lead",
            "record_id": self.record_id,
            "name": self.name,
            "company": self.company,
            "status": self.status,
            "owner_id": self.owner_id,
            "lead_source": self.lead_source,
            "lead_type": self.lead_type,
            "account_tier": self.account_tier,
            "country": self.country,
            "created_at": self.created_at,
            "fields": {
                "Status": self.status,
                "OwnerId": self.owner_id,
                "LeadSource": self.lead_source,
                **self.extra,
            },
            "lock_until": None,
        }


@dataclass(frozen=True)
class Frames:
    """A story as the engine's input frames (store column names, aware UTC instants)."""

    records: pd.DataFrame
    field_history: pd.DataFrame
    activities: pd.DataFrame
    users: pd.DataFrame
    queues: pd.DataFrame

    def engine_inputs(self) -> dict[str, pd.DataFrame]:
        """The keyword arguments `leadsla.engine.evaluate` takes for the frames."""
        return {
            "records": self.records,
            "field_history": self.field_history,
            "activities": self.activities,
            "users": self.users,
        }

    def with_ids(self, ids: Mapping[str, str]) -> Frames:
        """The same story with other ids (e.g. the ids a CRM gave the same people and leads):
        every id column and the old/new values of ownership changes are renamed."""

        def rename(frame: pd.DataFrame) -> pd.DataFrame:
            frame = frame.copy()
            for column in _ID_COLUMNS:
                if column in frame.columns:
                    frame[column] = frame[column].map(lambda v: ids.get(v, v) if isinstance(v, str) else v)
            if "field" in frame.columns:
                owner = frame["field"] == "OwnerId"
                for column in ("old_value", "new_value"):
                    frame.loc[owner, column] = frame.loc[owner, column].map(lambda v: ids.get(v, v))
            if "fields" in frame.columns:
                frame["fields"] = [
                    {k: ids.get(v, v) if isinstance(v, str) else v for k, v in f.items()}
                    for f in frame["fields"]
                ]
            return frame

        return replace(
            self,
            records=rename(self.records),
            field_history=rename(self.field_history),
            activities=rename(self.activities),
            users=rename(self.users),
        )


class Story:
    """What happened to a scenario's leads, in the order it is told."""

    def __init__(self, cast: Cast, queues: Mapping[str, str] | None = None) -> None:
        self.cast = cast
        self.leads: dict[str, Lead] = {}
        self._history: list[dict] = []
        self._activities: list[dict] = []
        self._queues = dict(queues or {})

    def lead(self, record_id: str, *, status: str, at: dt.datetime, **fields) -> Lead:
        """A lead owned by the cast's rep, created an hour before `at` in `status`."""
        lead = Lead(record_id, self.cast.rep.user_id, status, at - dt.timedelta(hours=1), **fields)
        self.leads[record_id] = lead
        return lead

    def status(self, lead: Lead, at: dt.datetime, new: str, *, by: Person | None = None) -> None:
        """The lead's Status changes to `new` at `at` (a LeadHistory row)."""
        self._change(lead, at, "Status", lead.status, new, by)
        lead.status = new

    def owner(self, lead: Lead, at: dt.datetime, new: Person, *, by: Person | None = None) -> None:
        """The lead moves to another owner at `at`."""
        self._change(lead, at, "OwnerId", lead.owner_id, new.user_id, by)
        lead.owner_id = new.user_id

    def _change(self, lead: Lead, at: dt.datetime, name: str, old: str, new: str, by: Person | None) -> None:
        self._history.append(
            {
                "object_type": "Lead",
                "record_id": lead.record_id,
                "field": name,
                "old_value": old,
                "new_value": new,
                "changed_at": at,
                "changed_by": (by or self.cast.rep).user_id,
            }
        )

    def activity(
        self,
        lead: Lead,
        at: dt.datetime,
        *,
        owner: Person,
        kind: str = "Task",
        type: str = "Call",  # noqa: A002 (the CRM's field name)
        subtype: str | None = "Call",
        status: str | None = "Completed",
        completed_at: dt.datetime | None = None,
        created_by: Person | None = None,
    ) -> None:
        """An activity on the lead: created at `at` by `created_by` (default: its owner); a
        completed Task is completed at `completed_at` (default: `at`), an open one has no
        completion; Events have no status."""
        is_task = kind == "Task"
        done = is_task and status == "Completed"
        self._activities.append(
            {
                "activity_id": f"00TSCN{len(self._activities) + 1:09d}AAA",
                "kind": kind,
                "who_id": lead.record_id,
                "what_id": None,
                "owner_id": owner.user_id,
                "type": type,
                "subtype": subtype,
                "created_at": at,
                "created_by": (created_by or owner).user_id,
                "status": status if is_task else None,
                "completed_at": (completed_at or at) if done else None,
                "is_deleted": False,
            }
        )

    def frames(self) -> Frames:
        def frame(name: str, rows: list[dict]) -> pd.DataFrame:
            out = pd.DataFrame(rows, columns=COLUMNS[name])
            for column in _INSTANTS:
                if column in out.columns:
                    out[column] = pd.to_datetime(out[column], utc=True)
            return out

        return Frames(
            records=frame("records", [lead.row() for lead in self.leads.values()]),
            field_history=frame("field_history", self._history),
            activities=frame("activities", self._activities),
            users=frame("users", [p.row() for p in self.cast.people]),
            queues=frame("queues", [{"queue_id": q, "name": n} for n, q in self._queues.items()]),
        )
