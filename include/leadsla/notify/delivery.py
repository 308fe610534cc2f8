"""The delivery step the `sla_monitor` DAG calls: claim due outbox rows, send, mark, audit.

An unreachable Slack or SMTP server leaves the row pending with a later `not_before`
(exponential back-off) and one clear log line; nothing is lost and nothing is sent twice by
overlapping runs (leases). Returns small JSON counts for XCom. Never decides *what* is due:
the monitor enqueues, this only delivers.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from typing import Any

import sqlalchemy as sa

from leadsla.notify.messages import PayloadError
from leadsla.notify.outbox import (
    CHANNELS,
    DEFAULT_LEASE,
    Claimed,
    backoff,
    claim,
    mark_delivered,
    mark_failed,
    renew,
)
from leadsla.notify.outcome import Delivered, DeliveryFailed
from leadsla.store.audit import AuditContext

log = logging.getLogger(__name__)

#: Rows leased per claim; small, so a lease never has to cover a long queue of slow sends.
CLAIM_BATCH = 20


def deliver_due(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    limit: int = 200,
    lease: dt.timedelta = DEFAULT_LEASE,
    batch: int = CLAIM_BATCH,
    slack: Any = None,
    email: Any = None,
) -> dict[str, int]:
    """Deliver up to `limit` due outbox rows.

    Args:
        now: when this delivery attempt starts (in a task: the try's start, ``ti.start_date``;
            a lease is about real concurrency, so the run's logical time is the wrong clock
            here). Later batches use `now` plus the time spent so far.
        slack, email: senders to use (default: `SlackSender()` / `EmailSender()` on the default
            connections, created only when a row of that channel is claimed).

    Returns:
        Counts: claimed, delivered, reconciled (found already sent), retry (left queued),
        failed (permanent), double_marked (another worker had marked it first).
    """
    started = time.monotonic()
    counts: Counter[str] = Counter()
    senders: dict[str, Any] = {"slack": slack, "email": email}
    owned: list[Any] = []

    def clock() -> dt.datetime:
        return now + dt.timedelta(seconds=time.monotonic() - started)

    def sender_for(channel: str) -> Any:
        if senders.get(channel) is None:
            if channel == "slack":
                from leadsla.notify.slack import SlackSender

                senders[channel] = SlackSender()
            else:
                from leadsla.notify.email import EmailSender

                senders[channel] = EmailSender()
            owned.append(senders[channel])
        return senders[channel]

    try:
        while counts["claimed"] < limit:
            with engine.begin() as conn:
                rows = claim(conn, clock(), lease, min(batch, limit - counts["claimed"]), channels=CHANNELS)
            if not rows:
                break
            counts["claimed"] += len(rows)
            for row in rows:
                # Renew just before sending: the lease only has to outlast one send, and a lease
                # that lapsed meanwhile (another worker may hold the row now) means: don't send.
                with engine.begin() as conn:
                    mine = renew(conn, row, clock(), lease)
                if mine is None:
                    counts["lease_lost"] += 1
                    continue
                _deliver_one(engine, mine, sender_for(row.channel), clock, context, counts)
    finally:
        for sender in owned:
            sender.close()
    summary = {k: counts[k] for k in ("claimed", "delivered", "reconciled", "retry", "failed", "double_marked")}
    if counts["lease_lost"]:  # only when it happened: rows another worker took after our lease lapsed
        summary["lease_lost"] = counts["lease_lost"]
    log.info("delivery: %s", summary)
    return summary


def _deliver_one(engine: sa.Engine, row: Claimed, sender: Any, clock, context: AuditContext,
                 counts: Counter[str]) -> None:
    try:
        result: Delivered = sender.deliver(row, clock())
    except DeliveryFailed as exc:
        _failed(engine, row, str(exc), exc.permanent, clock(), context, counts)
    except PayloadError as exc:
        _failed(engine, row, str(exc), True, clock(), context, counts)
    except Exception as exc:  # a bug or an unforeseen client error: keep the row, say so loudly
        log.exception("outbox %s: unexpected error delivering by %s", row.outbox_id, row.channel)
        _failed(engine, row, f"unexpected {type(exc).__name__}: {exc}", False, clock(), context, counts)
    else:
        with engine.begin() as conn:
            first = mark_delivered(conn, row, result.external_id, clock(), context, detail=result.detail)
        counts["delivered"] += 1
        counts["reconciled"] += bool(result.detail.get("reconciled"))
        counts["double_marked"] += not first


def _failed(engine: sa.Engine, row: Claimed, error: str, permanent: bool, at: dt.datetime,
            context: AuditContext, counts: Counter[str]) -> None:
    retry_at = None if permanent else at + backoff(row.attempts, row.idempotency_key)
    if permanent:
        log.error("outbox %s (%s to %s): failed for good: %s", row.outbox_id, row.channel, row.recipient, error)
    else:
        log.warning("outbox %s (%s to %s): attempt %s failed, stays queued until %s: %s", row.outbox_id,
                    row.channel, row.recipient, row.attempts, retry_at.isoformat(), error)
    with engine.begin() as conn:
        mark_failed(conn, row, error, retry_at, at, context)
    counts["failed" if permanent else "retry"] += 1
