"""The monthly review's cherry-picking audit (seed 003): leads taken out of turn, each finding
naming the leads and the people.

Three checks over the month, each a red flag with its threshold (`reports.yaml` `cherry_picking`):

- **Self-assignment from a queue**: a lead owner change from a queue (its id in `queues`, or its
  name) to the very user who made it.
- **Reassignment shortly after routing**: within `reassignment_hours` of the lead's `routing` audit
  entry, a person (not one of the policy's `automation_user_ids`) moves it from the rep routing
  gave it to another user.
- **Share far from the weighted share**: in a team with at least `share_min_leads` hot leads (a
  score tier of the policy's `routing.score`) or accepted leads (reached SAL) in the month, a rep
  whose share is more than `share_deviation` from their weighted share: their `routing.reps`
  weight over the weights of the team's reps in the rotation (active, managing nobody, weight
  above 0; for a score tier, the tier's reps when the team has any). A weight counts the month's
  days the policy's absences leave the rep; a rep the CRM marks out of office who holds none of
  the leads was away and is left out. A lead routed by suppression (to its account's or
  duplicate's owner) is nobody's turn and is not counted; an owner outside the rotation (a
  manager, an inactive user) has a weighted share of 0.

Leads are counted with their owner now (as the store holds them) and by the owner's CRM team.
The weighted share does not know absences the CRM and the policy were not told of, nor the
open-clock load routing also weighs: the advice says to check absences first.

Pure functions over `ReportData`; never reads the store or the clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pandas as pd

from leadsla.reports import funnel as fn
from leadsla.reports.config import ReportConfig
from leadsla.reports.data import ReportData
from leadsla.reports.period import Period
from leadsla.reports.review import Flag
from leadsla.routing import Reps, ScoreTier

SELF_ASSIGNED = "Self-assignment from queues"
REASSIGNED = "Reassignment between reps shortly after routing"
HOT_SHARE = "Rep's share of hot leads far from the weighted share"
ACCEPTED_SHARE = "Rep's share of accepted leads far from the weighted share"
#: What to do about each check once it is raised (shown under the section's table).
ADVICE = {
    SELF_ASSIGNED: "Ask each rep named why they took the lead from the queue; if the queue is meant to be "
    "worked by hand, route it instead (routing.intake_queues) so leads are dealt in turn.",
    REASSIGNED: "Ask whoever moved the lead why; a rep passing on leads they were dealt, or a manager "
    "reshuffling them, undoes the round robin. Change the routing rule if it dealt them wrongly.",
    HOT_SHARE: "Check the rep's absences first (they lower a share fairly); otherwise read the "
    "reassignments and self-assignments above for how the hot leads reached them.",
    ACCEPTED_SHARE: "A rep accepting far more of the team's leads than their weight may be taking the "
    "best ones; far fewer, rejecting or passing on theirs. Review the leads named.",
}
#: A suppression rule's prefix in a `routing` audit entry: the lead went to an account's or lead's owner.
SUPPRESSION_RULE = "suppression:"


@dataclass(frozen=True)
class Finding:
    """One case: the check, the leads (ids and names), the people, when, and what happened."""

    check: str
    record_ids: tuple[str, ...]
    leads: str  # "Ann Lee (00Q...)", a rep's leads for a share
    people: str  # the rep(s) involved, and who acted
    actor: str  # who took or moved the lead (for a share: the rep)
    at: dt.datetime | None  # when (None for a share: the month)
    detail: str


@dataclass(frozen=True)
class Audit:
    flags: list[Flag]
    findings: list[Finding]

    def frame(self) -> pd.DataFrame:
        """The findings as rows (the report's cherry_picking.csv)."""
        cols = ["check", "at", "record_ids", "leads", "people", "detail"]
        return pd.DataFrame([{c: getattr(f, c) for c in cols} for f in self.findings], columns=cols)


class _Names:
    """Users and queues as the history spells them (ids or names); leads as a reader knows them."""

    def __init__(self, data: ReportData) -> None:
        self.lead_name = dict(zip(data.leads["record_id"], data.leads["name"], strict=True))
        users = data.users
        self.user_ids = set(users["user_id"])
        self.user_name = dict(zip(users["user_id"], users["name"], strict=True))
        counts = users["name"].value_counts()
        unique = users[users["name"].isin(counts[counts == 1].index)]
        self.by_name = {
            str(n).casefold(): uid for n, uid in zip(unique["name"], unique["user_id"], strict=True)
        }
        q = data.ownership.queues
        self.queue_name = dict(zip(q["queue_id"], q["name"], strict=True))
        self.queue_by_name = {str(n).strip().casefold(): str(n) for n in q["name"]}

    def user(self, value: object) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        return value if value in self.user_ids else self.by_name.get(value.casefold())

    def queue(self, value: object) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        return self.queue_name.get(value) or self.queue_by_name.get(value.strip().casefold())

    def lead(self, record_id: str) -> str:
        """The lead as a reader knows it: its name and id ("Ann Lee (00Q...)"), else its id."""
        name = self.lead_name.get(record_id)
        return f"{name} ({record_id})" if isinstance(name, str) and name else record_id

    def person(self, user_id: object) -> str:
        if not isinstance(user_id, str) or not user_id:
            return "(unknown)"
        name = self.user_name.get(user_id)
        return str(name) if isinstance(name, str) and name else user_id


def owner_changes(data: ReportData, period: Period, names: _Names | None = None) -> pd.DataFrame:
    """The period's lead owner changes, one row each: record_id, changed_at, changed_by, old_user,
    old_queue, new_user (ids; None when the value is not one). Salesforce writes each change twice
    (ids and names): the id row is kept."""
    names = names or _Names(data)
    h = data.ownership.changes
    h = h[(h["changed_at"] >= period.start) & (h["changed_at"] < period.end)].copy()
    h["_names_row"] = h["field"] != "OwnerId"
    h = h.sort_values(["record_id", "changed_at", "_names_row"], kind="stable")
    h = h.drop_duplicates(["record_id", "changed_at", "changed_by"])
    return pd.DataFrame(
        {
            "record_id": h["record_id"],
            "changed_at": h["changed_at"],
            "changed_by": h["changed_by"],
            "old_user": [names.user(v) for v in h["old_value"]],
            "old_queue": [names.queue(v) for v in h["old_value"]],
            "new_user": [names.user(v) for v in h["new_value"]],
        },
        index=h.index,
    ).reset_index(drop=True)


def self_assignments(data: ReportData, period: Period, names: _Names) -> list[Finding]:
    """Owner changes from a queue to the user who made them."""
    ch = owner_changes(data, period, names)
    took = ch[ch["old_queue"].notna() & ch["new_user"].notna() & (ch["changed_by"] == ch["new_user"])]
    out = []
    for row in took.itertuples():
        rep = names.person(row.new_user)
        out.append(
            Finding(
                SELF_ASSIGNED,
                (row.record_id,),
                names.lead(row.record_id),
                rep,
                rep,
                row.changed_at.to_pydatetime(),
                f"{rep} took it from queue {row.old_queue} for themselves",
            )
        )
    return out


def reassignments(data: ReportData, period: Period, cfg: ReportConfig, names: _Names) -> list[Finding]:
    """A person moving a lead from its routed rep to another user within the configured hours."""
    hours = cfg.cherry_picking.reassignment_hours
    automation = data.ownership.automation_user_ids
    ch = owner_changes(data, period, names)
    ch = ch[
        ch["old_user"].notna()
        & ch["new_user"].notna()
        & (ch["old_user"] != ch["new_user"])
        & ch["changed_by"].notna()
        & ~ch["changed_by"].isin(list(automation))
    ]
    routed = data.ownership.routed.dropna(subset=["at"])
    if not len(ch) or not len(routed):
        return []
    # One time unit on both sides: merge_asof refuses to compare microseconds with nanoseconds.
    ch = ch.assign(changed_at=ch["changed_at"].dt.as_unit("ns"))
    routed = routed[["record_id", "at", "owner", "rule"]].assign(at=routed["at"].dt.as_unit("ns"))
    moved = pd.merge_asof(
        ch.sort_values("changed_at", kind="stable"),
        routed.sort_values("at", kind="stable"),
        left_on="changed_at",
        right_on="at",
        by="record_id",
        direction="backward",
    )
    soon = moved[
        moved["at"].notna()
        & (moved["changed_at"] - moved["at"] <= pd.Timedelta(hours=hours))
        & (moved["old_user"] == moved["owner"])
    ].sort_values(["changed_at", "record_id"], kind="stable")
    out = []
    for row in soon.itertuples():
        routed_to, moved_to, by = (
            names.person(row.owner),
            names.person(row.new_user),
            names.person(row.changed_by),
        )
        after = (row.changed_at - row.at).total_seconds() / 3600
        rule = row.rule if isinstance(row.rule, str) and row.rule else "no rule"
        who = (
            "themselves"
            if row.changed_by == row.new_user
            else ("the rep it was routed to" if row.changed_by == row.owner else by)
        )
        out.append(
            Finding(
                REASSIGNED,
                (row.record_id,),
                names.lead(row.record_id),
                f"{routed_to} -> {moved_to}, by {by}",
                by,
                row.changed_at.to_pydatetime(),
                f"routed to {routed_to} ({rule}), moved to {moved_to} by {who} {after:.1f} h later",
            )
        )
    return out


def _present(reps: Reps, user_id: str, email: str | None, period: Period) -> float:
    """The share of the period's days the policy's absences (`routing.reps.absences`) leave the rep."""
    tz = ZoneInfo(period.timezone)
    first = period.start.astimezone(tz).date()
    last = (period.end - dt.timedelta(microseconds=1)).astimezone(tz).date()
    days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
    return sum(not reps.away(user_id, email, day) for day in days) / len(days)


def _rotation(data: ReportData, reps: Reps, period: Period) -> pd.DataFrame:
    """Every user with their team, role, e-mail and what routing would deal them over the period:
    `weight` (the policy's, times the share of the period the policy's absences leave them) and
    `in_rotation` (active, managing no active user, weight above 0)."""
    u = data.users.merge(data.ownership.people, on="user_id", how="left")
    active = u["is_active"].fillna(False).astype(bool)
    managers = set(u.loc[active, "manager_id"].dropna())
    email = [e if isinstance(e, str) else None for e in u["email"]]
    u["weight"] = [
        reps.weight(uid, mail) * _present(reps, uid, mail, period)
        for uid, mail in zip(u["user_id"], email, strict=True)
    ]
    u["out_of_office"] = u["out_of_office"].fillna(False).astype(bool)
    u["in_rotation"] = active & ~u["user_id"].isin(managers) & (u["weight"] > 0) & u["team"].notna()
    return u


def _tier_reps(rotation: pd.DataFrame, tier: ScoreTier) -> pd.Series:
    roles = {r.strip().casefold() for r in tier.roles}
    named = {n.strip().casefold() for n in tier.users}
    return (
        rotation["role"].fillna("").str.strip().str.casefold().isin(roles)
        | rotation["user_id"].isin(tier.users)
        | rotation["email"].fillna("").str.casefold().isin(named)
    )


@dataclass
class Shares:
    """One share check's findings, each flagged rep's figure, and how many teams had enough leads."""

    findings: list[Finding] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    teams: int = 0
    unmeasured: str | None = None  # why nothing could be measured (no score tiers)

    def value(self, what: str, min_leads: int) -> str:
        if self.unmeasured:
            return self.unmeasured
        if not self.teams:
            return f"no team had {min_leads} {what} or more"
        return "; ".join(self.figures) or f"every rep within the threshold ({_count(self.teams, 'team')})"


#: How many of a rep's leads a share finding names in words (the CSV's record_ids has them all).
SHOWN_LEADS = 10


def _shares(
    out: Shares,
    check: str,
    label: str,
    leads: pd.DataFrame,
    pool: pd.DataFrame,
    cfg: ReportConfig,
    names: _Names,
) -> None:
    """Adds to `out` the findings for one team's leads of one kind (`leads`: record_id, owner_id)
    against `pool` (the rotation rows dealt such leads); `label` names the team and kind."""
    cp = cfg.cherry_picking
    n = len(leads)
    if n < cp.share_min_leads:
        return
    out.teams += 1
    held = leads.groupby("owner_id")["record_id"].apply(lambda s: tuple(sorted(s)))
    # A rep the CRM marks out of office who holds none of these leads was away (routing skips them).
    pool = pool[~(pool["out_of_office"] & ~pool["user_id"].isin(set(held.index)))]
    total = float(pool["weight"].sum())
    weighted = {
        uid: (w / total if total else 0.0) for uid, w in zip(pool["user_id"], pool["weight"], strict=True)
    }
    for uid in sorted(set(weighted) | set(held.index)):
        mine = held.get(uid, ())
        share, fair = len(mine) / n, weighted.get(uid, 0.0)
        if abs(share - fair) <= cp.share_deviation:
            continue
        rep = names.person(uid)
        outside = "" if uid in weighted else " (not in the rotation: inactive, a manager or weight 0)"
        out.figures.append(f"{label}: {rep} {share:.0%} vs {fair:.0%}")
        # A rep short of their share is named with the leads that went to the others.
        shown = mine or tuple(sorted(leads["record_id"]))
        words = ", ".join(names.lead(r) for r in shown[:SHOWN_LEADS])
        more = f" and {len(shown) - SHOWN_LEADS} more" if len(shown) > SHOWN_LEADS else ""
        out.findings.append(
            Finding(
                check,
                shown,
                words + more,
                rep,
                rep,
                None,
                f"{rep}{outside} holds {len(mine)} of {n} {label} leads ({share:.0%}) against a weighted "
                f"share of {fair:.0%}",
            )
        )


def _not_suppressed(data: ReportData, record_ids: pd.Series) -> pd.Series:
    routed = data.ownership.routed
    last = routed.sort_values("at", kind="stable").drop_duplicates("record_id", keep="last")
    rule = dict(zip(last["record_id"], last["rule"], strict=True))
    return pd.Series(
        [not str(rule.get(r) or "").startswith(SUPPRESSION_RULE) for r in record_ids],
        index=record_ids.index,
        dtype=bool,
    )


def _owned_by_team(data: ReportData, leads: pd.DataFrame, rotation: pd.DataFrame) -> pd.DataFrame:
    team = dict(zip(rotation["user_id"], rotation["team"], strict=True))
    leads = leads[leads["owner_id"].isin(list(team)) & _not_suppressed(data, leads["record_id"])].copy()
    leads["team"] = leads["owner_id"].map(team)
    return leads[leads["team"].notna()]


def hot_shares(data: ReportData, period: Period, cfg: ReportConfig, names: _Names) -> Shares:
    """Reps' shares of the month's hot leads (MQL in the period, score in a tier) within their team."""
    routing = data.ownership.routing
    if routing is None or routing.score is None or not routing.score.tiers:
        return Shares(unmeasured="no score tiers in the policy's routing section")
    rotation = _rotation(data, routing.reps, period)
    c = fn.cohort(data, period)[["record_id", "owner_id"]]
    scores = data.ownership.scores
    score = pd.to_numeric(
        c["record_id"].map(dict(zip(scores["record_id"], scores["score"], strict=True))), errors="coerce"
    )
    c = c.assign(
        tier=[
            next((t.id for t in routing.score.tiers if t.holds(None if pd.isna(s) else float(s))), "")
            for s in score
        ]
    )
    c = _owned_by_team(data, c[c["tier"] != ""], rotation)
    out = Shares()
    for tier in routing.score.tiers:
        for team, leads in c[c["tier"] == tier.id].groupby("team", sort=True):
            pool = rotation[rotation["in_rotation"] & (rotation["team"] == team)]
            tiered = pool[_tier_reps(pool, tier)]
            _shares(out, HOT_SHARE, f"{team} {tier.id}", leads, tiered if len(tiered) else pool, cfg, names)
    return out


def accepted_shares(data: ReportData, period: Period, cfg: ReportConfig, names: _Names) -> Shares:
    """Reps' shares of the leads that reached SAL in the period, within their team."""
    routing = data.ownership.routing
    rotation = _rotation(data, routing.reps if routing is not None else Reps(), period)
    st = data.stages
    sal = st[(st["stage"] == "SAL") & (st["at"] >= period.start) & (st["at"] < period.end)]["record_id"]
    leads = data.leads[data.leads["record_id"].isin(set(sal))][["record_id", "owner_id"]]
    leads = _owned_by_team(data, leads, rotation)
    out = Shares()
    for team, of_team in leads.groupby("team", sort=True):
        pool = rotation[rotation["in_rotation"] & (rotation["team"] == team)]
        _shares(out, ACCEPTED_SHARE, f"{team} accepted", of_team, pool, cfg, names)
    return out


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _actors(findings: list[Finding]) -> str:
    """Who acted and how often, most first ("Rita 2, Rob 1")."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.actor] = counts.get(f.actor, 0) + 1
    return ", ".join(f"{p} {n}" for p, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _ids(findings: list[Finding]) -> tuple[str, ...]:
    return tuple(sorted({r for f in findings for r in f.record_ids}))


#: The handoff the audit's flags name: who owns a lead before its sales touch (the SDR teams).
LEAD_ROUTING = "Lead routing"


def audit(data: ReportData, period: Period, cfg: ReportConfig) -> Audit:
    """The three checks as flags (raised or not) and every finding behind them."""
    cp = cfg.cherry_picking
    names = _Names(data)
    took = self_assignments(data, period, names)
    moved = reassignments(data, period, cfg, names)
    hot = hot_shares(data, period, cfg, names)
    accepted = accepted_shares(data, period, cfg, names)
    share_th = (
        f"|share - weighted share| > {cp.share_deviation:.0%} (teams with >= {cp.share_min_leads} leads)"
    )
    flags = [
        Flag(
            SELF_ASSIGNED,
            f"{_count(len(took), 'lead')}: {_actors(took)}" if took else "none",
            "any lead a rep took from a queue for themselves",
            bool(took),
            _ids(took),
            LEAD_ROUTING,
        ),
        Flag(
            REASSIGNED,
            f"{_count(len(moved), 'lead')}, moved by {_actors(moved)}" if moved else "none",
            f"any routed lead moved to another rep by a person within {cp.reassignment_hours:g} h",
            bool(moved),
            _ids(moved),
            LEAD_ROUTING,
        ),
        Flag(
            HOT_SHARE,
            hot.value("hot leads", cp.share_min_leads),
            share_th,
            bool(hot.findings),
            _ids(hot.findings),
            LEAD_ROUTING,
        ),
        Flag(
            ACCEPTED_SHARE,
            accepted.value("accepted leads", cp.share_min_leads),
            share_th,
            bool(accepted.findings),
            _ids(accepted.findings),
            LEAD_ROUTING,
        ),
    ]
    return Audit(flags, took + moved + hot.findings + accepted.findings)
