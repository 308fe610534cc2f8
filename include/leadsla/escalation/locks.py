"""The 24-hour lock kept: a breached lead stays with its lock holder until the holder decides.

`restore_locked_owners` runs in sla_monitor's escalate task, before new escalations: an owner
change on a locked lead made by an automation user (assignment rules, the integration user;
policy `automation_user_ids`) is put back and the holder is told through the outbox; an owner or
status change by the lock holder (the manager's own disposition) releases the lock and clears
SLA_Lock_Until__c. Never sends Slack or e-mail itself and never reads the wall clock.

Crash-safe like the breach actions (`leadsla.escalation.own_writes`): a put-back carries the
action id of the change it undoes, a release that of the ``lock_set`` entry it ends. Before
writing, the lead is read: finding our id there (a task killed after the CRM took the write),
nothing is written again and the store and audit are completed (``crm_write`` if lost,
``lock_restored`` or ``lock_released``, the holder's notice), each once. When the sync landed
such a write before the retry, the store's copy carries the id: a put-back is then completed from
the running lock, a release (the store's lock already empty) from its ``lock_set`` entry
(`_unfinished_releases`).

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
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient, is_refusal
from leadsla.crm.writeback import WriteResult, stamp
from leadsla.decisions.plan import Notice
from leadsla.escalation.own_writes import (
    ACTION_FIELD,
    action_field,
    action_id,
    read_lead,
    recorded,
    recover_crm_write,
)
from leadsla.notify.outbox import queue_notices
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record_many

log = logging.getLogger(__name__)


def any_locked(engine: sa.Engine, mapping: CrmMapping, now: dt.datetime) -> bool:
    """Whether lock keeping has anything to do at `now` (else no CRM session is needed): a lead's
    lock still runs, or a release a crash cut short is on a lead without its audit entries."""
    records = schema.records
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(records).where(records.c.lock_until > now)
        if conn.execute(query).scalar():
            return True
    return bool(_unfinished_releases(engine, mapping, now))


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

    lead: Any  # records row: record_id, name, owner_id, modified_at, synced_at, fields (raw JSON)
    entry: Any  # audit row: audit_id, detail (holder), at, sla_id, clock_start
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


_LEAD_COLUMNS = ("record_id", "name", "owner_id", "modified_at", "synced_at", "fields")
_ENTRY_COLUMNS = ("audit_id", "detail", "at", "sla_id", "clock_start")
#: How far back a release a crash left unrecorded is looked for (`_unfinished_releases`): its
#: retry comes at the next escalate run, minutes later; a lock lasts a day or a few.
RELEASE_LOOKBACK = dt.timedelta(days=30)


def _changes_since(conn: sa.Connection, record_id: str, since: dt.datetime) -> list[Any]:
    """The lead's owner and status changes after `since`, oldest first (field_history rows)."""
    history = schema.field_history
    return list(
        conn.execute(
            sa.select(
                history.c.history_id,
                history.c.field,
                history.c.changed_by,
                history.c.new_value,
                history.c.changed_at,
            )
            .where(
                history.c.object_type == "Lead",
                history.c.record_id == record_id,
                history.c.field.in_(["Owner", "OwnerId", "Status"]),
                history.c.changed_at > since,
            )
            .order_by(history.c.changed_at)
        ).all()
    )


def _running_locks(engine: sa.Engine, now: dt.datetime) -> list[_Lock]:
    """Every lead whose lock runs at `now`, with what happened to it since the lock was set."""
    records, audit = schema.records, schema.audit
    locks: list[_Lock] = []
    with engine.connect() as conn:
        leads = conn.execute(
            sa.select(*(records.c[c] for c in _LEAD_COLUMNS)).where(
                records.c.object_type == "Lead", records.c.lock_until > now
            )
        ).all()
        for lead in leads:
            entry = conn.execute(
                sa.select(*(audit.c[c] for c in _ENTRY_COLUMNS))
                .where(audit.c.event == "lock_set", audit.c.record_id == lead.record_id)
                .order_by(audit.c.audit_id.desc())
            ).first()
            if entry is None:
                continue
            locks.append(_Lock(lead, entry, _changes_since(conn, lead.record_id, entry.at)))
    return locks


