"""The outbox: every message and breach action is written here before it happens, and only here.

This module is the only code that inserts or changes outbox rows (a test over the source and a
runtime check hold it to that). Decisions arrive as data (`leadsla.decisions.plan`): `apply`
writes a whole `Plan` in the caller's transaction (checkpoints acted on, messages, notices,
capacity roll-ups, digests, breach actions, each with its audit entries), `queue_notices` writes
notices from the other pipelines, and `queue_state` / `handled_checkpoints` are the snapshot the
decisions read. Every checkpoint acted on is also written to `handled_checkpoints` in the same
transaction (a keyed table the decisions read by record, where they used to scan the audit trail);
its key is what stops a concurrent or retried run recording a checkpoint twice. Delivery
(`leadsla.notify.delivery`) and escalation (`leadsla.escalation`) then `claim` rows under a
lease and mark them. Every operation takes its time from the caller (the run's time, or for
leases the delivering attempt's start) and audits with the Airflow task run
that did it. Never sends anything and never reads the wall clock for a decision.

Row life: ``pending`` --claim--> (lease in ``claimed_until``) --> ``delivered``, or back to
``pending`` with a later ``not_before`` (transient failure, exponential back-off), or
``failed`` (a permanent failure a person must look at); a warning may instead end ``digested``
and a leadership breach message ``rolled_up`` (never sent: a digest or capacity alert says it).
A warning or breach planned ahead (queued before its checkpoint: `planned_instant`) may end
``cancelled`` (the lead was touched before the instant) or ``withdrawn`` (its clock changed: the
monitor queues what the changed clock calls for, under the same key when it is the same message).
A planned breach ends whole: cancelling or withdrawing one of its rows (a message or the CRM
action) ends every other of its rows nobody holds a lease on (`cancel`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import sqlalchemy as sa

from leadsla.decisions.digest import digest_of
from leadsla.decisions.keys import DIGEST, MESSAGE_CHANNELS, normalise_recipient, utc_iso
from leadsla.decisions.phones import shown_recipient
from leadsla.decisions.plan import (
    BreachAction,
    CheckpointId,
    CheckpointReached,
    Digest,
    Message,
    Notice,
    Plan,
    Queued,
    QueueState,
    RollUp,
)
from leadsla.notify.payloads import parse_payload
from leadsla.notify.stored_payload import stored_payload
from leadsla.store.audit import AuditContext, record, record_many
from leadsla.store.schema import NO_RECORD, audit, outbox
from leadsla.store.schema import handled_checkpoints as handled_table
from leadsla.store.upsert import insert_new

#: Breach actions' channel: claimed and performed by `leadsla.escalation.breach`, never by delivery.
CRM_CHANNEL = "crm"
#: The checkpoint whose planned rows (messages and CRM action) end together (`cancel`).
BREACH = "breach"

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
    #: When the row fell due for this claim: no try of it ran earlier (a crash recovery's bound).
    not_before: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Claimed:
        """From an outbox row (a SQLAlchemy Row with at least these columns)."""
        values = {f.name: getattr(row, f.name) for f in fields(cls)}
        return cls(**{**values, "payload": dict(values["payload"])})

    @property
    def attempted_before(self) -> bool:
        """True when an earlier attempt may have reached the recipient (reconcile before resending)."""
        return self.attempts > 1


def _message_detail(row: Any) -> dict[str, Any]:
    """What every delivery audit entry says about the message: its key, channel, recipient, attempt."""
    return {
        "idempotency_key": row.idempotency_key,
        "channel": row.channel,
        "recipient": shown_recipient(row.channel, row.recipient),  # an SMS number masked
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


def _row(
    key: str,
    *,
    sla_id: str | None,
    record_id: str | None,
    clock_start: dt.datetime | None,
    checkpoint: str,
    recipient: str,
    channel: str,
    payload: Mapping[str, Any],
    at: dt.datetime,
    not_before: dt.datetime | None = None,
) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "sla_id": sla_id,
        "record_id": record_id,
        "clock_start": clock_start,
        "checkpoint": checkpoint,
        "recipient": normalise_recipient(recipient),
        "channel": channel.strip().lower(),
        "payload": dict(payload),
        "status": "pending",
        "attempts": 0,
        "created_at": at,
        "not_before": not_before or at,
    }


#: A planned warning withdrawn because its clock changed (paused, reassigned, re-tiered): not a
#: handled checkpoint, and its key may be queued again (`enqueue` revives the row).
WITHDRAWN = "withdrawn"
#: A planned warning cancelled because the lead was touched (or moved on) before the instant.
CANCELLED = "cancelled"


def planned_instant(payload: Mapping[str, Any] | None) -> dt.datetime | None:
    """The checkpoint instant of a warning, breach message or breach action the monitor planned
    ahead (its payload says `planned`; the instant is its `due_at`), or None for any other row."""
    payload = payload or {}
    if not payload.get("planned") or not payload.get("due_at"):
        return None
    return dt.datetime.fromisoformat(payload["due_at"])


def _insert(conn: sa.Connection, row: dict[str, Any]) -> bool:
    """Insert a row unless its key is already there (then it is left exactly as it is), except a
    row `WITHDRAWN` before its instant, which is queued again with the new contents (it never left);
    a row about a checkpoint marks it handled."""
    if row["sla_id"] is not None and row["clock_start"] is not None:
        _mark_handled(
            conn,
            [(row["sla_id"], row["record_id"], row["clock_start"], row["checkpoint"])],
            row["created_at"],
        )
    if insert_new(conn, outbox, [row], key=["idempotency_key"]):
        return True
    return _revive(conn, row)


def _insert_many(conn: sa.Connection, rows: list[dict[str, Any]]) -> list[bool]:
    """`_insert` for each of `rows` in a few statements, not two a row (a monitor run queues
    hundreds of planned messages): the checkpoints marked handled, the rows whose key is new
    inserted (the first of any repeated key), and each other row revived if `WITHDRAWN`. The same
    rows, statuses and handled checkpoints as `_insert` one at a time in the same transaction; which
    rows went in, in `rows`' order."""
    if not rows:
        return []
    handled_at: dict[dt.datetime, list[CheckpointId]] = {}  # one instant, a run's
    for r in rows:
        if r["sla_id"] is not None and r["clock_start"] is not None:
            handled_at.setdefault(r["created_at"], []).append(
                (r["sla_id"], r["record_id"], r["clock_start"], r["checkpoint"])
            )
    for at, ids in handled_at.items():
        _mark_handled(conn, ids, at)
    first: dict[str, dict[str, Any]] = {}
    for row in rows:
        first.setdefault(row["idempotency_key"], row)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = (
        insert(outbox)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(outbox.c.idempotency_key)
    )
    inserted = set(conn.execute(stmt, list(first.values())).scalars())
    went = []
    for row in rows:
        key = row["idempotency_key"]
        if first[key] is not row:  # a repeat within the call: the first one stands, as it would
            went.append(False)
        elif key in inserted:
            went.append(True)
        else:
            went.append(_revive(conn, row))
    return went


