"""What routing and the unowned-lead alerts read from the store: leads, reps and their load, kept
accounts, open leads by e-mail, and who owns what (a rep, a queue, an inactive user, nobody).

Read only; the decisions are `leadsla.decisions.routing`'s.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from leadsla.decisions.routing import Account, Book, Lead, Rep
from leadsla.policy import Policy
from leadsla.store import schema
from leadsla.store.mirror import FRAME_COLUMNS

#: The audit event of a routed lead (its detail names the owner): the fairness window counts them.
ROUTED_EVENT = "routing"


@dataclass(frozen=True)
class Owners:
    """Who may own a lead: users by id (active or not) and queues by id and name."""

    users: Mapping[str, Any]  # user_id -> users row
    queues: Mapping[str, str]  # queue_id -> name

    def describe(self, owner_id: str | None) -> str:
        """How an owner reads in a message: "queue Lead Intake", "inactive user Ann", "nobody"."""
        if not owner_id:
            return "nobody"
        if owner_id in self.queues:
            return f"queue {self.queues[owner_id]}"
        user = self.users.get(owner_id)
        if user is None:
            return f"unknown owner {owner_id}"
        return f"{'' if user.is_active else 'inactive user '}{user.name or owner_id}"

    def working(self, owner_id: str | None) -> bool:
        """Whether a person who can work the lead owns it (an active user)."""
        user = self.users.get(owner_id or "")
        return user is not None and bool(user.is_active)

    def queue_ids(self, names: Iterable[str]) -> set[str]:
        wanted = {n.strip().casefold() for n in names}
        return {qid for qid, name in self.queues.items() if name.strip().casefold() in wanted}


def owners(conn: sa.Connection) -> Owners:
    u, q = schema.users, schema.queues
    users = {
        row.user_id: row
        for row in conn.execute(
            sa.select(
                u.c.user_id,
                u.c.name,
                u.c.email,
                u.c.is_active,
                u.c.team,
                u.c.role,
                u.c.out_of_office,
                u.c.manager_id,
            )
        )
    }
    queues = {row.queue_id: row.name for row in conn.execute(sa.select(q.c.queue_id, q.c.name))}
    return Owners(users, queues)


def directory_frames(conn: sa.Connection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The users and queues frames `decisions.recipients.Directory` resolves roles from."""
    frames = []
    for table in (schema.users, schema.queues):
        cols = FRAME_COLUMNS[table.name]  # the columns `store.mirror.load_frames` gives the monitor
        rows = conn.execute(sa.select(*[table.c[c] for c in cols]))
        frames.append(pd.DataFrame([tuple(r) for r in rows], columns=cols))
    return frames[0], frames[1]


def _lead(row: Any) -> Lead:
    return Lead(
        record_id=row.record_id,
        name=row.name,
        company=row.company,
        email=row.email,
        owner_id=row.owner_id,
        fields=dict(row.fields or {}),
        created_at=row.created_at,
    )


def _lead_columns() -> list[Any]:
    r = schema.records
    return [
        r.c.record_id,
        r.c.name,
        r.c.company,
        r.c.email,
        r.c.status,
        r.c.owner_id,
        r.c.fields,
        r.c.lock_until,
        r.c.created_at,
        r.c.modified_at,
    ]


def _open_leads_query(statuses: Iterable[str]) -> sa.Select:
    r = schema.records
    return (
        sa.select(*_lead_columns())
        .where(
            r.c.object_type == "Lead",
            r.c.is_deleted.is_(False),
            sa.or_(r.c.is_converted.is_(None), r.c.is_converted.is_(False)),
            r.c.status.in_(list(statuses)),
        )
        .order_by(r.c.created_at, r.c.record_id)
    )


def _locked(row: Any, now: dt.datetime) -> bool:
    return row.lock_until is not None and row.lock_until > now


