"""Leads nobody working owns: every watched lead a queue, an inactive user or nobody owns, one
finding each, so the sla_health digest lists them all (the unowned-lead alerts went to each team's
manager; the digest shows RevOps the whole backlog at once).

The leads are `leadsla.ownership.unowned.unowned_leads`' (open status, no breach lock running),
counted once they have waited the policy's `routing.unowned.after` (a lead routing takes within
that grace is nobody's problem). A warning; critical once it has waited longer than
`unowned_critical_minutes` (quality.yaml `health`, default 60). Nothing without a `routing:`
section in the policy (ownership is not watched then).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.ownership.book import Owners, owners
from leadsla.ownership.unowned import UnownedLead, unowned_leads
from leadsla.policy import Policy
from leadsla.routing import Routing


def _waited(seconds: float) -> str:
    hours, minutes = divmod(int(seconds) // 60, 60)
    days, hours = divmod(hours, 24)
    return (f"{days} d " if days else "") + f"{hours} h {minutes:02d} min"


def _fix(lead: UnownedLead, who: Owners, routing: Routing) -> str:
    if lead.owner_id in who.users:
        return (
            "Assign it to a working rep in the CRM, and the inactive user's other open leads with it; "
            "take the user out of any assignment rule."
        )
    if lead.team is None:
        return (
            "Assign it to a rep in the CRM; no territory matches its fields, so add one (or a default "
            "territory) to the policy's routing section."
        )
    if routing.routes(lead.team):
        return (
            f"Assign it to a rep of {lead.team} in the CRM; lead_routing could not (its unowned-lead alert "
            "says why: no rep available, or the DAG not running): check reps' availability and weights."
        )
    return (
        f"Assign it to a rep of {lead.team} in the CRM; the team's own assignment tool (routing watches "
        "it) left it unowned: check that tool's rule."
    )


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    routing = policy.routing
    if routing is None:
        return []
    who = owners(conn)
    critical = 60 * float(settings.get("unowned_critical_minutes", 60))
    findings = []
    for lead in unowned_leads(conn, policy, who, now):
        waited = (now - lead.since).total_seconds()
        if waited < routing.unowned.after_seconds:
            continue
        since = lead.since.astimezone(dt.UTC)
        findings.append(
            Finding(
                "unowned_leads",
                "critical" if waited > critical else "warning",
                f"lead {lead.name} ({lead.record_id}, {lead.status}) is owned by "
                f"{who.describe(lead.owner_id)} and has waited {_waited(waited)} for an owner "
                f"(since {since:%Y-%m-%d %H:%M} UTC); team {lead.team or 'none (no territory matches)'}",
                [lead.record_id],
                _fix(lead, who, routing),
            )
        )
    return findings