def _revive(conn: sa.Connection, row: dict[str, Any]) -> bool:
    """Queue a row `WITHDRAWN` before its instant again with the new contents (it never left)."""
    revived = conn.execute(
        outbox.update()
        .where(outbox.c.idempotency_key == row["idempotency_key"], outbox.c.status == WITHDRAWN)
        .values(
            payload=row["payload"],
            status="pending",
            attempts=0,
            created_at=row["created_at"],
            not_before=row["not_before"],
            claimed_until=None,
            last_error=None,
        )
    )
    return revived.rowcount == 1


_HANDLED_KEY = ("record_id", "sla_id", "clock_start", "checkpoint")


def _mark_handled(conn: sa.Connection, ids: Iterable[CheckpointId], at: dt.datetime) -> set[CheckpointId]:
    """Write `ids` to handled_checkpoints; returns those that were not there yet (a concurrent or
    earlier run's are left as they are)."""
    rows = [
        {
            "record_id": NO_RECORD if r is None else r,
            "sla_id": s,
            "clock_start": c,
            "checkpoint": k,
            "handled_at": at,
        }
        for s, r, c, k in dict.fromkeys(ids)
    ]
    if not rows:
        return set()
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = (
        insert(handled_table)
        .on_conflict_do_nothing(index_elements=list(_HANDLED_KEY))
        .returning(*(handled_table.c[k] for k in _HANDLED_KEY))
    )
    return {_handled_id(r) for r in conn.execute(stmt, rows)}


def _unmark_withdrawn(conn: sa.Connection, row: Claimed) -> None:
    """A withdrawn planned warning's checkpoint is handled no more once nothing else acted on it (no
    other row about it still standing, no due or superseded audit), so the monitor decides it again
    from the changed clock."""
    if row.sla_id is None or row.clock_start is None:
        return
    same = {"sla_id": row.sla_id, "record_id": row.record_id, "clock_start": row.clock_start}
    about = [outbox.c[k] == v for k, v in same.items()] + [outbox.c.checkpoint == row.checkpoint]
    standing = conn.execute(
        sa.select(outbox.c.outbox_id).where(*about, outbox.c.status != WITHDRAWN).limit(1)
    )
    audited = conn.execute(
        sa.select(audit.c.audit_id)
        .where(
            *[audit.c[k] == v for k, v in same.items()],
            audit.c.checkpoint == row.checkpoint,
            audit.c.event.in_(["checkpoint_superseded", "checkpoint_due"]),
        )
        .limit(1)
    )
    if standing.first() is None and audited.first() is None:
        key = {"sla_id": row.sla_id, "record_id": row.record_id or NO_RECORD, "clock_start": row.clock_start}
        conn.execute(
            handled_table.delete().where(
                *[handled_table.c[k] == v for k, v in key.items()],
                handled_table.c.checkpoint == row.checkpoint,
            )
        )


