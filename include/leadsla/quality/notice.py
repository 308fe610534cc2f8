"""Operational notices (a data-quality incident, a health digest) written to the outbox.

A notice is one message to a channel or mailbox about the system itself, not about a lead's
clock, so its payload is `{"kind": "notice", "title", "severity", "lines", "source"}` and its
idempotency key is the outbox key over (source, subject, opened_at, checkpoint, recipient,
channel): the same incident or the same health run is queued once, whatever retries or reruns
happen. Lead text inside `lines` is data: renderers must escape it. This module never sends.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from leadsla.notify.outbox import idempotency_key, normalise_recipient
from leadsla.store.audit import AuditContext, record_many
from leadsla.store.schema import outbox
from leadsla.store.upsert import insert_new


def enqueue_notice(
    conn: sa.Connection,
    *,
    source: str,
    subject: str,
    opened_at: dt.datetime,
    checkpoint: str,
    recipients: Iterable[tuple[str, str]],
    title: str,
    severity: str,
    lines: list[str],
    at: dt.datetime,
    context: AuditContext | None = None,
    intro: str | None = None,
) -> list[str]:
    """Queue one notice per (channel, recipient), in the caller's transaction; a known key is a no-op.

    Returns:
        The idempotency keys that were new.
    """
    payload: dict[str, Any] = {
        "kind": "notice",
        "title": title,
        "severity": severity,
        "lines": lines,
        "source": source,
        "subject": subject,
        **({"intro": intro} if intro else {}),
    }
    new, audits = [], []
    for channel, recipient in recipients:
        key = idempotency_key(source, subject, opened_at, checkpoint, recipient, channel)
        row = {
            "idempotency_key": key,
            "sla_id": source,
            "record_id": None,
            "clock_start": opened_at,
            "checkpoint": checkpoint,
            "recipient": normalise_recipient(recipient),
            "channel": channel,
            "payload": payload,
            "status": "pending",
            "attempts": 0,
            "created_at": at,
            "not_before": at,
        }
        if insert_new(conn, outbox, [row], key=["idempotency_key"]):
            new.append(key)
            audits.append(
                {
                    "event": "message_queued",
                    "at": at,
                    "sla_id": source,
                    "checkpoint": checkpoint,
                    "actor": f"{source}.{channel}",
                    "detail": {
                        "idempotency_key": key,
                        "channel": channel,
                        "recipient": row["recipient"],
                        "kind": "notice",
                        "subject": subject,
                    },
                }
            )
    if audits:
        record_many(conn, audits, context=context or AuditContext())
    return new
