"""Breach actions: move a breached lead to the rep's manager (or a queue) and lock it for 24 h.

Two steps, like messages. `enqueue_breaches` (inside the monitor's transaction) writes one
outbox row per breached clock on channel ``crm``, keyed like every action (clock identity +
``breach`` + new owner + ``crm``), with the decision in its payload: from which owner, to whom,
the lock's end (breach time + lock hours, so every retry stamps the same value). `run_escalations`
claims those rows under a lease and performs them through the CRM write-back
(`leadsla.crm.writeback.stamp`: only-when-changed, If-Unmodified-Since the store's view of the
record; on a 412 the record is re-read and re-decided: if its owner or status changed meanwhile,
a person acted and nothing is reassigned). A retry after a crash finds the CRM already showing
the new owner and lock and writes nothing: exactly once in effect. Every outcome is audited.

`restore_locked_owners` (wired as `keep_locks` in the DAG's escalate task, before new
escalations) keeps the lock: an owner change on a locked lead made by an automation user
(assignment rules, the integration user; policy `automation_user_ids`) is put back and the holder
is told through the outbox; an owner or status change by the lock holder (the manager's own
disposition) releases the lock and clears SLA_Lock_Until__c. This module never sends Slack or
e-mail itself (the manager's alert goes through the outbox) and never reads the wall clock.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.notify.outbox import Claimed, backoff, claim, idempotency_key, mark_delivered, mark_failed
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record, record_many
from leadsla.store.upsert import insert_new

log = logging.getLogger(__name__)

CHANNEL = "crm"
LEASE = dt.timedelta(minutes=2)


def _target(
    directory: Any, rules: Iterable[str], owner_id: str | None, team: str | None
) -> tuple[str, str] | None:
    """The first reassignment rule that names an existing owner: (rule, user or queue id)."""
    for rule in rules:
        if rule == "owner_manager":
            manager = directory.manager_of(owner_id)
            row = directory.users.get(str(manager)) if manager else None
            if row is not None and bool(row.get("is_active", True)):
                return rule, str(manager)
        elif rule == "team_manager":
            manager = getattr(directory.policy.team(team), "manager", None)
            if manager:
                return rule, manager
        elif rule.startswith("queue:") and rule.split(":", 1)[1] in directory.queues:
            return rule, directory.queues[rule.split(":", 1)[1]]
    return None


def enqueue_breaches(
    conn: sa.Connection,
    breaches: Iterable[Mapping[str, Any]],
    directory: Any,
    now: dt.datetime,
    context: AuditContext,
) -> list[str]:
    """Queue the breach action of each breached clock whose policy reassigns or locks (idempotent).

    Returns:
        The keys that were new (a rerun returns none).
    """
    import pandas as pd

    new: list[str] = []
    for clock in breaches:
        sla = directory.policy.sla(clock["sla_id"])
        if clock["object_type"] != "Lead" or not (sla.breach.reassign or sla.breach.lock_hours):
            continue
        owner_id = None if pd.isna(clock["owner_id"]) else str(clock["owner_id"])
        team = None if pd.isna(clock["team"]) else str(clock["team"])
        target = _target(directory, sla.breach.reassign, owner_id, team)
        clock_start = pd.Timestamp(clock["clock_start"]).to_pydatetime()
        breached_at = pd.Timestamp(clock["breached_at"]).to_pydatetime()
        to_owner = target[1] if target else owner_id
        payload = {
            "from_owner": owner_id,
            "to_owner": to_owner,
            "rule": target[0] if target else None,
            "lock_until": (breached_at + dt.timedelta(hours=sla.breach.lock_hours)).isoformat()
            if sla.breach.lock_hours
            else None,
            "breached_at": breached_at.isoformat(),
            "tier": clock["tier"],
        }
        key = idempotency_key(
            clock["sla_id"], clock["record_id"], clock_start, "breach", to_owner or "-", CHANNEL
        )
        row = {
            "idempotency_key": key,
            "sla_id": clock["sla_id"],
            "record_id": clock["record_id"],
            "clock_start": clock_start,
            "checkpoint": "breach",
            "recipient": to_owner or "-",
            "channel": CHANNEL,
            "payload": payload,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "not_before": now,
        }
        if insert_new(conn, schema.outbox, [row], key=["idempotency_key"]):
            new.append(key)
            record(
                conn,
                "escalation",
                at=now,
                context=context,
                object_type="Lead",
                record_id=clock["record_id"],
                sla_id=clock["sla_id"],
                clock_start=clock_start,
                checkpoint="breach",
                actor="sla_monitor",
                detail={"idempotency_key": key, "queued": True, **payload},
            )
    return new


def _store_view(engine: sa.Engine, record_id: str) -> Any:
    r = schema.records
    with engine.connect() as conn:
        return conn.execute(
            sa.select(r.c.owner_id, r.c.status, r.c.modified_at, r.c.synced_at).where(
                r.c.object_type == "Lead", r.c.record_id == record_id
            )
        ).first()


def perform(
    row: Claimed, *, client: Any, engine: sa.Engine, mapping: Any, context: AuditContext
) -> dict[str, Any]:
    """Reassign and lock one breached lead, conditional on the store's view of it (module docstring).

    Returns:
        {"outcome": "reassigned" | "already_done" | "changed_meanwhile" | "no_target" | "gone", ...}

    Raises:
        leadsla.crm.protocol.CrmError: the org refused the call as a whole (the row is retried).
    """
    from leadsla.crm.writeback import stamp

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


def run_escalations(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: Any = None,
    mapping: Any = None,
    limit: int = 100,
) -> dict[str, int]:
    """Claim due breach actions and perform them; returns counts by outcome (+ retry)."""
    from collections import Counter

    counts: Counter[str] = Counter()
    with engine.begin() as conn:
        rows = claim(conn, now, LEASE, limit, channels=[CHANNEL])
    if not rows:
        return {}
    if client is None:
        from leadsla.crm.salesforce import SalesforceClient

        client = SalesforceClient(os.environ.get("LEADSLA_SALESFORCE_CONN_ID", "salesforce_default"))
    if mapping is None:
        from leadsla.crm import mapping as crm_mapping

        mapping = crm_mapping.load(os.environ.get("LEADSLA_CRM_MAPPING") or None)
    for row in rows:
        try:
            done = perform(row, client=client, engine=engine, mapping=mapping, context=context)
        except Exception as exc:  # the CRM said no for now: keep the action, try again later
            log.warning("breach action for Lead %s stays queued: %s", row.record_id, exc)
            with engine.begin() as conn:
                mark_failed(
                    conn,
                    row,
                    f"{type(exc).__name__}: {exc}",
                    now + backoff(row.attempts, row.idempotency_key),
                    now,
                    context,
                )
            counts["retry"] += 1
            continue
        base = {
            "object_type": "Lead",
            "record_id": row.record_id,
            "sla_id": row.sla_id,
            "clock_start": row.clock_start,
            "checkpoint": "breach",
            "actor": "escalation",
            "at": now,
        }
        entries = [
            {**base, "event": "escalation", "detail": {"idempotency_key": row.idempotency_key, **done}}
        ]
        if done["outcome"] == "reassigned" and row.payload.get("rule"):
            entries.append(
                {
                    **base,
                    "event": "reassignment",
                    "detail": {
                        "from": row.payload["from_owner"],
                        "to": row.payload["to_owner"],
                        "rule": row.payload["rule"],
                    },
                }
            )
        if done["outcome"] == "reassigned" and row.payload.get("lock_until"):
            entries.append(
                {
                    **base,
                    "event": "lock_set",
                    "detail": {"until": row.payload["lock_until"], "holder": row.payload["to_owner"]},
                }
            )
        with engine.begin() as conn:
            record_many(conn, entries, context=context)
            mark_delivered(conn, row, done["outcome"], now, context)
        counts[done["outcome"]] += 1
    return dict(counts)


def _holder_contact(conn: sa.Connection, holder: str) -> Any:
    u = schema.users
    return conn.execute(sa.select(u.c.name, u.c.email).where(u.c.user_id == holder)).first()


def _alert_holder(
    conn: sa.Connection,
    lead: Any,
    lock: Any,
    holder: str,
    change: Any,
    now: dt.datetime,
    context: AuditContext,
) -> list[str]:
    """Queue the lock holder's notice: an automated reassignment of their locked lead was undone."""
    from leadsla.quality.notice import enqueue_notice

    person = _holder_contact(conn, holder)
    if person is None or not person.email:
        return []  # a queue or an unknown user holds the lock: the audit entry is the record
    name = lead.name or lead.record_id
    lines = [
        f"Lead {name} ({lead.record_id}) was reassigned to {change.new_value or 'another owner'} by an "
        f"automated process at {change.changed_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC, while it is "
        f"locked to you after its SLA breach.",
        "It has been put back with you. Your own reassignment or status change ends the lock.",
    ]
    # Keyed on the change it undoes, so each automated reassignment is reported once.
    return enqueue_notice(
        conn,
        source=lock.sla_id or "escalation",
        subject=lead.record_id,
        opened_at=lock.clock_start or lock.at,
        checkpoint=f"lock_restored:{change.history_id}",
        recipients=[("email", person.email), ("slack", person.email)],
        title=f"SLA lock kept: {name} is back with you",
        severity="warning",
        lines=lines,
        at=now,
        context=context,
    )