def _handled_id(row: Any) -> CheckpointId:
    record_id, sla_id, clock_start, checkpoint = tuple(row)
    return (sla_id, None if record_id == NO_RECORD else record_id, clock_start, checkpoint)


def enqueue(
    conn: sa.Connection, messages: Iterable[Message], at: dt.datetime, context: AuditContext
) -> list[str]:
    """Write messages with a `message_queued` audit entry each, in the caller's transaction.

    Call inside ``engine.begin()`` (with the clock updates that produced them, ideally), so the
    messages and their audit entries commit together or not at all. A message whose key is
    already in the outbox is left exactly as it is: enqueueing twice is a no-op.

    Returns:
        The idempotency keys that were new.

    Raises:
        leadsla.notify.payloads.PayloadError: a message's payload does not follow its schema.
        ValueError: naive times or an unknown channel.
    """
    new_keys: list[str] = []
    audits: list[dict[str, Any]] = []
    made = []
    for message in messages:
        payload = parse_payload(message.payload, where=f"{message.channel} message for {message.record_id}")
        row = _row(
            message.key,
            sla_id=message.sla_id,
            record_id=message.record_id,
            clock_start=message.clock_start,
            checkpoint=message.checkpoint,
            recipient=message.recipient,
            channel=message.channel,
            payload=payload.to_json(),
            at=at,
            not_before=message.not_before,
        )
        made.append((message, payload, row))
    for (message, payload, row), went in zip(made, _insert_many(conn, [r for _, _, r in made]), strict=True):
        if not went:
            continue
        key = message.key
        new_keys.append(key)
        audits.append(
            {
                "event": "message_queued",
                "at": at,
                "object_type": payload.lead.object_type if hasattr(payload, "lead") else None,
                "record_id": message.record_id,
                "sla_id": message.sla_id,
                "clock_start": message.clock_start,
                "checkpoint": message.checkpoint,
                "actor": f"notify.{row['channel']}",
                "detail": {
                    "idempotency_key": key,
                    "channel": row["channel"],
                    "recipient": shown_recipient(row["channel"], row["recipient"]),
                    "kind": payload.kind,
                    "not_before": utc_iso(row["not_before"]),
                    # Queued ahead of its checkpoint: sent at that instant, after a re-check.
                    **(
                        {"planned_for": utc_iso(instant)}
                        if (instant := planned_instant(row["payload"])) is not None
                        else {}
                    ),
                    # One message per person: the roles it stands for (owner, team_manager, ...).
                    **({"roles": list(payload.roles)} if getattr(payload, "roles", None) else {}),
                    # The escalation-ladder rule that sent a breach message, and why.
                    **(
                        {"ladder_rule": payload.ladder.rule, "ladder_why": payload.ladder.why}
                        if getattr(payload, "ladder", None)
                        else {}
                    ),
                },
            }
        )
    record_many(conn, audits, context=context)
    return new_keys


def queue_notices(
    conn: sa.Connection, notices: Iterable[Notice], at: dt.datetime, context: AuditContext | None = None
) -> list[str]:
    """Queue each notice once per (channel, recipient), in the caller's transaction; a known key is
    a no-op. Each new row is audited as the notice says (`Notice.audit_event`).

    Returns:
        The idempotency keys that were new.
    """
    new: list[str] = []
    audits: list[dict[str, Any]] = []
    for notice in notices:
        payload = parse_payload(notice.payload(), where=f"notice {notice.source}/{notice.subject}").to_json()
        for channel, recipient in notice.recipients:
            key = notice.key(channel, recipient)
            row = _row(
                key,
                sla_id=notice.source,
                record_id=None,
                clock_start=notice.opened_at,
                checkpoint=notice.checkpoint,
                recipient=recipient,
                channel=channel,
                payload=payload,
                at=at,
            )
            if not _insert(conn, row):
                continue
            new.append(key)
            detail = dict(notice.audit_detail) or {"kind": "notice", "subject": notice.subject}
            audits.append(
                {
                    "event": notice.audit_event,
                    "at": at,
                    "sla_id": notice.source,
                    "checkpoint": notice.checkpoint,
                    "actor": notice.actor or f"{notice.source}.{channel}",
                    **(
                        {"object_type": notice.record[0], "record_id": notice.record[1]}
                        if notice.record
                        else {}
                    ),
                    "detail": {
                        "idempotency_key": key,
                        "channel": row["channel"],
                        "recipient": shown_recipient(row["channel"], row["recipient"]),
                        **detail,
                    },
                }
            )
    if audits:
        record_many(conn, audits, context=context or AuditContext())
    return new


