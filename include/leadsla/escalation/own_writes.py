"""Our own writes recognised: each breach and lock-keeping write carries its action id on the lead.

A crash (the task killed, a store lock held past its timeout) can come between the CRM accepting a
write and the store recording it (the lead's owner and lock, the audit). To the retry that write
then looks like someone else's change: a false ``crm_write_conflict``, no ``lock_set``, a lock
the lock keeper never enforces. So every write escalation makes also sets the lead's action-id
field (crm_fields.yaml sla_fields ``sla_action_id``, ``SLA_Action_Id__c``) to an id derived from
the action itself (`action_id`): a breach action's from its outbox idempotency key, an owner put
back from the change it undoes, a lock released from the ``lock_set`` entry that set it. A retry
reads the lead (`read_lead`); finding its own id there, it writes nothing to the CRM and completes
what the crash left out, each entry once (`recorded` says which are already in the audit).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.crm import soql
from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient, MappingError
from leadsla.crm.writeback import record_writes
from leadsla.store import schema
from leadsla.store.audit import AuditContext

#: The logical write-back field (crm_fields.yaml sla_fields) the action id goes to.
ACTION_FIELD = "sla_action_id"
#: The audit events an action completes; a crm_write names the id among its fields, the others in
#: their detail's ``action_id``.
EVENTS = ("crm_write", "escalation", "reassignment", "lock_set", "lock_restored", "lock_released")


def action_id(kind: str, key: str) -> str:
    """The id a write of action `kind` (breach, restore, release) for `key` leaves on the lead:
    ``kind:`` and 20 hex digits of SHA-256 over the key (at most 28 characters), the same on
    every try."""
    return f"{kind}:{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def action_field(mapping: CrmMapping) -> str:
    """The Lead API field the action id is written to.

    Raises:
        MappingError: the mapping names no ``sla_action_id`` write-back field.
    """
    try:
        return mapping.sla_fields[ACTION_FIELD]
    except KeyError:
        raise MappingError(
            f"{mapping.path}: sla_fields: has no {ACTION_FIELD}: escalation writes its action id with "
            "each owner and lock (e.g. sla_action_id: SLA_Action_Id__c, a text(40) Lead field)"
        ) from None


def read_lead(client: CrmClient, mapping: CrmMapping, record_id: str) -> dict[str, Any] | None:
    """The lead as the CRM has it now: owner, status, lock, action id, LastModifiedDate (one query);
    None when it no longer exists."""
    fields = sorted(
        {"OwnerId", "Status", "LastModifiedDate", mapping.sla_fields["sla_lock_until"], action_field(mapping)}
    )
    for page in client.query_pages(soql.by_ids_query("Lead", fields, [record_id])):
        for row in page:
            return {k: v for k, v in row.items() if k != "attributes"}
    return None


def recorded(conn: sa.Connection, record_id: str, action: str) -> set[str]:
    """The audit events already recorded for `action` on the lead (see EVENTS)."""
    a = schema.audit
    rows = conn.execute(
        sa.select(a.c.event, a.c.detail).where(a.c.record_id == record_id, a.c.event.in_(EVENTS))
    ).all()
    found: set[str] = set()
    for row in rows:
        detail: Mapping[str, Any] = row.detail or {}
        if row.event == "crm_write":
            if action in (detail.get("fields") or {}).values():
                found.add(row.event)
        elif detail.get("action_id") == action:
            found.add(row.event)
    return found


def recover_crm_write(
    conn: sa.Connection,
    record_id: str,
    found: Mapping[str, Any] | None,
    action: str,
    have: set[str],
    at: dt.datetime,
    context: AuditContext,
) -> None:
    """Record the ``crm_write`` a crash left out (`found`: the fields our write left on the lead),
    marked ``recovered``; nothing when our write was not found on the lead or is already audited
    (`have`, from `recorded`)."""
    if found is None or "crm_write" in have:
        return
    detail = {"recovered": True, "action_id": action}
    record_writes(conn, {record_id: found}, at, context=context, actor="escalation", detail=detail)
