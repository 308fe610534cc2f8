"""crm_sync's entry points: the mapping check, one object group's sync, the quarantine replay,
and the cycle's report.

Each opens the store, takes the configuration in force (`tasks.configuration.in_force`: the files
when they agree, else the last good ones; never a mix) and the Salesforce client (connection
`salesforce_default`, or $LEADSLA_SALESFORCE_CONN_ID), wires the data-quality gate into the sync
(`leadsla.quality` screens what `leadsla.crm.sync` lands), and returns small JSON for XCom.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from leadsla.configuration import Configuration
from leadsla.crm import change_feed, sync
from leadsla.crm.budget import over_budget_notice
from leadsla.crm.salesforce import SalesforceClient, conn_id_from_env, streaming_allowed
from leadsla.notify.outbox import queue_notices
from leadsla.quality.quarantine import SyncGate, replay
from leadsla.store import open_store, stream
from leadsla.store.audit import AuditContext
from leadsla.tasks.configuration import in_force
from leadsla.tasks.landed_clocks import write_landed_clocks

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    # Sync bookkeeping (synced_at, sync_runs) is about when the CRM was read: the wall clock.
    return dt.datetime.now(dt.UTC)


def _configuration(engine, mapping_path: str | None, context: AuditContext) -> Configuration:
    """The configuration in force (`tasks.configuration`), with `mapping_path` as its mapping."""
    return in_force(engine, context, paths={"mapping": mapping_path}).configuration


def quality_gate(configuration: Configuration, run_id: str | None) -> SyncGate:
    """The data-quality gate: quality.yaml's rules with the mapping's Lead status map; incidents
    are queued as outbox notices."""
    rules = configuration.quality.with_status_map(configuration.mapping.status_map.get("Lead"))
    return SyncGate(rules, run_id=run_id, queue_notices=queue_notices)


def run_mapping_check(
    *, mapping_path: str | None = None, conn_id: str | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """Check crm_fields.yaml against the org (fields, and the picklists against the lifecycle),
    unless this version passed recently (no API call then). Picklist drift is a warning, stored
    for sla_health; a missing mapped field fails the task."""
    engine = open_store()
    try:
        configuration = _configuration(engine, mapping_path, AuditContext(run_id=run_id))
        client = SalesforceClient(conn_id or conn_id_from_env())
        return sync.check_mapping(
            client, engine, configuration.mapping, _now(), run_id=run_id, lifecycle=configuration.lifecycle
        )
    finally:
        engine.dispose()


def change_events(triggering_asset_events: Mapping[Any, Any] | None) -> list[dict[str, Any]]:
    """The change event batches (`crm.streaming.ChangeBatch` payloads) that triggered this run:
    the listener's asset events' extra `payload`."""
    out: list[dict[str, Any]] = []
    for events in (triggering_asset_events or {}).values():
        for event in events:
            payload = (getattr(event, "extra", None) or {}).get("payload")
            if isinstance(payload, Mapping):
                out.append(dict(payload))
    return out


def run_feed(
    events: list[Mapping[str, Any]],
    *,
    mapping_path: str | None = None,
    run_id: str | None = None,
    check_mapping: bool = False,
) -> dict[str, Any]:
    """How this run hears of CRM changes, per group (`crm.change_feed.plan`), and whether any group
    queries Salesforce: when none does (the stream is healthy and quiet), the run ends there.
    With `check_mapping`, a run that queries also checks the mapping (`run_mapping_check`'s
    answer under `mapping`), on the same store and configuration: one task, not two."""
    engine = open_store()
    try:
        configuration = _configuration(engine, mapping_path, AuditContext(run_id=run_id))
        mapping = configuration.mapping
        with engine.connect() as conn:
            status = stream.status(conn)
        now = _now()
        allowed = streaming_allowed(conn_id_from_env()) if mapping.streaming.enabled else True
        feeds = {
            g: change_feed.plan(mapping, g, status, events, now, connection_allows=allowed)
            for g in mapping.groups
        }
        query = [
            g for g, f in feeds.items() if f.query and (not f.cadence or sync.is_due(engine, mapping, g, now))
        ]
        checked = None
        if check_mapping and query:
            client = SalesforceClient(conn_id_from_env())
            checked = sync.check_mapping(
                client, engine, mapping, _now(), run_id=run_id, lifecycle=configuration.lifecycle
            )
    finally:
        engine.dispose()
    first = next(iter(feeds.values()))
    for group, feed in feeds.items():
        log.info("CRM changes, %s: %s since %s (%s)", group, feed.mode, feed.since or "-", feed.why)
    return {
        "mode": first.mode,
        "since": first.since,
        "why": first.why,
        "query": bool(query),
        "groups": {g: {**f.to_xcom(), "query": g in query} for g, f in feeds.items()},
        "mapping": checked,
    }


def run_group(
    group: str,
    *,
    mapping_path: str | None = None,
    conn_id: str | None = None,
    run_id: str | None = None,
    page_size: int | None = None,
    events: list[Mapping[str, Any]] | None = None,
    context: AuditContext | None = None,
) -> dict[str, Any]:
    """Sync one object group if due; returns its summary as small JSON (status `limited` on the limit).

    How this run hears of changes (`crm.change_feed`) decides first: while the change stream is
    healthy a minute run without change events skips its queries (status `streaming`); `events`
    are the batches that triggered the run (`change_events`), whose objects' groups sync now.
    When the group landed records, their clock rows are written at once (`clocks` in the summary,
    `tasks.landed_clocks`), audited under `context` (default: the run id alone).
    """
    context = context or AuditContext(run_id=run_id)
    engine = open_store()
    try:
        configuration = _configuration(engine, mapping_path, context)
        mapping = configuration.mapping
        conn_id = conn_id or conn_id_from_env()
        with engine.connect() as conn:
            status = stream.status(conn)
        allowed = streaming_allowed(conn_id) if mapping.streaming.enabled else True
        feed = change_feed.plan(mapping, group, status, events or [], _now(), connection_allows=allowed)
        log.info("CRM changes: %s since %s (%s)", feed.mode, feed.since or "-", feed.why)
        if not feed.query:
            return {
                "group": group,
                "status": "streaming",
                "api_calls": 0,
                "records_changed": 0,
                "quarantined": 0,
                "org_remaining": None,
                "org_max": None,
                "objects": {},
                "message": f"{group}: no query ({feed.why})",
                "feed": feed.to_xcom(),
            }
        force = feed.safety_net or bool(
            change_feed.changed_objects(events or []) & set(mapping.groups[group].objects)
        )
        client = SalesforceClient(conn_id, page_size=page_size)
        gate = quality_gate(configuration, run_id)
        started = _now()
        summary = sync.sync_group(client, engine, mapping, group, run_id=run_id, gate=gate, force=force)
        if feed.safety_net and summary.status == "success":
            with engine.begin() as conn:
                stream.mark_safety_net(conn, _now())
        log.info("%s", summary.message)
        out = {**summary.to_xcom(), "quality": gate.finish(engine, _now()), "feed": feed.to_xcom()}
        if summary.records_changed:
            out["clocks"] = _landed_clocks(engine, configuration, started, context)
        return out
    finally:
        engine.dispose()


def _landed_clocks(engine, configuration: Configuration, since: dt.datetime, context: AuditContext) -> dict:
    """The landed records' clock rows (`tasks.landed_clocks`). A failure here fails nothing: the
    landing is committed and the monitor run it starts writes the same clocks; it is logged as an
    error and named in the XCom."""
    try:
        return write_landed_clocks(engine, configuration.policy, since, context)
    except Exception as exc:  # noqa: BLE001 - an accelerator; sla_monitor writes the clocks anyway
        log.error("clocks of the landed records not written (sla_monitor will): %r", exc, exc_info=True)
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}


def run_commit_replay(events: list[Mapping[str, Any]], *, run_id: str | None = None) -> dict[str, Any]:
    """After this run landed its changes: commit the newest replay id per channel the triggering
    change events carried, so the listener resumes after them (`store.stream.commit`)."""
    replay: dict[str, int] = {}
    for event in events:
        for channel, replay_id in (event.get("replay") or {}).items():
            replay[channel] = max(replay.get(channel, -1), int(replay_id))
    if not replay:
        return {"committed": {}}
    engine = open_store()
    try:
        with engine.begin() as conn:
            kept = stream.commit(conn, replay, _now(), run_id)
    finally:
        engine.dispose()
    log.info("CRM changes: replay ids committed %s", kept)
    return {"committed": kept}


def run_replay(*, mapping_path: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Re-validate held quarantine rows with the current suites and mapping."""
    engine = open_store()
    try:
        configuration = _configuration(engine, mapping_path, AuditContext(run_id=run_id))
        mapping = configuration.mapping
        rules = configuration.quality.with_status_map(mapping.status_map.get("Lead"))
        return replay(engine, mapping, rules, _now(), run_id=run_id)
    finally:
        engine.dispose()


def run_report(
    summaries: list[Mapping[str, Any] | None],
    *,
    mapping_path: str | None = None,
    context: AuditContext | None = None,
) -> dict[str, Any]:
    """The cycle's totals (log + XCom); over budget, tell data engineering once a UTC day."""
    engine = open_store()
    try:
        configuration = _configuration(engine, mapping_path, context or AuditContext())
        now = _now()
        report = sync.cycle_report(engine, configuration.mapping, [s for s in summaries if s], now=now)
        if report["budget_warning"]:
            channel = configuration.quality.incident_channel
            notice = over_budget_notice(report["budget_warning"], now=now, channel=channel)
            with engine.begin() as conn:
                report["budget_notice_queued"] = bool(queue_notices(conn, [notice], now, context))
    finally:
        engine.dispose()
    sync.log_cycle(report)
    return report