def needing_owner(
    conn: sa.Connection, policy: Policy, who: Owners, now: dt.datetime
) -> tuple[list[Lead], list[str]]:
    """Leads in a routed status owned by an intake queue, an inactive user or nobody, oldest first;
    and those of them left alone because their breach lock runs."""
    routing = policy.routing
    if routing is None:
        return [], []
    intake = who.queue_ids(routing.intake_queues)
    leads: list[Lead] = []
    locked: list[str] = []
    for row in conn.execute(_open_leads_query(routing.statuses)):
        if (
            row.owner_id
            and row.owner_id not in intake
            and (row.owner_id in who.queues or who.working(row.owner_id))
        ):
            continue  # a rep (or a queue that is not an intake queue) has it: a manual decision
        (locked.append(row.record_id) if _locked(row, now) else leads.append(_lead(row)))
    return leads, locked


def owned_recently(conn: sa.Connection, policy: Policy, who: Owners, now: dt.datetime) -> list[Lead]:
    """Leads in a routed status owned by an active user, created in the fairness window: what a
    watch check looks at."""
    routing = policy.routing
    if routing is None:
        return []
    since = now - dt.timedelta(days=routing.fair_window_days)
    r = schema.records
    query = _open_leads_query(routing.statuses).where(r.c.created_at >= since)
    return [_lead(row) for row in conn.execute(query) if who.working(row.owner_id) and not _locked(row, now)]


def reps(conn: sa.Connection, policy: Policy, who: Owners, now: dt.datetime) -> list[Rep]:
    """Every user, with their policy team, open clocks and the leads routed to them in the window."""
    routing = policy.routing
    window = dt.timedelta(days=routing.fair_window_days if routing else 7)
    c, a = schema.clocks, schema.audit
    open_clocks = dict(
        conn.execute(
            sa.select(c.c.owner_id, sa.func.count())
            .where(c.c.state.in_(["running", "paused"]))
            .group_by(c.c.owner_id)
        ).all()
    )
    routed: Counter[str] = Counter()
    for (detail,) in conn.execute(
        sa.select(a.c.detail).where(a.c.event == ROUTED_EVENT, a.c.at >= now - window, a.c.at <= now)
    ):
        routed[str((detail or {}).get("owner"))] += 1
    managers = {row.manager_id for row in who.users.values() if row.is_active and row.manager_id}
    return [
        Rep(
            user_id=user_id,
            name=row.name or user_id,
            email=row.email,
            team=policy.team_key(row.team),
            role=row.role,
            active=bool(row.is_active),
            out_of_office=bool(row.out_of_office),
            open_clocks=int(open_clocks.get(user_id, 0)),
            routed=routed[user_id],
            manages=user_id in managers,
        )
        for user_id, row in who.users.items()
    ]


def book(conn: sa.Connection, policy: Policy, who: Owners) -> Book:
    """Accounts whose leads stay with their owner (customers, open opportunities) and the open
    leads a working rep owns, by e-mail (the oldest lead first)."""
    r = schema.records
    lifecycle = policy.lifecycle_model
    opportunity = lifecycle.of("Opportunity")
    open_stages = set(opportunity.in_stage("open")) if opportunity is not None else set()
    why: dict[str, str] = {}
    for account_id, status, is_won in conn.execute(
        sa.select(r.c.account_id, r.c.status, r.c.is_won).where(
            r.c.object_type == "Opportunity", r.c.is_deleted.is_(False), r.c.account_id.is_not(None)
        )
    ):
        if is_won:
            why[account_id] = "customer"
        elif status in open_stages:
            why.setdefault(account_id, "open opportunity")
    accounts = [
        Account(
            row.record_id,
            row.name or row.record_id,
            row.owner_id,
            (row.fields or {}).get("Website"),
            why[row.record_id],
        )
        for row in conn.execute(
            sa.select(r.c.record_id, r.c.name, r.c.owner_id, r.c.fields).where(
                r.c.object_type == "Account", r.c.is_deleted.is_(False), r.c.record_id.in_(list(why))
            )
        )
    ]
    lead_lc = lifecycle.of("Lead")
    live = set(lead_lc.in_stage("open")) | set(lead_lc.paused) if lead_lc is not None else set()
    open_leads: dict[str, tuple[str, str]] = {}
    for row in conn.execute(_open_leads_query(live)):
        if row.email and who.working(row.owner_id):
            open_leads.setdefault(row.email.strip().casefold(), (row.record_id, row.owner_id))
    return Book(accounts=accounts, open_leads=open_leads)
