"""SLA breach not escalating: breached clocks with no escalation in the audit trail."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store import schema


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    c, au = schema.clocks, schema.audit
    escalated = sa.select(au.c.audit_id).where(
        au.c.event == "escalation",
        au.c.record_id == c.c.record_id,
        au.c.sla_id == c.c.sla_id,
        au.c.clock_start == c.c.clock_start,
    )
    silent = (
        conn.execute(
            sa.select(c.c.record_id)
            .where(c.c.state == "breached", ~sa.exists(escalated))
            .order_by(c.c.record_id)
        )
        .scalars()
        .all()
    )
    if not silent:
        return []
    return [
        Finding(
            "breach_not_escalating",
            "critical",
            f"{len(silent)} breached clocks have no escalation",
            sorted(set(silent)),
            "Check sla_monitor's escalate task log and the policy's breach actions "
            "(reassign target, VP contacts); escalations are audited as 'escalation'.",
        )
    ]
