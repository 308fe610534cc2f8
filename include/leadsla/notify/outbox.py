"""The outbox: due alerts written before delivery, claimed under a lease, marked after.

Every operation takes its time from the caller (the run's time, or for leases the delivering
attempt's start) and writes the audit trail with the Airflow task run that did it. This module
never sends anything and never reads the wall clock for a decision.

Row life: ``pending`` --claim--> (lease in ``claimed_until``) --> ``delivered``, or back to
``pending`` with a later ``not_before`` (transient failure, exponential back-off), or
``failed`` (a permanent failure a person must look at).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from leadsla.notify.payloads import parse_payload
from leadsla.store.audit import AuditContext, record, record_many
from leadsla.store.schema import outbox
from leadsla.store.upsert import insert_new

CHANNELS = frozenset({"slack", "email"})
#: Channels an idempotency key may name: the delivered ones plus ``crm`` (breach actions, which
#: leadsla.escalation claims and performs; deliver_due never claims them).
KEY_CHANNELS = CHANNELS | {"crm"}
#: After a transient failure the first retries come within the same delivery try, seconds later
#: (`deliver_due` keeps working until its time budget runs out): most faults (a 429 storm, a
#: dropped connection, a 5xx burst) last seconds, and waiting for the next one-minute run would
#: cost the alert a minute each time.
QUICK_RETRIES = (dt.timedelta(seconds=5), dt.timedelta(seconds=15))
#: After the quick retries a row waits BACKOFF_BASE before each of the next BACKOFF_FLAT retries
#: (with a one-minute schedule: the next run), then each further attempt doubles the wait, up to
#: BACKOFF_CAP. An alert loses its value within minutes, and one try a minute is already gentle on
#: a struggling Slack or SMTP server.
BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_FLAT = 3
BACKOFF_CAP = dt.timedelta(minutes=30)
#: A lease has to cover ONE send only: `deliver_due` renews it right before each send, and a send
#: never transmits after `lease end - LEASE_MARGIN` (see `leadsla.notify.deadline`, which proves the
#: bound). Short, so a killed deliverer holds its rows for 25 s, not a minute (the p95 goal is 75 s).
DEFAULT_LEASE = dt.timedelta(seconds=25)
#: Kept free at the end of every lease: the server's processing of the last bytes sent, plus clock
#: skew between the hosts of two deliverers (their `now` comes from each worker's clock).
LEASE_MARGIN = dt.timedelta(seconds=3)


def _utc_iso(value: dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no timezone: clock_start must be aware")
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def normalise_recipient(recipient: str) -> str:
    """The recipient as keyed: trimmed; e-mail addresses case-folded (they are case-blind in practice)."""
    recipient = recipient.strip()
    return recipient.casefold() if "@" in recipient else recipient


def idempotency_key(
    sla_id: str, record_id: str, clock_start: dt.datetime, checkpoint: str, recipient: str, channel: str
) -> str:
    """The action's identity (DESIGN.md): clock identity + checkpoint + recipient + channel.

    A SHA-256 over a canonical JSON array, so the same action always hashes the same whatever
    timezone `clock_start` was given in.

    Raises:
        ValueError: `clock_start` is naive, or the channel is unknown.
    """
    channel = channel.strip().lower()
    if channel not in KEY_CHANNELS:
        raise ValueError(f"unknown channel {channel!r}: expected one of {sorted(KEY_CHANNELS)}")
    canonical = json.dumps(
        [sla_id, record_id, _utc_iso(clock_start), checkpoint, normalise_recipient(recipient), channel],
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Action:
    """One message to send: who, how, about which clock checkpoint, and what to say.

    `payload` follows `leadsla.notify.payloads.AlertPayload` or another kind `parse_payload`
    knows (validated on enqueue).
    `not_before` defaults to the enqueue time (quiet hours set it later).
    """

    sla_id: str
    record_id: str
    clock_start: dt.datetime
    checkpoint: str
    recipient: str
    channel: str
    payload: Mapping[str, Any]
    not_before: dt.datetime | None = None

    @property
    def key(self) -> str:
        return idempotency_key(
            self.sla_id, self.record_id, self.clock_start, self.checkpoint, self.recipient, self.channel
        )


@dataclass(frozen=True)
class Claimed:
    """A row this worker holds the lease on; `attempts` counts this one (1 = first try)."""

    outbox_id: int
    idempotency_key: str
    sla_id: str | None
    record_id: str | None
    clock_start: dt.datetime | None
    checkpoint: str
    recipient: str
    channel: str
    payload: dict
    attempts: int
    created_at: dt.datetime
    claimed_until: dt.datetime

    @property
    def attempted_before(self) -> bool:
        """True when an earlier attempt may have reached the recipient (reconcile before resending)."""
        return self.attempts > 1


def _message_detail(row: Any) -> dict[str, Any]:
    """What every delivery audit entry says about the message: its key, channel, recipient, attempt."""
    return {
        "idempotency_key": row.idempotency_key,
        "channel": row.channel,
        "recipient": row.recipient,
        "attempt": row.attempts,
    }


def _audit_fields(row: Any) -> dict[str, Any]:
    payload = row.payload if isinstance(row.payload, Mapping) else {}
    return {
        "object_type": (payload.get("lead") or {}).get("object_type"),
        "record_id": row.record_id,
        "sla_id": row.sla_id,
        "clock_start": row.clock_start,
        "checkpoint": row.checkpoint,
    }


def enqueue(
    conn: sa.Connection, actions: Iterable[Action], at: dt.datetime, context: AuditContext
) -> list[str]:
    """Write actions to the outbox with a `message_queued` audit entry each, in the caller's transaction.

    Call inside ``engine.begin()`` (with the clock updates that produced them, ideally), so the
    actions and their audit entries commit together or not at all. An action whose key is
    already in the outbox is left exactly as it is: enqueueing twice is a no-op.

    Returns:
        The idempotency keys that were new.

    Raises:
        leadsla.notify.payloads.PayloadError: an action's payload does not follow the schema.
        ValueError: naive times or an unknown channel.
    """
    new_keys: list[str] = []
    audits: list[dict[str, Any]] = []
    for action in actions:
        payload = parse_payload(action.payload, where=f"{action.channel} action for {action.record_id}")
        key = action.key
        row = {
            "idempotency_key": key,
            "sla_id": action.sla_id,
            "record_id": action.record_id,
            "clock_start": action.clock_start,
            "checkpoint": action.checkpoint,
            "recipient": normalise_recipient(action.recipient),
            "channel": action.channel.strip().lower(),
            "payload": payload.to_json(),
            "status": "pending",
            "attempts": 0,
            "created_at": at,
            "not_before": action.not_before or at,
        }
        # One row at a time so we know exactly which keys were new and audit only those.
        if insert_new(conn, outbox, [row], key=["idempotency_key"]):
            new_keys.append(key)
            audits.append(
                {
                    "event": "message_queued",
                    "at": at,
                    "object_type": payload.lead.object_type if hasattr(payload, "lead") else None,
                    "record_id": action.record_id,
                    "sla_id": action.sla_id,
                    "clock_start": action.clock_start,
                    "checkpoint": action.checkpoint,
                    "actor": f"notify.{row['channel']}",
                    "detail": {
                        "idempotency_key": key,
                        "channel": row["channel"],
                        "recipient": row["recipient"],
                        "kind": payload.kind,
                        "not_before": _utc_iso(row["not_before"]),
                        # One message per person: the roles it stands for (owner, team_manager, ...).
                        **({"roles": list(payload.roles)} if getattr(payload, "roles", None) else {}),
                    },
                }
            )
    record_many(conn, audits, context=context)
    return new_keys


def _claimable(now: dt.datetime):
    return sa.and_(
        outbox.c.status == "pending",
        outbox.c.not_before <= now,
        sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
    )


def claim(
    conn: sa.Connection,
    now: dt.datetime,
    lease: dt.timedelta = DEFAULT_LEASE,
    limit: int = 50,
    *,
    channels: Iterable[str] | None = None,
) -> list[Claimed]:
    """Take a lease on up to `limit` due rows, so no overlapping worker sends them meanwhile.

    Each row is taken by a conditional UPDATE that re-checks "pending and not leased" and counts
    the rows it changed: on PostgreSQL a competing UPDATE waits for the row lock and then sees
    the new lease; on SQLite writers are serialised. A row another worker took in between is
    simply skipped. Commit promptly (the lease only protects once committed).

    Args:
        now: the claiming attempt's time; a lease older than it has expired.
        lease: how long this worker may take to send and mark; size it above the worst-case
            send time of `limit` rows, or an expired lease lets a second worker send again.
    """
    if now.tzinfo is None:
        raise ValueError("claim needs an aware 'now'")
    until = now + lease
    query = sa.select(outbox.c.outbox_id).where(_claimable(now))
    if channels is not None:
        query = query.where(outbox.c.channel.in_(list(channels)))
    # Oldest first (enqueued earliest = fell due earliest): a backlog drains in the order it built
    # up, so a row that was retried or held back by a lease is not overtaken by every newer row
    # (ordering by `not_before` did that: each retry moved a row to the back of the queue).
    candidates = (
        conn.execute(query.order_by(outbox.c.created_at, outbox.c.outbox_id).limit(limit)).scalars().all()
    )
    taken: list[Claimed] = []
    for outbox_id in candidates:
        result = conn.execute(
            outbox.update()
            .where(outbox.c.outbox_id == outbox_id, _claimable(now))
            .values(claimed_until=until, attempts=outbox.c.attempts + 1)
        )
        if result.rowcount != 1:
            continue  # another worker leased it between our SELECT and UPDATE
        row = conn.execute(sa.select(outbox).where(outbox.c.outbox_id == outbox_id)).one()
        taken.append(
            Claimed(
                outbox_id=row.outbox_id,
                idempotency_key=row.idempotency_key,
                sla_id=row.sla_id,
                record_id=row.record_id,
                clock_start=row.clock_start,
                checkpoint=row.checkpoint,
                recipient=row.recipient,
                channel=row.channel,
                payload=dict(row.payload),
                attempts=row.attempts,
                created_at=row.created_at,
                claimed_until=row.claimed_until,
            )
        )
    return taken


def renew(
    conn: sa.Connection, row: Claimed, now: dt.datetime, lease: dt.timedelta = DEFAULT_LEASE
) -> Claimed | None:
    """Extend this worker's lease on `row` just before sending it.

    Conditional on the lease still being ours (same `claimed_until`, still pending): if it lapsed
    and another worker took the row, this returns None and the caller must not send.
    """
    until = now + lease
    result = conn.execute(
        outbox.update()
        .where(
            outbox.c.outbox_id == row.outbox_id,
            outbox.c.status == "pending",
            outbox.c.claimed_until == row.claimed_until,
        )
        .values(claimed_until=until)
    )
    return replace(row, claimed_until=until) if result.rowcount == 1 else None


def backoff(attempts: int, key: str = "") -> dt.timedelta:
    """Wait before attempt `attempts + 1`.

    QUICK_RETRIES first (5 s, 15 s: retried inside the same delivery try), then BASE for the next
    BACKOFF_FLAT attempts, then BASE * 2^n, capped; plus up to 10% spread. The spread is derived
    from the key, not from a random source, so a rerun decides the same while many rows failing
    together still do not retry in one burst.
    """
    if 1 <= attempts <= len(QUICK_RETRIES):
        wait = QUICK_RETRIES[attempts - 1]
    else:
        exponent = max(attempts - len(QUICK_RETRIES) - BACKOFF_FLAT, 0)
        wait = min(BACKOFF_BASE * (2 ** min(exponent, 20)), BACKOFF_CAP)
    spread = int(key[:4], 16) / 0xFFFF if key else 0.0
    return wait + wait * 0.1 * spread


def release(conn: sa.Connection, row: Claimed) -> bool:
    """Give back a lease this worker will not use (its time budget ran out before the send).

    Conditional on the lease still being ours; the claim's attempt is taken back (nothing was
    tried), so the next worker neither counts it nor looks for an earlier send that never was.

    Returns:
        True when the lease was ours and is now free.
    """
    result = conn.execute(
        outbox.update()
        .where(
            outbox.c.outbox_id == row.outbox_id,
            outbox.c.status == "pending",
            outbox.c.claimed_until == row.claimed_until,
        )
        .values(claimed_until=None, attempts=outbox.c.attempts - 1)
    )
    return result.rowcount == 1


def defer(
    conn: sa.Connection,
    row: Claimed,
    retry_at: dt.datetime | None,
    at: dt.datetime,
    context: AuditContext,
    *,
    reason: str,
    error: str,
    uncount: bool,
) -> bool:
    """Put a row back that was not the row's failure (Slack's 429, a channel outage); audit
    `message_deferred`. Unlike `mark_failed` this never grows the row's back-off.

    Args:
        retry_at: the row's new `not_before` (``now + Retry-After``), or None to keep it (a channel
            outage: the row is due again the moment the channel is back).
        reason: ``rate_limited`` or ``channel_down`` (see `leadsla.notify.outcome.Deferred`).
        uncount: take this try's attempt back (nothing can have reached the recipient), so
            neither the back-off nor the reconciliation before a resend counts it.

    Returns:
        True when the lease was still ours and the row is back in the queue.
    """
    values: dict[str, Any] = {"claimed_until": None, "last_error": f"{reason}: {error}"[:2000]}
    if retry_at is not None:
        values["not_before"] = retry_at
    if uncount:
        values["attempts"] = outbox.c.attempts - 1
    result = conn.execute(
        outbox.update()
        .where(
            outbox.c.outbox_id == row.outbox_id,
            outbox.c.status == "pending",
            outbox.c.claimed_until == row.claimed_until,
        )
        .values(values)
    )
    if result.rowcount != 1:  # another worker holds the row now: nothing was deferred by us
        return False
    record(
        conn,
        "message_deferred",
        at=at,
        context=context,
        actor=f"notify.{row.channel}",
        detail={
            **_message_detail(row),
            "reason": reason,
            "error": error[:500],
            "retry_at": _utc_iso(retry_at) if retry_at else None,
            "attempt_counted": not uncount,
        },
        **_audit_fields(row),
    )
    return True


def next_due(
    conn: sa.Connection, now: dt.datetime, *, channels: Iterable[str] | None = None
) -> dt.datetime | None:
    """When the next pending row becomes claimable after `now` (its `not_before`, or the end of
    another worker's lease), or None when no pending row is waiting.

    A row due now but leased counts at its lease's end; `claim` takes a lapsed lease only once
    ``claimed_until < now``, so the caller should wait a little past the returned time.
    """
    pending = [outbox.c.status == "pending"]
    if channels is not None:
        pending.append(outbox.c.channel.in_(list(channels)))
    free = sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < outbox.c.not_before)
    waiting = conn.execute(
        sa.select(sa.func.min(outbox.c.not_before)).where(*pending, outbox.c.not_before > now, free)
    ).scalar()
    leased = conn.execute(
        sa.select(sa.func.min(outbox.c.claimed_until)).where(
            *pending, outbox.c.claimed_until >= now, outbox.c.claimed_until >= outbox.c.not_before
        )
    ).scalar()
    found = [t for t in (waiting, leased) if t is not None]
    return min(found) if found else None


def mark_delivered(
    conn: sa.Connection,
    row: Claimed,
    external_id: str,
    at: dt.datetime,
    context: AuditContext,
    *,
    detail: Mapping[str, Any] | None = None,
) -> bool:
    """Record a delivery (Slack ts or e-mail Message-ID) and audit `message_sent`.

    Returns:
        False when the row was no longer pending (another worker marked it first); the audit
        entry then records the double delivery instead of hiding it.
    """
    result = conn.execute(
        outbox.update()
        .where(outbox.c.outbox_id == row.outbox_id, outbox.c.status == "pending")
        .values(
            status="delivered", delivered_at=at, external_id=external_id, claimed_until=None, last_error=None
        )
    )
    first = result.rowcount == 1
    record(
        conn,
        "message_sent",
        at=at,
        context=context,
        actor=f"notify.{row.channel}",
        detail={
            **_message_detail(row),
            "external_id": external_id,
            **({} if first else {"already_marked": True}),
            **dict(detail or {}),
        },
        **_audit_fields(row),
    )
    return first


def mark_failed(
    conn: sa.Connection,
    row: Claimed,
    error: str,
    retry_at: dt.datetime | None,
    at: dt.datetime,
    context: AuditContext,
) -> None:
    """Record a failed attempt and audit `message_failed`.

    Args:
        error: a one-line reason for a person (never a secret).
        retry_at: when to try again (the row goes back to pending with `not_before` = retry_at
            and its lease released); None makes the failure permanent (status ``failed``).
    """
    values: dict[str, Any] = {"claimed_until": None, "last_error": error[:2000]}
    if retry_at is None:
        values["status"] = "failed"
    else:
        values["not_before"] = retry_at
    conn.execute(
        outbox.update()
        .where(outbox.c.outbox_id == row.outbox_id, outbox.c.status == "pending")
        .values(values)
    )
    record(
        conn,
        "message_failed",
        at=at,
        context=context,
        actor=f"notify.{row.channel}",
        detail={
            **_message_detail(row),
            "error": error[:500],
            "retry_at": _utc_iso(retry_at) if retry_at else None,
            "permanent": retry_at is None,
        },
        **_audit_fields(row),
    )
