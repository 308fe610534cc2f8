"""Breach actions performed: move a breached lead to the rep's manager (or a queue) and lock it.

The monitor decided each action (`leadsla.decisions.breach`) and queued it in the outbox on
channel ``crm``, keyed like every action (clock identity + ``breach`` + new owner + ``crm``),
with the decision in its payload: from which owner, to whom, how long the lock runs. The lock's
end is set when the lead is actually reassigned (`lock_end`: from that moment, however late a
catch-up escalation comes, so the manager has the whole lock to decide). `perform_due` claims
those rows under a lease and performs them through the CRM write-back
(`leadsla.crm.writeback.stamp`: only-when-changed, If-Unmodified-Since the store's view of the
record; on a 412 the record is re-read and re-decided: if its owner or status changed meanwhile,
a person acted and nothing is reassigned). Then one transaction records it: the lead's owner and
lock in the store, the audit (``escalation`` with the outcome, ``reassignment``, ``lock_set``)
and the outbox row delivered.

Crash-safe: the write carries the action's id on the lead (``SLA_Action_Id__c``, derived from the
idempotency key: `leadsla.escalation.own_writes`). A task killed after the CRM took the write but
before that transaction committed leaves the row claimed; once the lease expires the next run
claims it again (attempt 2 on) and first reads the lead. Finding its own id there, it writes
nothing to the CRM and completes the record from what the lead holds: the lock end it wrote then
(never one recomputed from the retry's time), the ``crm_write`` entry if the crash lost it (the
write-back records it right after the call, in its own transaction), then the store, the outcome
entries marked ``recovered`` (reassignment and lock_set dated at the row's ``not_before``, no
later than the write, so the lock keeper misses no change since) and the delivery: each entry
once, never a ``crm_write_conflict`` for its own write. A crash before the write leaves no id:
the retry performs the action afresh.

A breach planned ahead (`decisions.ahead`: the payload says `planned`, `not_before` is the
breach's instant) is re-checked right before it is performed (`perform_due`'s `recheck`,
`notify.recheck.Recheck`), as its messages are before they go: a lead touched before its deadline,
a pause or a reassignment, or a breach that now calls for another target ends the action unperformed
with the whole breach (``cancelled_by_touch``, ``cancelled_by_change``; `notify.outbox.cancel`).
The delivery loop performs due actions too (`tasks.monitor.deliver`), so a planned breach's
reassignment and lock happen at the breach's second; leases keep each to one performer.

Errors are classified (`leadsla.crm.protocol.is_refusal`): the CRM refusing (an error answer, a
record it would not write, a timeout or dropped connection) keeps the action queued with
back-off; anything else is a bug: the action is kept too, its failure recorded (audit
``message_failed`` with ``failure: bug``), the other due actions are still performed, and then the
error is raised so the task fails where someone sees it, instead of retrying on a timer forever.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from leadsla.crm.landing import parse_datetime
from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient, CrmError, is_refusal
from leadsla.crm.writeback import stamp
from leadsla.escalation.own_writes import (
    ACTION_FIELD,
    action_field,
    action_id,
    read_lead,
    recorded,
    recover_crm_write,
)
from leadsla.notify.outbox import (
    CRM_CHANNEL,
    Claimed,
    backoff,
    cancel,
    claim,
    mark_delivered,
    mark_failed,
    planned_instant,
)
from leadsla.policy import Policy
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record_many
from leadsla.store.connection import read_only

log = logging.getLogger(__name__)

#: A breach action's lease: one CRM write-back with its pre-check, re-read and retries.
LEASE = dt.timedelta(minutes=2)


def _store_view(engine: sa.Engine, record_id: str) -> Any:
    r = schema.records
    with engine.connect() as conn:
        return conn.execute(
            sa.select(r.c.owner_id, r.c.status, r.c.modified_at, r.c.synced_at).where(
                r.c.object_type == "Lead", r.c.record_id == record_id
            )
        ).first()


def lock_end(payload: Mapping[str, Any], now: dt.datetime, policy: Policy | None) -> dt.datetime | None:
    """When the lock set now ends: `lock_hours` from `now` (the reassignment), in real hours or in
    the business hours of the new owner's calendar (`lock_calendar`), as the policy said.

    A row queued before locks ran from the reassignment carries its `lock_until`; it stands.
    """
    if payload.get("lock_until"):
        return dt.datetime.fromisoformat(payload["lock_until"])
    hours = float(payload.get("lock_hours") or 0)
    if hours <= 0:
        return None
    if payload.get("lock_time") == "business" and policy is not None:
        calendar = policy.calendar(payload.get("lock_calendar") or policy.default_calendar)
        return calendar.deadline(now, int(round(hours * 3600)))
    return now + dt.timedelta(hours=hours)


@dataclass(frozen=True)
class Performed:
    """What performing one breach action came to.

    `outcome` is the escalation entry's detail; `lead` the store columns to set on the lead
    (owner_id, lock_until); `found` the lead's fields as the CRM holds them when a retry found its
    own earlier write there (`leadsla.escalation.own_writes`), so its crm_write can be completed.
    """

    outcome: dict[str, Any]
    action: str = ""
    lead: dict[str, Any] = field(default_factory=dict)
    found: dict[str, Any] | None = None


def perform(
    row: Claimed,
    *,
    client: CrmClient,
    engine: sa.Engine,
    mapping: CrmMapping,
    context: AuditContext,
    now: dt.datetime,
    policy: Policy | None = None,
) -> Performed:
    """Reassign and lock one breached lead, conditional on the store's view of it (module docstring).

    The lock runs from `now`, the moment of this reassignment, not from the breach: a catch-up
    escalation days late still gives the manager the whole lock to decide. The write carries the
    action's id; a retry (attempt 2 on) first reads the lead, and finding that id there takes the
    owner and lock it wrote from the record instead of writing again.

    Returns:
        The outcome ({"outcome": "reassigned" | "already_done" | "changed_meanwhile" | "no_target" |
        "gone", ...}) and what the store and audit still need; `perform_due` records it.

    Raises:
        leadsla.crm.protocol.CrmError: the org refused the call as a whole, or this record (the row
            is retried).
        leadsla.crm.protocol.MappingError: the mapping names no action-id field.
    """
    p = row.payload
    action = action_id("breach", row.idempotency_key)
    own_field = action_field(mapping)
    view = _store_view(engine, row.record_id)
    if view is None:
        return Performed({"outcome": "gone"})
    if row.attempted_before:  # an earlier try may have written the CRM and died before recording it
        current = read_lead(client, mapping, row.record_id)
        if current is not None and current.get(own_field) == action:
            return _found(row, current, mapping, action, now)
    if view.owner_id not in (p["from_owner"], p["to_owner"]):
        return Performed({"outcome": "changed_meanwhile", "owner_now": view.owner_id})
    changes: dict[str, Any] = {}
    if p.get("rule"):
        changes["owner"] = p["to_owner"]
    lock_until = lock_end(p, now, policy)
    if lock_until:
        changes["sla_lock_until"] = lock_until
    if not changes:
        return Performed({"outcome": "no_target"})
    changes[ACTION_FIELD] = action
    seen_status = view.status
    done_before: list[bool] = []

    def decide(
        record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        # Someone wrote the lead after our view. Another action showing the new owner with a lock
        # already set: done, and its lock stands. Otherwise go on only if it is still the breached
        # rep's and still in the same stage.
        if p.get("rule") and current.get("OwnerId") == p["to_owner"] and current.get("SLA_Lock_Until__c"):
            done_before.append(True)
            return None
        if (
            current.get("OwnerId") in (p["from_owner"], p["to_owner"])
            and current.get("Status") == seen_status
        ):
            return {k: v for k, v in wanted.items()}
        return None

    as_of = view.modified_at or view.synced_at
    result = stamp(
        client,
        engine,
        mapping,
        {row.record_id: changes},
        as_of=as_of,
        context=context,
        decide=decide,
        actor="escalation",
    )
    if row.record_id in result.failed:
        raise CrmError(f"Lead {row.record_id}: {result.failed[row.record_id]}")
    if done_before:
        return Performed({"outcome": "already_done", "to_owner": p["to_owner"], "lock_until": None})
    if row.record_id in result.left:
        return Performed({"outcome": "changed_meanwhile"})
    outcome = "reassigned" if row.record_id in result.written else "already_done"
    lead: dict[str, Any] = {"lock_until": lock_until}
    if "owner" in changes:
        lead["owner_id"] = p["to_owner"]
    detail = {
        "outcome": outcome,
        "to_owner": p["to_owner"],
        "lock_until": lock_until.isoformat() if lock_until else None,
        "action_id": action,
        **_late_by(p, now),
    }
    return Performed(detail, action, lead)


def _late_by(payload: Mapping[str, Any], now: dt.datetime) -> dict[str, int]:
    """How long after the breach this escalation happened (a catch-up after downtime says so)."""
    if not payload.get("breached_at"):
        return {}
    return {"late_by_seconds": int((now - dt.datetime.fromisoformat(payload["breached_at"])).total_seconds())}


def _found(
    row: Claimed, current: Mapping[str, Any], mapping: CrmMapping, action: str, now: dt.datetime
) -> Performed:
    """An earlier try's write, found on the lead: its owner and lock as the CRM holds them (the lock
    it wrote then, not one recomputed from this try's time); nothing is written again."""
    p = row.payload
    lock_field, owner_field = mapping.sla_fields["sla_lock_until"], mapping.sla_fields["owner"]
    lock_until = parse_datetime(current.get(lock_field))
    found = {action_field(mapping): action, lock_field: current.get(lock_field)}
    lead: dict[str, Any] = {"lock_until": lock_until}
    if p.get("rule"):
        found[owner_field] = current.get("OwnerId")
        lead["owner_id"] = current.get("OwnerId")  # the owner now (a person may have moved it since)
    detail = {
        "outcome": "reassigned",
        "to_owner": p["to_owner"],
        "lock_until": lock_until.isoformat() if lock_until else None,
        "action_id": action,
        "recovered": True,
        **_late_by(p, now),
    }
    return Performed(detail, action, lead, found)


