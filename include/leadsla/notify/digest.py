"""A digest (one person's warnings beyond the rate limit, gathered) rendered for Slack and e-mail.

Which warnings a digest replaces is decided in `leadsla.decisions.digest`; this module renders
the payload. Lead text is escaped (Slack) or autoescaped (HTML). Renders only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.notify.formatting import (
    METADATA_EVENT_TYPE,
    EmailContent,
    local_time,
    one_line,
    short_duration,
    slack_escape,
    templates,
)
from leadsla.notify.outbox import CHANNELS
from leadsla.notify.payloads import DigestPayload
from leadsla.store.audit import AuditContext, record_many
from leadsla.store.schema import outbox


def digest_slack_message(payload: DigestPayload, key: str) -> dict[str, Any]:
    """`chat.postMessage` arguments: one line per lead (escaped), each with our record link."""
    p = payload
    e = slack_escape
    tz = p.recipient.timezone
    lines = [
        f"• <{i.record_url}|{e(one_line(i.lead.name))}>"
        + (f" at {e(one_line(i.lead.company))}" if i.lead.company else "")
        + f" ({e(one_line(i.lead.tier)) or '-'}, {e(i.sla_name)}): "
        + f"{short_duration(i.remaining_seconds)} left, deadline {e(local_time(i.deadline, tz))}"
        for i in p.items
    ]
    title = f"SLA digest: {len(p.items)} more warnings"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"You have had {p.max_alerts} alerts in {p.window_minutes} minutes; "
                "these are gathered here instead of one message each.",
            },
        },
    ]
    chunk = ""
    for line in lines:
        if chunk and len(chunk) + len(line) + 1 > 2900:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line[:2900]
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"times in {e(tz)}"}]})
    return {
        "text": title,
        "blocks": blocks[:50],
        "metadata": {"event_type": METADATA_EVENT_TYPE, "event_payload": {"idempotency_key": key}},
        "unfurl_links": False,
        "unfurl_media": False,
    }


def digest_email_message(payload: DigestPayload) -> EmailContent:
    """Subject, HTML (autoescaped) and text from include/templates/email/digest.*."""
    p = payload
    tz = p.recipient.timezone
    items = [
        {
            "name": one_line(i.lead.name),
            "company": one_line(i.lead.company),
            "tier": one_line(i.lead.tier),
            "sla_name": i.sla_name,
            "remaining": short_duration(i.remaining_seconds),
            "deadline": local_time(i.deadline, tz),
            "owner": one_line(i.owner),
            "url": i.record_url,
        }
        for i in p.items
    ]
    values = {"p": p, "items": items, "timezone": tz}
    env = templates()
    return EmailContent(
        subject=f"SLA digest: {len(items)} more warnings",
        html=env.get_template("email/digest.html").render(values),
        text=env.get_template("email/digest.txt").render(values),
        high_priority=False,
    )


DIGEST = "digest"


def digest_key(recipient: str, channel: str, replaced: list[str]) -> str:
    """The digest's idempotency key: derived from the (sorted) keys of the rows it replaces."""
    canonical = json.dumps([DIGEST, recipient, channel, sorted(replaced)], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _item(payload: Mapping[str, Any]) -> dict[str, Any]:
    lead = payload["lead"]
    base = payload["instance_url"].rstrip("/")
    url = f"{base}/lightning/r/{lead.get('object_type', 'Lead')}/{lead['id']}/view"
    return {
        "lead": lead,
        "sla_name": payload["sla_name"],
        "remaining_seconds": payload["remaining_seconds"],
        "deadline": payload["deadline"],
        "owner": payload["owner"]["name"],
        "record_url": url,
    }


def roll_up(
    conn: sa.Connection, now: dt.datetime, *, max_alerts: int, window_minutes: int, context: AuditContext
) -> list[str]:
    """Replace each recipient's warnings beyond the limit by one digest row (module docstring).

    Call inside the monitor's transaction, after `outbox.enqueue`.

    Returns:
        The new digest keys (none on a rerun).
    """
    o = outbox
    since = now - dt.timedelta(minutes=window_minutes)
    rows = conn.execute(
        sa.select(
            o.c.outbox_id,
            o.c.idempotency_key,
            o.c.recipient,
            o.c.channel,
            o.c.status,
            o.c.attempts,
            o.c.not_before,
            o.c.claimed_until,
            o.c.created_at,
            o.c.payload,
            o.c.sla_id,
            o.c.record_id,
            o.c.clock_start,
            o.c.checkpoint,
        )
        .where(
            o.c.channel.in_(sorted(CHANNELS)),
            sa.or_(o.c.status == "pending", sa.and_(o.c.status == "delivered", o.c.delivered_at > since)),
        )
        .order_by(o.c.created_at, o.c.outbox_id)
    ).all()
    by_person: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        by_person[(row.recipient, row.channel)].append(row)
    new: list[str] = []
    for (recipient, channel), group in sorted(by_person.items()):
        open_ = [r for r in group if _digestible(r, now)]
        committed = len(group) - len(open_)
        extra = open_[max(max_alerts - committed, 0) :]
        if len(extra) < 2:
            continue
        taken = [r for r in extra if _mark_digested(conn, r, now)]
        if len(taken) < 2:  # the others were claimed meanwhile: a lone warning goes as itself
            for r in taken:
                conn.execute(o.update().where(o.c.outbox_id == r.outbox_id).values(status="pending"))
            continue
        key = digest_key(recipient, channel, [r.idempotency_key for r in taken])
        first = taken[0].payload
        payload = DigestPayload.parse(
            {
                "kind": "digest",
                "recipient": first["recipient"],
                "window_minutes": window_minutes,
                "max_alerts": max_alerts,
                "items": [_item(r.payload) for r in taken],
                "replaces": [r.idempotency_key for r in taken],
            },
            where=f"digest for {recipient}",
        ).to_json()
        conn.execute(
            o.insert().values(
                idempotency_key=key,
                sla_id=DIGEST,
                record_id=None,
                clock_start=None,
                checkpoint=DIGEST,
                recipient=recipient,
                channel=channel,
                payload=payload,
                status="pending",
                attempts=0,
                created_at=now,
                not_before=now,
            )
        )
        new.append(key)
        audits = [
            {
                "event": "message_queued",
                "at": now,
                "actor": f"notify.{channel}",
                "checkpoint": DIGEST,
                "detail": {
                    "idempotency_key": key,
                    "channel": channel,
                    "recipient": recipient,
                    "kind": DIGEST,
                    "replaces": len(taken),
                    "max_alerts": max_alerts,
                    "window_minutes": window_minutes,
                },
            }
        ]
        audits += [
            {
                "event": "message_digested",
                "at": now,
                "actor": f"notify.{channel}",
                "sla_id": r.sla_id,
                "record_id": r.record_id,
                "clock_start": r.clock_start,
                "checkpoint": r.checkpoint,
                "object_type": (r.payload.get("lead") or {}).get("object_type"),
                "detail": {
                    "idempotency_key": r.idempotency_key,
                    "digest_key": key,
                    "channel": channel,
                    "recipient": recipient,
                },
            }
            for r in taken
        ]
        record_many(conn, audits, context=context)
    return new


def _digestible(row: Any, now: dt.datetime) -> bool:
    """A due warning no worker has touched (so it certainly has not reached anyone)."""
    return (
        row.status == "pending"
        and (row.payload or {}).get("kind") == "warning"
        and row.attempts == 0
        and row.claimed_until is None
        and row.not_before <= now
    )


def _mark_digested(conn: sa.Connection, row: Any, now: dt.datetime) -> bool:
    o = outbox
    result = conn.execute(
        o.update()
        .where(
            o.c.outbox_id == row.outbox_id,
            o.c.status == "pending",
            o.c.attempts == 0,
            o.c.claimed_until.is_(None),
        )
        .values(status="digested", last_error=None)
    )
    return result.rowcount == 1
