"""The 24-hour lock kept: a breached lead stays with its lock holder until the holder decides.

`restore_locked_owners` runs in sla_monitor's escalate task, before new escalations: an owner
change on a locked lead made by an automation user (assignment rules, the integration user;
policy `automation_user_ids`) is put back and the holder is told through the outbox; an owner or
status change by the lock holder (the manager's own disposition) releases the lock and clears
SLA_Lock_Until__c. Never sends Slack or e-mail itself and never reads the wall clock.

Each lock is kept on its own: the CRM refusing one (`leadsla.crm.protocol.is_refusal`) is logged
and counted (``refused``) and the lock is tried again next run (it still runs, the change that
called for it is still there); a bug is logged, the other locks are still kept, and then it is
raised so the task fails visibly.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient, is_refusal
from leadsla.crm.writeback import WriteResult, stamp
from leadsla.decisions.plan import Notice
from leadsla.notify.outbox import queue_notices
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record_many

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


@dataclass(frozen=True)
class _Lock:
    """A running lock: the lead, the `lock_set` audit entry that set it, and the changes since."""

    lead: Any  # records row: record_id, name, owner_id, modified_at, synced_at
    entry: Any  # audit row: detail (holder), at, sla_id, clock_start
    changes: list[Any]  # field_history rows (Owner/OwnerId/Status) after the lock was set

    @property
    def holder(self) -> str:
        return self.entry.detail["holder"]

    def audit(self, event: str, detail: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        return {
            "event": event,
            "object_type": "Lead",
            "record_id": self.lead.record_id,
            "sla_id": self.entry.sla_id,
            "clock_start": self.entry.clock_start,
            "actor": "escalation",
            "at": now,
            "detail": detail,
        }


def _running_locks(engine: sa.Engine, now: dt.datetime) -> list[_Lock]:
    """Every lead whose lock runs at `now`, with what happened to it since the lock was set."""
    records, history, audit = schema.records, schema.field_history, schema.audit
    locks: list[_Lock] = []
    with engine.connect() as conn:
        leads = conn.execute(
            sa.select(
                records.c.record_id,
                records.c.name,
                records.c.owner_id,
                records.c.modified_at,
                records.c.synced_at,
            ).where(records.c.object_type == "Lead", records.c.lock_until > now)
        ).all()
        for lead in leads:
            entry = conn.execute(
                sa.select(audit.c.detail, audit.c.at, audit.c.sla_id, audit.c.clock_start)
                .where(audit.c.event == "lock_set", audit.c.record_id == lead.record_id)
                .order_by(audit.c.audit_id.desc())
            ).first()
            if entry is None:
                continue
            changes = conn.execute(
                sa.select(
                    history.c.history_id,
                    history.c.field,
                    history.c.changed_by,
                    history.c.new_value,
                    history.c.changed_at,
                )
                .where(
                    history.c.object_type == "Lead",
                    history.c.record_id == lead.record_id,
                    history.c.field.in_(["Owner", "OwnerId", "Status"]),
                    history.c.changed_at > entry.at,
                )
                .order_by(history.c.changed_at)
            ).all()
            locks.append(_Lock(lead, entry, list(changes)))
    return locks


def _clear_anyway(record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]) -> Mapping[str, Any]:
    return wanted


def _update_lead(conn: sa.Connection, record_id: str, **values: Any) -> None:
    """Patch the store's copy of a lead after our own CRM write (the next sync confirms it)."""
    records = schema.records
    conn.execute(
        records.update()
        .where(records.c.object_type == "Lead", records.c.record_id == record_id)
        .values(values)
    )


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
        Counts: restored, released, conflict (the lead changed again before we wrote); refused
        (the CRM said no for now: tried again next run) only when it happened.

    Raises:
        Exception: the first bug met (module docstring), after every other lock was kept.
    """
    automated = set(automation_users)
    keeper = _LockKeeper(engine, now, context, client, mapping)
    counts = {"restored": 0, "released": 0, "conflict": 0}
    bugs: list[Exception] = []
    for lock in _running_locks(engine, now):
        try:
            outcome = keeper.keep(lock, automated)
        except Exception as exc:
            if not is_refusal(exc):
                log.exception("Lead %s: keeping its SLA lock failed on a bug", lock.lead.record_id)
                bugs.append(exc)
                continue
            log.warning(
                "Lead %s: the CRM refused keeping its SLA lock, tried again next run: %s",
                lock.lead.record_id,
                exc,
            )
            outcome = "refused"
        if outcome is not None:
            counts[outcome] = counts.get(outcome, 0) + 1
    if bugs:
        bugs[0].add_note(f"leadsla: keeping {len(bugs)} SLA lock(s) failed on a bug this run ({counts})")
        raise bugs[0]
    return counts


@dataclass(frozen=True)
class _LockKeeper:
    """One escalate run's lock keeping: its store, time, task run and CRM session."""

    engine: sa.Engine
    now: dt.datetime
    context: AuditContext
    client: CrmClient
    mapping: CrmMapping

    def stamp(self, lock: _Lock, changes: dict[str, Any], **options: Any) -> WriteResult:
        """Write `changes` to the locked lead, If-Unmodified-Since the store's view of it."""
        lead = lock.lead
        return stamp(
            self.client,
            self.engine,
            self.mapping,
            {lead.record_id: changes},
            as_of=lead.modified_at or lead.synced_at,
            context=self.context,
            actor="escalation",
            **options,
        )

    def keep(self, lock: _Lock, automated: set[str]) -> str | None:
        """Release or restore one lock as its changes call for; the outcome, None when nothing to do."""
        owner_changes = [c for c in lock.changes if c.field in ("Owner", "OwnerId")]
        by_holder = [c for c in lock.changes if c.changed_by == lock.holder]
        if by_holder:  # the manager dispositioned it: the lock has done its job
            return "released" if self.release(lock, by_holder[0]) else "refused"
        if lock.lead.owner_id != lock.holder and owner_changes and owner_changes[-1].changed_by in automated:
            return self.restore(lock, owner_changes[-1])
        return None

    def release(self, lock: _Lock, change: Any) -> bool:
        """Clear SLA_Lock_Until__c in the CRM and the store; audit ``lock_released``."""
        lead = lock.lead
        # The holder changed the lead after our view (that is why we release): clearing the lock
        # is still what they want, whatever else changed.
        result = self.stamp(lock, {"sla_lock_until": None}, decide=_clear_anyway)
        if lead.record_id in result.failed:
            log.warning(
                "Lead %s: clearing the SLA lock failed: %s", lead.record_id, result.failed[lead.record_id]
            )
            return False
        with self.engine.begin() as conn:
            _update_lead(conn, lead.record_id, lock_until=None)
            detail = {"by": lock.holder, "change": change.field, "history_id": change.history_id}
            record_many(conn, [lock.audit("lock_released", detail, self.now)], context=self.context)
        return True

    def restore(self, lock: _Lock, change: Any) -> str:
        """Put the lock holder back as owner; audit ``lock_restored`` and tell the holder.

        Returns:
            ``restored``; ``conflict`` when the lead changed again since our view (412): the
            next sync shows who did what; ``refused`` when the org would not write the record.
        """
        lead = lock.lead
        result = self.stamp(lock, {"owner": lock.holder})
        if lead.record_id in result.failed:  # the org would not write it: tried again next run
            log.warning(
                "Lead %s: restoring the lock holder failed: %s", lead.record_id, result.failed[lead.record_id]
            )
            return "refused"
        if lead.record_id not in result.written and lead.record_id not in result.unchanged:
            return "conflict"
        with self.engine.begin() as conn:
            _update_lead(conn, lead.record_id, owner_id=lock.holder)
            detail = {
                "from": lead.owner_id,
                "to": lock.holder,
                "changed_by": change.changed_by,
                "history_id": change.history_id,
            }
            record_many(conn, [lock.audit("lock_restored", detail, self.now)], context=self.context)
            notices = _holder_notices(conn, lead, lock.entry, lock.holder, change)
            queue_notices(conn, notices, self.now, self.context)
        return "restored"