def _settle(
    conn: sa.Connection, row: Claimed, done: Performed, now: dt.datetime, context: AuditContext
) -> None:
    """Record a performed action in one transaction: the lead's owner and lock in the store, the
    audit entries not yet there for its action id, the outbox row delivered."""
    if done.lead:
        records = schema.records
        conn.execute(
            records.update()
            .where(records.c.object_type == "Lead", records.c.record_id == row.record_id)
            # landed_at: the incremental monitor re-evaluates the lead
            .values({**done.lead, "landed_at": dt.datetime.now(dt.UTC)})
        )
    have = recorded(conn, row.record_id, done.action) if done.action else set()
    at = now
    if done.found is not None:
        # The crashed try ran at or after the row's not_before (a claim takes only rows due by then):
        # the lock keeper looks for changes since this moment, so none after our write is missed.
        at = min(row.not_before or now, now)
        recover_crm_write(conn, row.record_id, done.found, done.action, have, at, context)
    entries = [e for e in _outcome_entries(row, done.outcome, now, at) if e["event"] not in have]
    record_many(conn, entries, context=context)
    mark_delivered(conn, row, done.outcome["outcome"], now, context)


def perform_due(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient,
    mapping: CrmMapping,
    policy: Policy | None = None,
    limit: int = 100,
    recheck: Callable[[sa.Connection, Claimed, dt.datetime], Any] | None = None,
) -> dict[str, int]:
    """Claim due breach actions and perform them; returns counts by outcome (+ retry, and
    cancelled_by_touch / cancelled_by_change for planned ones the re-check ended).

    Args:
        policy: for locks in business hours (the new owner's calendar); real-hour locks need none.
        recheck: asked about each planned action right before it is performed
            (`notify.recheck.Recheck`); required when planned actions may be due (module docstring).

    Raises:
        Exception: the first bug met (module docstring), after every claimed action was performed
            or recorded; a note says how many actions it stopped.
    """
    counts: Counter[str] = Counter()
    bugs: list[Exception] = []
    with engine.begin() as conn:
        rows = claim(conn, now, LEASE, limit, channels=[CRM_CHANNEL])
    for row in rows:
        if planned_instant(row.payload) is not None:
            ended = _rechecked_away(engine, row, recheck, now, context)
            if ended is not None:
                counts[ended] += 1
                continue
        try:
            done = perform(
                row, client=client, engine=engine, mapping=mapping, context=context, now=now, policy=policy
            )
        except Exception as exc:
            refused = is_refusal(exc)
            if refused:  # the CRM said no for now: keep the action, try again later
                log.warning("breach action for Lead %s stays queued: %s", row.record_id, exc)
            else:
                log.exception("breach action for Lead %s failed on a bug; it stays queued", row.record_id)
                bugs.append(exc)
            with engine.begin() as conn:
                retry_at = now + backoff(row.attempts, row.idempotency_key)
                mark_failed(
                    conn,
                    row,
                    f"{type(exc).__name__}: {exc}",
                    retry_at,
                    now,
                    context,
                    detail={"failure": "crm_refused" if refused else "bug"},
                )
            counts["retry" if refused else "bug"] += 1
            continue
        with engine.begin() as conn:
            _settle(conn, row, done, now, context)
        counts[done.outcome["outcome"]] += 1
    if bugs:
        log.error("breach actions: %s", dict(counts))
        first = bugs[0]
        first.add_note(
            f"leadsla: {len(bugs)} of {len(rows)} breach actions failed on a bug this run; each stays "
            "queued with back-off (outbox.last_error, audit message_failed)"
        )
        raise first
    return dict(counts)


