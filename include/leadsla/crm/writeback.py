"""Write-back: stamp SLA fields (and owners) on CRM records, only when changed, never blindly.

`stamp` compares the wanted values with the store's copy of each record and writes only the
fields that differ, 200 records per composite call, each call conditional on If-Unmodified-Since
`as_of`. `as_of` is the instant the caller's view is complete up to (the store's copy of the
record: its `modified_at`, else when it was synced): a record modified after it has a change the
caller has not seen. Such a
record (412 / PRECONDITION_FAILED) is re-read and handed to `decide`, which returns what to write
now (or None to leave it); the retry is conditional on the re-read. UNABLE_TO_LOCK_ROW is retried
with back-off. Every write and every conflict is audited (`crm_write`, `crm_write_conflict`).

Salesforce documents If-Unmodified-Since for sObject Rows only, so a real org may ignore it on a
composite call: by default (`precheck=True`) each batch's LastModifiedDate is therefore read first
(one query per 200 records) and records changed after `as_of` go straight to re-read and
re-decide; the header then guards the short window between that read and the write where the org
honours it. With `precheck_since=True` the pre-check is one query for every record changed after
`as_of` (few, when the caller's view is the sync's fresh watermark) instead of one per 200 ids: a
large write then costs one call more than its composite calls. A record the org refuses keeps its
errors as the org gave them (`WriteResult.errors`: statusCode, message, fields), so the caller
can tell a value the org rejects from a record it could not lock. If-Unmodified-Since has
whole-second precision: a change in the same second as `as_of` is not detected. This module never
writes a field the mapping does not name as an SLA field.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from leadsla.crm import soql
from leadsla.crm.landing import parse_datetime
from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient, PreconditionFailed
from leadsla.crm.salesforce import COMPOSITE_BATCH, RetryPolicy
from leadsla.store import audit, schema

log = logging.getLogger(__name__)

OBJECT = "Lead"
#: Re-read on a conflict besides the wanted fields, so `decide` sees who owns it and its stage now.
_REREAD = {"Status", "OwnerId", "LastModifiedDate", "SystemModstamp"}
#: Decide what to write for a record someone else changed: (record_id, wanted API fields, the
#: record as re-read now) -> API fields to write, or None to leave the record alone.
Decide = Callable[[str, Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any] | None]


def leave_it(record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    """The default decision on a conflict: write nothing (a person or rule changed it after us)."""
    return None


@dataclass
class WriteResult:
    """What a stamp call did, by record id."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # nothing differed: no call made for them
    conflicts: list[str] = field(default_factory=list)  # changed by someone else since as_of
    left: list[str] = field(default_factory=list)  # conflicts `decide` chose not to write
    failed: dict[str, str] = field(default_factory=dict)  # record id -> error
    #: Records the org refused: its errors as sent ({statusCode, message, fields}) and the API
    #: fields and values the refused write carried.
    errors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "written": len(self.written),
            "unchanged": len(self.unchanged),
            "conflicts": len(self.conflicts),
            "left": len(self.left),
            "failed": self.failed,
        }


