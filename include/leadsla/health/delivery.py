"""Notifications not reaching reps: failed or long-queued outbox rows; reps with no e-mail (so no Slack)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store import schema


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    outbox, users = schema.outbox, schema.users  # read only: leadsla.notify.outbox writes it
    findings = []
    failed = conn.execute(sa.select(outbox.c.outbox_id).where(outbox.c.status == "failed")).scalars().all()
    if failed:
        findings.append(
            Finding(
                "notifications_failing",
                "critical",
                f"{len(failed)} alerts failed permanently",
                [str(i) for i in failed],
                "Read outbox.last_error: a rep with no Slack account needs a fallback channel "
                "in the policy; a bad channel id must be fixed in the policy; then re-queue.",
            )
        )
    limit = now - dt.timedelta(minutes=int(settings.get("outbox_queued_minutes", 30)))
    queued = (
        conn.execute(
            sa.select(outbox.c.outbox_id).where(outbox.c.status == "pending", outbox.c.not_before < limit)
        )
        .scalars()
        .all()
    )
    if queued:
        findings.append(
            Finding(
                "notifications_queued",
                "warning",
                f"{len(queued)} alerts have waited over {settings.get('outbox_queued_minutes', 30)} min",
                [str(i) for i in queued],
                "Check the sla_monitor deliver task and the slack_api_default / smtp_default "
                "connections (Slack or SMTP unreachable leaves rows pending).",
            )
        )
    unreachable = (
        conn.execute(
            sa.select(users.c.user_id).where(
                users.c.is_active.is_(True),
                users.c.team.is_not(None),
                sa.or_(users.c.email.is_(None), users.c.email == ""),
            )
        )
        .scalars()
        .all()
    )
    if unreachable:
        findings.append(
            Finding(
                "reps_unreachable",
                "warning",
                f"{len(unreachable)} active reps have no e-mail (no Slack lookup either)",
                list(unreachable),
                "Set the users' Email in Salesforce and their Slack account e-mail.",
            )
        )
    return findings
