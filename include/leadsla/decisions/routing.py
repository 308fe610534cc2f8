"""Routing decisions: which rep owns each lead that needs one, and why; which leads nobody can take.

Pure: the caller (`leadsla.ownership.route`) reads the leads, reps, accounts and open leads from
the store and writes the assignments. For each lead, in order (the policy's `routing:` section,
`leadsla.routing`):

1. **Suppression.** A lead of a customer's account (or one with an open opportunity), matched on
   its e-mail domain or company name, goes to the account's owner; a duplicate of an open lead
   (same e-mail) goes to that lead's owner. Never round robin.
2. **Territory.** The one territory the lead's fields fall in names its team. A team another tool
   routes (`watch_teams`, or `mode: watch`) is left alone.
3. **Score.** A score tier (hot leads) narrows the team to its reps, if any of them can take it.
4. **Round robin** inside the team: active reps (not managers: users someone active reports to),
   not out of office nor absent, with a weight above 0, and (for a lead that needs an answer now)
   inside their team's working hours; the rep with the least load per weight (leads routed in the
   fairness window plus open clocks) takes it.

A lead nobody can take is `Unrouted`, with the reason, for the unowned-lead alerts. The reason on
each assignment is what the rep and an auditor read on the record (`Routing_Reason__c`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

from leadsla.calendar import to_epoch_seconds
from leadsla.policy import Policy
from leadsla.routing import Routing

#: Salesforce's text field limit for the reason stamped on the record.
REASON_LIMIT = 255
#: Mail domains that say nothing about the company (never matched to an account).
FREE_MAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "web.de",
        "mail.com",
    }
)
_LEGAL_SUFFIX = re.compile(
    r"\b(inc|incorporated|llc|ltd|limited|plc|gmbh|ag|sa|sas|bv|nv|pty|co|corp|corporation|company)\b\.?"
)


@dataclass(frozen=True)
class Lead:
    """A lead that needs an owner (or whose owner a watch check looks at)."""

    record_id: str
    name: str | None
    company: str | None
    email: str | None
    owner_id: str | None
    fields: Mapping[str, Any]  # the CRM's fields by API name (Country, Lead_Score__c, ...)
    created_at: dt.datetime | None = None


@dataclass(frozen=True)
class Rep:
    """A user who can take leads: the policy team they are in, and their load now."""

    user_id: str
    name: str
    email: str | None
    team: str | None  # the policy's team id
    role: str | None
    active: bool
    out_of_office: bool
    open_clocks: int = 0
    routed: int = 0  # leads routed to them in the fairness window
    manages: bool = False  # someone active reports to them: a manager, not in the rotation


@dataclass(frozen=True)
class Account:
    """An account whose leads stay with its owner (a customer, or one with an open opportunity)."""

    record_id: str
    name: str
    owner_id: str | None
    website: str | None
    why: str  # "customer" or "open opportunity"


@dataclass(frozen=True)
class Book:
    """What suppression matches against: kept accounts and the open leads by e-mail."""

    accounts: Sequence[Account] = ()
    open_leads: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # email -> (lead id, owner)

    def account_for(self, lead: Lead) -> Account | None:
        """The kept account a lead belongs to: the first whose website has the lead's e-mail
        domain, else the first whose name is the lead's company (compared loosely)."""
        by_domain, by_name = self._index
        domain = email_domain(lead.email)
        found = by_domain.get(domain) if domain else None
        if found is None:
            company = company_key(lead.company)
            found = by_name.get(company) if company else None
        return found

    @cached_property
    def _index(self) -> tuple[dict[str, Account], dict[str, Account]]:
        """Accounts by website domain and by company key (the first account of each), built once:
        matching a burst of leads against every account's regexes cost O(leads x accounts)."""
        by_domain: dict[str, Account] = {}
        by_name: dict[str, Account] = {}
        for account in self.accounts:
            if (domain := website_domain(account.website)) is not None:
                by_domain.setdefault(domain, account)
            if (key := company_key(account.name)) is not None:
                by_name.setdefault(key, account)
        return by_domain, by_name


@dataclass(frozen=True)
class Assignment:
    record_id: str
    owner_id: str
    from_owner: str | None
    team: str | None
    rule: str  # suppression:account_owner | suppression:duplicate_lead | territory:<id>[/<score tier>]
    reason: str


@dataclass(frozen=True)
class Unrouted:
    record_id: str
    team: str | None
    why: str


@dataclass
class RoutingPlan:
    assignments: list[Assignment] = field(default_factory=list)
    unrouted: list[Unrouted] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)  # leads of teams another tool routes


def email_domain(email: str | None) -> str | None:
    if not email or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].strip().casefold()
    return None if not domain or domain in FREE_MAIL else domain