def handled_checkpoints(
    conn: sa.Connection, record_ids: Iterable[str] | None = None, *, notices_since: dt.datetime | None = None
) -> frozenset[CheckpointId]:
    """Checkpoints already acted on: queued in any status (outbox), superseded or due (audit), as
    `handled_checkpoints` holds them.

    Args:
        record_ids: only these records' checkpoints and the notices about no record (capacity
            alerts, digests); None: all.
        notices_since: with `record_ids`, only the notices about no record keyed at or after this
            instant (the decisions look back a week at most).
    """
    table = handled_table
    query = sa.select(*(table.c[k] for k in _HANDLED_KEY))
    if record_ids is None:
        return frozenset(_handled_id(r) for r in conn.execute(query))
    notices = table.c.record_id == NO_RECORD
    if notices_since is not None:
        notices = sa.and_(notices, table.c.clock_start >= notices_since)
    found = {_handled_id(r) for r in conn.execute(query.where(notices))}
    ids = sorted({str(i) for i in record_ids})
    for at in range(0, len(ids), 2000):  # under SQLite's bound-parameter limit
        found |= {
            _handled_id(r) for r in conn.execute(query.where(table.c.record_id.in_(ids[at : at + 2000])))
        }
    return frozenset(found)


@dataclass(frozen=True)
class Queue:
    """The recipients' queues (`queue_of`): the rows a decision reads whole, in outbox order, the
    rows only counted per person (recipient, channel), and the next outbox sequence number."""

    rows: tuple[Queued, ...]
    counted: Mapping[tuple[str, str], int]
    next_seq: int


def queue_state(
    conn: sa.Connection,
    now: dt.datetime,
    *,
    window_minutes: int,
    record_ids: Iterable[str] | None = None,
    notices_since: dt.datetime | None = None,
    leaders: Collection[str] | None = None,
    queue: Queue | None = None,
) -> QueueState:
    """The recipients' state a decision reads (`leadsla.decisions.plan.QueueState`): their queues
    (`queue_of`, or `queue` when it was read already) and the checkpoints already handled (of
    `record_ids` and recent notices only, when given: `handled_checkpoints`)."""
    if queue is None:
        queue = queue_of(conn, now, window_minutes=window_minutes, leaders=leaders)
    handled = handled_checkpoints(conn, record_ids, notices_since=notices_since)
    return QueueState(rows=queue.rows, handled=handled, next_seq=queue.next_seq, counted=queue.counted)


def queue_of(
    conn: sa.Connection, now: dt.datetime, *, window_minutes: int, leaders: Collection[str] | None = None
) -> Queue:
    """The recipients' queues at `now`: pending messages and those delivered within the rate-limit
    window, in outbox order.

    A warning planned for an instant after `now` is not in the rows: until its checkpoint it is
    not part of anyone's queue (rate limit, roll-ups), so those decisions are what they were
    when warnings were queued at their checkpoint. From its instant on it is an ordinary row.

    Args:
        leaders: the addresses whose breach messages a capacity alert may roll up
            (`decisions.ahead.leadership`). Given, the rows no decision reads but the rate limit
            counts (`only_counted`: delivered in the window, tried, not due yet, not a warning,
            and not a leader's untried breach message) are counted per person in SQL
            (`Queue.counted`) instead of read: a backlog of breach messages is tens of
            thousands of rows of a kilobyte each. None: every row is read.
    """
    if leaders is None:
        queued, counted = queued_rows(conn, now, window_minutes=window_minutes), {}
    else:
        counted_only = only_counted(now, leaders)
        queued = queued_rows(conn, now, window_minutes=window_minutes, where=sa.not_(counted_only))
        counted = counted_rows(conn, now, window_minutes=window_minutes, where=counted_only)
    last = conn.execute(sa.select(sa.func.max(outbox.c.outbox_id))).scalar() or 0
    return Queue(rows=queued, counted=counted, next_seq=last + 1)


def _in_queue(now: dt.datetime, window_minutes: int) -> list[sa.ColumnElement]:
    """The rows in someone's queue: pending messages, and those delivered within the window."""
    since = now - dt.timedelta(minutes=window_minutes)
    return [
        outbox.c.channel.in_(sorted(MESSAGE_CHANNELS)),
        sa.or_(
            outbox.c.status == "pending",
            sa.and_(outbox.c.status == "delivered", outbox.c.delivered_at > since),
        ),
    ]


def _payload_json(key: str, payload: sa.ColumnElement = outbox.c.payload) -> sa.ColumnElement:
    """A payload key's JSON text (`true`, `"2026-..."`; NULL when absent), on both backends: the
    same `->` operator (PostgreSQL's json, SQLite's from 3.38), as text to group by."""
    return sa.cast(payload.op("->")(sa.literal_column(f"'{key}'")), sa.Text)


def only_counted(now: dt.datetime, leaders: Collection[str]) -> sa.ColumnElement:
    """True for an outbox row no decision reads but the rate limit counts (`queue_state`): not a
    due warning nobody tried (a digest may take it, `decisions.digest`), and not an untried breach
    message to a leader (a capacity alert may roll it up, `decisions.capacity`). NULL is read as
    False, so a row this cannot tell for certain is read whole."""
    untried = sa.and_(outbox.c.status == "pending", outbox.c.attempts == 0)
    digestible = sa.and_(
        untried,
        outbox.c.not_before <= now,
        sa.func.coalesce(outbox.c.payload["kind"].as_string(), "") == "warning",
    )
    rolls_up = sa.and_(
        untried,
        outbox.c.checkpoint == "breach",
        outbox.c.channel.in_(["email", "slack"]),
        outbox.c.recipient.in_(sorted(leaders)),
    )
    return sa.func.coalesce(sa.not_(sa.or_(digestible, rolls_up)), sa.false())


