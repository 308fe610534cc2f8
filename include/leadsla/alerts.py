"""Checkpoint actions: an evaluation's due checkpoints -> outbox Actions, recipients resolved by role.

Roles (policy `notify` lists): ``owner`` (the clock's owner), ``owner_manager`` (the owner's
User.ManagerId), ``team_manager`` (the policy team's `manager`), ``vp_*`` and any other name in
the policy's `contacts`, and ``queue:<name>`` (the Slack channel of the team whose queue it is).
A role that resolves to nobody is reported in `Plan.unresolved`, never guessed.

Catch-up: of a clock's reached checkpoints not yet handled, only the latest is sent; the earlier
ones are `superseded` (audited, not sent). Quiet hours: a message due while its recipient's team
calendar is closed waits for the next opening (`not_before`), except breaches of critical tiers.
Pure: no store, no Airflow, no wall clock; every time comes from the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadsla.notify.outbox import Action, normalise_recipient
from leadsla.policy import Policy

#: The identity of a checkpoint of a clock: (sla_id, record_id, clock_start, checkpoint).
CheckpointId = tuple[str, str, dt.datetime, str]


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

    def address(self, channel: str) -> str | None:
        return self.email if channel == "email" else self.slack


@dataclass
class Plan:
    """What one evaluation decided: messages to queue, checkpoints to record, breaches to act on."""

    actions: list[Action] = field(default_factory=list)
    due: list[dict[str, Any]] = field(default_factory=list)  # checkpoint rows acted on now
    superseded: list[dict[str, Any]] = field(default_factory=list)
    breaches: list[dict[str, Any]] = field(default_factory=list)  # clock rows whose breach is due now
    unresolved: list[str] = field(default_factory=list)


def _ts(value: Any) -> dt.datetime:
    return pd.Timestamp(value).to_pydatetime()


def _str(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return str(value)


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
        if row is None or not _str(row.get("email")):
            return None
        team = _str(row.get("team"))
        email = str(row["email"])
        return Person(
            role=role,
            name=_str(row.get("name")) or email,
            email=email,
            slack=email,
            timezone=_str(row.get("timezone")) or self.team_timezone(team),
            calendar=self.policy.team_calendar(team),
            user_id=str(user_id),
            fallback_channel=self.team_channel(team),
        )

    def manager_of(self, user_id: str | None) -> str | None:
        row = self.users.get(str(user_id)) if user_id else None
        return _str(row.get("manager_id")) if row is not None else None

    def resolve(self, role: str, owner_id: str | None, team: str | None) -> list[Person]:
        """The people a role names for a clock owned by `owner_id` in `team` (empty: nobody)."""
        if role == "owner":
            found = self.user(owner_id, role)
        elif role == "owner_manager":
            found = self.user(self.manager_of(owner_id), role)
        elif role == "team_manager":
            manager = getattr(self.policy.team(team), "manager", None)
            found = self.user(manager, role)
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
                timezone=qh.default_timezone if qh else self.team_timezone(None),
                calendar=None,
                user_id=contact.user_id,
            )
        else:
            found = None
        return [found] if found is not None else []


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


def _checkpoint_def(policy: Policy, sla_id: str, checkpoint: str):
    sla = policy.sla(sla_id)
    return sla, next(cp for cp in sla.all_checkpoints() if cp.id == checkpoint)


def plan(
    clocks: pd.DataFrame,
    checkpoints: pd.DataFrame,
    records: pd.DataFrame,
    directory: Directory,
    *,
    now: dt.datetime,
    handled: Iterable[CheckpointId],
    instance_url: str,
) -> Plan:
    """Decide the messages for every reached, not yet handled checkpoint of every open clock.

    Args:
        clocks, checkpoints: `leadsla.engine.Evaluation` frames at `now` (the payload's elapsed and
            remaining business time are the clock's `elapsed_seconds` at `now`).
        records: the store's records (record_id, name, company, lead_source).
        handled: checkpoints already queued or recorded as superseded (from the outbox/audit).
        now: the run's time; a message not held by quiet hours has `not_before = now`.

    Returns:
        The Plan. Running the same inputs again gives the same actions (keys included).
    """
    policy = directory.policy
    out = Plan()
    handled_set = {(s, r, pd.Timestamp(c).to_pydatetime(), k) for s, r, c, k in handled}
    reached = checkpoints[checkpoints["status"].isin(["due", "superseded"])]
    if reached.empty:
        return out
    # Only the clocks and records of reached checkpoints become dicts: the whole records frame
    # (raw CRM fields included) is tens of thousands of rows, a handful of which are reached.
    ids = set(reached["record_id"])
    clock_by_id = {
        (r["sla_id"], r["record_id"], _ts(r["clock_start"])): r
        for r in clocks[clocks["record_id"].isin(ids)].to_dict("records")
    }
    record_by_id = {
        str(r["record_id"]): r for r in records[records["record_id"].isin(ids)].to_dict("records")
    }
    handled_by_clock: dict[tuple, set[str]] = {}
    for s, r, c, k in handled_set:
        handled_by_clock.setdefault((s, r, c), set()).add(k)
    open_clocks = clocks[clocks["state"].isin(["running", "paused", "breached"])].groupby("owner_id").size()
    for (sla_id, record_id, clock_start), group in reached.groupby(
        ["sla_id", "record_id", "clock_start"], sort=True
    ):
        start = _ts(clock_start)
        fresh = [
            r
            for r in group.sort_values("offset_seconds").to_dict("records")
            if (sla_id, record_id, start, r["checkpoint"]) not in handled_set
        ]
        if not fresh:
            continue
        latest = fresh[-1]
        names = set(group["checkpoint"])
        done = handled_by_clock.get((sla_id, record_id, start), set())
        later_handled = any(
            r["checkpoint"] in done and r["offset_seconds"] > latest["offset_seconds"]
            for r in group.to_dict("records")
        ) or bool(done - names)  # not reached here: newer
        if later_handled:  # an old run replayed after a newer one: the newer decision stands
            out.superseded.extend(fresh)
            continue
        out.superseded.extend(fresh[:-1])
        out.due.append(latest)
        clock = clock_by_id[(sla_id, record_id, start)]
        if latest["checkpoint"] == "breach":
            out.breaches.append(clock)
        out.actions.extend(
            _actions(
                policy,
                directory,
                clock,
                latest,
                record_by_id.get(str(record_id), {}),
                int(open_clocks.get(clock["owner_id"], 0)),
                now,
                instance_url,
                out,
            )
        )
    return out


def _actions(
    policy: Policy,
    directory: Directory,
    clock: Mapping[str, Any],
    cp: Mapping[str, Any],
    record: Mapping[str, Any],
    open_clocks: int,
    now: dt.datetime,
    instance_url: str,
    out: Plan,
) -> list[Action]:
    sla, cp_def = _checkpoint_def(policy, clock["sla_id"], cp["checkpoint"])
    owner_id = _str(clock["owner_id"])
    team = _str(clock["team"])
    owner = directory.user(owner_id, "owner")
    kind = "breach" if cp["checkpoint"] == "breach" else "warning"
    reached_at = _ts(cp["reached_at"])
    deadline = _ts(clock["deadline"]) if _str(clock["deadline"]) else reached_at
    team_tz = directory.team_timezone(team)
    # The clock's business time at `now` (never less than the checkpoint's own offset: a reached
    # checkpoint's elapsed time cannot have run backwards).
    elapsed = max(int(clock["elapsed_seconds"]), int(cp["offset_seconds"]))
    # One message per (channel, destination), however many roles name that destination: a rep who
    # is also the team manager gets one DM and one e-mail, and the payload and audit say which
    # roles it covers. The key is derived from the destination (not the role), so it is stable.
    by_destination: dict[tuple[str, str], tuple[Person, list[str]]] = {}
    for role in cp_def.notify:
        people = directory.resolve(role, owner_id, team)
        if not people:
            out.unresolved.append(f"{clock['sla_id']}/{clock['record_id']}/{cp['checkpoint']}: {role}")
        for person in people:
            for channel in cp_def.channels:
                address = person.address(channel)
                if not address:
                    continue
                _, roles = by_destination.setdefault((channel, normalise_recipient(address)), (person, []))
                if role not in roles:
                    roles.append(role)
    actions: list[Action] = []
    for (channel, address), (person, roles) in by_destination.items():
        urgent = kind == "breach" and bool(clock["critical"])
        not_before = now if urgent else max(now, next_opening(policy, person, now))
        payload = {
            "kind": kind,
            "sla_name": sla.name,
            "checkpoint_label": None if kind == "breach" else f"{cp['checkpoint']} checkpoint",
            "lead": {
                "id": str(clock["record_id"]),
                "object_type": clock["object_type"],
                "name": _str(record.get("name")) or str(clock["record_id"]),
                "company": _str(record.get("company")),
                "source": _str(record.get("lead_source")),
                "tier": str(clock["tier"]),
            },
            "owner": {
                "id": owner_id,
                "name": owner.name if owner else (owner_id or "unassigned"),
                "email": owner.email if owner else None,
            },
            "recipient": {
                "name": person.name,
                "email": person.email,
                "timezone": person.timezone,
                "slack_fallback_channel": person.fallback_channel,
            },
            "roles": roles,
            "team": {"name": team or "unassigned", "timezone": team_tz},
            # The situation as of this evaluation (`now`, the run's time), not as of the checkpoint:
            # a breach caught up four days late says "overdue by 4 days", not "by 1 min".
            "target_seconds": int(clock["target_seconds"]),
            "elapsed_seconds": elapsed,
            "remaining_seconds": int(clock["target_seconds"]) - elapsed,
            "evaluated_at": now.isoformat(),
            "deadline": deadline.isoformat(),
            "due_at": reached_at.isoformat(),
            "breached_at": deadline.isoformat() if kind == "breach" else None,
            "open_clocks": open_clocks,
            "instance_url": instance_url,
        }
        actions.append(
            Action(
                sla_id=str(clock["sla_id"]),
                record_id=str(clock["record_id"]),
                clock_start=_ts(clock["clock_start"]),
                checkpoint=str(cp["checkpoint"]),
                recipient=address,
                channel=channel,
                payload=payload,
                not_before=not_before,
            )
        )
    return actions
