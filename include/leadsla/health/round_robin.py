"""Round-robin skipping reps: uneven assignment shares over 7 days; inactive or away reps in rotation.

Reps in rotation are users with a team; assignments are Leads created in the last 7 days by owner.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store import schema


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    u, r = schema.users, schema.records
    findings = []
    reps = conn.execute(
        sa.select(u.c.user_id, u.c.is_active, u.c.out_of_office).where(u.c.team.is_not(None))
    ).all()
    away = sorted(uid for uid, active, ooo in reps if not active or ooo)
    if away:
        findings.append(
            Finding(
                "round_robin_unavailable_reps",
                "warning",
                f"{len(away)} reps in rotation are inactive or out of office",
                away,
                "Remove them from the assignment rule / round-robin queue until they are back.",
            )
        )
    active = sorted(uid for uid, is_active, ooo in reps if is_active and not ooo)
    counts = dict(
        conn.execute(
            sa.select(r.c.owner_id, sa.func.count())
            .where(
                r.c.object_type == "Lead",
                r.c.created_at >= now - dt.timedelta(days=7),
                r.c.owner_id.in_(active or [""]),
            )
            .group_by(r.c.owner_id)
        ).all()
    )
    total = sum(counts.values())
    if active and total >= 2 * len(active):
        even = total / len(active)
        tolerance = float(settings.get("round_robin_tolerance", 0.5))
        off = sorted(uid for uid in active if abs(counts.get(uid, 0) - even) > tolerance * even)
        if off:
            findings.append(
                Finding(
                    "round_robin_uneven",
                    "warning",
                    f"{len(off)} reps got a share of the last 7 days' {total} leads far from even "
                    f"({even:.1f} each)",
                    off,
                    "Check the round-robin assignment rule's membership and weights, and leads "
                    "locked out of round-robin after breaches.",
                )
            )
    return findings