def counted_rows(
    conn: sa.Connection, now: dt.datetime, *, window_minutes: int, where: sa.ColumnElement
) -> dict[tuple[str, str], int]:
    """How many rows of `where` are in each person's queue (recipient, channel), counted in SQL:
    grouped by their payload's `planned` and, when it may be set, `due_at` (as JSON text), so a
    warning planned for an instant after `now` is left out exactly as `queued_rows` leaves it
    (`planned_instant` on those two values)."""
    # Each payload's JSON parsed once per key: `planned` in a subquery the planner keeps apart (OFFSET
    # 0; inlined, the expression would be parsed again for `due_at`'s condition and the grouping).
    inner = (
        sa.select(
            outbox.c.recipient, outbox.c.channel, _payload_json("planned").label("planned"), outbox.c.payload
        )
        .where(*_in_queue(now, window_minutes), where)
        .offset(0)
        .subquery()
    )
    falsy = sa.or_(
        inner.c.planned.is_(None),
        inner.c.planned.in_([sa.literal_column("'false'"), sa.literal_column("'null'")]),
    )
    due_at = sa.case((falsy, None), else_=_payload_json("due_at", inner.c.payload))
    rows = sa.select(inner.c.recipient, inner.c.channel, inner.c.planned, due_at.label("due_at")).subquery()
    counted: dict[tuple[str, str], int] = {}
    for recipient, channel, planned_json, due_json, n in conn.execute(
        sa.select(rows.c.recipient, rows.c.channel, rows.c.planned, rows.c.due_at, sa.func.count()).group_by(
            rows.c.recipient, rows.c.channel, rows.c.planned, rows.c.due_at
        )
    ):
        head = {
            k: json.loads(v) for k, v in (("planned", planned_json), ("due_at", due_json)) if v is not None
        }
        if (at := planned_instant(head)) is not None and at > now:
            continue
        counted[(recipient, channel)] = counted.get((recipient, channel), 0) + n
    return counted


def queued_rows(
    conn: sa.Connection,
    now: dt.datetime,
    *,
    window_minutes: int,
    person: tuple[str, str] | None = None,
    where: sa.ColumnElement | None = None,
) -> tuple[Queued, ...]:
    """`queue_state`'s rows: the pending messages and those delivered within the rate-limit window,
    in outbox order, planned warnings from their instant on; one person's on one channel only when
    `person` (recipient, channel) is given, those of `where` only when it is."""
    mine = [] if person is None else [outbox.c.recipient == person[0], outbox.c.channel == person[1]]
    rows = conn.execute(
        sa.select(
            outbox.c.outbox_id,
            outbox.c.idempotency_key,
            outbox.c.recipient,
            outbox.c.channel,
            outbox.c.status,
            outbox.c.attempts,
            outbox.c.not_before,
            outbox.c.claimed_until,
            outbox.c.created_at,
            # As its text, decoded when read (`notify.stored_payload`): most rows' payloads never are.
            sa.cast(outbox.c.payload, sa.Text).label("payload"),
            outbox.c.sla_id,
            outbox.c.record_id,
            outbox.c.clock_start,
            outbox.c.checkpoint,
        ).where(*_in_queue(now, window_minutes), *mine, *([] if where is None else [where]))
    ).all()
    # In outbox order, sorted here: sorting tens of thousands of rows with their payloads' text
    # made PostgreSQL spill them to disk.
    queued = []
    for r in sorted(rows, key=lambda r: (r.created_at, r.outbox_id)):
        payload = stored_payload(r.payload, where=f"outbox row {r.idempotency_key!r}")
        if (at := planned_instant(payload)) is not None and at > now:
            continue
        queued.append(
            Queued(
                key=r.idempotency_key,
                recipient=r.recipient,
                channel=r.channel,
                status=r.status,
                attempts=r.attempts,
                leased=r.claimed_until is not None and r.attempts > 0,  # 0: held, never tried
                not_before=r.not_before,
                created_at=r.created_at,
                payload=payload,
                sla_id=r.sla_id,
                record_id=r.record_id,
                clock_start=r.clock_start,
                checkpoint=r.checkpoint,
                seq=r.outbox_id,
            )
        )
    return tuple(queued)


