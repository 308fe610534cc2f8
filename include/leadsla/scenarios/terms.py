"""What a policy promises for a lead, worked out independently of the engine: the scenarios' oracle.

Which SLA watches a status, which tier a lead gets (first match wins, the default last), the
calendar its time counts on, its target (the out-of-hours target when it starts outside hours),
each checkpoint's offset, and who each checkpoint tells. The scenarios build their expectations
from these and `BusinessCalendar.deadline`/`elapsed`, then compare them with what
`leadsla.engine.evaluate` and `leadsla.decisions.monitor.decide` say. When the policy lacks what
a scenario needs, the lookups here raise `NotApplicable` with the reason.

Pure: no Airflow, no store, no network, no wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from leadsla.calendar import BusinessCalendar, format_duration
from leadsla.decisions.keys import normalise_recipient
from leadsla.lifecycle import ObjectLifecycle
from leadsla.policy import (
    CRM_MANAGER,
    OWNER_CALENDAR,
    REAL_TIME_CALENDAR,
    TIER_FIELDS,
    Checkpoint,
    Policy,
    Sla,
    Tier,
    TouchRule,
)
from leadsla.scenarios.story import Cast, Person


class NotApplicable(Exception):  # noqa: N818 (a verdict, not an error)
    """The policy lacks what a scenario needs; the message says what, in RevOps words."""


# --- the lifecycle and the SLAs ------------------------------------------------------------------


def lead_lifecycle(policy: Policy) -> ObjectLifecycle:
    found = policy.lifecycle_model.of("Lead")
    if found is None:
        raise NotApplicable("the lifecycle declares no Lead statuses")
    return found


def funnel_status(policy: Policy, stage: str) -> str:
    """The Lead status the lifecycle counts as funnel stage `stage` (MQL, SAL, ...)."""
    for status, funnel in lead_lifecycle(policy).funnel_stages().items():
        if funnel == stage:
            return status
    raise NotApplicable(f"the lifecycle has no Lead status in funnel stage {stage}")


def sla_started_by(policy: Policy, stage: str) -> tuple[Sla, str]:
    """The first Lead SLA whose clock starts when the lead's status becomes funnel stage `stage`,
    and that status."""
    lc = lead_lifecycle(policy)
    status = funnel_status(policy, stage)
    for sla in policy.slas:
        if (
            sla.enabled
            and sla.object == "Lead"
            and sla.start.field == lc.field
            and sla.start.becomes == status
        ):
            return sla, status
    raise NotApplicable(f"no SLA starts when a Lead's {lc.field} becomes {status}")


def touch_rule(sla: Sla) -> TouchRule:
    """The SLA's first touch stop rule."""
    for rule in sla.stop:
        if rule.touch_rule is not None:
            return rule.touch_rule
    raise NotApplicable(f"no stop rule of {sla.id} counts a touch (a call, e-mail or meeting)")


def stop_statuses(sla: Sla, field: str) -> set[str]:
    """The values of `field` a stop rule of the SLA ends the clock on (met, not handed on)."""
    return {v for rule in sla.stop if rule.field == field and rule.in_ for v in rule.in_}


def pause_status(policy: Policy, sla: Sla) -> str:
    """The first lifecycle status that pauses the SLA's clocks."""
    lc = lead_lifecycle(policy)
    for rule in sla.pause:
        if rule.field == lc.field and rule.in_:
            return rule.in_[0]
    raise NotApplicable(f"no pause rule of {sla.id} pauses the clock on a {lc.field} (e.g. Nurture)")


def ended_state(sla: Sla, field: str, status: str, *, late: bool = False) -> str:
    """The state of a clock that ends because the record moved to `status`: met when a stop rule
    names it, otherwise handed on (the record left the watched state)."""
    state = "met" if status in stop_statuses(sla, field) else "handed_on"
    return f"{state}_late" if late else state


def real_touch(touch: TouchRule) -> tuple[str, str, str]:
    """(kind, type, subtype) of an activity the touch rule counts: a logged call when it can."""
    kind = "Task" if "Task" in touch.kinds else touch.kinds[0]
    preferred = ["Call", "Email", "Meeting"] if kind == "Task" else ["Meeting", "Call", "Email"]
    kind_type = next((t for t in preferred if touch.types is None or t in touch.types), None)
    if kind_type is None:
        kind_type = touch.types[0]
    if touch.subtypes:
        subtype = next((s for s in touch.subtypes if s not in touch.exclude_subtypes), touch.subtypes[0])
    else:
        subtype = {"Call": "Call", "Email": "Email"}.get(kind_type, "Task" if kind == "Task" else "Event")
    return kind, kind_type, subtype


# --- tiers, calendars, targets -------------------------------------------------------------------

#: Values a lead gets for the tier fields a scenario does not care about, tried in order until one
#: no tier accepts (so the lead falls through to the tier the scenario aims at, or the default).
_NEUTRAL = {
    "lead_source": ["Partner", "Referral", "Unlisted source"],
    "lead_type": ["Other", "Unlisted type"],
    "account_tier": ["SMB", "Mid-Market", "Unlisted tier"],
    "country": ["US", "Unlisted country"],
}


