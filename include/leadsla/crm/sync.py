"""One sync cycle: read what changed in the CRM since the watermark, land it, move the watermark.

Per object: SOQL on the modstamp after (watermark - overlap), oldest first, page by page through
nextRecordsUrl; each page is one store transaction that upserts its rows, quarantines malformed
ones and advances the watermark to the page's newest modstamp, so a backfill never holds more than
a page and a crash resumes where the last committed page ended. Objects with IsDeleted read
through queryAll, so deletes arrive as rows with IsDeleted = true in the same call.

REQUEST_LIMIT_EXCEEDED stops the cycle: nothing of the refused page is written, the watermark
stays at the last committed page, the run is recorded as `limited`. This module never advances a
watermark outside the transaction that wrote its rows, and never decides anything about SLAs.

Our own SLA stamps come back as Lead rows with a new modstamp: a row whose only differences from
the store's copy are the modstamp and the fields sla_monitor stamps is landed but not counted as
changed (an `echo`), so it never publishes the CRM asset and re-evaluates nothing. A stamp field
the org lacks (the describe check records it) is left out of the Lead query.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from leadsla.crm import budget, landing, soql
from leadsla.crm.mapping import CrmMapping, ObjectMapping, check_against_org, optional_fields
from leadsla.crm.picklists import lifecycle_digest, picklist_drift
from leadsla.crm.protocol import ApiLimitExceeded, CrmClient
from leadsla.lifecycle import Lifecycle
from leadsla.store import schema, watermarks
from leadsla.store.upsert import upsert

log = logging.getLogger(__name__)


class PageGate(Protocol):
    """The data-quality hook between extract and load (`leadsla.quality.quarantine.SyncGate`)."""

    def screen(
        self, engine: sa.Engine, obj: ObjectMapping, page: Sequence[Mapping[str, Any]], now: dt.datetime
    ) -> tuple[list[Mapping[str, Any]], list[tuple[Mapping[str, Any], landing.MalformedRecord]]]:
        """Split a page into (rows to land, rows to quarantine with their reasons)."""
        ...

    def commit(
        self, conn: sa.Connection, obj: ObjectMapping, rows: list[dict[str, Any]], now: dt.datetime
    ) -> int:
        """In the page's transaction: release earlier quarantine entries of rows that landed."""
        ...


#: A group is due when its last run started at least `every_minutes` minus this slack ago, so a
#: one-minute schedule that fires a little early does not skip a cycle.
_DUE_SLACK = dt.timedelta(seconds=20)


@dataclass
class ObjectResult:
    """What one object's sync read and wrote."""

    object: str
    fetched: int = 0
    changed: int = 0  # rows newer than the previous watermark (not overlap re-reads), echoes aside
    echoes: int = 0  # newer rows that differ from the store's copy only in our stamps and the modstamp
    deleted: int = 0
    quarantined: int = 0
    pages: int = 0
    watermark: str | None = None