def apply(conn: sa.Connection, plan: Plan, at: dt.datetime, context: AuditContext) -> dict[str, int]:
    """Write a decision step's plan in the caller's transaction, in order: the checkpoints acted
    on and passed over (audit), messages, notices, capacity roll-ups, digests, breach actions.

    Every insert is idempotent (a known key is left as it is) and every change of a row's status
    is conditional on the row still being untouched, so a rerun, or a worker claiming a row
    between the decision and this write, never sends twice or withdraws what is on its way.

    Returns:
        Counts: queued (new messages), notices (new notice rows), rolled_up, digests, breaches
        (new breach actions).
    """
    _record_checkpoints(conn, plan.due, plan.superseded, at, context)
    queued = enqueue(conn, plan.messages, at, context)
    notices = queue_notices(conn, plan.notices, at, context)
    rolled = _roll_up(conn, plan.roll_ups, at, context)
    digests = _queue_digests(conn, plan.digests, at, context)
    breaches = _queue_breach_actions(conn, plan.breach_actions, at, context)
    return {
        "queued": len(queued),
        "notices": len(notices),
        "rolled_up": rolled,
        "digests": len(digests),
        "breaches": len(breaches),
    }


def _record_checkpoints(
    conn: sa.Connection,
    due: Sequence[CheckpointReached],
    superseded: Sequence[CheckpointReached],
    at: dt.datetime,
    context: AuditContext,
) -> None:
    # Only the checkpoints this write is first to handle are recorded: a concurrent or retried run
    # that decided the same ones (from a snapshot read before this one committed) records nothing.
    new = _mark_handled(
        conn, [(cp.sla_id, cp.record_id, cp.clock_start, cp.checkpoint) for cp in (*due, *superseded)], at
    )
    entries = []
    for event, reached in (("checkpoint_due", due), ("checkpoint_superseded", superseded)):
        for cp in reached:
            if (cp.sla_id, cp.record_id, cp.clock_start, cp.checkpoint) not in new:
                continue
            entries.append(
                {
                    "event": event,
                    "at": at,
                    "object_type": None,
                    "record_id": cp.record_id,
                    "sla_id": cp.sla_id,
                    "clock_start": cp.clock_start,
                    "checkpoint": cp.checkpoint,
                    "policy_version": cp.policy_version,
                    "actor": "sla_monitor",
                    "detail": {
                        "reached_at": cp.reached_at.isoformat(),
                        "offset_seconds": cp.offset_seconds,
                        **({"sent": False} if event == "checkpoint_superseded" else {}),
                    },
                }
            )
    record_many(conn, entries, context=context)


def _untouched(key: str):
    """Pending and never tried: every claim counts an attempt, so a row with none has reached nobody
    (a lease with no attempt is a planned warning `hold` keeps for the monitor's digest)."""
    return sa.and_(outbox.c.idempotency_key == key, outbox.c.status == "pending", outbox.c.attempts == 0)


def _roll_up(conn: sa.Connection, roll_ups: Sequence[RollUp], at: dt.datetime, context: AuditContext) -> int:
    """Mark leadership breach messages ``rolled_up`` into their capacity alert (if still untouched)."""
    audits = []
    for roll_up in roll_ups:
        row = roll_up.row
        if conn.execute(outbox.update().where(_untouched(row.key)).values(status="rolled_up")).rowcount != 1:
            continue  # a worker took it meanwhile: it goes out as itself
        audits.append(
            {
                "event": "message_rolled_up",
                "at": at,
                "sla_id": row.sla_id,
                "record_id": row.record_id,
                "clock_start": row.clock_start,
                "checkpoint": "breach",
                "actor": "sla_monitor",
                "object_type": (row.payload.get("lead") or {}).get("object_type"),
                "detail": {
                    "idempotency_key": row.key,
                    "team": roll_up.team,
                    "capacity_key": roll_up.capacity_key,
                    "channel": row.channel,
                    "recipient": shown_recipient(row.channel, row.recipient),
                },
            }
        )
    record_many(conn, audits, context=context)
    return len(audits)


def _queue_digests(
    conn: sa.Connection, digests: Sequence[Digest], at: dt.datetime, context: AuditContext
) -> list[str]:
    """Mark each digest's warnings ``digested`` and queue the digest in their place.

    A warning a worker took between the decision and now goes as itself; the digest then covers
    the rest (re-derived by the same decision function), or none when fewer than two are left.
    """
    new: list[str] = []
    for digest in digests:
        taken = _take_for_digest(conn, digest.replaces)
        if len(taken) < 2:  # a lone warning goes as itself
            for row in taken:
                conn.execute(
                    outbox.update().where(outbox.c.idempotency_key == row.key).values(status="pending")
                )
            continue
        if len(taken) != len(digest.replaces):
            digest = digest_of(
                digest.recipient,
                digest.channel,
                taken,
                max_alerts=digest.max_alerts,
                window_minutes=digest.window_minutes,
            )
        payload = parse_payload(digest.payload, where=f"digest for {digest.recipient}").to_json()
        row = _row(
            digest.key,
            sla_id=DIGEST,
            record_id=None,
            clock_start=None,
            checkpoint=DIGEST,
            recipient=digest.recipient,
            channel=digest.channel,
            payload=payload,
            at=at,
        )
        if _insert(conn, row):
            new.append(digest.key)
            record_many(conn, _digest_audits(digest, at), context=context)
    return new


