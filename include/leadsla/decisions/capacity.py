"""Systemic breach: a team whose day is mostly breaches gets ONE capacity alert to leadership.

When more than `policy.systemic.share` (default 60 %) of a team's clocks started today - the
team's calendar day, in the team's timezone - have breached (and at least `min_clocks` started),
the problem is capacity, not one rep. Leadership (`policy.systemic.notify`, the VP contacts) then
gets one capacity alert per team and day (a notice naming the team, the share and the hours), and
the individual leadership breach messages of that team's clocks are rolled up into it (never
sent). Reps and managers still get their own breach messages. Only messages nobody tried to send
are rolled up, so nothing already on its way is withdrawn. Pure: every time comes from the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pandas as pd

from leadsla.decisions.keys import normalise_recipient
from leadsla.decisions.plan import CheckpointId, Notice, Queued, RollUp
from leadsla.policy import Policy

SOURCE = "capacity"


@dataclass(frozen=True)
class TeamDay:
    """One team's day so far: how many clocks started, how many of them breached, and when."""

    team: str
    timezone: str
    day: dt.date
    day_start: dt.datetime  # local midnight, aware
    started: int
    breached: int
    first_start: dt.datetime
    last_start: dt.datetime
    first_breach: dt.datetime
    last_breach: dt.datetime

    @property
    def share(self) -> float:
        return self.breached / self.started if self.started else 0.0


def systemic_teams(clocks: pd.DataFrame, policy: Policy, now: dt.datetime) -> list[TeamDay]:
    """Teams over the systemic threshold today (their own calendar day at `now`)."""
    rule = policy.systemic
    found: list[TeamDay] = []
    if clocks.empty:
        return found
    for team, group in clocks[clocks["team"].notna()].groupby("team", sort=True):
        tz = policy.calendar(policy.team_calendar(str(team))).timezone
        zone = ZoneInfo(tz)
        today = now.astimezone(zone).date()
        starts = pd.to_datetime(group["clock_start"], utc=True)
        mine = group[starts.dt.tz_convert(tz).dt.date == today]
        if len(mine) < rule.min_clocks:
            continue
        breached_at = pd.to_datetime(mine["breached_at"], utc=True)
        breached = mine[breached_at.notna() & (breached_at <= pd.Timestamp(now))]
        if len(breached) / len(mine) <= rule.share:
            continue
        b = pd.to_datetime(breached["breached_at"], utc=True)
        s = pd.to_datetime(mine["clock_start"], utc=True)
        found.append(
            TeamDay(
                team=str(team),
                timezone=tz,
                day=today,
                day_start=dt.datetime.combine(today, dt.time(0), tzinfo=zone),
                started=len(mine),
                breached=len(breached),
                first_start=s.min().to_pydatetime(),
                last_start=s.max().to_pydatetime(),
                first_breach=b.min().to_pydatetime(),
                last_breach=b.max().to_pydatetime(),
            )
        )
    return found


def _hhmm(instant: dt.datetime, tz: str) -> str:
    return instant.astimezone(ZoneInfo(tz)).strftime("%H:%M")


def _lines(day: TeamDay, threshold: float) -> list[str]:
    tz = day.timezone
    return [
        f"{day.breached} of {day.started} clocks started today ({day.day.isoformat()}, {tz}) in team "
        f"{day.team} have breached: {day.share:.0%}, above the {threshold:.0%} capacity threshold.",
        f"Clocks started between {_hhmm(day.first_start, tz)} and {_hhmm(day.last_start, tz)}; "
        f"breaches between {_hhmm(day.first_breach, tz)} and {_hhmm(day.last_breach, tz)} ({tz}).",
        "This looks like a capacity problem, not one rep: the individual breach e-mails to leadership "
        "for this team are rolled up into this alert today; reps and managers still get theirs.",
    ]


def decide_capacity(
    clocks: pd.DataFrame,
    policy: Policy,
    now: dt.datetime,
    queued: Sequence[Queued],
    handled: frozenset[CheckpointId] | set[CheckpointId] = frozenset(),
) -> tuple[list[Notice], list[RollUp]]:
    """Each systemic team's capacity alert (once per team and day) and the leadership breach
    messages it replaces.

    Args:
        clocks: the evaluation's clocks at `now`.
        queued: the outbox's pending rows plus the messages this run adds, in outbox order.
        handled: checkpoints already acted on; a team-day whose capacity alert is among them is
            not alerted again (its later breaches still roll up into it).

    Returns:
        (notices, roll-ups): the new capacity alerts, and the queued rows folded into them.
    """
    rule = policy.systemic
    days = systemic_teams(clocks, policy, now)
    if not days:
        return [], []
    leaders: list[tuple[str, str]] = []  # (channel, address)
    for role in rule.notify:
        contact = policy.contacts.get(role)
        if contact is None:
            continue
        leaders += [(ch, addr) for ch, addr in (("email", contact.email), ("slack", contact.slack)) if addr]
    addresses = {normalise_recipient(addr) for _, addr in leaders}
    notices: list[Notice] = []
    roll_ups: list[RollUp] = []
    rolled: set[str] = set()
    for day in days:
        notice = Notice(
            source=SOURCE,
            subject=day.team,
            opened_at=day.day_start,
            checkpoint="capacity",
            recipients=tuple(leaders),
            title=f"Capacity alert: {day.team} breached {day.breached} of {day.started} clocks today",
            severity="critical",
            lines=tuple(_lines(day, rule.share)),
            audit_event="capacity_alert",
            actor="sla_monitor",
            audit_detail={
                "team": day.team,
                "day": day.day.isoformat(),
                "started": day.started,
                "breached": day.breached,
                "share": round(day.share, 4),
                "threshold": rule.share,
                # The escalation ladder's systemic rung (`decisions.ladder`): why leadership is told.
                "ladder_rule": "systemic",
            },
        )
        if (SOURCE, None, day.day_start, "capacity") not in handled:
            notices.append(notice)
        keys = {
            (channel, normalise_recipient(address)): notice.key(channel, address)
            for channel, address in leaders
        }
        for row in queued:
            if row.key in rolled or not _rolls_up(row, day, addresses):
                continue
            rolled.add(row.key)
            roll_ups.append(
                RollUp(row=row, team=day.team, capacity_key=keys.get((row.channel, row.recipient)))
            )
    return notices, roll_ups


def _rolls_up(row: Queued, day: TeamDay, leaders: set[str]) -> bool:
    """A leadership breach message about one of this team's clocks of this day, never tried."""
    if not (row.checkpoint == "breach" and row.untouched and row.channel in ("email", "slack")):
        return False
    if row.recipient not in leaders or ((row.payload or {}).get("team") or {}).get("name") != day.team:
        return False
    if row.clock_start is None:
        return False
    # A clock of another day: its breach is not part of today's capacity problem.
    return pd.Timestamp(row.clock_start).tz_convert(day.timezone).date() == day.day