def restore_locked_owners(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: Any,
    mapping: Any,
    automation_users: Iterable[str],
) -> dict[str, int]:
    """Keep locked leads with their lock holder (module docstring); returns counts.

    Call after the CRM sync has landed records and field history, before new escalations. For
    each lead whose lock (`records.lock_until`) is still running: an owner or status change by
    the lock holder since the lock was set releases it (``lock_released``; SLA_Lock_Until__c
    cleared in the CRM and the store); otherwise, if the latest owner change was made by an
    automation user, the owner is put back through the CRM write-back (If-Unmodified-Since the
    store's view: a lead touched meanwhile is left alone), audited ``lock_restored``, and the
    holder gets a notice through the outbox.

    Args:
        automation_users: CRM user ids whose owner changes are automated (integration user,
            assignment rules); a change by anyone else but the holder is left alone.

    Returns:
        Counts: restored, released, conflict (the lead changed again before we wrote).
    """
    from leadsla.crm.writeback import stamp

    automated = set(automation_users)
    r, h, a = schema.records, schema.field_history, schema.audit
    counts = {"restored": 0, "released": 0, "conflict": 0}
    with engine.connect() as conn:
        locked = conn.execute(
            sa.select(
                r.c.record_id, r.c.name, r.c.owner_id, r.c.lock_until, r.c.modified_at, r.c.synced_at
            ).where(r.c.object_type == "Lead", r.c.lock_until > now)
        ).all()
    for lead in locked:
        with engine.connect() as conn:
            lock = conn.execute(
                sa.select(a.c.detail, a.c.at, a.c.sla_id, a.c.clock_start)
                .where(a.c.event == "lock_set", a.c.record_id == lead.record_id)
                .order_by(a.c.audit_id.desc())
            ).first()
            if lock is None:
                continue
            holder = lock.detail["holder"]
            changes = conn.execute(
                sa.select(h.c.history_id, h.c.field, h.c.changed_by, h.c.new_value, h.c.changed_at)
                .where(
                    h.c.object_type == "Lead",
                    h.c.record_id == lead.record_id,
                    h.c.field.in_(["Owner", "OwnerId", "Status"]),
                    h.c.changed_at > lock.at,
                )
                .order_by(h.c.changed_at)
            ).all()
        owner_changes = [c for c in changes if c.field in ("Owner", "OwnerId")]
        by_holder = [c for c in changes if c.changed_by == holder]
        base = {
            "object_type": "Lead",
            "record_id": lead.record_id,
            "sla_id": lock.sla_id,
            "clock_start": lock.clock_start,
            "actor": "escalation",
            "at": now,
        }
        as_of = lead.modified_at or lead.synced_at
        if by_holder:  # the manager dispositioned it: the lock has done its job
            result = stamp(
                client,
                engine,
                mapping,
                {lead.record_id: {"sla_lock_until": None}},
                as_of=as_of,
                context=context,
                actor="escalation",
                decide=lambda rid, wanted, current: wanted,
            )
            if lead.record_id in result.failed:
                log.warning(
                    "Lead %s: clearing the SLA lock failed: %s", lead.record_id, result.failed[lead.record_id]
                )
                continue
            with engine.begin() as conn:
                conn.execute(
                    r.update()
                    .where(r.c.object_type == "Lead", r.c.record_id == lead.record_id)
                    .values(lock_until=None)
                )
                record(
                    conn,
                    "lock_released",
                    context=context,
                    detail={
                        "by": holder,
                        "change": by_holder[0].field,
                        "history_id": by_holder[0].history_id,
                    },
                    **base,
                )
            counts["released"] += 1
        elif lead.owner_id != holder and owner_changes and owner_changes[-1].changed_by in automated:
            last = owner_changes[-1]
            result = stamp(
                client,
                engine,
                mapping,
                {lead.record_id: {"owner": holder}},
                as_of=as_of,
                context=context,
                actor="escalation",
            )
            if lead.record_id in result.written or lead.record_id in result.unchanged:
                with engine.begin() as conn:
                    conn.execute(
                        r.update()
                        .where(r.c.object_type == "Lead", r.c.record_id == lead.record_id)
                        .values(owner_id=holder)
                    )
                    record(
                        conn,
                        "lock_restored",
                        context=context,
                        detail={
                            "from": lead.owner_id,
                            "to": holder,
                            "changed_by": last.changed_by,
                            "history_id": last.history_id,
                        },
                        **base,
                    )
                    _alert_holder(conn, lead, lock, holder, last, now, context)
                counts["restored"] += 1
            else:  # touched again since our view (412): the next sync shows who did what
                counts["conflict"] += 1
    return counts