@dataclass
class SyncSummary:
    """One group's cycle, as logged, recorded in sync_runs and returned as XCom (small JSON)."""

    group: str
    status: str  # success, not_due, limited, failed
    api_calls: int = 0
    records_changed: int = 0
    org_remaining: int | None = None
    org_max: int | None = None
    objects: list[ObjectResult] = field(default_factory=list)
    message: str = ""

    @property
    def quarantined(self) -> int:
        return sum(o.quarantined for o in self.objects)

    def to_xcom(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "status": self.status,
            "api_calls": self.api_calls,
            "records_changed": self.records_changed,
            "quarantined": self.quarantined,
            "org_remaining": self.org_remaining,
            "org_max": self.org_max,
            "objects": {o.object: o.changed for o in self.objects},
            "message": self.message,
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def is_due(engine: sa.Engine, mapping: CrmMapping, group: str, now: dt.datetime) -> bool:
    """Whether `group` should sync now (its last successful run is `every_minutes` old).

    A group synced every minute is always due: the DAG's schedule is its cadence.
    """
    if mapping.groups[group].every_minutes <= 1:
        return True
    runs = schema.sync_runs
    with engine.connect() as conn:
        last = conn.execute(
            sa.select(sa.func.max(runs.c.started_at)).where(
                runs.c.group_name == group, runs.c.status == "success"
            )
        ).scalar()
    if last is None:
        return True
    if last.tzinfo is None:  # SQLite returns aggregates untyped
        last = dt.datetime.fromisoformat(str(last)).replace(tzinfo=dt.UTC)
    return now - last >= dt.timedelta(minutes=mapping.groups[group].every_minutes) - _DUE_SLACK


def ensure_mapping_checked(
    client: CrmClient,
    engine: sa.Engine,
    mapping: CrmMapping,
    now: dt.datetime,
    *,
    lifecycle: Lifecycle | None = None,
) -> bool:
    """Check the mapping against describe() unless this version passed within describe_check_hours;
    with a `lifecycle`, also compare the org's picklists with it (from the same describe calls).

    Picklist drift (an org status neither a lifecycle status nor mapped to one, a lifecycle status
    or rejection reason the org lacks, ...) is logged as a warning and stored with the check
    (`crm_mapping_checks.drift`, which sla_health reports); it never fails the sync. A check stands
    for this mapping and lifecycle together: changing either checks again.

    Returns:
        True when describe() was called now, False when a recent check of this mapping stands.

    Raises:
        MappingError: a mapped field is missing in the org (one error naming every one).
    """
    checks = schema.crm_mapping_checks
    declared = lifecycle_digest(lifecycle) if lifecycle is not None else None
    with engine.connect() as conn:
        last = conn.execute(
            sa.select(checks.c.checked_at, checks.c.lifecycle_digest, checks.c.stamp_fields).where(
                checks.c.mapping_digest == mapping.digest
            )
        ).first()
    fresh = last is not None and now - last.checked_at < dt.timedelta(hours=mapping.describe_check_hours)
    if fresh and (declared is None or last.lifecycle_digest == declared) and last.stamp_fields is not None:
        return False
    lacking = check_against_org(mapping, client.describe_fields)
    drift = picklist_drift(lifecycle, mapping, client.describe_picklists) if lifecycle is not None else None
    since = (last.stamp_fields or {}).get("since") if last is not None else None
    stamp_fields = _stamp_field_types(client, mapping, lacking, since or now.isoformat())
    with engine.begin() as conn:
        upsert(
            conn,
            checks,
            [
                {
                    "mapping_digest": mapping.digest,
                    "checked_at": now,
                    "objects": sorted(mapping.objects),
                    "lifecycle_digest": declared,
                    "drift": drift,
                    "stamp_fields": stamp_fields,
                }
            ],
        )
    for problem in drift or []:
        log.warning("picklist drift: %s", problem)
    for api in lacking:
        log.warning("the org has no field Lead.%s: it is not synced and its SLA stamping stops", api)
    log.info(
        "CRM field mapping %s checked against the org: all %d objects match%s",
        mapping.path,
        len(mapping.objects),
        "" if drift is None else f"; {len(drift)} picklist disagreement(s) with the lifecycle",
    )
    return True


def _stamp_field_types(
    client: CrmClient, mapping: CrmMapping, lacking: Sequence[str], since: str
) -> dict[str, Any]:
    """The stamp fields as describe() reported them (null for those the org lacks), and since when
    this mapping has been checked (SLA stamping keys its notices on it)."""
    described = client.describe_field_types("Lead") if mapping.stamp_fields else {}
    return {
        "since": since,
        "fields": {
            api: None if api in lacking else described.get(api) for api in mapping.stamp_fields.values()
        },
    }


def stamp_field_types(conn: sa.Connection, mapping: CrmMapping) -> dict[str, Any] | None:
    """This mapping's latest describe check of the stamp fields (`_stamp_field_types`), or None
    when it has not been checked against the org yet."""
    checks = schema.crm_mapping_checks
    return conn.execute(
        sa.select(checks.c.stamp_fields).where(checks.c.mapping_digest == mapping.digest)
    ).scalar()


def _readable(conn: sa.Connection, mapping: CrmMapping, obj: ObjectMapping) -> ObjectMapping:
    """`obj` without the optional Lead fields the org lacks (per the latest describe check)."""
    if obj.name != "Lead":
        return obj
    optional = optional_fields(mapping)
    checked = stamp_field_types(conn, mapping) or {}
    lacking = {api for api, t in (checked.get("fields") or {}).items() if t is None and api in optional}
    if not lacking:
        return obj
    return dataclasses.replace(obj, fields={k: v for k, v in obj.fields.items() if k not in lacking})


def _echoes(
    conn: sa.Connection, mapping: CrmMapping, obj: ObjectMapping, rows: Sequence[Mapping[str, Any]]
) -> set[str]:
    """The ids of `rows` whose fields equal the store's copy but for our stamps and the modstamp."""
    ignored = {obj.modstamp, "LastModifiedDate", *mapping.stamp_fields.values()}
    if obj.table != "records" or not rows:
        return set()
    r = schema.records
    ids = [row["record_id"] for row in rows]
    stored: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        stored.update(
            (rid, fields or {})
            for rid, fields in conn.execute(
                sa.select(r.c.record_id, r.c.fields).where(
                    r.c.object_type == obj.name, r.c.record_id.in_(ids[start : start + 500])
                )
            )
        )

    def meaningful(fields: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in fields.items() if k not in ignored}

    return {
        row["record_id"]
        for row in rows
        if row["record_id"] in stored and meaningful(stored[row["record_id"]]) == meaningful(row["fields"])
    }


def _quarantine(
    conn: sa.Connection,
    obj: ObjectMapping,
    bad: list[tuple[Mapping, landing.MalformedRecord]],
    now: dt.datetime,
    run_id: str | None,
) -> None:
    q = schema.quarantine
    for raw, exc in bad:
        payload = {k: v for k, v in raw.items() if k != "attributes"}
        existing = None
        if exc.record_id:
            existing = conn.execute(
                sa.select(q.c.quarantine_id).where(
                    q.c.object_type == obj.name,
                    q.c.record_id == exc.record_id[:40],
                    q.c.released_at.is_(None),
                )
            ).scalar()
        # The quality gate's rejections carry every reason as a list (leadsla.quality.quarantine).
        values = {
            "payload": payload,
            "reasons": list(getattr(exc, "reasons", None) or [exc.reason]),
            "last_seen_at": now,
            "run_id": run_id,
        }
        if existing:
            conn.execute(q.update().where(q.c.quarantine_id == existing).values(**values))
        else:
            conn.execute(
                q.insert().values(
                    object_type=obj.name,
                    record_id=(exc.record_id or None) and exc.record_id[:40],
                    first_seen_at=now,
                    **values,
                )
            )


def sync_object(
    client: CrmClient,
    engine: sa.Engine,
    mapping: CrmMapping,
    obj: ObjectMapping,
    *,
    now: dt.datetime | None = None,
    run_id: str | None = None,
    gate: PageGate | None = None,
) -> ObjectResult:
    """Bring one object up to date, one committed page at a time (see the module docstring).

    `gate` (a `PageGate`, e.g. `leadsla.quality.quarantine.SyncGate`) is the data-quality hook between
    extract and load: it screens each page (its rejections are quarantined with their reasons)
    and, in the page's transaction, releases earlier quarantine entries of rows that landed.
    """
    result = ObjectResult(obj.name)
    table = schema.metadata.tables[obj.table]
    status_map = mapping.status_map_for(obj)
    with engine.connect() as conn:
        previous = watermarks.read(conn, obj.name)
        obj = _readable(conn, mapping, obj)
    since = previous - dt.timedelta(minutes=mapping.overlap_minutes) if previous else None
    query = soql.incremental_query(obj, since)
    for page in client.query_pages(query, include_deleted=obj.has_is_deleted):
        synced_at = now or _now()
        rows: list[dict[str, Any]] = []
        newer: list[dict[str, Any]] = []
        bad: list[tuple[Mapping, landing.MalformedRecord]] = []
        newest: dt.datetime | None = None
        held: set[int] = set()
        if gate is not None:
            _, rejected = gate.screen(engine, obj, page, synced_at)
            bad.extend(rejected)
            held = {id(raw) for raw, _ in rejected}
        for raw in page:
            stamp = landing.modstamp_of(obj, raw)
            if stamp is not None:
                newest = stamp if newest is None else max(newest, stamp)
            if id(raw) in held:
                continue
            try:
                row = landing.store_row(obj, raw, synced_at=synced_at, status_map=status_map)
            except landing.MalformedRecord as exc:
                log.warning(
                    "skipped malformed %s record %s: %s", obj.name, exc.record_id or "(no Id)", exc.reason
                )
                bad.append((raw, exc))
                continue
            rows.append(row)
            if previous is None or stamp is None or stamp > previous:
                newer.append(row)
        if not page:  # an idle cycle: no write transaction, no write lock taken
            result.pages += 1
            continue
        with engine.begin() as conn:
            echoes = (
                _echoes(conn, mapping, obj, newer) if previous is not None and mapping.stamp_fields else set()
            )
            result.echoes += len(echoes)
            result.changed += len(newer) - len(echoes)
            result.deleted += sum(bool(row.get("is_deleted")) for row in newer)
            upsert(conn, table, rows)
            if bad:
                _quarantine(conn, obj, bad, synced_at, run_id)
            if gate is not None:
                gate.commit(conn, obj, rows, synced_at)
            if newest is not None:
                result.watermark = watermarks.advance(conn, obj.name, newest).isoformat()
        result.pages += 1
        result.fetched += len(page)
        result.quarantined += len(bad)
    return result


def sync_group(
    client: CrmClient,
    engine: sa.Engine,
    mapping: CrmMapping,
    group: str,
    *,
    now: dt.datetime | None = None,
    run_id: str | None = None,
    force: bool = False,
    gate: PageGate | None = None,
) -> SyncSummary:
    """Sync every object of a group (if due), record the run in sync_runs, and summarise it.

    Returns:
        The summary; status `limited` when the org refused with REQUEST_LIMIT_EXCEEDED (the
        watermark of the refused object is where its last committed page left it).

    Raises:
        CrmError, MappingError, SQLAlchemyError: anything else fails the cycle (recorded as failed).
    """
    started = now or _now()
    if not force and not is_due(engine, mapping, group, started):
        return SyncSummary(
            group, "not_due", message=f"{group}: not due (every {mapping.groups[group].every_minutes} min)"
        )
    summary = SyncSummary(group, "failed")
    try:
        for name in mapping.groups[group].objects:
            summary.objects.append(
                sync_object(client, engine, mapping, mapping.objects[name], now=now, run_id=run_id, gate=gate)
            )
        summary.status = "success"
    except ApiLimitExceeded as exc:
        summary.status = "limited"
        summary.message = str(exc)
        log.error("%s", exc)
    except Exception as exc:
        summary.message = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        usage = client.usage()
        summary.api_calls = usage.calls
        summary.org_remaining, summary.org_max = usage.org_remaining, usage.org_max
        summary.records_changed = sum(o.changed for o in summary.objects)
        if not summary.message:
            summary.message = (
                f"{group}: {summary.records_changed} records changed, {summary.api_calls} API calls"
                + (
                    f", org has {summary.org_remaining:,}/{summary.org_max:,} calls left"
                    if summary.org_max
                    else ""
                )
            )
        with engine.begin() as conn:
            conn.execute(
                schema.sync_runs.insert().values(
                    started_at=started,
                    finished_at=_now(),
                    status=summary.status,
                    api_calls=summary.api_calls,
                    records_changed=summary.records_changed,
                    api_remaining=summary.org_remaining,
                    api_max=summary.org_max,
                    detail={"objects": [asdict(o) for o in summary.objects], "message": summary.message},
                    run_id=run_id,
                    group_name=group,
                )
            )
    return summary


def cycle_report(
    engine: sa.Engine, mapping: CrmMapping, summaries: list[Mapping[str, Any]], now: dt.datetime | None = None
) -> dict[str, Any]:
    """The cycle's totals for the log and XCom, with the budget warning text when over budget."""
    now = now or _now()
    done = [s for s in summaries if s]
    with engine.connect() as conn:
        used = budget.calls_today(conn, now)
    remaining = [s["org_remaining"] for s in done if s.get("org_remaining") is not None]
    maxes = [s["org_max"] for s in done if s.get("org_max") is not None]
    org_remaining = min(remaining) if remaining else None
    warning = budget.budget_warning(
        used_today=used,
        projected_today=budget.projected_calls(used, now),
        daily_budget=mapping.daily_api_budget,
        org_remaining=org_remaining,
        org_max=max(maxes) if maxes else None,
    )
    return {
        "api_calls": sum(s["api_calls"] for s in done),
        "records_changed": sum(s["records_changed"] for s in done),
        "org_remaining": org_remaining,
        "api_calls_today": used,
        "statuses": {s["group"]: s["status"] for s in done},
        "budget_warning": warning,
    }


def check_mapping(
    client: CrmClient,
    engine: sa.Engine,
    mapping: CrmMapping,
    now: dt.datetime,
    run_id: str | None = None,
    *,
    lifecycle: Lifecycle | None = None,
) -> dict[str, Any]:
    """`ensure_mapping_checked`, with the describe() calls it made recorded in sync_runs (they
    count against the daily API budget). Returns small JSON for XCom (`drift`: how many picklist
    disagreements the latest check of this mapping found, None when not compared)."""
    checked = ensure_mapping_checked(client, engine, mapping, now, lifecycle=lifecycle)
    with engine.connect() as conn:
        drift = conn.execute(
            sa.select(schema.crm_mapping_checks.c.drift).where(
                schema.crm_mapping_checks.c.mapping_digest == mapping.digest
            )
        ).scalar()
    calls = client.usage().calls
    if calls:
        with engine.begin() as conn:
            conn.execute(
                schema.sync_runs.insert().values(
                    started_at=now,
                    finished_at=_now(),
                    status="success",
                    api_calls=calls,
                    records_changed=0,
                    detail={"message": "mapping checked against describe()"},
                    run_id=run_id,
                    group_name="mapping_check",
                )
            )
    return {
        "mapping": mapping.path,
        "digest": mapping.digest[:12],
        "checked_now": checked,
        "api_calls": calls,
        "drift": None if drift is None else len(drift),
    }


def log_cycle(report: Mapping[str, Any]) -> None:
    """The cycle's totals in the task log; the budget warning as a WARNING."""
    remaining = "unknown" if report["org_remaining"] is None else f"{report['org_remaining']:,}"
    log.info(
        "CRM sync cycle: %d API calls, %d records changed, org has %s calls left, %d calls today",
        report["api_calls"],
        report["records_changed"],
        remaining,
        report["api_calls_today"],
    )
    if report["budget_warning"]:
        log.warning("%s", report["budget_warning"])
