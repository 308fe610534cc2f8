"""The 24-hour lock kept: a breached lead stays with its lock holder until the holder decides.

`restore_locked_owners` runs in sla_monitor's escalate task, before new escalations: an owner
change on a locked lead made by an automation user (assignment rules, the integration user;
policy `automation_user_ids`) is put back and the holder is told through the outbox; an owner or
status change by the lock holder (the manager's own disposition) releases the lock and clears
SLA_Lock_Until__c. Never sends Slack or e-mail itself and never reads the wall clock.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient
from leadsla.crm.writeback import stamp
from leadsla.decisions.plan import Notice
from leadsla.notify.outbox import queue_notices
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record

log = logging.getLogger(__name__)


def any_locked(engine: sa.Engine, now: dt.datetime) -> bool:
    """Whether any lead's lock is still running at `now` (else no CRM session is needed)."""
    records = schema.records
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(records).where(records.c.lock_until > now)
        return bool(conn.execute(query).scalar())


def _holder_notices(conn: sa.Connection, lead: Any, lock: Any, holder: str, change: Any) -> list[Notice]:
    """The lock holder's notice: an automated reassignment of their locked lead was undone."""
    users = schema.users
    person = conn.execute(sa.select(users.c.name, users.c.email).where(users.c.user_id == holder)).first()
    if person is None or not person.email:
        return []  # a queue or an unknown user holds the lock: the audit entry is the record
    name = lead.name or lead.record_id
    lines = (
        f"Lead {name} ({lead.record_id}) was reassigned to {change.new_value or 'another owner'} by an "
        f"automated process at {change.changed_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC, while it is "
        f"locked to you after its SLA breach.",
        "It has been put back with you. Your own reassignment or status change ends the lock.",
    )
    # Keyed on the change it undoes, so each automated reassignment is reported once.
    notice = Notice(
        source=lock.sla_id or "escalation",
        subject=lead.record_id,
        opened_at=lock.clock_start or lock.at,
        checkpoint=f"lock_restored:{change.history_id}",
        recipients=(("email", person.email), ("slack", person.email)),
        title=f"SLA lock kept: {name} is back with you",
        severity="warning",
        lines=lines,
    )
    return [notice]


def restore_locked_owners(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient,
    mapping: CrmMapping,
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
                    queue_notices(conn, _holder_notices(conn, lead, lock, holder, last), now, context)
                counts["restored"] += 1
            else:  # touched again since our view (412): the next sync shows who did what
                counts["conflict"] += 1
    return counts