def keep_locks(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: Any = None,
    mapping: Any = None,
    policy: Any = None,
) -> dict[str, int]:
    """`restore_locked_owners` with the DAG's defaults: automation users from the policy
    (`automation_user_ids`) and the CRM mapping (`automation_user_ids` in crm_fields.yaml, if set)."""
    r = schema.records
    with engine.connect() as conn:
        if conn.execute(sa.select(sa.func.count()).select_from(r).where(r.c.lock_until > now)).scalar() == 0:
            return {"restored": 0, "released": 0, "conflict": 0}  # no lock: no CRM session needed
    if policy is None:
        from leadsla.policy import load_policy

        policy = load_policy(os.environ.get("LEADSLA_POLICY_PATH") or None)
    client, mapping = _crm(client, mapping)
    users = [*policy.automation_user_ids, *getattr(mapping, "automation_user_ids", [])]
    return restore_locked_owners(engine, now, context, client=client, mapping=mapping, automation_users=users)


def _crm(client: Any, mapping: Any) -> tuple[Any, Any]:
    if client is None:
        from leadsla.crm.salesforce import SalesforceClient

        client = SalesforceClient(os.environ.get("LEADSLA_SALESFORCE_CONN_ID", "salesforce_default"))
    if mapping is None:
        from leadsla.crm import mapping as crm_mapping

        mapping = crm_mapping.load(os.environ.get("LEADSLA_CRM_MAPPING") or None)
    return client, mapping
