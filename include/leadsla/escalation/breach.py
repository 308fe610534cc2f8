"""Breach actions performed: move a breached lead to the rep's manager (or a queue) and lock it.

The monitor decided each action (`leadsla.decisions.breach`) and queued it in the outbox on
channel ``crm``, keyed like every action (clock identity + ``breach`` + new owner + ``crm``),
with the decision in its payload: from which owner, to whom, the lock's end (so every retry
stamps the same value). `perform_due` claims those rows under a lease and performs them through
the CRM write-back (`leadsla.crm.writeback.stamp`: only-when-changed, If-Unmodified-Since the
store's view of the record; on a 412 the record is re-read and re-decided: if its owner or status
changed meanwhile, a person acted and nothing is reassigned). A retry after a crash finds the CRM
already showing the new owner and lock and writes nothing: exactly once in effect. Every outcome
is audited.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient
from leadsla.crm.writeback import stamp
from leadsla.notify.outbox import CRM_CHANNEL, Claimed, backoff, claim, mark_delivered, mark_failed
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


def perform(
    row: Claimed, *, client: CrmClient, engine: sa.Engine, mapping: CrmMapping, context: AuditContext
) -> dict[str, Any]:
    """Reassign and lock one breached lead, conditional on the store's view of it (module docstring).

    Returns:
        {"outcome": "reassigned" | "already_done" | "changed_meanwhile" | "no_target" | "gone", ...}

    Raises:
        leadsla.crm.protocol.CrmError: the org refused the call as a whole (the row is retried).
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
    lock_until = dt.datetime.fromisoformat(p["lock_until"]) if p.get("lock_until") else None
    if lock_until:
        changes["sla_lock_until"] = lock_until
    if not changes:
        return {"outcome": "no_target"}
    seen_status = view.status

    def decide(
        record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        # Someone wrote the lead after our view: only go on if it is still the breached rep's
        # (or already ours, from an earlier try) and still in the same stage.
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
        raise RuntimeError(f"Lead {row.record_id}: {result.failed[row.record_id]}")
    if row.record_id in result.left:
        return {"outcome": "changed_meanwhile"}
    outcome = "reassigned" if row.record_id in result.written else "already_done"
    r = schema.records
    with engine.begin() as conn:
        values: dict[str, Any] = {"lock_until": lock_until}
        if "owner" in changes:
            values["owner_id"] = p["to_owner"]
        conn.execute(
            r.update().where(r.c.object_type == "Lead", r.c.record_id == row.record_id).values(values)
        )
    return {"outcome": outcome, "to_owner": p["to_owner"], "lock_until": p.get("lock_until")}


def perform_due(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient,
    mapping: CrmMapping,
    limit: int = 100,
) -> dict[str, int]:
    """Claim due breach actions and perform them; returns counts by outcome (+ retry)."""
    counts: Counter[str] = Counter()
    with engine.begin() as conn:
        rows = claim(conn, now, LEASE, limit, channels=[CRM_CHANNEL])
    for row in rows:
        try:
            done = perform(row, client=client, engine=engine, mapping=mapping, context=context)
        except Exception as exc:  # the CRM said no for now: keep the action, try again later
            log.warning("breach action for Lead %s stays queued: %s", row.record_id, exc)
            with engine.begin() as conn:
                retry_at = now + backoff(row.attempts, row.idempotency_key)
                mark_failed(conn, row, f"{type(exc).__name__}: {exc}", retry_at, now, context)
            counts["retry"] += 1
            continue
        with engine.begin() as conn:
            record_many(conn, _outcome_entries(row, done, now), context=context)
            mark_delivered(conn, row, done["outcome"], now, context)
        counts[done["outcome"]] += 1
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
    if done["outcome"] == "reassigned" and row.payload.get("lock_until"):
        detail = {"until": row.payload["lock_until"], "holder": row.payload["to_owner"]}
        entries.append({**base, "event": "lock_set", "detail": detail})
    return entries
