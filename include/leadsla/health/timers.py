"""SLA timer not starting: records that entered a watched state but have no clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store import schema


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    r, c = schema.records, schema.clocks
    findings = []
    for sla in policy.slas:
        if not sla.enabled or sla.start.field not in ("Status", "StageName") or sla.start.becomes is None:
            continue
        clocked = sa.select(c.c.record_id).where(c.c.sla_id == sla.id)
        missing = (
            conn.execute(
                sa.select(r.c.record_id)
                .where(
                    r.c.object_type == sla.object,
                    r.c.status == sla.start.becomes,
                    r.c.is_deleted.is_(False),
                    r.c.record_id.not_in(clocked),
                )
                .order_by(r.c.record_id)
            )
            .scalars()
            .all()
        )
        if missing:
            findings.append(
                Finding(
                    "timer_not_starting",
                    "critical",
                    f"{len(missing)} {sla.object} records are in {sla.start.becomes} ({sla.name}) with no "
                    "SLA clock",
                    list(missing),
                    f"Check that sla_monitor runs after crm_sync and that {sla.start.field} history is "
                    "synced "
                    f"(LeadHistory field tracking on {sla.start.field}); then clear the sla_monitor run.",
                )
            )
    return findings