def tier_for(sla: Sla, fields: Mapping[str, object]) -> Tier:
    """The tier a record with these fields gets: the first whose conditions all hold (missing
    values never match), else the default (listed last)."""
    for tier in sla.tiers:
        if tier.default or all(fields.get(name) in accepted for name, accepted in (tier.when or {}).items()):
            return tier
    return sla.tiers[-1]


def find_tier(sla: Sla, field: str, values: Iterable[str]) -> tuple[Tier, str]:
    """The first non-default tier whose condition on `field` accepts one of `values`, and that value."""
    for tier in sla.tiers:
        accepted = (tier.when or {}).get(field, [])
        for value in values:
            if value in accepted:
                return tier, value
    wanted = " or ".join(values)
    raise NotApplicable(f"{sla.id} has no tier for {field.replace('_', ' ')} {wanted}")


def lead_fields(sla: Sla, aim: Tier | None = None, **wanted: str) -> dict[str, str]:
    """Tier fields for a lead: `wanted` values, the aimed-at tier's conditions, and neutral values
    (accepted by no tier) for the rest."""
    taken = {v for t in sla.tiers for accepted in (t.when or {}).values() for v in accepted}
    fields = {
        name: next((v for v in values if v not in taken), values[-1])
        for name, values in _NEUTRAL.items()
        if name in TIER_FIELDS
    }
    if aim is not None:
        for name, accepted in (aim.when or {}).items():
            if name != "status":
                fields[name] = wanted.get(name) if wanted.get(name) in accepted else accepted[0]
    return fields | wanted


@dataclass(frozen=True)
class Terms:
    """A clock's terms under the policy: tier, the calendar its time counts on, target."""

    sla: Sla
    tier: Tier
    calendar_name: str
    calendar: BusinessCalendar
    target: int  # seconds
    outside_hours: bool  # the clock started outside hours and the tier has an out-of-hours target

    def offset(self, checkpoint: Checkpoint) -> int:
        """A checkpoint's offset from the clock start, in the clock's (business) seconds."""
        kind, value = checkpoint.offset()
        if kind == "percent":
            return int(round(self.target * value / 100))
        if kind == "elapsed":
            return int(value)
        return max(0, int(self.target + value))

    def checkpoints(self) -> list[tuple[Checkpoint, int]]:
        """Every checkpoint and the breach with its offset, in the order they are reached (by
        offset, then as declared)."""
        found = [(cp, self.offset(cp)) for cp in self.sla.all_checkpoints()]
        return sorted(found, key=lambda pair: pair[1])

    @property
    def breach(self) -> tuple[Checkpoint, int]:
        cp = self.sla.breach.as_checkpoint()
        return cp, self.offset(cp)

    def deadline(self, start: dt.datetime, seconds: int | None = None) -> dt.datetime:
        return self.calendar.deadline(start, self.target if seconds is None else seconds)

    def describe(self) -> str:
        days = self.tier.target.time == "calendar"
        kind = "real time" if days else f"business time on {self.calendar_name}"
        extra = " (out-of-hours target)" if self.outside_hours else ""
        return f"tier {self.tier.id}: {format_duration(self.target, days=days)}{extra} in {kind}"


def calendar_name(policy: Policy, tier: Tier, team_key: str | None) -> str:
    target = tier.target
    if target.time == "calendar":
        return REAL_TIME_CALENDAR
    return policy.team_calendar(team_key) if target.calendar == OWNER_CALENDAR else target.calendar


def terms(
    policy: Policy, sla: Sla, fields: Mapping[str, object], team_key: str | None, start: dt.datetime
) -> Terms:
    """The terms of a clock of `sla` starting at `start` on a record with `fields`, owned by a
    member of `team_key`."""
    tier = tier_for(sla, fields)
    name = calendar_name(policy, tier, team_key)
    cal = policy.calendar(name)
    target = tier.target.seconds
    outside = tier.target.outside_hours_seconds is not None and not is_open(cal, start)
    if outside:
        target = tier.target.outside_hours_seconds
    return Terms(sla, tier, name, cal, target, outside)


# --- instants --------------------------------------------------------------------------------------


def is_open(cal: BusinessCalendar, at: dt.datetime) -> bool:
    return bool(cal.is_open(np.array([int(at.timestamp())]))[0])


def local(cal: BusinessCalendar, day: dt.date, time: str) -> dt.datetime:
    """A local wall-clock time on `day` in the calendar's timezone, as aware UTC."""
    clock = dt.time.fromisoformat(time)
    return dt.datetime.combine(day, clock, tzinfo=ZoneInfo(cal.timezone)).astimezone(dt.UTC)


def local_date(cal: BusinessCalendar, at: dt.datetime) -> dt.date:
    """The calendar's local date at an instant."""
    return at.astimezone(ZoneInfo(cal.timezone)).date()