def website_domain(website: str | None) -> str | None:
    if not website:
        return None
    host = re.sub(r"^[a-z]+://", "", website.strip().casefold()).split("/", 1)[0].split(":", 1)[0]
    return host.removeprefix("www.") or None


def company_key(name: str | None) -> str | None:
    """A company name compared loosely: case, punctuation and legal suffixes (Inc, GmbH) aside."""
    if not name:
        return None
    folded = _LEGAL_SUFFIX.sub(" ", name.casefold())
    key = re.sub(r"[^\w]+", " ", folded).strip()
    return key or None


def _score(lead: Lead, routing: Routing) -> float | None:
    if routing.score is None:
        return None
    value = lead.fields.get(routing.score.field)
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def _clip(text: str) -> str:
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 1] + "…"


class _Pool:
    """The reps of the teams being routed, with their load as routing goes on."""

    def __init__(self, reps: Iterable[Rep], policy: Policy, routing: Routing, now: dt.datetime) -> None:
        self.reps = {r.user_id: r for r in reps}
        self.routing = routing
        self.load = {r.user_id: r.routed + r.open_clocks for r in self.reps.values()}
        today = now.date()
        #: Why a team member takes no lead today (reps who manage or left are not members).
        self.skipped: dict[str, str] = {}
        for r in self.reps.values():
            if not r.active or r.manages:
                continue
            if r.out_of_office:
                self.skipped[r.user_id] = "out of office"
            elif routing.reps.away(r.user_id, r.email, today):
                self.skipped[r.user_id] = "absent"
            elif routing.reps.weight(r.user_id, r.email) <= 0:
                self.skipped[r.user_id] = "weight 0"
        self.available = {
            r.user_id
            for r in self.reps.values()
            if r.active and not r.manages and r.user_id not in self.skipped
        }
        epoch = np.array([to_epoch_seconds(now, "now")])
        self.working = {
            key: bool(policy.calendar(team.calendar).is_open(epoch)[0]) for key, team in policy.teams.items()
        }

    def weight(self, rep: Rep) -> float:
        return self.routing.reps.weight(rep.user_id, rep.email)

    def candidates(self, team: str, needs_now: bool) -> list[Rep]:
        return [
            r
            for r in self.reps.values()
            if r.team == team
            and r.user_id in self.available
            and (not needs_now or self.working.get(team, False))
        ]

    def skipped_in(self, team: str) -> str:
        """The team's reps left out today and why, for the reason on the record: "; skipped: ..."."""
        names = sorted(
            f"{r.name} ({self.skipped[r.user_id]})"
            for r in self.reps.values()
            if r.team == team and r.user_id in self.skipped
        )
        if not names:
            return ""
        shown = ", ".join(names[:2]) + (f" and {len(names) - 2} more" if len(names) > 2 else "")
        return f"; skipped: {shown}"

    def take(self, reps: Sequence[Rep]) -> Rep:
        chosen = min(reps, key=lambda r: ((self.load[r.user_id] + 1) / self.weight(r), r.user_id))
        self.load[chosen.user_id] += 1
        return chosen

    def active(self, user_id: str | None) -> bool:
        rep = self.reps.get(user_id or "")
        return rep is not None and rep.active


def route(
    leads: Iterable[Lead],
    reps: Iterable[Rep],
    book: Book,
    policy: Policy,
    now: dt.datetime,
) -> RoutingPlan:
    """Decide an owner for each lead (module docstring); nothing here reads or writes anything.

    Args:
        reps: every user who may own a lead (reps of the teams, account and lead owners).
    """
    routing = policy.routing
    plan = RoutingPlan()
    if routing is None:
        return plan
    pool = _Pool(reps, policy, routing, now)
    open_leads = dict(book.open_leads)
    for lead in leads:
        territory = routing.territory(lead.fields)
        team = territory.team if territory else None
        if not routing.routes(team):
            plan.watched.append(lead.record_id)
            continue
        found = _suppressed(lead, book, open_leads, routing, pool, team)
        if found is None and territory is None:
            shown = {n: lead.fields.get(n) for t in routing.territories for n in t.when}
            plan.unrouted.append(
                Unrouted(lead.record_id, None, f"no territory matches {_fields_text(shown)}")
            )
            continue
        if found is None:
            found = _round_robin(lead, territory.id, team, routing, pool)
        if isinstance(found, Unrouted):
            plan.unrouted.append(found)
            continue
        plan.assignments.append(found)
        if lead.email:
            open_leads.setdefault(lead.email.strip().casefold(), (lead.record_id, found.owner_id))
    return plan


