"""Systemic breach: a team whose day is mostly breaches gets ONE capacity alert to leadership.

When more than `policy.systemic.share` (default 60 %) of a team's clocks started today - the
team's calendar day, in the team's timezone - have breached (and at least `min_clocks` started),
the problem is capacity, not one rep. Leadership (`policy.systemic.notify`, the VP contacts) then
gets one capacity alert per team and day (a notice naming the team, the share and the hours), and
the individual VP breach messages of that team's clocks are rolled up into it: marked
``rolled_up`` in the outbox, audited ``message_rolled_up`` with the capacity alert's key, never
sent. Reps and managers still get their own breach messages.

Runs in the monitor's transaction after the breach messages are queued. Only rows nobody tried
to send (attempts 0, no lease) are rolled up, so nothing already on its way is withdrawn. Never
sends; every time comes from the caller.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from leadsla.notify.outbox import idempotency_key, normalise_recipient
from leadsla.policy import Policy
from leadsla.store.audit import AuditContext, record_many
from leadsla.store.schema import outbox
from leadsla.store.upsert import insert_new

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


def roll_up_capacity(
    conn: sa.Connection, clocks: pd.DataFrame, policy: Policy, now: dt.datetime, context: AuditContext
) -> dict[str, int]:
    """Queue each systemic team's capacity alert (once per team and day) and roll up the VP breach rows.

    Returns:
        Counts: teams (over the threshold now), alerts (new capacity rows), rolled_up (VP rows).
    """
    rule = policy.systemic
    days = systemic_teams(clocks, policy, now)
    counts = {"teams": len(days), "alerts": 0, "rolled_up": 0}
    if not days:
        return counts
    leaders: list[tuple[str, str]] = []  # (channel, address)
    for role in rule.notify:
        contact = policy.contacts.get(role)
        if contact is None:
            continue
        leaders += [(ch, addr) for ch, addr in (("email", contact.email), ("slack", contact.slack)) if addr]
    addresses = {normalise_recipient(addr) for _, addr in leaders}
    o = outbox
    for day in days:
        keys: dict[tuple[str, str], str] = {}
        audits: list[dict[str, Any]] = []
        for channel, address in leaders:
            key = idempotency_key(SOURCE, day.team, day.day_start, "capacity", address, channel)
            keys[(channel, normalise_recipient(address))] = key
            payload = {
                "kind": "notice",
                "severity": "critical",
                "source": SOURCE,
                "subject": day.team,
                "title": f"Capacity alert: {day.team} breached {day.breached} of {day.started} clocks today",
                "lines": _lines(day, rule.share),
            }
            row = {
                "idempotency_key": key,
                "sla_id": SOURCE,
                "record_id": None,
                "clock_start": day.day_start,
                "checkpoint": "capacity",
                "recipient": normalise_recipient(address),
                "channel": channel,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "not_before": now,
            }
            if insert_new(conn, o, [row], key=["idempotency_key"]):
                counts["alerts"] += 1
                audits.append(
                    {
                        "event": "capacity_alert",
                        "at": now,
                        "sla_id": SOURCE,
                        "checkpoint": "capacity",
                        "actor": "sla_monitor",
                        "detail": {
                            "idempotency_key": key,
                            "team": day.team,
                            "day": day.day.isoformat(),
                            "started": day.started,
                            "breached": day.breached,
                            "share": round(day.share, 4),
                            "threshold": rule.share,
                            "channel": channel,
                            "recipient": row["recipient"],
                        },
                    }
                )
        # The team's VP breach rows nobody has tried to send yet roll up into the alert.
        candidates = conn.execute(
            sa.select(
                o.c.outbox_id,
                o.c.idempotency_key,
                o.c.recipient,
                o.c.channel,
                o.c.payload,
                o.c.sla_id,
                o.c.record_id,
                o.c.clock_start,
            ).where(
                o.c.checkpoint == "breach",
                o.c.status == "pending",
                o.c.attempts == 0,
                o.c.claimed_until.is_(None),
                o.c.channel.in_(["email", "slack"]),
                o.c.recipient.in_(sorted(addresses)),
            )
        ).all()
        for row in candidates:
            payload = row.payload or {}
            if (payload.get("team") or {}).get("name") != day.team:
                continue
            start = pd.Timestamp(row.clock_start).tz_convert(day.timezone) if row.clock_start else None
            if start is None or start.date() != day.day:
                continue  # a clock of another day: its breach is not part of today's capacity problem
            done = conn.execute(
                o.update()
                .where(o.c.outbox_id == row.outbox_id, o.c.status == "pending", o.c.attempts == 0)
                .values(status="rolled_up")
            )
            if done.rowcount != 1:
                continue
            counts["rolled_up"] += 1
            audits.append(
                {
                    "event": "message_rolled_up",
                    "at": now,
                    "sla_id": row.sla_id,
                    "record_id": row.record_id,
                    "clock_start": row.clock_start,
                    "checkpoint": "breach",
                    "actor": "sla_monitor",
                    "object_type": (payload.get("lead") or {}).get("object_type"),
                    "detail": {
                        "idempotency_key": row.idempotency_key,
                        "team": day.team,
                        "capacity_key": keys.get((row.channel, row.recipient)),
                        "channel": row.channel,
                        "recipient": row.recipient,
                    },
                }
            )
        record_many(conn, audits, context=context)
    return counts
