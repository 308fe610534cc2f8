"""Notifications not reaching reps: failed or long-queued outbox rows; reps with no e-mail (so no Slack).

How long a row has been queued is measured from when it FIRST fell due, never from its latest
retry: each failed attempt moves `not_before` on (back-off), so a row that fails every minute
would otherwise never look older than a minute. The first due time is the `not_before` the row was
queued with (the `message_queued` audit entry's, for a message held for working hours), else its
creation (notices, digests, breach actions are due when queued).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
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
                "Read outbox.last_error: a revoked Slack token, a refused SMTP login or SMS gateway "
                "token must be fixed in its connection; a rep with no Slack account needs a fallback "
                "channel in the policy; a bad channel id or address must be fixed where it comes from; then "
                "re-queue.",
            )
        )
    minutes = int(settings.get("outbox_queued_minutes", 30))
    queued = stuck(conn, now - dt.timedelta(minutes=minutes))
    if queued:
        kinds = Counter("breach action" if channel == "crm" else "alert" for _, channel in queued)
        what = " and ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(kinds.items()))
        findings.append(
            Finding(
                "notifications_queued",
                "warning",
                f"{what} due over {minutes} min ago still wait",
                [str(i) for i, _ in queued],
                "Check the sla_monitor deliver and escalate tasks and the slack_api_default / "
                "smtp_default / apprise_sms / salesforce_default connections (an unreachable channel or "
                "a CRM that keeps refusing leaves rows pending); outbox.last_error says why.",
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


def stuck(conn: sa.Connection, limit: dt.datetime) -> list[tuple[int, str]]:
    """(outbox_id, channel) of pending rows that first fell due before `limit`, oldest first."""
    outbox = schema.outbox
    candidates = conn.execute(  # first due >= created: a row created after the limit is not stuck
        sa.select(
            outbox.c.outbox_id,
            outbox.c.idempotency_key,
            outbox.c.record_id,
            outbox.c.channel,
            outbox.c.created_at,
        )
        .where(outbox.c.status == "pending", outbox.c.created_at < limit)
        .order_by(outbox.c.created_at, outbox.c.outbox_id)
    ).all()
    held = _queued_not_before(conn, {r.record_id for r in candidates if r.record_id})
    return [
        (r.outbox_id, r.channel)
        for r in candidates
        if max(held.get(r.idempotency_key, r.created_at), r.created_at) < limit
    ]


def _queued_not_before(conn: sa.Connection, record_ids: Iterable[str]) -> dict[str, dt.datetime]:
    """Idempotency key -> the `not_before` its message was queued with (`message_queued` audit)."""
    audit = schema.audit
    found: dict[str, dt.datetime] = {}
    for chunk in _chunks(sorted(record_ids), 500):
        entries = conn.execute(
            sa.select(audit.c.detail).where(audit.c.event == "message_queued", audit.c.record_id.in_(chunk))
        ).scalars()
        for detail in entries:
            if isinstance(detail, dict) and detail.get("idempotency_key") and detail.get("not_before"):
                found[detail["idempotency_key"]] = dt.datetime.fromisoformat(detail["not_before"])
    return found


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
