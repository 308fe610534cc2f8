"""Routing performed: the decided owners written to the CRM with their reason, and audited.

`route_leads` reads what needs an owner (`ownership.book`), decides (`decisions.routing.route`)
and, in `mode: route`, writes each owner with `Routing_Reason__c`, the rule id and the policy
version in one optimistic CRM write per record (`crm.writeback.stamp`: 200 per composite call,
If-Unmodified-Since the store's Lead watermark). A record someone changed meanwhile is re-read and
re-decided: written only if it still waits in an intake queue (or with nobody) in a routed status,
unlocked; a person's or another tool's owner is never overwritten. Each written lead gets a
`routing` audit entry naming the Airflow run. In `mode: watch` (or for `watch_teams`) nothing is
written; `misrouted_notices` reports owners the policy would not have chosen.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.crm.landing import parse_datetime
from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient
from leadsla.crm.writeback import stamp
from leadsla.decisions.plan import Notice
from leadsla.decisions.recipients import Directory
from leadsla.decisions.routing import Assignment, misrouted, route
from leadsla.notify.outbox import queue_notices
from leadsla.ownership import book as store_book
from leadsla.ownership.book import ROUTED_EVENT, Owners
from leadsla.ownership.recipients import addresses
from leadsla.policy import Policy, PolicyError
from leadsla.store import schema, watermarks
from leadsla.store.audit import AuditContext, record_many

log = logging.getLogger(__name__)


def _still_waiting(policy: Policy, who: Owners, intake: set[str], assignment: Assignment, now: dt.datetime):
    """The re-decision on a lost race: write only if the lead still waits for an owner."""
    routing = policy.routing
    assert routing is not None

    def decide(
        record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        owner = current.get("OwnerId")
        lock = parse_datetime(current.get("SLA_Lock_Until__c"))
        waiting = not owner or owner in intake or owner == assignment.from_owner and not who.working(owner)
        if waiting and current.get("Status") in routing.statuses and (lock is None or lock <= now):
            return dict(wanted)
        return None

    return decide


def route_leads(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient | None,
    mapping: CrmMapping,
    policy: Policy,
) -> dict[str, Any]:
    """Route what needs an owner at `now` (module docstring).

    Args:
        client: the CRM; None when nothing is to be written (watch mode) is allowed.

    Returns:
        Counts for XCom: routed, by_rule, unrouted, watched, locked, conflicts_left, failed.
    """
    routing = policy.routing
    if routing is None:
        return {"routing": "off"}
    with engine.connect() as conn:
        who = store_book.owners(conn)
        leads, locked = store_book.needing_owner(conn, policy, who, now)
        reps = store_book.reps(conn, policy, who, now) if leads else []
        kept = store_book.book(conn, policy, who) if leads else None
        as_of = watermarks.read(conn, "Lead") or now
    _check_named_users(policy, who)
    plan = route(leads, reps, kept, policy, now) if leads else None
    summary: dict[str, Any] = {"needing_owner": len(leads), "locked": len(locked), "routed": 0, "by_rule": {}}
    if plan is None:
        return summary
    summary.update(unrouted=len(plan.unrouted), watched=len(plan.watched))
    if not plan.assignments:
        return summary
    if client is None:
        raise ValueError("route_leads: leads to assign but no CRM client")
    intake = who.queue_ids(routing.intake_queues)
    by_id = {a.record_id: a for a in plan.assignments}
    deciders = {a.record_id: _still_waiting(policy, who, intake, a, now) for a in plan.assignments}
    changes = {
        a.record_id: {
            "owner": a.owner_id,
            "routing_reason": a.reason,
            "routing_rule": a.rule,
            "routing_version": policy.version,
        }
        for a in plan.assignments
    }
    result = stamp(
        client,
        engine,
        mapping,
        changes,
        as_of=as_of,
        context=context,
        decide=lambda rid, wanted, current: deciders[rid](rid, wanted, current),
        actor="routing",
    )
    done = [by_id[rid] for rid in result.written]
    _record_routed(engine, done, policy, now, context)
    rules: dict[str, int] = {}
    for a in done:
        family = a.rule.split(":", 1)[0] if a.rule.startswith("suppression") else "round_robin"
        rules[family] = rules.get(family, 0) + 1
    summary.update(
        routed=len(done), by_rule=rules, conflicts_left=len(result.left), failed=len(result.failed)
    )
    if result.failed:
        log.warning("routing writes refused: %s", dict(list(result.failed.items())[:20]))
    return summary


def _check_named_users(policy: Policy, who: Owners) -> None:
    """A capacity or absence naming a user the CRM does not have is a policy error, before any write."""
    routing = policy.routing
    assert routing is not None
    emails = {str(u.email).strip().casefold() for u in who.users.values() if u.email}
    unknown = sorted(
        n for n in routing.reps.named() if n not in who.users and n.strip().casefold() not in emails
    )
    if unknown:
        raise PolicyError(
            f"{policy.source or 'policy'}: routing.reps names {unknown}, no user the CRM has (by id or "
            "e-mail): fix the policy; nothing was routed"
        )


def _record_routed(
    engine: sa.Engine, done: list[Assignment], policy: Policy, now: dt.datetime, context: AuditContext
) -> None:
    """The store's copy shows the new owner at once; each routed lead gets its audit entry."""
    if not done:
        return
    r = schema.records
    with engine.begin() as conn:
        conn.execute(  # one executemany, not a statement per lead (a burst routes thousands)
            r.update()
            .where(r.c.object_type == "Lead", r.c.record_id == sa.bindparam("routed_id"))
            .values(owner_id=sa.bindparam("routed_owner")),
            [{"routed_id": a.record_id, "routed_owner": a.owner_id} for a in done],
        )
        record_many(
            conn,
            [
                {
                    "event": ROUTED_EVENT,
                    "at": now,
                    "object_type": "Lead",
                    "record_id": a.record_id,
                    "actor": "routing",
                    "policy_version": policy.version,
                    "detail": {
                        "owner": a.owner_id,
                        "from_owner": a.from_owner,
                        "team": a.team,
                        "rule": a.rule,
                        "reason": a.reason,
                        "policy_version": policy.version,
                    },
                }
                for a in done
            ],
            context=context,
        )