def _take_for_digest(conn: sa.Connection, rows: Sequence[Queued]) -> list[Queued]:
    """Mark the rows still untouched ``digested``; the ones taken."""
    taken = []
    for row in rows:
        marked = conn.execute(
            outbox.update().where(_untouched(row.key)).values(status="digested", last_error=None)
        )
        if marked.rowcount == 1:
            taken.append(row)
    return taken


def _digest_audits(digest: Digest, at: dt.datetime) -> list[dict[str, Any]]:
    """`message_queued` for the digest, `message_digested` for each warning it replaces."""
    queued = {
        "event": "message_queued",
        "at": at,
        "actor": f"notify.{digest.channel}",
        "checkpoint": DIGEST,
        "detail": {
            "idempotency_key": digest.key,
            "channel": digest.channel,
            "recipient": shown_recipient(digest.channel, digest.recipient),
            "kind": DIGEST,
            "replaces": len(digest.replaces),
            "max_alerts": digest.max_alerts,
            "window_minutes": digest.window_minutes,
        },
    }
    digested = [
        {
            "event": "message_digested",
            "at": at,
            "actor": f"notify.{digest.channel}",
            "sla_id": r.sla_id,
            "record_id": r.record_id,
            "clock_start": r.clock_start,
            "checkpoint": r.checkpoint,
            "object_type": (r.payload.get("lead") or {}).get("object_type"),
            "detail": {
                "idempotency_key": r.key,
                "digest_key": digest.key,
                "channel": digest.channel,
                "recipient": shown_recipient(digest.channel, digest.recipient),
            },
        }
        for r in digest.replaces
    ]
    return [queued, *digested]


def enqueue_actions(
    conn: sa.Connection, actions: Sequence[BreachAction], at: dt.datetime, context: AuditContext
) -> list[str]:
    """Queue breach actions planned ahead (`decisions.ahead`: `planned_for` their breach's instant,
    their `not_before`), in the caller's transaction; returns the keys that were new."""
    return _queue_breach_actions(conn, actions, at, context)


def _queue_breach_actions(
    conn: sa.Connection, actions: Sequence[BreachAction], at: dt.datetime, context: AuditContext
) -> list[str]:
    """Queue breach actions on channel ``crm`` (idempotent), each audited ``escalation`` (queued);
    a planned one is due at its breach's instant."""
    new: list[str] = []
    for action in actions:
        payload = action.payload()
        row = _row(
            action.key,
            sla_id=action.sla_id,
            record_id=action.record_id,
            clock_start=action.clock_start,
            checkpoint="breach",
            recipient=action.recipient,
            channel=CRM_CHANNEL,
            payload=payload,
            at=at,
            not_before=action.planned_for,
        )
        if not _insert(conn, row):
            continue
        new.append(action.key)
        record(
            conn,
            "escalation",
            at=at,
            context=context,
            object_type=action.object_type,
            record_id=action.record_id,
            sla_id=action.sla_id,
            clock_start=action.clock_start,
            checkpoint="breach",
            actor="sla_monitor",
            detail={
                "idempotency_key": action.key,
                "queued": True,
                **payload,
                **({"planned_for": utc_iso(action.planned_for)} if action.planned_for else {}),
            },
        )
    return new


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
        taken.append(Claimed.from_row(row))
    return taken


def _lease_still_ours(row: Claimed):
    """The row is still pending under the very lease this worker took (same `claimed_until`)."""
    return sa.and_(
        outbox.c.outbox_id == row.outbox_id,
        outbox.c.status == "pending",
        outbox.c.claimed_until == row.claimed_until,
    )


def renew(
    conn: sa.Connection, row: Claimed, now: dt.datetime, lease: dt.timedelta = DEFAULT_LEASE
) -> Claimed | None:
    """Extend this worker's lease on `row` just before sending it.

    Conditional on the lease still being ours (same `claimed_until`, still pending): if it lapsed
    and another worker took the row, this returns None and the caller must not send.
    """
    until = now + lease
    result = conn.execute(outbox.update().where(_lease_still_ours(row)).values(claimed_until=until))
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
        .where(_lease_still_ours(row))
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
    result = conn.execute(outbox.update().where(_lease_still_ours(row)).values(values))
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
            "retry_at": utc_iso(retry_at) if retry_at else None,
            "attempt_counted": not uncount,
        },
        **_audit_fields(row),
    )
    return True


