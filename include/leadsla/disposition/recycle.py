"""Recycling performed: attempts stamped, leads worked without an answer recycled (or recommended for
it), recycled leads brought back on their re-engagement date. Audited, through the write-back only.

`recycle_leads` reads the candidates (`disposition.book`), decides (`decisions.recycling.decide`),
then in one pass through `crm.writeback.stamp` (only what differs from the store's copy, 200
records per composite call, If-Unmodified-Since the store's Lead watermark, audited `crm_write`):

- each lead's changed attempts count (`contact_attempts`);
- `mode: auto`: each due lead's status, reason, attempts and re-engagement date in one write. First
  the CRM is asked whether someone worked it since the store's view (a reply, or a Task or Event the
  store has not seen that no automation user logged): such a lead is left, and the next run decides
  on it with that activity synced. A lead changed meanwhile is re-read and re-decided: written only
  if it is still in the watched status with the owner the decision saw, and still unworked. Each
  recycled lead gets a `lead_recycled` audit entry;
- each recycled lead due back (`nurture.reenter`): the re-entered status, its MQL date (when it is
  the MQL stage), the earlier SAL and re-engagement dates cleared, attempts back to 0; re-decided on
  a race only if it is still recycled. Audited `lead_reengaged`.

`mode: recommend` writes no status: the recommendations go to the outbox (`notify.outbox.queue_notices`,
audit `recycle_recommended`, once per lead and entry) and sla_monitor's deliver task sends them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.crm import soql
from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient
from leadsla.crm.salesforce import COMPOSITE_BATCH
from leadsla.crm.writeback import stamp
from leadsla.decisions.recipients import Directory
from leadsla.decisions.recycling import (
    RECYCLED_EVENT,
    REENGAGED_EVENT,
    Fields,
    RecyclePlan,
    Recycling,
    Reentry,
    counts,
    decide,
)
from leadsla.disposition import book
from leadsla.notify.outbox import queue_notices
from leadsla.policy import Policy
from leadsla.store.audit import AuditContext, record_many

log = logging.getLogger(__name__)

ACTOR = "recycling"


def recycle_leads(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient | None,
    mapping: CrmMapping,
    policy: Policy,
    instance_url: str,
) -> dict[str, Any]:
    """Count, recycle (or recommend) and bring back at `now` (module docstring).

    Args:
        client: the CRM; None is allowed when nothing is to be written.
        instance_url: the CRM's base URL for the recommendation's record link.

    Returns:
        Counts for XCom: counted, attempts_changed, due, recommended, queued, recycled, left,
        reentries_due, reengaged, failed, held_<response>.
    """
    rule = policy.recycle
    if rule is None:
        return {"recycling": "off (no recycle: section in the policy)"}
    fields = Fields(mapping.sla_fields["contact_attempts"], mapping.sla_fields["reengagement_date"])
    with engine.connect() as conn:
        frames = book.candidates(conn, policy, fields.reengagement_date)
        lead_view, activity_view = book.views(conn, now)
    plan = decide(
        frames["records"],
        frames["field_history"],
        frames["activities"],
        frames["users"],
        policy,
        now,
        directory=Directory(policy, frames["users"], frames["queues"]),
        instance_url=instance_url,
        fields=fields,
    )
    summary: dict[str, Any] = {
        **counts(plan),
        "queued": 0,
        "recycled": 0,
        "left": 0,
        "reengaged": 0,
        "failed": 0,
    }
    if plan.notices:
        with engine.begin() as conn:
            summary["queued"] = len(queue_notices(conn, plan.notices, now, context))
    writes = _writes(plan, policy, now)
    if not writes:
        return summary
    if client is None:
        raise ValueError("recycle_leads: CRM writes to make but no CRM client")
    recycles = {r.record_id: r for r in plan.recycles}
    reentries = {r.record_id: r for r in plan.reentries}
    worked = _worked_since(engine, client, policy, list(recycles), activity_view) if recycles else set()
    for rid in worked:  # someone worked it since the store's view: decided again next run, with it synced
        writes[rid] = {"contact_attempts": writes[rid]["contact_attempts"]}
    deciders = {
        **{
            rid: _still_unworked(engine, client, policy, r, activity_view)
            for rid, r in recycles.items()
            if rid not in worked
        },
        **{rid: _still_recycled(policy) for rid in reentries},
    }
    watched = policy.sla(rule.sla).start.becomes
    result = stamp(
        client,
        engine,
        mapping,
        writes,
        as_of=lead_view,
        context=context,
        decide=lambda rid, wanted, current: (
            deciders[rid](rid, wanted, current)
            if rid in deciders
            else (wanted if current.get("Status") == watched else None)
        ),
        actor=ACTOR,
    )
    written = set(result.written)
    done = [r for rid, r in recycles.items() if rid in written and rid not in worked]
    back = [r for rid, r in reentries.items() if rid in written]
    _record(engine, done, back, policy, now, context)
    summary.update(
        recycled=len(done),
        left=len(worked) + len([rid for rid in result.left if rid in recycles]),
        reengaged=len(back),
        failed=len(result.failed),
    )
    if result.failed:
        log.warning("recycling writes refused: %s", dict(list(result.failed.items())[:20]))
    log.info("recycling at %s: %s", now.isoformat(), summary)
    return summary


def _writes(plan: RecyclePlan, policy: Policy, now: dt.datetime) -> dict[str, dict[str, Any]]:
    """The plan as write-back changes: logical SLA field -> value, per lead."""
    writes: dict[str, dict[str, Any]] = {rid: {"contact_attempts": n} for rid, n in plan.attempts.items()}
    for r in plan.recycles:
        writes[r.record_id] = {
            "status": r.status,
            "rejection_reason": r.reason,
            "contact_attempts": r.outreach.attempts,
            "reengagement_date": r.reengage_on,
        }
    for r in plan.reentries:
        writes[r.record_id] = {
            "status": r.status,
            "sal_date": None,
            "reengagement_date": None,
            "contact_attempts": 0,
            **({"mql_date": now} if r.mql else {}),
        }
    return writes


def _worked_since(
    engine: sa.Engine, client: CrmClient, policy: Policy, ids: list[str], since: dt.datetime
) -> set[str]:
    """The leads among `ids` someone worked after `since` as the CRM says now: the reply field is
    true, or a Task or Event the store does not hold was logged on it by someone but an automation
    user (one query per 200 leads and object)."""
    rule = policy.recycle
    assert rule is not None
    worked: set[str] = set()
    automation = set(policy.automation_user_ids)
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), COMPOSITE_BATCH):
        batch = ids[start : start + COMPOSITE_BATCH]
        if rule.replied_field:
            for page in client.query_pages(soql.by_ids_query("Lead", [rule.replied_field], batch)):
                worked.update(row["Id"] for row in page if row.get(rule.replied_field) in (True, "true"))
        for kind in ("Task", "Event"):
            for page in client.query_pages(soql.activities_since_query(kind, batch, since)):
                found.extend(row for row in page if row.get("CreatedById") not in automation)
    if found:
        with engine.connect() as conn:
            known = book.known_activities(conn, [row["Id"] for row in found])
        worked.update(row["WhoId"] for row in found if row["Id"] not in known)
    return worked


def _still_unworked(
    engine: sa.Engine, client: CrmClient, policy: Policy, recycling: Recycling, since: dt.datetime
):
    """The re-decision on a lost race: recycle only a lead still in the watched status, with the
    owner the decision saw, that nobody worked since (asked of the CRM again)."""
    rule = policy.recycle
    assert rule is not None
    watched = policy.sla(rule.sla).start.becomes

    def decide(
        record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        if current.get("Status") != watched or current.get("OwnerId") != recycling.outreach.owner_id:
            return None
        if _worked_since(engine, client, policy, [record_id], since):
            return None
        return dict(wanted)

    return decide


def _still_recycled(policy: Policy):
    """The re-decision on a lost race: bring back only a lead still recycled."""
    rule = policy.recycle
    assert rule is not None
    status = rule.status

    def decide(
        record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        return dict(wanted) if current.get("Status") == status else None

    return decide


def _record(
    engine: sa.Engine,
    done: Iterable[Recycling],
    back: Iterable[Reentry],
    policy: Policy,
    now: dt.datetime,
    context: AuditContext,
) -> None:
    """One audit entry per recycled lead and per lead brought back."""
    entries = [
        {
            "event": RECYCLED_EVENT,
            "at": now,
            "object_type": "Lead",
            "record_id": r.record_id,
            "actor": ACTOR,
            "policy_version": policy.version,
            "detail": {
                "status": r.status,
                "reason": r.reason,
                "attempts": r.outreach.attempts,
                "owner": r.outreach.owner_id,
                "entered": r.outreach.entered.isoformat(),
                "first_attempt": r.outreach.first_attempt.isoformat() if r.outreach.first_attempt else None,
                "last_attempt": r.outreach.last_attempt.isoformat() if r.outreach.last_attempt else None,
                "reengage_on": r.reengage_on.isoformat(),
                "policy_version": policy.version,
            },
        }
        for r in done
    ]
    entries += [
        {
            "event": REENGAGED_EVENT,
            "at": now,
            "object_type": "Lead",
            "record_id": r.record_id,
            "actor": ACTOR,
            "policy_version": policy.version,
            "detail": {
                "status": r.status,
                "owner": r.owner_id,
                "due_on": r.due_on.isoformat(),
                "recycled_at": r.recycled_at.isoformat() if r.recycled_at else None,
                "policy_version": policy.version,
            },
        }
        for r in back
    ]
    if entries:
        with engine.begin() as conn:
            record_many(conn, entries, context=context)