def _rechecked_away(
    engine: sa.Engine,
    row: Claimed,
    recheck: Callable[[sa.Connection, Claimed, dt.datetime], Any] | None,
    now: dt.datetime,
    context: AuditContext,
) -> str | None:
    """Re-check a planned action (on a read-only connection, as delivery does) and end it with its
    breach when the clock no longer calls for it; returns what ended it (or ``lease_lost``), None
    to perform it.

    Raises:
        ValueError: a planned action is due and no re-check was given (it is never performed blind).
    """
    if recheck is None:
        raise ValueError(
            f"breach action {row.idempotency_key} was planned ahead: perform_due needs a recheck"
        )
    with read_only(engine) as conn:
        verdict = recheck(conn, row, now)
    if verdict.event is None:
        return None
    with engine.begin() as conn:
        done = cancel(conn, row, now, context, event=verdict.event, detail=verdict.detail)
    log.info("breach action for Lead %s: %s %s", row.record_id, verdict.event, dict(verdict.detail))
    return verdict.event if done else "lease_lost"


def _outcome_entries(
    row: Claimed, done: Mapping[str, Any], now: dt.datetime, written_at: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """The audit entries of a performed action: its outcome, and the reassignment and lock it made
    (at `written_at`, the write's time when a retry found it, else `now`), with its action id."""
    base = {
        "object_type": "Lead",
        "record_id": row.record_id,
        "sla_id": row.sla_id,
        "clock_start": row.clock_start,
        "checkpoint": "breach",
        "actor": "escalation",
        "at": now,
    }
    entries = [{**base, "event": "escalation", "detail": {"idempotency_key": row.idempotency_key, **done}}]
    made = {"idempotency_key": row.idempotency_key, "action_id": done.get("action_id")}
    if done.get("recovered"):
        made["recovered"] = True
    at = written_at or now
    if done["outcome"] == "reassigned" and row.payload.get("rule"):
        detail = {
            "from": row.payload["from_owner"],
            "to": row.payload["to_owner"],
            "rule": row.payload["rule"],
            **made,
        }
        entries.append({**base, "at": at, "event": "reassignment", "detail": detail})
    if done["outcome"] == "reassigned" and done.get("lock_until"):
        detail = {"until": done["lock_until"], "holder": row.payload["to_owner"], **made}
        entries.append({**base, "at": at, "event": "lock_set", "detail": detail})
    return entries
