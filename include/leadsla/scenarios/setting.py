"""The common opening of the scenarios: the SLA under test, the cast, the week it happens in.

Most scenarios follow one lead through the SLA that starts when a lead becomes SAL (or MQL),
owned by the cast's rep, in the week of Monday 2026-11-16 (no holiday on any shipped calendar).
`Setting` gathers what they share and the small helpers their expectations use.

Pure: no Airflow, no store, no network, no wall clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from leadsla.calendar import BusinessCalendar, format_duration
from leadsla.decisions.plan import Plan
from leadsla.policy import Policy, Sla, Tier
from leadsla.scenarios.case import Checks, Run, destinations, messages_about
from leadsla.scenarios.story import Cast, Lead, Story
from leadsla.scenarios.terms import (
    Terms,
    breach_queues,
    calendar_name,
    in_hours,
    lead_fields,
    lead_lifecycle,
    reassigned_to,
    show,
    sla_started_by,
    terms,
    tier_for,
    told,
)

#: The scenarios' week: leads arrive on Tuesday; Friday evening is that week's Friday.
TUESDAY = dt.date(2026, 11, 17)
FRIDAY = dt.date(2026, 11, 20)


def lead_id(tag: str, n: int = 1) -> str:
    """An 18-character Lead id unique to a scenario (`tag`: up to 6 capital letters)."""
    return f"00Q{tag:X<6}{n:06d}AAA"


def hours(seconds: int) -> str:
    return format_duration(int(seconds), days=False)


@dataclass(frozen=True)
class Setting:
    """The SLA a scenario tests (started by a lead's status becoming `status`), the status the
    lead comes from, the lifecycle field, the cast and the org's queues."""

    policy: Policy
    sla: Sla
    status: str
    before: str
    field: str
    cast: Cast
    queues: dict[str, str]

    @classmethod
    def of(cls, policy: Policy, stage: str = "SAL") -> Setting:
        """Raises `NotApplicable` when no SLA starts at that funnel stage."""
        sla, status = sla_started_by(policy, stage)
        lc = lead_lifecycle(policy)
        names = lc.names
        before = names[names.index(status) - 1] if names.index(status) > 0 else names[0]
        return cls(policy, sla, status, before, lc.field, Cast.of(policy, sla), breach_queues(policy))

    def story(self) -> Story:
        return Story(self.cast, self.queues)

    def fields(self, aim: Tier | None = None, **wanted: str) -> dict[str, str]:
        return lead_fields(self.sla, aim, **wanted)

    def calendar(self, fields: dict[str, str], team_key: str | None = None) -> BusinessCalendar:
        """The calendar a clock on a lead with these fields counts on (before knowing its start)."""
        tier = tier_for(self.sla, fields)
        return self.policy.calendar(calendar_name(self.policy, tier, team_key or self.cast.team_key))

    def terms(self, fields: dict[str, str], start: dt.datetime, team_key: str | None = None) -> Terms:
        return terms(self.policy, self.sla, fields, team_key or self.cast.team_key, start)

    def start(
        self, fields: dict[str, str], day: dt.date = TUESDAY, time: str = "10:00"
    ) -> tuple[dt.datetime, Terms]:
        """When the clock starts (`time` on `day` on its calendar, or the next opening) and its terms."""
        start = in_hours(self.calendar(fields), day, time)
        return start, self.terms(fields, start)

    def watched(
        self, story: Story, record_id: str, start: dt.datetime, fields: dict[str, str], **extra
    ) -> Lead:
        """A lead that enters the watched status at `start` (its clock starts)."""
        lead = story.lead(record_id, status=self.before, at=start, **fields, **extra)
        story.status(lead, start, self.status)
        return lead

    def breach_time(self, t: Terms, start: dt.datetime) -> dt.datetime:
        """When an untouched clock from `start` reaches its breach checkpoint."""
        return t.deadline(start, t.breach[1])


def the_clock(
    run: Run, check: Checks, lead: Lead, sla: Sla, at: dt.datetime | None = None
) -> pd.Series | None:
    """The lead's one clock of the SLA at `at`, or None (a failed check) when there is not exactly one."""
    rows = run.clocks(lead.record_id, sla.id, at)
    if not check.that(f"{lead.record_id}: one {sla.id} clock", len(rows) == 1, f"{len(rows)} clocks"):
        return None
    return rows.iloc[0]


def shown(t: Terms):
    """A formatter for instants on the clock's calendar (for `Checks.equal`)."""
    return lambda at: show(t.calendar, at)


def breach_decided(check: Checks, s: Setting, plan: Plan, lead: Lead, t: Terms, at: dt.datetime) -> str:
    """Check the monitor's breach decision, taken at `at`, for a lead owned by the cast's rep: the
    breach tells everyone the policy's breach names (and nobody else), at once when the tier is
    critical, and the lead is reassigned and locked as the policy says. Returns a note saying who
    was told and where the lead went."""
    breach_cp, _ = t.breach
    sent = messages_about(plan, lead.record_id, s.sla.id, "breach")
    expected = told(s.policy, breach_cp, s.cast.rep, s.cast.people, s.sla, s.cast.team_key)
    ladder = s.sla.ladder if s.sla.laddered else None
    critical_rung = ""
    if ladder is not None and t.tier.critical and ladder.critical_notify():
        # The escalation ladder's critical rung: leadership hears of a critical tier's breach at once.
        rung = ladder.critical
        channels = rung.channels if rung is not None and rung.channels else breach_cp.channels
        at_once = breach_cp.model_copy(update={"notify": ladder.critical_notify(), "channels": channels})
        expected |= told(s.policy, at_once, s.cast.rep, s.cast.people, s.sla, s.cast.team_key)
        critical_rung = f", and (critical tier) {', '.join(ladder.critical_notify())}"
    check.same("breach told", destinations(sent), expected)
    if t.tier.critical:
        held = sorted({m.recipient for m in sent if m.not_before not in (None, at)})
        check.that("a critical breach is not held for working hours", not held, f"held for {held}")
    actions = [a for a in plan.breach_actions if a.record_id == lead.record_id and a.sla_id == s.sla.id]
    note = f"breach told {', '.join(breach_cp.notify)}{critical_rung} by {' and '.join(breach_cp.channels)}"
    if not (s.sla.breach.reassign or s.sla.breach.lock_hours):
        check.equal("breach actions", len(actions), 0)
        return note
    if not check.equal("breach actions", len(actions), 1):
        return note
    target = reassigned_to(s.policy, s.sla, s.cast, s.queues)
    to_owner = target[1] if target else s.cast.rep.user_id
    names = {p.user_id: p.name for p in s.cast.people} | {q: f"queue {n}" for n, q in s.queues.items()}
    check.equal("reassigned to", actions[0].to_owner, to_owner, lambda v: names.get(v, str(v)))
    check.equal("locked for (hours)", actions[0].lock_hours, float(s.sla.breach.lock_hours))
    locked = hours(int(s.sla.breach.lock_hours * 3600))
    return f"{note}; reassigned to {names.get(to_owner, to_owner)}, locked {locked}"
