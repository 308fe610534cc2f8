"""The gate inside crm_sync: screen each page, quarantine errors, flag warnings, release, replay.

`SyncGate` is what `leadsla.crm.sync.sync_object` calls between extract and load: `screen` splits a
page into rows to land and rows to quarantine (each with its reasons), `commit` runs inside the
page's transaction (releases earlier quarantine entries of rows that now landed, stores flags),
`finish` records one `quality_runs` row per suite, logs the per-expectation summary and opens an
incident (one data-engineering Slack notice per incident) when the error rate crosses the
threshold or a suite fails wholesale. `replay` re-validates every open quarantine entry with the
current suites and mapping, so a fixed mapping lets held rows flow in. Nothing here drops a row:
every row of a page is either landed or quarantined.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from leadsla.crm import landing
from leadsla.crm.mapping import TABLES, CrmMapping, ObjectMapping
from leadsla.decisions.plan import Notice
from leadsla.quality.frame import SUITE_OF, Lookups
from leadsla.quality.rules import QualityRules
from leadsla.store import schema
from leadsla.store.upsert import upsert

log = logging.getLogger(__name__)

#: Queues notices in the caller's transaction: (connection, notices, at) -> the new keys.
NoticeWriter = Callable[[sa.Connection, Sequence[Notice], dt.datetime], list[str]]


class QualityRejected(landing.MalformedRecord):
    """A row the gate refused; `reasons` lists every failed error-level expectation."""

    def __init__(self, record_id: str | None, reasons: list[str]) -> None:
        super().__init__(record_id, "; ".join(reasons))
        self.reasons = list(reasons)


@dataclass
class _SuiteTally:
    rows: int = 0
    quarantined: int = 0
    flagged: int = 0
    wholesale_failure: str | None = None
    expectations: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)


def _ids(rows: Sequence[Mapping[str, Any]], *names: str) -> set[str]:
    return {v for r in rows for n in names if isinstance(v := r.get(n), str) and v}


def lookups_for(
    conn: sa.Connection, suite: str, rows: Sequence[Mapping[str, Any]], rules: QualityRules
) -> Lookups:
    """What the store knows about the owners / targets these rows name (one query each, chunked)."""
    lookups = Lookups(status_map=rules.status_map, reason_required=frozenset(rules.reason_required))
    if suite == "leads":
        owners = sorted(_ids(rows, "OwnerId"))
        lookups.owners = {}
        for start in range(0, len(owners), 500):
            for uid, manager, active in conn.execute(
                sa.select(schema.users.c.user_id, schema.users.c.manager_id, schema.users.c.is_active).where(
                    schema.users.c.user_id.in_(owners[start : start + 500])
                )
            ):
                lookups.owners[uid] = (manager, active)
    elif suite == "activities":
        targets = sorted(_ids(rows, "WhoId", "WhatId"))
        known: set[str] = set()
        for start in range(0, len(targets), 500):
            known.update(
                conn.execute(
                    sa.select(schema.records.c.record_id).where(
                        schema.records.c.record_id.in_(targets[start : start + 500])
                    )
                ).scalars()
            )
        lookups.known_records = known
    return lookups


class SyncGate:
    """The quality gate of one sync task run (see the module docstring)."""

    def __init__(
        self, rules: QualityRules, *, run_id: str | None = None, queue_notices: NoticeWriter | None = None
    ) -> None:
        self.rules = rules
        self.run_id = run_id
        #: Writes an incident's notice in the run's transaction (`leadsla.notify.outbox.queue_notices`);
        #: without one, an incident is only logged.
        self.queue_notices = queue_notices
        self.tallies: dict[str, _SuiteTally] = {}
        self._warnings: dict[str, dict[str, list[str]]] = {}

    def screen(
        self, engine: sa.Engine, obj: ObjectMapping, page: Sequence[Mapping[str, Any]], now: dt.datetime
    ) -> tuple[list[Mapping[str, Any]], list[tuple[Mapping[str, Any], QualityRejected]]]:
        """Split a page into (rows to land, rows to quarantine with reasons), order kept.

        An object with no suite passes whole (landing still refuses what it cannot store).
        """
        from leadsla.quality.gate import validate

        suite = SUITE_OF.get(obj.name)
        if suite is None or not page:
            return list(page), []
        with engine.connect() as conn:
            lookups = lookups_for(conn, suite, page, self.rules)
        result = validate(suite, page, now, self.rules, lookups)
        tally = self.tallies.setdefault(suite, _SuiteTally())
        tally.rows += len(page)
        tally.quarantined += result.errors
        tally.flagged += result.warnings
        tally.wholesale_failure = tally.wholesale_failure or result.wholesale_failure
        for e in result.expectations:
            key = (e["expectation"], e["column"], e["severity"])
            seen = tally.expectations.setdefault(key, {**e, "unexpected": 0})
            seen["unexpected"] += e["unexpected"]
            seen["success"] = seen["success"] and e["success"]
        keep, rejected = [], []
        warnings = self._warnings.setdefault(obj.name, {})
        for raw, verdict in zip(page, result.verdicts, strict=True):
            if verdict.quarantined:
                rejected.append(
                    (
                        raw,
                        QualityRejected(
                            verdict.record_id if isinstance(verdict.record_id, str) else None, verdict.errors
                        ),
                    )
                )
            else:
                keep.append(raw)
                if verdict.record_id:
                    warnings[verdict.record_id] = verdict.warnings
        return keep, rejected

    def commit(
        self, conn: sa.Connection, obj: ObjectMapping, landed: Sequence[Mapping[str, Any]], now: dt.datetime
    ) -> int:
        """In the page's transaction: release quarantine entries of landed rows; store or clear flags.

        Returns:
            How many quarantine entries were released.
        """
        key = TABLES[obj.table]["key"][0]
        ids = sorted({r[key] for r in landed if r.get(key)})
        released = 0
        q = schema.quarantine
        for start in range(0, len(ids), 500):
            released += (
                conn.execute(
                    q.update()
                    .where(
                        q.c.object_type == obj.name,
                        q.c.record_id.in_(ids[start : start + 500]),
                        q.c.released_at.is_(None),
                    )
                    .values(released_at=now)
                ).rowcount
                or 0
            )
        warnings = self._warnings.pop(obj.name, {})
        if SUITE_OF.get(obj.name) and ids:
            flags = schema.quality_flags
            flagged = [
                {
                    "object_type": obj.name,
                    "record_id": i,
                    "reasons": warnings[i],
                    "flagged_at": now,
                    "run_id": self.run_id,
                }
                for i in ids
                if warnings.get(i)
            ]
            clean = [i for i in ids if not warnings.get(i)]
            for start in range(0, len(clean), 500):
                conn.execute(
                    flags.delete().where(
                        flags.c.object_type == obj.name, flags.c.record_id.in_(clean[start : start + 500])
                    )
                )
            upsert(conn, flags, flagged)
        if released:
            log.info("released %d quarantined %s rows that now pass", released, obj.name)
        return released

    def finish(self, engine: sa.Engine, now: dt.datetime) -> dict[str, Any]:
        """Record the run per suite, log the per-expectation summary, alert on an incident.

        Returns:
            Small JSON for XCom: per suite rows/quarantined/flagged/incident, and the failing
            expectations with their counts.
        """
        from leadsla.quality.incident import incident_for, incident_notice

        out: dict[str, Any] = {}
        for suite, tally in self.tallies.items():
            failing = [e for e in tally.expectations.values() if e["unexpected"] or not e["success"]]
            for e in tally.expectations.values():
                log.info(
                    "quality %s: %-45s %-28s %-7s unexpected=%d",
                    suite,
                    e["expectation"],
                    e["column"],
                    e["severity"],
                    e["unexpected"],
                )
            summary = {
                "rows": tally.rows,
                "quarantined": tally.quarantined,
                "flagged": tally.flagged,
                "wholesale_failure": tally.wholesale_failure,
                "expectations": {f"{e['column']}:{e['expectation']}": e["unexpected"] for e in failing},
            }
            with engine.begin() as conn:
                incident = incident_for(conn, self.rules, suite, summary, now)
                conn.execute(
                    schema.quality_runs.insert().values(
                        at=now,
                        object_type=suite,
                        suite=suite,
                        rows=tally.rows,
                        quarantined=tally.quarantined,
                        flagged=tally.flagged,
                        summary=summary,
                        incident=incident,
                        run_id=self.run_id,
                    )
                )
                if incident and self.queue_notices is not None:
                    self.queue_notices(
                        conn, [incident_notice(self.rules, suite, incident, summary, failing)], now
                    )
                elif incident:
                    log.error("data-quality incident %s (no notice writer given: not queued)", incident)
            summary["incident"] = incident
            out[suite] = summary
        return out


def replay(
    engine: sa.Engine, mapping: CrmMapping, rules: QualityRules, now: dt.datetime, run_id: str | None = None
) -> dict[str, Any]:
    """Re-validate every open quarantine entry; land and release those that now pass.

    A held row older than the store's copy of the record is released without overwriting it.

    Returns:
        {"open": n, "released": n, "still_held": n} (small JSON for XCom).
    """
    q = schema.quarantine
    gate = SyncGate(rules, run_id=run_id)
    totals = {"open": 0, "released": 0, "still_held": 0}
    with engine.connect() as conn:
        held = conn.execute(
            sa.select(q.c.quarantine_id, q.c.object_type, q.c.payload)
            .where(q.c.released_at.is_(None))
            .order_by(q.c.quarantine_id)
        ).all()
    totals["open"] = len(held)
    # Leads before their history and activities, as the sync orders them.
    order = {name: i for i, name in enumerate(mapping.objects)}
    by_object: dict[str, list[Any]] = {}
    for row in held:
        by_object.setdefault(row.object_type, []).append(row)
    for name in sorted(by_object, key=lambda n: order.get(n, len(order))):
        obj = mapping.objects.get(name)
        rows = by_object[name]
        if obj is None:
            totals["still_held"] += len(rows)
            continue
        payloads = [dict(r.payload) for r in rows]
        keep, rejected = gate.screen(engine, obj, payloads, now)
        kept_ids = {id(p) for p in keep}
        table = schema.metadata.tables[obj.table]
        key = TABLES[obj.table]["key"][0]
        landed, release_ids, still = [], [], []
        reasons: dict[int, list[str]] = {id(raw): exc.reasons for raw, exc in rejected}
        for row, payload in zip(rows, payloads, strict=True):
            if id(payload) not in kept_ids:
                still.append((row.quarantine_id, reasons[id(payload)]))
                continue
            try:
                landed.append(
                    (
                        row.quarantine_id,
                        landing.store_row(
                            obj, payload, synced_at=now, status_map=mapping.status_map_for(obj)
                        ),
                    )
                )
            except landing.MalformedRecord as exc:
                still.append((row.quarantine_id, [exc.reason]))
        with engine.begin() as conn:
            fresh = []
            for qid, store_row in landed:
                if "modified_at" in table.c and store_row.get("modified_at") is not None:
                    current = conn.execute(
                        sa.select(table.c.modified_at).where(table.c[key] == store_row[key])
                    ).scalar()
                    if current is not None and current >= store_row["modified_at"]:
                        release_ids.append(qid)
                        continue
                fresh.append(store_row)
                release_ids.append(qid)
            upsert(conn, table, fresh)
            gate.commit(conn, obj, fresh, now)
            if release_ids:
                conn.execute(q.update().where(q.c.quarantine_id.in_(release_ids)).values(released_at=now))
            for qid, why in still:
                conn.execute(q.update().where(q.c.quarantine_id == qid).values(reasons=why, last_seen_at=now))
        totals["released"] += len(release_ids)
        totals["still_held"] += len(still)
    log.info("quarantine replay: %(open)d open, %(released)d released, %(still_held)d still held", totals)
    return totals