def _unfinished_releases(engine: sa.Engine, mapping: CrmMapping, now: dt.datetime) -> list[_Lock]:
    """Locks whose release the CRM took but a crash kept from the store and audit, and which the
    sync has since landed (the lead's lock is empty, so `_running_locks` no longer lists it): the
    lead carries the release's action id, and no ``lock_released`` follows its ``lock_set``."""
    records, audit = schema.records, schema.audit
    lock_set, released = audit.alias("lock_set"), audit.alias("released")
    own_field = action_field(mapping)
    later_release = sa.exists().where(
        released.c.event == "lock_released",
        released.c.record_id == lock_set.c.record_id,
        released.c.audit_id > lock_set.c.audit_id,
    )
    query = (
        sa.select(*(lock_set.c[c] for c in _ENTRY_COLUMNS), *(records.c[c] for c in _LEAD_COLUMNS))
        .join(records, sa.and_(records.c.object_type == "Lead", records.c.record_id == lock_set.c.record_id))
        .where(
            lock_set.c.event == "lock_set",
            lock_set.c.at > now - RELEASE_LOOKBACK,
            records.c.lock_until.is_(None),
            ~later_release,
        )
    )
    locks: list[_Lock] = []
    with engine.connect() as conn:
        for row in conn.execute(query):
            if (row.fields or {}).get(own_field) != _release_id(row.record_id, row.audit_id):
                continue
            lead = SimpleNamespace(**{c: getattr(row, c) for c in _LEAD_COLUMNS})
            entry = SimpleNamespace(**{c: getattr(row, c) for c in _ENTRY_COLUMNS})
            locks.append(_Lock(lead, entry, _changes_since(conn, row.record_id, row.at)))
    return locks


def _restore_id(record_id: str, change: Any) -> str:
    """The action id of putting the holder back after `change` (its field_history row)."""
    return action_id("restore", f"{record_id}:{change.history_id}")


def _release_id(record_id: str, lock_set_id: int) -> str:
    """The action id of releasing the lock its ``lock_set`` audit entry set."""
    return action_id("release", f"{record_id}:{lock_set_id}")


def _clear_anyway(record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]) -> Mapping[str, Any]:
    return wanted


