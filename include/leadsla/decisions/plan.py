"""A plan: everything one decision step wants written, as plain data.

The monitor's decision step (`leadsla.decisions.monitor.decide`) returns a `Plan`; other
producers return parts of one (a `Notice` from health, data quality, the API budget or the lock
keeper). `leadsla.notify.outbox` applies them in one transaction: it is the only writer of the
outbox. The recipients' state the decisions read is a `QueueState`: a snapshot of the outbox
taken by the same module. Nothing here touches a store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from leadsla.decisions.keys import DIGEST, digest_key, idempotency_key, normalise_recipient

#: The identity of a checkpoint of a clock: (sla_id, record_id, clock_start, checkpoint).
CheckpointId = tuple[str, str | None, dt.datetime, str]


@dataclass(frozen=True)
class Message:
    """One message to send about a clock's checkpoint: who, how, and what to say.

    `payload` follows `leadsla.notify.payloads` (validated when the plan is applied).
    `not_before` defaults to the time the plan is applied (quiet hours set it later).
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
class Notice:
    """A message about the system itself (a data-quality incident, a health digest, the API
    budget, a capacity alert, a kept lock), to channels or mailboxes.

    Keyed on (source, subject, opened_at, checkpoint, recipient, channel): the same incident, run
    or event is queued once, whatever retries happen. Lead text inside `lines` is data.
    """

    source: str
    subject: str
    opened_at: dt.datetime
    checkpoint: str
    recipients: tuple[tuple[str, str], ...]  # (channel, address)
    title: str
    severity: str  # info | warning | critical
    lines: tuple[str, ...] = ()
    intro: str | None = None
    #: What the audit trail calls each newly queued row, who queued it (default
    #: ``<source>.<channel>``), and what else it says about it.
    audit_event: str = "message_queued"
    actor: str | None = None
    audit_detail: Mapping[str, Any] = field(default_factory=dict)
    #: The CRM record the notice is about, (object type, record id), for its audit entries.
    record: tuple[str, str] | None = None
    #: The CRM's base URL: with `record`, the notice carries a one-click link to the record.
    instance_url: str | None = None

    def key(self, channel: str, recipient: str) -> str:
        return idempotency_key(self.source, self.subject, self.opened_at, self.checkpoint, recipient, channel)

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "notice",
            "title": self.title,
            "severity": self.severity,
            "lines": list(self.lines),
            "source": self.source,
            "subject": self.subject,
            **({"intro": self.intro} if self.intro else {}),
            **(
                {
                    "record": {
                        "object_type": self.record[0],
                        "id": self.record[1],
                        "instance_url": self.instance_url,
                    }
                }
                if self.record and self.instance_url
                else {}
            ),
        }


@dataclass(frozen=True)
class Queued:
    """An outbox row as decisions see it: pending, or delivered within the rate-limit window."""

    key: str
    recipient: str
    channel: str
    status: str
    attempts: int
    leased: bool
    not_before: dt.datetime
    created_at: dt.datetime
    payload: Mapping[str, Any]
    sla_id: str | None
    record_id: str | None
    clock_start: dt.datetime | None
    checkpoint: str
    #: The row's place in the outbox (its id; rows this plan adds come after every stored one).
    seq: int = 0

    @property
    def kind(self) -> str | None:
        return (self.payload or {}).get("kind")

    @property
    def untouched(self) -> bool:
        """Pending and never tried or leased: it certainly has not reached anyone."""
        return self.status == "pending" and self.attempts == 0 and not self.leased