def _fields_text(values: Mapping[str, Any]) -> str:
    return (
        ", ".join(f"{k} {v if v not in (None, '') else '(empty)'}" for k, v in values.items())
        or "(no fields)"
    )


def _suppressed(
    lead: Lead,
    book: Book,
    open_leads: Mapping[str, tuple[str, str]],
    routing: Routing,
    pool: _Pool,
    team: str | None,
) -> Assignment | None:
    if routing.suppression.account_owner:
        account = book.account_for(lead)
        if account is not None and pool.active(account.owner_id):
            return Assignment(
                lead.record_id,
                str(account.owner_id),
                lead.owner_id,
                team,
                "suppression:account_owner",
                _clip(f"account_owner: {account.name} ({account.why})"),
            )
    if routing.suppression.duplicate_lead and lead.email:
        other = open_leads.get(lead.email.strip().casefold())
        if other is not None and other[0] != lead.record_id and pool.active(other[1]):
            return Assignment(
                lead.record_id,
                other[1],
                lead.owner_id,
                team,
                "suppression:duplicate_lead",
                _clip(f"duplicate_of: {other[0]} (same e-mail, still open)"),
            )
    return None


def _round_robin(
    lead: Lead, territory: str, team: str, routing: Routing, pool: _Pool
) -> Assignment | Unrouted:
    needs_now = routing.needs_now(lead.fields)
    reps = pool.candidates(team, needs_now)
    if not reps:
        why = "working now" if needs_now else "available"
        return Unrouted(lead.record_id, team, f"no rep of {team} is {why} (inactive, away or weight 0)")
    rule, score_text = f"territory:{territory}", ""
    score = _score(lead, routing)
    tier = next((t for t in routing.score.tiers if t.holds(score)), None) if routing.score else None
    if tier is not None:
        named = {u.strip().casefold() for u in tier.users}
        roles = {r.strip().casefold() for r in tier.roles}
        chosen = [
            r
            for r in reps
            if (r.role or "").strip().casefold() in roles
            or r.user_id in tier.users
            or (r.email or "").casefold() in named
        ]
        if chosen:
            reps, rule = chosen, f"{rule}/{tier.id}"
            score_text = f"; score {score:g} ({tier.id})"
        else:
            score_text = f"; score {score:g} ({tier.id}: none of its reps available, whole team)"
    rep = pool.take(reps)
    reason = (
        f"territory: {territory} -> {team}{score_text}; round robin: {rep.name} "
        f"(weight {pool.weight(rep):g}, load {pool.load[rep.user_id] - 1} before)"
        + ("; needs an answer now: in working hours" if needs_now else "")
        + pool.skipped_in(team)
    )
    return Assignment(lead.record_id, rep.user_id, lead.owner_id, team, rule, _clip(reason))


def with_load(reps: Iterable[Rep], open_clocks: Mapping[str, int], routed: Mapping[str, int]) -> list[Rep]:
    """The reps with their open clocks and leads routed in the window filled in."""
    return [
        replace(r, open_clocks=int(open_clocks.get(r.user_id, 0)), routed=int(routed.get(r.user_id, 0)))
        for r in reps
    ]


@dataclass(frozen=True)
class Misrouted:
    """A lead another tool routed (a watched team) to an owner the policy would not have chosen."""

    record_id: str
    owner_id: str
    team: str | None
    rule: str  # suppression:account_owner | territory:<id>
    why: str


def misrouted(leads: Iterable[Lead], reps: Iterable[Rep], book: Book, policy: Policy) -> list[Misrouted]:
    """Owned leads of the teams Lead SLA Monitor only watches, whose owner breaks suppression (an
    account's lead away from the account owner) or sits outside the lead's territory team."""
    routing = policy.routing
    if routing is None:
        return []
    by_id = {r.user_id: r for r in reps}
    found: list[Misrouted] = []
    for lead in leads:
        territory = routing.territory(lead.fields)
        team = territory.team if territory else None
        if routing.routes(team) or not lead.owner_id:
            continue
        account = book.account_for(lead) if routing.suppression.account_owner else None
        if account is not None and account.owner_id and account.owner_id != lead.owner_id:
            owner = by_id.get(account.owner_id)
            holder = owner.name if owner else account.owner_id
            why = f"suppression: {account.name} ({account.why}) is {holder}'s account, not the owner's"
            found.append(Misrouted(lead.record_id, lead.owner_id, team, "suppression:account_owner", why))
            continue
        if account is not None or territory is None:
            continue
        rep = by_id.get(lead.owner_id)
        if rep is not None and rep.team != team:
            why = f"territory: {territory.id} is {team}'s, the owner {rep.name} is in {rep.team or 'no team'}"
            found.append(Misrouted(lead.record_id, lead.owner_id, team, f"territory:{territory.id}", why))
    return found