def _update_lead(conn: sa.Connection, record_id: str, **values: Any) -> None:
    """Patch the store's copy of a lead after our own CRM write (the next sync confirms it)."""
    records = schema.records
    conn.execute(
        records.update()
        .where(records.c.object_type == "Lead", records.c.record_id == record_id)
        .values({**values, "landed_at": dt.datetime.now(dt.UTC)})  # the incremental monitor re-reads it
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
    holder gets a notice through the outbox. Each write carries its action id
    (`leadsla.escalation.own_writes`): a put-back or release a crash left half-recorded is
    recognised on the lead (or in the store's copy, once the sync landed it) and completed, never
    written twice nor taken for someone else's change.

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
    kept = [(lock, keeper.keep) for lock in _running_locks(engine, now)]
    kept += [(lock, keeper.finish_release) for lock in _unfinished_releases(engine, mapping, now)]
    for lock, keep in kept:
        try:
            outcome = keep(lock, automated)
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
        landed = self.landed_restore(lock, owner_changes)
        if landed is not None:  # our put-back, synced back before a crash let it be recorded
            fields = lock.lead.fields or {}
            owner = fields.get(self.mapping.sla_fields["owner"])
            found = {self.mapping.sla_fields["owner"]: owner, action_field(self.mapping): landed[1]}
            return self.restored(lock, landed[0], landed[1], owner, found)
        by_holder = [c for c in lock.changes if c.changed_by == lock.holder]
        if by_holder:  # the manager dispositioned it: the lock has done its job
            return "released" if self.release(lock, by_holder[0]) else "refused"
        if lock.lead.owner_id != lock.holder and owner_changes and owner_changes[-1].changed_by in automated:
            return self.restore(lock, owner_changes[-1])
        return None

    def landed_restore(self, lock: _Lock, owner_changes: list[Any]) -> tuple[Any, str] | None:
        """The change whose put-back the store's copy of the lead shows (its action id) but the
        audit does not record, with that action id; None when there is none."""
        action = (lock.lead.fields or {}).get(action_field(self.mapping))
        if not isinstance(action, str) or not action.startswith("restore:"):
            return None
        change = next((c for c in owner_changes if _restore_id(lock.lead.record_id, c) == action), None)
        if change is None:
            return None
        with self.engine.connect() as conn:
            done = "lock_restored" in recorded(conn, lock.lead.record_id, action)
        return None if done else (change, action)

    def release(self, lock: _Lock, change: Any) -> bool:
        """Clear SLA_Lock_Until__c in the CRM and the store; audit ``lock_released``."""
        lead = lock.lead
        action = _release_id(lead.record_id, lock.entry.audit_id)
        own_field, lock_field = action_field(self.mapping), self.mapping.sla_fields["sla_lock_until"]
        current = read_lead(self.client, self.mapping, lead.record_id)
        if current is not None and current.get(own_field) == action:  # a crash cut our release short
            self.released(lock, change, action, {lock_field: current.get(lock_field), own_field: action})
            return True
        # The holder changed the lead after our view (that is why we release): clearing the lock
        # is still what they want, whatever else changed.
        result = self.stamp(lock, {"sla_lock_until": None, ACTION_FIELD: action}, decide=_clear_anyway)
        if lead.record_id in result.failed:
            log.warning(
                "Lead %s: clearing the SLA lock failed: %s", lead.record_id, result.failed[lead.record_id]
            )
            return False
        self.released(lock, change, action)
        return True

    def finish_release(self, lock: _Lock, automated: set[str]) -> str:
        """Record a release the sync found done on the lead (`_unfinished_releases`)."""
        by_holder = [c for c in lock.changes if c.changed_by == lock.holder]
        action = _release_id(lock.lead.record_id, lock.entry.audit_id)
        found = {self.mapping.sla_fields["sla_lock_until"]: None, action_field(self.mapping): action}
        self.released(lock, by_holder[0] if by_holder else None, action, found)
        return "released"

    def released(self, lock: _Lock, change: Any, action: str, found: dict[str, Any] | None = None) -> None:
        """Record a release in one transaction: the store's lock cleared, and what the audit lacks
        of it (`found`: the fields a crash left without their crm_write entry)."""
        lead = lock.lead
        with self.engine.begin() as conn:
            _update_lead(conn, lead.record_id, lock_until=None)
            have = recorded(conn, lead.record_id, action)
            recover_crm_write(conn, lead.record_id, found, action, have, self.now, self.context)
            if "lock_released" not in have:
                detail = {
                    "by": lock.holder,
                    "change": change.field if change is not None else None,
                    "history_id": change.history_id if change is not None else None,
                    "action_id": action,
                    **({"recovered": True} if found is not None else {}),
                }
                record_many(conn, [lock.audit("lock_released", detail, self.now)], context=self.context)

    def restore(self, lock: _Lock, change: Any) -> str:
        """Put the lock holder back as owner; audit ``lock_restored`` and tell the holder.

        Returns:
            ``restored``; ``conflict`` when the lead changed again since our view (412): the
            next sync shows who did what; ``refused`` when the org would not write the record.
        """
        lead = lock.lead
        action = _restore_id(lead.record_id, change)
        own_field, owner_field = action_field(self.mapping), self.mapping.sla_fields["owner"]
        current = read_lead(self.client, self.mapping, lead.record_id)
        if current is not None and current.get(own_field) == action:  # a crash cut our put-back short
            owner = current.get("OwnerId")
            return self.restored(lock, change, action, owner, {owner_field: owner, own_field: action})
        result = self.stamp(lock, {"owner": lock.holder, ACTION_FIELD: action})
        if lead.record_id in result.failed:  # the org would not write it: tried again next run
            log.warning(
                "Lead %s: restoring the lock holder failed: %s", lead.record_id, result.failed[lead.record_id]
            )
            return "refused"
        if lead.record_id not in result.written and lead.record_id not in result.unchanged:
            return "conflict"
        return self.restored(lock, change, action, lock.holder)

    def restored(
        self, lock: _Lock, change: Any, action: str, owner: str | None, found: dict[str, Any] | None = None
    ) -> str:
        """Record a put-back in one transaction: the store's owner, what the audit lacks of it
        (`found`: the fields a crash left without their crm_write entry), the holder's notice."""
        lead = lock.lead
        with self.engine.begin() as conn:
            _update_lead(conn, lead.record_id, owner_id=owner)
            have = recorded(conn, lead.record_id, action)
            recover_crm_write(conn, lead.record_id, found, action, have, self.now, self.context)
            if "lock_restored" not in have:
                moved_to = lead.owner_id if lead.owner_id != lock.holder else change.new_value
                detail = {
                    "from": moved_to,
                    "to": lock.holder,
                    "changed_by": change.changed_by,
                    "history_id": change.history_id,
                    "action_id": action,
                    **({"recovered": True} if found is not None else {}),
                }
                record_many(conn, [lock.audit("lock_restored", detail, self.now)], context=self.context)
            # Keyed on the change it undoes: queued once however often this runs.
            notices = _holder_notices(conn, lead, lock.entry, lock.holder, change)
            queue_notices(conn, notices, self.now, self.context)
        return "restored"