def cancel(
    conn: sa.Connection,
    row: Claimed,
    at: dt.datetime,
    context: AuditContext,
    *,
    event: str,
    detail: Mapping[str, Any],
) -> bool:
    """End a planned warning unsent, conditional on the lease still being ours; audit `event`. A
    planned breach's row ends the whole breach: its other rows nobody holds a lease on (messages
    waiting for their instant or the recipient's morning, the CRM action) end with it, each
    audited; a row another worker holds is re-checked by that worker.

    Args:
        event: ``cancelled_by_touch`` (the lead was touched or moved on before the instant: the row
            ends `CANCELLED`) or ``cancelled_by_change`` (its clock changed: the row ends `WITHDRAWN`,
            so the monitor queues what the changed clock calls for).
        detail: why, for the audit (the touch's time, the clock's state).

    Returns:
        True when the row was ours and is now ended.
    """
    status = {"cancelled_by_touch": CANCELLED, "cancelled_by_change": WITHDRAWN}[event]
    result = conn.execute(
        outbox.update()
        .where(_lease_still_ours(row))
        .values(status=status, claimed_until=None, attempts=outbox.c.attempts - 1, last_error=event)
    )
    if result.rowcount != 1:
        return False
    ended = [row]
    if row.checkpoint == BREACH and planned_instant(row.payload) is not None:
        ended += _end_breach(conn, row, status, event, at)
    if status == WITHDRAWN:
        _unmark_withdrawn(conn, row)
    record_many(
        conn,
        [
            {
                "event": event,
                "at": at,
                "actor": _actor(r),
                "detail": {
                    **_message_detail(r),
                    "attempt": r.attempts - 1 if r is row else r.attempts,
                    **({} if r is row else {"with": row.idempotency_key}),
                    **dict(detail),
                },
                **_audit_fields(r),
            }
            for r in ended
        ],
        context=context,
    )
    return True


def _actor(row: Any) -> str:
    return "escalation" if row.channel == CRM_CHANNEL else f"notify.{row.channel}"


def _end_breach(conn: sa.Connection, row: Claimed, status: str, event: str, at: dt.datetime) -> list[Any]:
    """End the other planned rows of `row`'s breach that are pending and were never tried (a row
    leased or tried by another worker is re-checked by whoever takes it next, and a try may have
    reached its recipient); returns those ended."""
    same = [
        outbox.c.sla_id == row.sla_id,
        outbox.c.record_id == row.record_id,
        outbox.c.clock_start == row.clock_start,
        outbox.c.checkpoint == BREACH,
        outbox.c.outbox_id != row.outbox_id,
        outbox.c.status == "pending",
        outbox.c.attempts == 0,
    ]
    free = sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < at)
    ended = []
    for other in conn.execute(sa.select(outbox).where(*same, free)).all():
        if planned_instant(other.payload) is None:
            continue  # queued at reach (after a withdrawal): decided then, not part of the plan
        done = conn.execute(
            outbox.update()
            .where(outbox.c.outbox_id == other.outbox_id, *same[-2:], free)
            .values(status=status, claimed_until=None, last_error=event)
        )
        if done.rowcount == 1:
            ended.append(other)
    return ended


def hold(
    conn: sa.Connection,
    row: Claimed,
    until: dt.datetime,
    at: dt.datetime,
    context: AuditContext,
    *,
    detail: Mapping[str, Any] | None = None,
) -> bool:
    """Keep a planned warning unsent until `until` for the monitor's rate-limit digest, as if it
    had been queued at its checkpoint: the claim's attempt is taken back (untouched, so a digest
    may take it) and the lease left running, so no deliverer sends it meanwhile. Audited
    `message_deferred` (reason ``held_for_digest``, with `detail`: why the digest will fold it).

    Returns:
        True when the lease was ours and the row is held.
    """
    result = conn.execute(
        outbox.update()
        .where(_lease_still_ours(row))
        .values(claimed_until=until, attempts=outbox.c.attempts - 1, last_error="held_for_digest")
    )
    if result.rowcount != 1:
        return False
    record(
        conn,
        "message_deferred",
        at=at,
        context=context,
        actor=f"notify.{row.channel}",
        detail={
            **_message_detail(row),
            **(detail or {}),
            "reason": "held_for_digest",
            "retry_at": utc_iso(until),
            "attempt_counted": False,
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


def due_now(conn: sa.Connection, now: dt.datetime, *, channels: Iterable[str]) -> bool:
    """Whether a row of `channels` is claimable at `now` (one indexed look, no lease taken)."""
    query = sa.select(outbox.c.outbox_id).where(_claimable(now), outbox.c.channel.in_(list(channels)))
    return conn.execute(query.limit(1)).first() is not None


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
    *,
    cause: str | None = None,
    notices: Sequence[Notice] = (),
    detail: Mapping[str, Any] | None = None,
) -> list[str]:
    """Record a failed attempt and audit `message_failed`; queue `notices` in the same transaction.

    Args:
        error: a one-line reason for a person (never a secret).
        retry_at: when to try again (the row goes back to pending with `not_before` = retry_at
            and its lease released); None makes the failure permanent (status ``failed``).
        cause: what a permanent failure needs fixed (`leadsla.notify.failure`), for the audit.
        notices: who must hear of it (`leadsla.notify.failure.failure_notice`): queued with
            `queue_notices`, so the failure and its alert commit together or not at all.
        detail: more for the audit entry (e.g. how an escalation's error was classified).

    Returns:
        The idempotency keys of the notices that were new (a known cause today queues nothing).
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
            "retry_at": utc_iso(retry_at) if retry_at else None,
            "permanent": retry_at is None,
            **({"cause": cause} if cause else {}),
            **dict(detail or {}),
        },
        **_audit_fields(row),
    )
    return queue_notices(conn, notices, at, context) if notices else []
