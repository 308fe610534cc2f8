"""SLA counted on calendar hours: an SLA on a calendar with no hours, or holidays running out soon."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    findings = []
    used: dict[str, list[str]] = {}
    owner_calendars = {t.calendar for t in policy.teams.values()} | {policy.default_calendar}
    for sla in policy.slas:
        for tier in sla.tiers:
            if tier.target.time != "business":
                continue
            names = owner_calendars if tier.target.calendar == "owner" else {tier.target.calendar}
            for name in names:
                used.setdefault(name, []).append(f"{sla.id}/{tier.id}")
    horizon = (now + dt.timedelta(days=int(settings.get("holiday_horizon_days", 60)))).date()
    for name, slas in sorted(used.items()):
        spec = policy.calendars.get(name) or {}
        hours = spec.get("hours") or {}
        if not any(hours.values()) if isinstance(hours, dict) else not hours:
            findings.append(
                Finding(
                    "calendar_without_hours",
                    "critical",
                    f"calendar {name} has no working hours but business-time SLAs use it",
                    sorted(set(slas)),
                    f"Add hours to calendars.{name} in sla_policy.yaml.",
                )
            )
        holidays = spec.get("holidays") or {}
        dates = sorted(str(d) for d in holidays.get("dates") or [])
        if not holidays.get("country") and (not dates or dt.date.fromisoformat(dates[-1]) < horizon):
            last = dates[-1] if dates else "none"
            findings.append(
                Finding(
                    "holidays_running_out",
                    "warning",
                    f"calendar {name} lists holidays only up to {last} (within "
                    f"{settings.get('holiday_horizon_days', 60)} days) and has no country calendar",
                    sorted(set(slas)),
                    f"Add next year's dates or a country/subdivision to calendars.{name}.holidays.",
                )
            )
    return findings
