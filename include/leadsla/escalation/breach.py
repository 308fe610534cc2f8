"""Breach actions performed: move a breached lead to the rep's manager (or a queue) and lock it.

The monitor decided each action (`leadsla.decisions.breach`) and queued it in the outbox on
channel ``crm``, keyed like every action (clock identity + ``breach`` + new owner + ``crm``),
with the decision in its payload: from which owner, to whom, how long the lock runs. The lock's
end is set when the lead is actually reassigned (`lock_end`: from that moment, however late a
catch-up escalation comes, so the manager has the whole lock to decide). `perform_due` claims
those rows under a lease and performs them through the CRM write-back
(`leadsla.crm.writeback.stamp`: only-when-changed, If-Unmodified-Since the store's view of the
record; on a 412 the record is re-read and re-decided: if its owner or status
changed meanwhile, a person acted and nothing is reassigned). A retry after a crash finds the CRM
already showing the new owner and lock and writes nothing: exactly once in effect. Every outcome
is audited.

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
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient, CrmError, is_refusal
from leadsla.crm.writeback import stamp
from leadsla.notify.outbox import CRM_CHANNEL, Claimed, backoff, claim, mark_delivered, mark_failed
from leadsla.policy import Policy
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record_many

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


def perform(
    row: Claimed,
    *,
    client: CrmClient,
    engine: sa.Engine,
    mapping: CrmMapping,
    context: AuditContext,
    now: dt.datetime,
    policy: Policy | None = None,
) -> dict[str, Any]:
    """Reassign and lock one breached lead, conditional on the store's view of it (module docstring).

    The lock runs from `now`, the moment of this reassignment, not from the breach: a catch-up
    escalation days late still gives the manager the whole lock to decide.

    Returns:
        {"outcome": "reassigned" | "already_done" | "changed_meanwhile" | "no_target" | "gone", ...}

    Raises:
        leadsla.crm.protocol.CrmError: the org refused the call as a whole, or this record (the row
            is retried).
    """
    p = row.payload
    view = _store_view(engine, row.record_id)
    if view is None:
        return {"outcome": "gone"}
    if view.owner_id not in (p["from_owner"], p["to_owner"]):
        return {"outcome": "changed_meanwhile", "owner_now": view.owner_id}
    changes: dict[str, Any] = {}
    if p.get("rule"):
        changes["owner"] = p["to_owner"]
    lock_until = lock_end(p, now, policy)
    if lock_until:
        changes["sla_lock_until"] = lock_until
    if not changes:
        return {"outcome": "no_target"}
    seen_status = view.status
    done_before: list[bool] = []

    def decide(
        record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        # Someone wrote the lead after our view. Our own earlier try (its audit lost in a crash)
        # shows as the new owner with a lock already set: done, and its lock stands. Otherwise go
        # on only if it is still the breached rep's and still in the same stage.
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
        return {"outcome": "already_done", "to_owner": p["to_owner"], "lock_until": None}
    if row.record_id in result.left:
        return {"outcome": "changed_meanwhile"}
    outcome = "reassigned" if row.record_id in result.written else "already_done"
    records = schema.records
    with engine.begin() as conn:
        values: dict[str, Any] = {"lock_until": lock_until}
        if "owner" in changes:
            values["owner_id"] = p["to_owner"]
        conn.execute(
            records.update()
            .where(records.c.object_type == "Lead", records.c.record_id == row.record_id)
            .values(values)
        )
    late = (
        (now - dt.datetime.fromisoformat(p["breached_at"])).total_seconds() if p.get("breached_at") else None
    )
    return {
        "outcome": outcome,
        "to_owner": p["to_owner"],
        "lock_until": lock_until.isoformat() if lock_until else None,
        # How long after the breach this escalation happened (a catch-up after downtime says so).
        **({"late_by_seconds": int(late)} if late is not None else {}),
    }


def perform_due(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient,
    mapping: CrmMapping,
    policy: Policy | None = None,
    limit: int = 100,
) -> dict[str, int]:
    """Claim due breach actions and perform them; returns counts by outcome (+ retry).

    Args:
        policy: for locks in business hours (the new owner's calendar); real-hour locks need none.

    Raises:
        Exception: the first bug met (module docstring), after every claimed action was performed
            or recorded; a note says how many actions it stopped.
    """
    counts: Counter[str] = Counter()
    bugs: list[Exception] = []
    with engine.begin() as conn:
        rows = claim(conn, now, LEASE, limit, channels=[CRM_CHANNEL])
    for row in rows:
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
            record_many(conn, _outcome_entries(row, done, now), context=context)
            mark_delivered(conn, row, done["outcome"], now, context)
        counts[done["outcome"]] += 1
    if bugs:
        log.error("breach actions: %s", dict(counts))
        first = bugs[0]
        first.add_note(
            f"leadsla: {len(bugs)} of {len(rows)} breach actions failed on a bug this run; each stays "
            "queued with back-off (outbox.last_error, audit message_failed)"
        )
        raise first
    return dict(counts)


def _outcome_entries(row: Claimed, done: Mapping[str, Any], now: dt.datetime) -> list[dict[str, Any]]:
    """The audit entries of a performed action: its outcome, and the reassignment and lock it made."""
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
    if done["outcome"] == "reassigned" and row.payload.get("rule"):
        detail = {
            "from": row.payload["from_owner"],
            "to": row.payload["to_owner"],
            "rule": row.payload["rule"],
        }
        entries.append({**base, "event": "reassignment", "detail": detail})
    if done["outcome"] == "reassigned" and done.get("lock_until"):
        detail = {"until": done["lock_until"], "holder": row.payload["to_owner"]}
        entries.append({**base, "event": "lock_set", "detail": detail})
    return entries