def opening(cal: BusinessCalendar, at: dt.datetime) -> dt.datetime:
    """`at` if the calendar is open then, else its next opening."""
    if is_open(cal, at):
        return at
    # One open second after `at` has passed at opening + 1 s.
    return cal.deadline(at, 1) - dt.timedelta(seconds=1)


def in_hours(cal: BusinessCalendar, day: dt.date, time: str = "10:00") -> dt.datetime:
    """`time` on `day` local, or the calendar's next opening after it."""
    return opening(cal, local(cal, day, time))


def show(cal: BusinessCalendar, at: object) -> str:
    """An instant as RevOps reads it: local to the calendar, e.g. "Tue 2026-11-17 14:00 EST"."""
    if at is None or at is pd.NaT:
        return "none"
    if not isinstance(at, dt.datetime):
        return str(at)
    zone = "UTC" if cal.name == REAL_TIME_CALENDAR else cal.timezone
    return at.astimezone(ZoneInfo(zone)).strftime("%a %Y-%m-%d %H:%M %Z")


def holiday(cal: BusinessCalendar, after: dt.date, days: int = 400) -> tuple[dt.date, str]:
    """The first holiday after `after` that falls on a day the calendar would otherwise be open."""
    for n in range(1, days + 1):
        day = after + dt.timedelta(days=n)
        name = cal.holiday_name(day)
        if name and cal.hours[day.weekday()]:
            return day, name
    raise NotApplicable(
        f"the calendar {cal.name} has no holiday on a working day in the {days} days after {after}"
    )


# --- who is told -------------------------------------------------------------------------------------


def told(
    policy: Policy,
    checkpoint: Checkpoint,
    owner: Person,
    users: Iterable[Person],
    sla: Sla,
    team_key: str | None,
) -> set[tuple[str, str]]:
    """(channel, address) of everyone a checkpoint tells about a clock owned by `owner`, by role:
    the owner and their manager (User.ManagerId), the team manager the policy names (``crm``:
    whom most of the team reports to), contacts (VPs), a queue's team channel, a channel."""
    people = {p.user_id: p for p in users}
    out: set[tuple[str, str]] = set()

    def add(channel: str, address: str | None) -> None:
        if address:
            out.add((channel, normalise_recipient(address)))

    for role in checkpoint.notify:
        person: Person | None = None
        if role == "owner":
            person = owner
        elif role == "owner_manager":
            person = people.get(owner.manager_id or "")
        elif role == "team_manager":
            person = people.get(_team_manager(policy, people.values(), team_key, sla.team) or "")
        elif role.startswith("queue:"):
            team = next((t for t in policy.teams.values() if t.queue == role[6:]), None)
            if team is not None and "slack" in checkpoint.channels:
                add("slack", team.slack_channel)
            continue
        elif role.startswith("channel:"):
            if "slack" in checkpoint.channels:
                add("slack", role.split(":", 1)[1])
            continue
        elif role in policy.contacts:
            contact = policy.contacts[role]
            for channel in checkpoint.channels:
                if channel != "sms":  # a contact has no mobile number: not texted
                    add(channel, contact.email if channel == "email" else contact.slack)
            continue
        if person is not None:
            for channel in checkpoint.channels:
                # A scenario's people have no MobilePhone: a text due to them goes by e-mail.
                add("email" if channel == "sms" else channel, person.email)
    return out


def _team_manager(
    policy: Policy, people: Iterable[Person], team_key: str | None, sla_team: str | None
) -> str | None:
    for key in (team_key, sla_team):
        team = policy.teams.get(key) if key else None
        if team is None or not team.manager:
            continue
        if team.manager != CRM_MANAGER:
            return team.manager
        managers = Counter(
            p.manager_id for p in people if policy.team_key(p.team) == key and p.manager_id is not None
        )
        if managers:
            most = max(managers.values())
            return min(m for m, n in managers.items() if n == most)
    return None


def reassigned_to(policy: Policy, sla: Sla, cast: Cast, queues: Mapping[str, str]) -> tuple[str, str] | None:
    """(rule, new owner id) of a breached lead owned by the cast's rep: the first reassignment
    rule that names someone (the rep's manager, the team manager, a queue that exists)."""
    for rule in sla.breach.reassign:
        if rule == "owner_manager" and cast.rep.manager_id:
            return rule, cast.rep.manager_id
        if rule == "team_manager":
            manager = _team_manager(policy, cast.people, cast.team_key, sla.team)
            if manager:
                return rule, manager
        if rule.startswith("queue:") and rule[6:] in queues:
            return rule, queues[rule[6:]]
    return None


def breach_queues(policy: Policy) -> dict[str, str]:
    """A queue id for every queue a breach rule reassigns to (the org's queues), by name."""
    names = [r[6:] for sla in policy.slas for r in sla.breach.reassign if r.startswith("queue:")]
    return {name: f"00GSCN{n:09d}AAA" for n, name in enumerate(dict.fromkeys(names), start=1)}