def _wire(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be written: give it a timezone")
        return (
            value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
        )
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def same_value(a: Any, b: Any) -> bool:
    """Equal as CRM values: datetimes by instant (to the millisecond), numbers by value."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) and isinstance(b, str) and a != b:
        try:
            da, db = parse_datetime(a), parse_datetime(b)
        except ValueError:
            return False
        return da is not None and db is not None and abs(da - db) < dt.timedelta(milliseconds=1)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b


def _diff(wanted: Mapping[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    if current is None:
        return dict(wanted)
    return {k: v for k, v in wanted.items() if not same_value(v, current.get(k))}


def _store_fields(engine: sa.Engine, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    r = schema.records
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                sa.select(r.c.record_id, r.c.fields).where(
                    r.c.object_type == OBJECT, r.c.record_id.in_(ids[start : start + 500])
                )
            )
            out.update({row.record_id: dict(row.fields or {}) for row in rows})
    return out


def stamp(
    client: CrmClient,
    engine: sa.Engine,
    mapping: CrmMapping,
    changes: Mapping[str, Mapping[str, Any]],
    *,
    as_of: dt.datetime,
    context: audit.AuditContext,
    decide: Decide = leave_it,
    actor: str = "crm_writeback",
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_rounds: int = 3,
    precheck: bool = True,
    precheck_since: bool = False,
) -> WriteResult:
    """Write SLA fields on Leads where they differ from the store's copy.

    Args:
        changes: record id -> {logical SLA field (crm_fields.yaml sla_fields, e.g. "sla_status",
            "sla_due", "owner"): value}. Datetimes must be aware.
        as_of: the instant the caller's view of these records is complete up to (see module doc).
        decide: called for each record changed by someone else since; default `leave_it`.
        precheck: read LastModifiedDate before writing (see the module docstring).
        precheck_since: pre-check with one query for the records changed after `as_of`.

    Returns:
        The ids written, unchanged, in conflict, left alone, failed.

    Raises:
        ValueError: a logical field the mapping does not name, or a naive datetime.
        ApiLimitExceeded, CrmError: the org refused the call as a whole.
    """
    retry = retry or RetryPolicy()
    wanted: dict[str, dict[str, Any]] = {}
    for rid, values in changes.items():
        unknown = set(values) - set(mapping.sla_fields)
        if unknown:
            raise ValueError(
                f"record {rid}: {sorted(unknown)} are not SLA fields (known: {sorted(mapping.sla_fields)})"
            )
        wanted[rid] = {mapping.sla_fields[k]: _wire(v) for k, v in values.items()}
    result = WriteResult()
    known = _store_fields(engine, list(wanted))
    pending: dict[str, dict[str, Any]] = {}
    for rid, fields in wanted.items():
        diff = _diff(fields, known.get(rid))
        (pending.__setitem__(rid, diff) if diff else result.unchanged.append(rid))
    condition = as_of
    early: dict[str, dict[str, Any]] = {}
    if precheck and pending:
        early = (_modified_since if precheck_since else _changed_since)(client, pending, as_of)
    for rid in early:
        del pending[rid]
    for round_no in range(max_rounds + 1):
        if not pending and not early:
            break
        conflicts, locked = _send(client, engine, pending, condition, context, actor, result)
        conflicts.update(early)
        early = {}
        for lock_try in range(retry.attempts - 1):
            if not locked:
                break
            sleep(retry.delay(lock_try))
            more_conflicts, locked = _send(client, engine, locked, condition, context, actor, result)
            conflicts.update(more_conflicts)
        for rid in locked:
            result.failed[rid] = "UNABLE_TO_LOCK_ROW after retries"
        pending = {}
        if not conflicts:
            break
        if round_no == max_rounds:
            result.failed.update({rid: "still changing after re-reads" for rid in conflicts})
            break
        pending, condition = _redecide(client, engine, conflicts, context, actor, decide, result)
    return result


def _changed_since(
    client: CrmClient,
    pending: Mapping[str, dict[str, Any]],
    as_of: dt.datetime,
) -> dict[str, dict[str, Any]]:
    """The pending records whose LastModifiedDate is after `as_of` (one query per 200 ids)."""
    changed: dict[str, dict[str, Any]] = {}
    ids = list(pending)
    for start in range(0, len(ids), COMPOSITE_BATCH):
        query = soql.by_ids_query(OBJECT, ["LastModifiedDate"], ids[start : start + COMPOSITE_BATCH])
        for page in client.query_pages(query):
            for row in page:
                modified = parse_datetime(row.get("LastModifiedDate"))
                if modified is not None and modified.replace(microsecond=0) > as_of.replace(microsecond=0):
                    changed[row["Id"]] = pending[row["Id"]]
    return changed


def _modified_since(
    client: CrmClient,
    pending: Mapping[str, dict[str, Any]],
    as_of: dt.datetime,
) -> dict[str, dict[str, Any]]:
    """The pending records whose LastModifiedDate is after `as_of`, from one query over every
    record changed since (`soql.modified_since_query`)."""
    changed: dict[str, dict[str, Any]] = {}
    since = as_of.replace(microsecond=0)
    for page in client.query_pages(soql.modified_since_query(OBJECT, since)):
        for row in page:
            modified = parse_datetime(row.get("LastModifiedDate"))
            if row["Id"] in pending and modified is not None and modified.replace(microsecond=0) > since:
                changed[row["Id"]] = pending[row["Id"]]
    return changed


def _send(
    client: CrmClient,
    engine: sa.Engine,
    pending: Mapping[str, dict[str, Any]],
    condition: dt.datetime,
    context: audit.AuditContext,
    actor: str,
    result: WriteResult,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """One pass over `pending` in composite batches; returns (conflicts, locked) still to handle."""
    conflicts: dict[str, dict[str, Any]] = {}
    locked: dict[str, dict[str, Any]] = {}
    ids = list(pending)
    for start in range(0, len(ids), COMPOSITE_BATCH):
        batch = ids[start : start + COMPOSITE_BATCH]
        try:
            results = client.update_records(
                OBJECT, [{"Id": rid, **pending[rid]} for rid in batch], if_unmodified_since=condition
            )
        except PreconditionFailed:
            conflicts.update({rid: pending[rid] for rid in batch})
            continue
        written: list[str] = []
        for rid, res in zip(batch, results, strict=False):
            codes = {str(e.get("statusCode")) for e in res.get("errors") or []}
            if res.get("success"):
                written.append(rid)
            elif "PRECONDITION_FAILED" in codes:
                conflicts[rid] = pending[rid]
            elif "UNABLE_TO_LOCK_ROW" in codes:
                locked[rid] = pending[rid]
            else:
                result.errors[rid] = list(res.get("errors") or [])
                result.sent[rid] = dict(pending[rid])
                result.failed[rid] = "; ".join(
                    f"{e.get('statusCode')}: {e.get('message')}" for e in res.get("errors") or []
                )
                log.warning("Salesforce refused the write to Lead %s: %s", rid, result.failed[rid])
        if written:
            _record_writes(engine, {rid: pending[rid] for rid in written}, context, actor)
            result.written.extend(written)
    return conflicts, locked


def _record_writes(
    engine: sa.Engine, writes: Mapping[str, Mapping[str, Any]], context: audit.AuditContext, actor: str
) -> None:
    with engine.begin() as conn:
        record_writes(conn, writes, dt.datetime.now(dt.UTC), context=context, actor=actor)


def record_writes(
    conn: sa.Connection,
    writes: Mapping[str, Mapping[str, Any]],
    at: dt.datetime,
    *,
    context: audit.AuditContext,
    actor: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record writes the CRM accepted, in the caller's transaction: the store's copy of each record
    takes the written values, and each write is audited ``crm_write`` (`detail` added to its entry).

    `stamp` calls it right after each composite call; a caller completing a write that a crash left
    unrecorded (`leadsla.escalation.own_writes`) calls it with the values it found on the record.
    """
    r = schema.records
    known = {
        row.record_id: dict(row.fields or {})
        for row in conn.execute(
            sa.select(r.c.record_id, r.c.fields).where(
                r.c.object_type == OBJECT, r.c.record_id.in_(list(writes))
            )
        )
    }
    # Keep the store's copy current so the next decision sees the stamp (one executemany).
    updates = [
        {"rid": rid, "new": {**known[rid], **fields}} for rid, fields in writes.items() if rid in known
    ]
    if updates:
        conn.execute(
            r.update()
            .where(r.c.object_type == OBJECT, r.c.record_id == sa.bindparam("rid"))
            .values(fields=sa.bindparam("new", type_=r.c.fields.type)),
            updates,
        )
    audit.record_many(
        conn,
        [
            {
                "event": "crm_write",
                "at": at,
                "object_type": OBJECT,
                "record_id": rid,
                "actor": actor,
                "detail": {"fields": dict(fields), **dict(detail or {})},
            }
            for rid, fields in writes.items()
        ],
        context=context,
    )


def _redecide(
    client: CrmClient,
    engine: sa.Engine,
    conflicts: Mapping[str, dict[str, Any]],
    context: audit.AuditContext,
    actor: str,
    decide: Decide,
    result: WriteResult,
) -> tuple[dict[str, dict[str, Any]], dt.datetime]:
    """Re-read the conflicting records, audit each conflict, and ask `decide` what to write now."""
    fields = sorted({f for wanted in conflicts.values() for f in wanted} | _REREAD)
    current: dict[str, dict[str, Any]] = {}
    ids = list(conflicts)
    for start in range(0, len(ids), COMPOSITE_BATCH):
        query = soql.by_ids_query(OBJECT, fields, ids[start : start + COMPOSITE_BATCH])
        for page in client.query_pages(query):
            current.update({row["Id"]: {k: v for k, v in row.items() if k != "attributes"} for row in page})
    now = dt.datetime.now(dt.UTC)
    pending: dict[str, dict[str, Any]] = {}
    entries = []
    for rid, wanted in conflicts.items():
        if rid not in current:
            result.failed[rid] = "record no longer exists"
            continue
        if rid not in result.conflicts:
            result.conflicts.append(rid)
        entries.append(
            {
                "event": "crm_write_conflict",
                "at": now,
                "object_type": OBJECT,
                "record_id": rid,
                "actor": actor,
                "detail": {
                    "wanted": dict(wanted),
                    "current": {k: current[rid].get(k) for k in wanted},
                    "modified_at": current[rid].get("LastModifiedDate"),
                },
            }
        )
        decided = decide(rid, wanted, current[rid])
        diff = _diff({k: _wire(v) for k, v in (decided or {}).items()}, current[rid])
        if diff:
            pending[rid] = diff
        else:
            result.left.append(rid)
    with engine.begin() as conn:
        audit.record_many(conn, entries, context=context)
    stamps = [parse_datetime(current[rid].get("LastModifiedDate")) for rid in pending]
    # Every pending record was read just now, so a change after this read is newer than all of them.
    condition = max((s for s in stamps if s), default=now)
    log.info("%d Lead write conflicts re-read; %d re-decided to write", len(entries), len(pending))
    return pending, condition


def reassign_owner(
    client: CrmClient,
    engine: sa.Engine,
    mapping: CrmMapping,
    owners: Mapping[str, str],
    *,
    as_of: dt.datetime,
    context: audit.AuditContext,
    decide: Decide = leave_it,
    **kwargs: Any,
) -> WriteResult:
    """Move Leads to new owners (user or queue ids), with the same only-when-changed and conflict rules."""
    return stamp(
        client,
        engine,
        mapping,
        {rid: {"owner": owner} for rid, owner in owners.items()},
        as_of=as_of,
        context=context,
        decide=decide,
        actor=kwargs.pop("actor", "escalation"),
        **kwargs,
    )