@dataclass(frozen=True)
class QueueState:
    """The recipients' state: what the outbox holds that a decision must account for.

    `rows`: pending rows, and rows delivered within the rate-limit window, in outbox order
    (slack and e-mail only). `handled`: every checkpoint already acted on (queued in any status,
    superseded, or recorded due), so a rerun decides nothing twice. `counted`: more such rows,
    only counted, per person (recipient, channel): rows no decision reads but the rate limit
    counts (`notify.outbox.only_counted`), left out of `rows`.
    """

    rows: tuple[Queued, ...] = ()
    handled: frozenset[CheckpointId] = frozenset()
    next_seq: int = 1
    counted: Mapping[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class RollUp:
    """A breach message to leadership folded into its team's capacity alert (never sent)."""

    row: Queued
    team: str
    capacity_key: str | None


@dataclass(frozen=True)
class Digest:
    """One person's warnings beyond the rate limit, replaced by one message."""

    recipient: str
    channel: str
    replaces: tuple[Queued, ...]
    payload: Mapping[str, Any]
    max_alerts: int
    window_minutes: int

    @property
    def key(self) -> str:
        return digest_key(self.recipient, self.channel, [r.key for r in self.replaces])


@dataclass(frozen=True)
class BreachAction:
    """Reassign a breached lead and lock it: performed through the CRM write-back by
    `leadsla.escalation.breach`, queued in the outbox on channel ``crm``."""

    sla_id: str
    record_id: str
    clock_start: dt.datetime
    object_type: str
    from_owner: str | None
    to_owner: str | None
    rule: str | None
    #: The lock runs this long from the moment the lead is reassigned (computed then, by the
    #: escalation), in real hours or the business hours of `lock_calendar` (the new owner's).
    lock_hours: float
    lock_time: str
    lock_calendar: str | None
    breached_at: dt.datetime
    tier: str
    #: Decided ahead of the breach (`decisions.ahead`): performed at this instant, after the
    #: delivery's re-check (`notify.recheck`); None: decided at or after the breach.
    planned_for: dt.datetime | None = None

    @property
    def recipient(self) -> str:
        return self.to_owner or "-"

    @property
    def key(self) -> str:
        return idempotency_key(self.sla_id, self.record_id, self.clock_start, "breach", self.recipient, "crm")

    def payload(self) -> dict[str, Any]:
        return {
            "from_owner": self.from_owner,
            "to_owner": self.to_owner,
            "rule": self.rule,
            "lock_hours": self.lock_hours,
            "lock_time": self.lock_time,
            "lock_calendar": self.lock_calendar,
            "breached_at": self.breached_at.isoformat(),
            "tier": self.tier,
            # A planned action says so, and its instant, as a planned message does (`due_at`).
            **({"planned": True, "due_at": self.planned_for.isoformat()} if self.planned_for else {}),
        }


@dataclass(frozen=True)
class CheckpointReached:
    """A clock's checkpoint this run acted on (`due`) or passed over for a later one (`superseded`)."""

    sla_id: str
    record_id: str
    clock_start: dt.datetime
    checkpoint: str
    policy_version: str
    reached_at: dt.datetime
    offset_seconds: int


@dataclass
class Plan:
    """What one decision step wants written, in the order `leadsla.notify.outbox.apply` writes it."""

    due: list[CheckpointReached] = field(default_factory=list)
    superseded: list[CheckpointReached] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    roll_ups: list[RollUp] = field(default_factory=list)
    digests: list[Digest] = field(default_factory=list)
    breach_actions: list[BreachAction] = field(default_factory=list)
    #: Roles that resolved to nobody ("sla/record/checkpoint: role"), for the log.
    unresolved: list[str] = field(default_factory=list)
    #: People a text was due for without a mobile number (texted by e-mail or Slack instead).
    no_phone: list[str] = field(default_factory=list)


def queued_message(message: Message, created_at: dt.datetime, seq: int) -> Queued:
    """A message this plan adds, as the outbox will hold it."""
    return Queued(
        key=message.key,
        recipient=normalise_recipient(message.recipient),
        channel=message.channel.strip().lower(),
        status="pending",
        attempts=0,
        leased=False,
        not_before=message.not_before or created_at,
        created_at=created_at,
        payload=message.payload,
        sla_id=message.sla_id,
        record_id=message.record_id,
        clock_start=message.clock_start,
        checkpoint=message.checkpoint,
        seq=seq,
    )


def queued_notice(notice: Notice, created_at: dt.datetime, seq: int) -> list[Queued]:
    """A notice's rows, as the outbox will hold them."""
    return [
        Queued(
            key=notice.key(channel, address),
            recipient=normalise_recipient(address),
            channel=channel,
            status="pending",
            attempts=0,
            leased=False,
            not_before=created_at,
            created_at=created_at,
            payload=notice.payload(),
            sla_id=notice.source,
            record_id=None,
            clock_start=notice.opened_at,
            checkpoint=notice.checkpoint,
            seq=seq + i,
        )
        for i, (channel, address) in enumerate(notice.recipients)
    ]


__all__ = [
    "DIGEST",
    "BreachAction",
    "CheckpointId",
    "CheckpointReached",
    "Digest",
    "Message",
    "Notice",
    "Plan",
    "QueueState",
    "Queued",
    "RollUp",
    "queued_message",
    "queued_notice",
]
