"""Rejection reason not required: the share of Recycled/Disqualified leads without a reason."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store import schema


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    r = schema.records
    rows = conn.execute(
        sa.select(r.c.record_id, r.c.rejection_reason).where(
            r.c.object_type == "Lead", r.c.status.in_(["Recycled", "Disqualified"]), r.c.is_deleted.is_(False)
        )
    ).all()
    missing = sorted(i for i, reason in rows if not reason)
    share = len(missing) / len(rows) if rows else 0.0
    if not missing or share <= float(settings.get("rejection_reason_missing_share", 0.1)):
        return []
    return [
        Finding(
            "rejection_reason_not_required",
            "warning",
            f"{share:.0%} of Recycled/Disqualified leads ({len(missing)} of {len(rows)}) have no "
            "rejection reason",
            missing,
            "Make Rejection_Reason__c required for Recycled/Disqualified with a Salesforce "
            "validation rule, and backfill the listed leads.",
        )
    ]
