"""No lead waits unowned: a watched lead nobody working owns alerts its team's manager and RevOps.

A lead is watched while its status is open in the lifecycle (New, MQL, SAL: waiting for someone
to work it). It is unowned when a queue, an inactive user or nobody owns it and no breach lock
holds it (a locked lead in the "Breached SLA" queue waits for its manager by design; once the lock
is over it is unowned like any other). It has been unowned since the latest of: its last owner
change (the synced history), else its creation; the end of its breach lock; its owner's
deactivation (the CRM keeps no history of users: the user's SystemModstamp, their last change,
stands for it). Without the last two, a lead whose owner left (or whose lock ended) a day after
its last owner change would count as waiting for a day: its first alert would be skipped for
"reminder 23", and that only in working hours.

`unowned_after` (policy `routing.unowned.after`, default 2 minutes, so an intake queue's lead the
router takes in the next minute alarms nobody) it alerts the policy's `routing.unowned.notify`
roles (the lead's team's manager: its territory's team, else the team whose queue holds it) once
through the outbox, then again every `repeat` while it stays unowned and the team is at work;
each message says when the next one comes. Keyed on (lead, unowned since, reminder number): a
retry or a re-run queues nothing twice; a new owner ends the series, a later loss of the owner
starts a new one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from leadsla.calendar import to_epoch_seconds
from leadsla.crm.landing import parse_datetime
from leadsla.decisions.cells import cell_text
from leadsla.decisions.context import ContextFields, describe, record_context, triage_text
from leadsla.decisions.plan import Notice
from leadsla.decisions.recipients import Directory
from leadsla.decisions.routing import Lead, route
from leadsla.notify.outbox import queue_notices
from leadsla.ownership import book as store_book
from leadsla.ownership.book import Owners
from leadsla.ownership.recipients import addresses
from leadsla.policy import Policy
from leadsla.routing import Routing
from leadsla.store import schema
from leadsla.store.audit import AuditContext

#: The audit event of each queued unowned-lead alert.
ALERT_EVENT = "unowned_alert_queued"


@dataclass(frozen=True)
class UnownedLead:
    record_id: str
    name: str
    status: str
    owner_id: str | None
    since: dt.datetime
    team: str | None
    fields: Mapping[str, Any]
    company: str | None
    email: str | None


def unowned_leads(conn: sa.Connection, policy: Policy, who: Owners, now: dt.datetime) -> list[UnownedLead]:
    """Every watched lead without a working owner at `now` (module docstring), oldest first.

    Read by owner: the owners that are no working person (`who`) among the store's distinct owners,
    then only their leads and the ownerless ones (the owner index), so the leads reps own are never
    read - the War Room lists these on every page, and the alert runs every minute."""
    lead_lc = policy.lifecycle_model.of("Lead")
    if lead_lc is None:
        return []
    r, h = schema.records, schema.field_history
    idle = [owner_id for owner_id in _owner_ids(conn) if not who.working(owner_id)]
    rows = conn.execute(
        sa.select(
            r.c.record_id,
            r.c.name,
            r.c.status,
            r.c.owner_id,
            r.c.created_at,
            r.c.lock_until,
            r.c.fields,
            r.c.company,
            r.c.email,
        ).where(
            sa.or_(r.c.owner_id.is_(None), r.c.owner_id.in_(idle)),
            # `|| ''`: no index on these, so SQLite (no statistics) takes the owner index, not a scan
            # of every lead of the object type or status.
            r.c.object_type.concat("") == "Lead",
            r.c.is_deleted.is_(False),
            sa.or_(r.c.is_converted.is_(None), r.c.is_converted.is_(False)),
            r.c.status.concat("").in_(lead_lc.in_stage("open")),
            sa.or_(r.c.lock_until.is_(None), r.c.lock_until <= now),
        )
    ).all()
    if not rows:
        return []
    rows.sort(key=lambda row: (_aware(row.created_at) or now, row.record_id))
    changed: dict[str, dt.datetime] = {}
    ids = [row.record_id for row in rows]
    for start in range(0, len(ids), 500):
        for record_id, at in conn.execute(
            sa.select(h.c.record_id, sa.func.max(h.c.changed_at))
            .where(
                h.c.object_type == "Lead",
                h.c.record_id.in_(ids[start : start + 500]),
                h.c.field.in_(["Owner", "OwnerId"]),
                h.c.changed_at <= now,
            )
            .group_by(h.c.record_id)
        ):
            changed[record_id] = _aware(at)
    left = _deactivated(conn, {row.owner_id for row in rows if row.owner_id in who.users})
    routing = policy.routing
    queue_team = {t.queue.casefold(): key for key, t in policy.teams.items() if t.queue}
    found = []
    for row in rows:
        fields = dict(row.fields or {})
        territory = routing.territory(fields) if routing else None
        team = territory.team if territory else None
        if team is None and row.owner_id in who.queues:
            team = queue_team.get(who.queues[row.owner_id].casefold())
        if team is None and row.owner_id in who.users:
            team = policy.team_key(who.users[row.owner_id].team)
        since = changed.get(row.record_id) or _aware(row.created_at) or now
        for later in (_aware(row.lock_until), left.get(row.owner_id)):
            if later is not None and since < later <= now:
                since = later
        found.append(
            UnownedLead(
                row.record_id,
                row.name or row.record_id,
                row.status,
                row.owner_id,
                since,
                team,
                fields,
                row.company,
                row.email,
            )
        )
    return found


def _owner_ids(conn: sa.Connection) -> list[str]:
    """The distinct non-null owner ids of the store's records, each found by one seek of the owner
    index (a loose index scan: as many steps as owners, whatever the number of records)."""
    r = schema.records
    owner = sa.select(sa.func.min(r.c.owner_id).label("owner_id")).cte("owner", recursive=True)
    following = (
        sa.select(r.c.owner_id).where(r.c.owner_id > owner.c.owner_id).order_by(r.c.owner_id).limit(1)
    ).scalar_subquery()
    owner = owner.union_all(sa.select(following).where(owner.c.owner_id.is_not(None)))
    return [owner_id for (owner_id,) in conn.execute(sa.select(owner.c.owner_id)) if owner_id is not None]


def _deactivated(conn: sa.Connection, user_ids: set[str]) -> dict[str, dt.datetime]:
    """The inactive users among `user_ids`, with the latest instant they can have been deactivated
    (their SystemModstamp as last synced)."""
    u = schema.users
    found: dict[str, dt.datetime] = {}
    ids = sorted(user_ids)
    for start in range(0, len(ids), 500):
        for user_id, fields in conn.execute(
            sa.select(u.c.user_id, u.c.fields).where(
                u.c.user_id.in_(ids[start : start + 500]), u.c.is_active.is_(False)
            )
        ):
            try:
                at = parse_datetime((fields or {}).get("SystemModstamp"))
            except ValueError:
                at = None  # not a CRM dateTime: the owner change or creation stands
            if at is not None:
                found[user_id] = at
    return found


def _aware(at: Any) -> dt.datetime | None:
    if at is None:
        return None
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _reminder(lead: UnownedLead, routing: Routing, open_now: bool, now: dt.datetime) -> int | None:
    """Which alert of the series is due now (0: the first), or None (not yet, or off hours)."""
    waited = (now - lead.since).total_seconds()
    if waited < routing.unowned.after_seconds:
        return None
    number = int((waited - routing.unowned.after_seconds) // routing.unowned.repeat_seconds)
    return number if number == 0 or open_now else None


def _why(
    policy: Policy, leads: list[UnownedLead], who: Owners, now: dt.datetime, conn: sa.Connection
) -> dict:
    """Why routing cannot place each lead (route mode only): no territory, nobody available."""
    routing = policy.routing
    if routing is None or routing.mode != "route":
        return {}
    candidates = [
        Lead(u.record_id, u.name, u.company, u.email, u.owner_id, u.fields)
        for u in leads
        if routing.routes(u.team) and u.status in routing.statuses
    ]
    if not candidates:
        return {}
    reps = store_book.reps(conn, policy, who, now)
    plan = route(candidates, reps, store_book.book(conn, policy, who), policy, now)
    return {u.record_id: u.why for u in plan.unrouted}


def alert_unowned(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    policy: Policy,
    triage: ContextFields | None = None,
) -> dict[str, Any]:
    """Queue the due unowned-lead alerts (module docstring). Returns counts for XCom.

    `triage`: where each alert's score, campaign and expected deal value come from
    (`decisions.context`; default: the usual fields, no estimate).
    """
    routing = policy.routing
    if routing is None:
        return {"unowned": 0, "queued": 0}
    with engine.connect() as conn:
        who = store_book.owners(conn)
        leads = unowned_leads(conn, policy, who, now)
        if not leads:
            return {"unowned": 0, "queued": 0}
        why = _why(policy, leads, who, now, conn)
        users, queues = store_book.directory_frames(conn)
    directory = Directory(policy, users, queues)
    epoch = np.array([to_epoch_seconds(now, "now")])
    notices = []
    for lead in leads:
        calendar = policy.calendar(policy.team_calendar(lead.team))
        number = _reminder(lead, routing, bool(calendar.is_open(epoch)[0]), now)
        if number is None:
            continue
        recipients = addresses(directory, routing.unowned.notify, routing.unowned.channels, lead.team)
        if recipients:
            notices.append(
                _notice(lead, number, who, why.get(lead.record_id), routing, policy, now, recipients, triage)
            )
    with engine.begin() as conn:
        queued = queue_notices(conn, notices, now, context)
    return {"unowned": len(leads), "due": len(notices), "queued": len(queued)}


def _notice(
    lead: UnownedLead,
    number: int,
    who: Owners,
    why: str | None,
    routing: Routing,
    policy: Policy,
    now: dt.datetime,
    recipients: tuple[tuple[str, str], ...],
    triage: ContextFields | None = None,
) -> Notice:
    waited = now - lead.since
    hours, minutes = divmod(int(waited.total_seconds()) // 60, 60)
    next_at = lead.since + dt.timedelta(
        seconds=routing.unowned.after_seconds + (number + 1) * routing.unowned.repeat_seconds
    )
    lines = [
        f"Lead {lead.name} ({lead.record_id}), {lead.status}, is owned by {who.describe(lead.owner_id)} "
        f"and has waited {hours} h {minutes:02d} min for an owner (since "
        f"{lead.since.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC).",
        f"Team: {lead.team or 'none (no territory matches)'}.",
        # What the manager triages by (no rep, so no open load): score, deal value, source, campaign.
        "Triage: "
        + triage_text(
            describe(
                record_context({"object_type": "Lead", "fields": lead.fields}, triage or ContextFields()),
                source=cell_text(lead.fields.get("LeadSource")),
                open_clocks=None,
            )
        )
        + ".",
    ]
    if why:
        lines.append(f"Routing could not place it: {why}.")
    lines.append(
        f"Assign it to a rep in the CRM. Next reminder at {next_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC "
        "(in the team's working hours) while nobody owns it."
    )
    return Notice(
        source="routing",
        subject=lead.record_id,
        opened_at=lead.since,
        checkpoint=f"unowned:{number}",
        recipients=recipients,
        title=f"Unowned lead: {lead.name} ({lead.status})" + (f", reminder {number}" if number else ""),
        severity="warning" if number == 0 else "critical",
        lines=tuple(lines),
        audit_event=ALERT_EVENT,
        actor="routing",
        record=("Lead", lead.record_id),
        audit_detail={
            "record_id": lead.record_id,
            "owner": lead.owner_id,
            "team": lead.team,
            "since": lead.since.isoformat(),
            "reminder": number,
            **({"why": why} if why else {}),
            "policy_version": policy.version,
        },
    )
