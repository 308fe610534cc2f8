"""The figures bench/latency.py reports, computed from plain rows: what reached the people, when,
and what happened to every checkpoint the engine says was reached.

Shared by bench/latency.py (rows from the store, the audit trail and the stand-ins' received
messages) and tests/unit/test_latency_metrics.py (synthetic rows). Pure: no store, no clock.

Definitions (the bench's JSON keys):

* a **checkpoint** is (clock, checkpoint id) with the instant the engine computes for it from the
  clock (its final evaluation: `Reached`);
* **latency**: for each message of a reached checkpoint in the window, its first copy's receive
  time at a stand-in minus the checkpoint's instant; p50 and p95 by nearest rank;
* **stale**: a message a person received about a clock whose record was touched in the CRM at
  least `STALE_MARGIN` before the checkpoint the message is about (the payload's instant);
* **lost**: a reached checkpoint in the window with no message received, no audit entry that
  accounts for it (`EXCUSING_EVENTS`: cancelled by a touch, rolled up, digested, superseded) and
  no message held on purpose (quiet hours: still pending, not before a later time);
* **duplicates**: copies a person could tell apart beyond the first, per message key (Slack
  posts, texts, e-mails with distinct Message-IDs; an e-mail resent with the same Message-ID is
  one message to a mail client and is counted apart as a resend).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

#: A touch this long before a checkpoint must stop its warning.
STALE_MARGIN = dt.timedelta(seconds=15)

#: Audit events that account for a checkpoint without a message of its own.
EXCUSING_EVENTS = frozenset(
    {"cancelled_by_touch", "message_rolled_up", "message_digested", "checkpoint_superseded"}
)

#: A clock: (sla_id, record_id, clock_start as an ISO string in UTC).
ClockId = tuple[str, str, str]
#: A checkpoint of a clock.
CheckpointId = tuple[ClockId, str]


def clock_id(sla_id: str, record_id: str, clock_start: dt.datetime) -> ClockId:
    """The clock's key, one spelling whatever produced the instant (store, engine, payload)."""
    if clock_start.tzinfo is None:
        clock_start = clock_start.replace(tzinfo=dt.UTC)
    return (str(sla_id), str(record_id), clock_start.astimezone(dt.UTC).isoformat(timespec="milliseconds"))


@dataclass(frozen=True)
class Reached:
    """A checkpoint the engine says its clock reached, and when."""

    clock: ClockId
    checkpoint: str
    at: dt.datetime

    @property
    def id(self) -> CheckpointId:
        return (self.clock, self.checkpoint)


@dataclass(frozen=True)
class Message:
    """One outbox row (one recipient on one channel) and every copy the stand-ins received."""

    key: str
    clock: ClockId | None
    checkpoint: str
    channel: str
    status: str
    due_at: dt.datetime | None  # the checkpoint's instant the payload carries
    not_before: dt.datetime | None = None
    received: tuple[dt.datetime, ...] = ()  # receive times of every copy
    distinct_copies: int = 0  # copies a person could tell apart (e-mail: distinct Message-IDs)

    @property
    def checkpoint_id(self) -> CheckpointId | None:
        return (self.clock, self.checkpoint) if self.clock else None

    @property
    def first_received(self) -> dt.datetime | None:
        return min(self.received) if self.received else None


@dataclass
class Figures:
    """The computed figures (see the module docstring)."""

    checkpoints: int = 0
    latencies_s: list[float] = field(default_factory=list)
    delivered: int = 0  # checkpoints with at least one message received
    excused: int = 0  # accounted for by an audit entry
    held: int = 0  # a message held on purpose, still waiting
    lost: list[CheckpointId] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # message keys
    duplicates: int = 0
    email_resends: int = 0

    def as_json(self) -> dict:
        return {
            "checkpoints": self.checkpoints,
            "checkpoint_to_post_p50_s": percentile(self.latencies_s, 0.50),
            "checkpoint_to_post_p95_s": percentile(self.latencies_s, 0.95),
            "checkpoint_to_post_max_s": round(max(self.latencies_s), 1) if self.latencies_s else None,
            "messages_timed": len(self.latencies_s),
            "checkpoints_delivered": self.delivered,
            "checkpoints_accounted_by_audit": self.excused,
            "checkpoints_held": self.held,
            "stale_alerts": len(self.stale),
            "duplicates": self.duplicates,
            "email_resends_same_message_id": self.email_resends,
            "lost": len(self.lost),
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (the smallest value with at least q of the values at or below
    it), rounded to 0.1 s; None for no values."""
    if not values:
        return None
    if not 0 < q <= 1:
        raise ValueError(f"percentile: q must be in (0, 1], got {q}")
    ordered = sorted(values)
    return round(ordered[max(math.ceil(q * len(ordered)) - 1, 0)], 1)


def stale_messages(
    messages: Iterable[Message], touched_at: Mapping[str, dt.datetime], sla_id: str
) -> list[str]:
    """Keys of messages received about a checkpoint of `sla_id` on a record touched at least
    STALE_MARGIN before that checkpoint's instant (the payload's: an unreached checkpoint has no
    other)."""
    out = []
    for m in messages:
        if not m.received or m.clock is None or m.clock[0] != sla_id or m.due_at is None:
            continue
        touch = touched_at.get(m.clock[1])
        if touch is not None and m.due_at - touch >= STALE_MARGIN:
            out.append(m.key)
    return out


def compute(
    reached: Iterable[Reached],
    messages: Sequence[Message],
    audit_events: Iterable[tuple[CheckpointId, str]],
    *,
    window: tuple[dt.datetime, dt.datetime],
    end: dt.datetime,
    touched_at: Mapping[str, dt.datetime] | None = None,
    touch_sla: str = "sales_touch",
) -> Figures:
    """Classify every checkpoint reached in `window` [start, stop] and time its messages.

    Args:
        reached: the engine's reached checkpoints (any time; only the window's are judged).
        messages: every outbox message row, with what the stand-ins received of it.
        audit_events: (checkpoint, event) pairs from the audit trail.
        end: when the run stopped looking (a held message not due before it is still held).
        touched_at: record id -> when the bench committed its touch in the CRM.
    """
    start, stop = window
    by_checkpoint: dict[CheckpointId, list[Message]] = {}
    for m in messages:
        if m.checkpoint_id is not None:
            by_checkpoint.setdefault(m.checkpoint_id, []).append(m)
    excusing = {cp for cp, event in audit_events if event in EXCUSING_EVENTS}
    figures = Figures()
    for cp in reached:
        if not start <= cp.at <= stop:
            continue
        figures.checkpoints += 1
        own = by_checkpoint.get(cp.id, [])
        arrived = [m for m in own if m.received]
        for m in arrived:
            figures.latencies_s.append((m.first_received - cp.at).total_seconds())
        if arrived:
            figures.delivered += 1
        elif cp.id in excusing:
            figures.excused += 1
        elif any(m.status == "pending" and m.not_before is not None and m.not_before > end for m in own):
            figures.held += 1
        else:
            figures.lost.append(cp.id)
    figures.stale = stale_messages(messages, touched_at or {}, touch_sla)
    for m in messages:
        figures.duplicates += max(m.distinct_copies - 1, 0)
        if m.channel == "email":
            figures.email_resends += max(len(m.received) - max(m.distinct_copies, 1), 0)
    return figures