def misrouted_notices(
    engine: sa.Engine, now: dt.datetime, context: AuditContext, *, policy: Policy
) -> dict[str, int]:
    """Watch: for the teams another tool routes, tell the team manager and RevOps (the unowned
    alert's recipients) once per lead and owner about an owner the policy would not have chosen."""
    routing = policy.routing
    if routing is None:
        return {"misrouted": 0, "queued": 0}
    with engine.connect() as conn:
        who = store_book.owners(conn)
        leads = store_book.owned_recently(conn, policy, who, now)
        leads = [lead for lead in leads if not routing.routes(_team(policy, lead.fields))]
        if not leads:
            return {"misrouted": 0, "queued": 0}
        reps = store_book.reps(conn, policy, who, now)
        kept = store_book.book(conn, policy, who)
        users, queues = store_book.directory_frames(conn)
    found = misrouted(leads, reps, kept, policy)
    directory = Directory(policy, users, queues)
    names = {lead.record_id: lead.name or lead.record_id for lead in leads}
    created = {lead.record_id: lead.created_at for lead in leads}  # one notice per lead and owner
    notices = [
        Notice(
            source="routing",
            subject=m.record_id,
            opened_at=created[m.record_id] or now,
            checkpoint=f"misrouted:{m.owner_id}",
            recipients=addresses(directory, routing.unowned.notify, routing.unowned.channels, m.team),
            title=f"Mis-routed lead: {names[m.record_id]}",
            severity="warning",
            lines=(
                f"Lead {names[m.record_id]} ({m.record_id}) is with {who.describe(m.owner_id)}.",
                m.why,
                f"Rule: {m.rule} (policy {policy.version}). Lead SLA Monitor only watches this team: "
                "fix the owner or the other tool's rule.",
            ),
            audit_event="misrouted_lead",
            actor="routing",
            record=("Lead", m.record_id),
            audit_detail={"record_id": m.record_id, "owner": m.owner_id, "rule": m.rule, "why": m.why},
        )
        for m in found
    ]
    with engine.begin() as conn:
        queued = queue_notices(conn, [n for n in notices if n.recipients], now, context)
    return {"misrouted": len(found), "queued": len(queued)}


def _team(policy: Policy, fields: Mapping[str, Any]) -> str | None:
    territory = policy.routing.territory(fields) if policy.routing else None
    return territory.team if territory else None
