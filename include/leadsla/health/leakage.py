"""Lead leakage: leads stuck in MQL with no activity for more than 7 days, and the rate."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store import schema


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    r, a = schema.records, schema.activities
    since = now - dt.timedelta(days=int(settings.get("mql_idle_days", 7)))
    mql = conn.execute(
        sa.select(r.c.record_id, r.c.modified_at, r.c.created_at).where(
            r.c.object_type == "Lead", r.c.status == "MQL", r.c.is_deleted.is_(False)
        )
    ).all()
    if not mql:
        return []
    recent = set(
        conn.execute(
            sa.select(a.c.who_id).where(a.c.created_at >= since, a.c.is_deleted.is_(False))
        ).scalars()
    )
    stuck = sorted(
        i for i, modified, created in mql if i not in recent and (modified or created or now) < since
    )
    if not stuck:
        return []
    return [
        Finding(
            "mql_leakage",
            "warning",
            f"{len(stuck)} of {len(mql)} MQL leads ({len(stuck) / len(mql):.0%}) have had no activity "
            f"for over {settings.get('mql_idle_days', 7)} days",
            stuck,
            "Have the owners' managers disposition them (SAL or Recycled with a reason); check that "
            "the MQL to SAL SLA covers every lead source.",
        )
    ]
