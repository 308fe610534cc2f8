"""The store's rows as pandas frames for reports and the War Room (read-only).

Loads leads, their first arrival at each funnel stage (from Status history), activities, users,
the measured SLA's clocks, every reported handoff's clocks (the SLA matrix), the Opportunities
with their Amount and field history, and War Room visits. Never writes; never computes a figure
(metrics modules do), so every figure can be traced back to these rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from leadsla.decisions.recycling import RECOMMENDED_EVENT, RECYCLED_EVENT, REENGAGED_EVENT
from leadsla.engine import as_of
from leadsla.policy import Policy
from leadsla.routing import Routing
from leadsla.store import schema as s
from leadsla.store.clocks import last_run_at
from leadsla.store.connection import read_only

#: Lead Status value -> funnel stage. Statuses not listed (Working, Contacted, Nurture) are not stages.
STAGE_OF_STATUS = {
    "MQL": "MQL",
    "SAL": "SAL",
    "SQL": "SQL",
    "Converted": "Opportunity",
    "Qualified": "SQL",
    "Recycled": "Recycled",
    "Disqualified": "Disqualified",
    "Unqualified": "Disqualified",
    "Rejected": "Disqualified",
}
FUNNEL = ["MQL", "SAL", "SQL", "Opportunity"]
REJECTED = ["Recycled", "Disqualified"]
#: LeadHistory's owner fields: ``OwnerId`` rows hold ids, ``Owner`` rows names (`crm.landing`).
OWNER_FIELDS = ("OwnerId", "Owner")
#: The audit event of a lead routed by the lead_routing DAG (`leadsla.ownership`).
ROUTED_EVENT = "routing"


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in columns.items()})


_CHANGES = {
    "record_id": "object",
    "field": "object",
    "old_value": "object",
    "new_value": "object",
    "changed_by": "object",
    "changed_at": "datetime64[us, UTC]",
}
_ROUTED = {"record_id": "object", "at": "datetime64[us, UTC]", "owner": "object", "rule": "object"}


@dataclass
class Ownership:
    """Who owned which lead and how it got there: what the monthly review's cherry-picking audit
    reads (`leadsla.reports.cherry_picking`).

    changes: Lead owner changes (LeadHistory ``OwnerId`` and ``Owner`` rows): record_id, field,
        old_value, new_value, changed_by, changed_at.
    routed: the lead_routing DAG's `routing` audit entries: record_id, at, owner, rule.
    queues: queue_id, name. people: user_id, email, manager_id, out_of_office (beside
        `ReportData.users`).
    scores: record_id, score (the policy's `routing.score.field`, raw; None without one).
    routing: the policy's `routing:` section (rep weights, score tiers), None when it has none.
    automation_user_ids: the policy's automated reassigners (their owner changes are no one's choice).
    """

    changes: pd.DataFrame = field(default_factory=lambda: _empty(_CHANGES))
    routed: pd.DataFrame = field(default_factory=lambda: _empty(_ROUTED))
    queues: pd.DataFrame = field(default_factory=lambda: _empty({"queue_id": "object", "name": "object"}))
    people: pd.DataFrame = field(
        default_factory=lambda: _empty(
            {"user_id": "object", "email": "object", "manager_id": "object", "out_of_office": "bool"}
        )
    )
    scores: pd.DataFrame = field(default_factory=lambda: _empty({"record_id": "object", "score": "object"}))
    routing: Routing | None = None
    automation_user_ids: frozenset[str] = frozenset()


_CLOCK_TIMES = ("clock_start", "deadline", "stopped_at", "breached_at", "evaluated_at", "next_checkpoint_at")


@dataclass(frozen=True)
class Handoff:
    """One SLA of the policy as the reports show it (a row of the SLA matrix): its id, name, the
    handoff it measures, the CRM object its clocks run on, the accountable team and how a clock
    ended by leaving the watched state counts (`left_counts_as`)."""

    sla_id: str
    name: str
    handoff: str = ""
    object: str = "Lead"
    team: str | None = None
    left_counts_as: str = "met"


@dataclass
class ReportData:
    """Frames, all timestamps tz-aware UTC.

    leads: record_id, name, owner_id, lead_source, lead_type, account_tier, status,
        rejection_reason, created_at, campaign.
    stages: record_id, stage, at (first time the lead reached the stage).
    activities: activity_id, who_id, owner_id, created_at.
    users: user_id, name, team, role, is_active.
    clocks: the store's clocks rows for the measured SLA.
    visits: audit war_room_visit rows: actor, at.
    left_counts_as: how the measured SLA counts a clock ended by its record leaving the watched
        state (state handed_on): `met`, or `excluded` from met and violated (policy `left_counts_as`).
    ownership: owner changes, routing entries, queues and scores (`Ownership`), with the policy's
        routing section, for the cherry-picking audit.
    transitions: every Status change to a funnel or rejection status: record_id, old_value,
        new_value, changed_at (a lead recycled and back shows each move).
    recycling: lead_recycling's audit rows (recommended, recycled, re-engaged): event, record_id, at.
    opportunity_amounts: each converted lead's Opportunity and its Amount (current value, NaN when
        the Opportunity or its Amount is not in the store): record_id (the lead), opportunity_id, amount.
    handoffs: the SLAs the report has a section for, the measured one first (empty: the measured
        SLA alone, as `handoffs_of` describes it).
    handoff_clocks: each handoff's clocks rows (sla_id -> frame, as `clocks`).
    opportunities: every Opportunity: record_id, name, owner_id, status, amount (NaN without one).
    opportunity_history: Opportunity field changes (OpportunityFieldHistory): record_id, field,
        new_value, changed_at - what a handoff's conversion (`reports.yaml conversions`) reads.
    """

    leads: pd.DataFrame
    stages: pd.DataFrame
    activities: pd.DataFrame
    users: pd.DataFrame
    clocks: pd.DataFrame
    visits: pd.DataFrame
    left_counts_as: str = "met"
    ownership: Ownership = field(default_factory=Ownership)
    transitions: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["record_id", "old_value", "new_value", "changed_at"])
    )
    recycling: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["event", "record_id", "at"])
    )
    opportunity_amounts: pd.DataFrame = field(
        default_factory=lambda: _empty(
            {"record_id": "object", "opportunity_id": "object", "amount": "float64"}
        )
    )
    handoffs: tuple[Handoff, ...] = ()
    handoff_clocks: dict[str, pd.DataFrame] = field(default_factory=dict)
    opportunities: pd.DataFrame = field(
        default_factory=lambda: _empty(
            {
                "record_id": "object",
                "name": "object",
                "owner_id": "object",
                "status": "object",
                "amount": "float64",
            }
        )
    )
    opportunity_history: pd.DataFrame = field(
        default_factory=lambda: _empty(
            {
                "record_id": "object",
                "field": "object",
                "new_value": "object",
                "changed_at": "datetime64[us, UTC]",
            }
        )
    )


def handoffs_of(data: ReportData) -> list[tuple[Handoff, ReportData]]:
    """Each handoff the report shows, with `data` as that handoff's figures read it: its clocks in
    `clocks` and its `left_counts_as`. Without `handoffs` (data built by hand), the measured SLA
    alone, named by its clocks' SLA id (`sales_touch` when there is none)."""
    if not data.handoffs:
        ids = data.clocks["sla_id"].dropna().unique() if "sla_id" in data.clocks else ()
        sla_id = str(ids[0]) if len(ids) else "sales_touch"
        return [(Handoff(sla_id, sla_id, left_counts_as=data.left_counts_as), data)]
    out = []
    for h in data.handoffs:
        clocks = data.handoff_clocks.get(h.sla_id)
        if clocks is None:
            clocks = data.clocks.iloc[0:0]
        out.append((h, dataclasses.replace(data, clocks=clocks, left_counts_as=h.left_counts_as)))
    return out


#: The audit events behind the recycling figures.
RECYCLING_EVENTS = (RECOMMENDED_EVENT, RECYCLED_EVENT, REENGAGED_EVENT)


def _frame(conn: sa.Connection, stmt: sa.Select) -> pd.DataFrame:
    result = conn.execute(stmt)
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _times(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    for col in cols:
        df[col] = pd.to_datetime(df[col], utc=True) if len(df) else pd.Series([], dtype="datetime64[us, UTC]")
    return df


def first_status_arrivals(leads: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """Each lead's arrival in the status it was created with, at its creation.

    A CRM writes no Status history row for a record's first status, so a lead created as MQL
    would otherwise never enter the funnel. The first status is the old value of the lead's
    earliest Status change, or its current status when it never changed. A first change from
    nothing (old value empty) records the first status itself, so it adds no arrival.
    """
    first_change = hist.sort_values("changed_at", kind="stable").drop_duplicates("record_id")
    initial = leads[["record_id", "status", "created_at"]].merge(
        first_change[["record_id", "old_value"]], on="record_id", how="left", indicator=True
    )
    changed = initial.pop("_merge") == "both"
    out = pd.DataFrame(
        {
            "record_id": initial["record_id"],
            "new_value": initial["old_value"].where(changed, initial["status"]),
            "changed_at": initial["created_at"],
        }
    )
    return out[out["new_value"].notna()]


def load(
    engine: sa.Engine,
    sla_id: str = "sales_touch",
    until: dt.datetime | None = None,
    campaign_field: str = "Campaign__c",
    left_counts_as: str = "met",
    routing: Routing | None = None,
    automation_user_ids: Iterable[str] = (),
    handoffs: Sequence[Handoff] = (),
    policy: Policy | None = None,
) -> ReportData:
    """Read everything reports need; rows after `until` (when given) are left out so a past
    period regenerates the same figures later. `left_counts_as` is the measured SLA's (the
    policy's), carried along for the figures; so are `routing` and `automation_user_ids` (the
    policy's), for the cherry-picking audit. `handoffs` are the SLAs the report has a section for
    (their clocks, and the Opportunities when one runs on them, are read in the same pass).
    An open clock's elapsed and remaining time are as of the monitor's latest run, through the
    `policy`'s calendars (`engine.as_of`: a stored row holds them as of its own evaluation; without
    a policy, as stored).
    """
    r, h, a, u, c, au = s.records, s.field_history, s.activities, s.users, s.clocks, s.audit
    with read_only(engine) as conn:
        lead_q = sa.select(
            r.c.record_id,
            r.c.name,
            r.c.owner_id,
            r.c.lead_source,
            r.c.lead_type,
            r.c.account_tier,
            r.c.status,
            r.c.rejection_reason,
            r.c.created_at,
            r.c.fields[campaign_field].as_string().label("campaign"),
        ).where(r.c.object_type == "Lead", r.c.is_deleted.is_(False))
        hist_q = sa.select(h.c.record_id, h.c.old_value, h.c.new_value, h.c.changed_at).where(
            h.c.object_type == "Lead", h.c.field == "Status", h.c.new_value.in_(list(STAGE_OF_STATUS))
        )
        act_q = sa.select(a.c.activity_id, a.c.who_id, a.c.owner_id, a.c.created_at).where(
            a.c.is_deleted.is_(False), a.c.who_id.is_not(None)
        )
        clock_ids = sorted({sla_id, *(h.sla_id for h in handoffs)})
        clock_q = sa.select(c).where(c.c.sla_id.in_(clock_ids))
        visit_q = sa.select(au.c.actor, au.c.at).where(au.c.event == "war_room_visit")
        recycling_q = sa.select(au.c.event, au.c.record_id, au.c.at).where(au.c.event.in_(RECYCLING_EVENTS))
        if until is not None:
            lead_q = lead_q.where(r.c.created_at < until)
            hist_q = hist_q.where(h.c.changed_at < until)
            act_q = act_q.where(a.c.created_at < until)
            clock_q = clock_q.where(c.c.clock_start < until)
            visit_q = visit_q.where(au.c.at < until)
            recycling_q = recycling_q.where(au.c.at < until)
        # Every read in a set order: SQL gives none otherwise (PostgreSQL's heap order moves after
        # updates), and a report must regenerate byte for byte on either backend.
        leads = _times(_frame(conn, lead_q.order_by(r.c.record_id)), "created_at")
        hist = _times(
            _frame(conn, hist_q.order_by(h.c.record_id, h.c.changed_at, h.c.history_id)), "changed_at"
        )
        activities = _times(_frame(conn, act_q.order_by(a.c.activity_id)), "created_at")
        users = _frame(
            conn, sa.select(u.c.user_id, u.c.name, u.c.team, u.c.role, u.c.is_active).order_by(u.c.user_id)
        )
        every_clock = _times(
            _frame(conn, clock_q.order_by(c.c.clock_start, c.c.record_id, c.c.sla_id)), *_CLOCK_TIMES
        )
        ran = last_run_at(conn) if policy is not None else None
        if ran is not None:
            every_clock = as_of(every_clock, policy, ran)
        visits = _times(_frame(conn, visit_q.order_by(au.c.at, au.c.actor)), "at")
        ownership = _ownership(conn, until, routing, automation_user_ids)
        recycling = _times(_frame(conn, recycling_q.order_by(au.c.at, au.c.record_id, au.c.event)), "at")
        amounts = _opportunity_amounts(conn, until)
        on_opportunities = any(hd.object == "Opportunity" for hd in handoffs)
        opportunities, opp_history = _opportunities(conn, until) if on_opportunities else (None, None)
    by_sla = {k: g.reset_index(drop=True) for k, g in every_clock.groupby("sla_id", sort=False)}
    clocks = by_sla.get(sla_id, every_clock.iloc[0:0].reset_index(drop=True))
    arrivals = pd.concat(
        [first_status_arrivals(leads, hist), hist[["record_id", "new_value", "changed_at"]]],
        ignore_index=True,
    )
    arrivals["stage"] = arrivals["new_value"].map(STAGE_OF_STATUS)
    stages = (
        arrivals.dropna(subset=["stage"])
        .sort_values("changed_at", kind="stable")
        .drop_duplicates(["record_id", "stage"])
        .rename(columns={"changed_at": "at"})[["record_id", "stage", "at"]]
        .reset_index(drop=True)
    )
    transitions = hist[["record_id", "old_value", "new_value", "changed_at"]].reset_index(drop=True)
    return ReportData(
        leads,
        stages,
        activities,
        users,
        clocks,
        visits,
        left_counts_as,
        ownership,
        transitions,
        recycling,
        amounts,
        tuple(handoffs),
        {hd.sla_id: by_sla.get(hd.sla_id, clocks.iloc[0:0]) for hd in handoffs},
        **({} if opportunities is None else {"opportunities": opportunities}),
        **({} if opp_history is None else {"opportunity_history": opp_history}),
    )


def _opportunities(conn: sa.Connection, until: dt.datetime | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every Opportunity with its Amount (a number, NaN without one) and the Opportunities' field
    history, in a set order (see `load`)."""
    r, h = s.records, s.field_history
    opp_q = sa.select(
        r.c.record_id,
        r.c.name,
        r.c.owner_id,
        r.c.status,
        r.c.fields["Amount"].as_string().label("amount"),
    ).where(r.c.object_type == "Opportunity", r.c.is_deleted.is_(False))
    hist_q = sa.select(h.c.record_id, h.c.field, h.c.new_value, h.c.changed_at).where(
        h.c.object_type == "Opportunity"
    )
    if until is not None:
        opp_q = opp_q.where(r.c.created_at < until)
        hist_q = hist_q.where(h.c.changed_at < until)
    opps = _frame(conn, opp_q.order_by(r.c.record_id))
    hist = _frame(conn, hist_q.order_by(h.c.record_id, h.c.changed_at, h.c.history_id))
    defaults = ReportData.__dataclass_fields__
    if not len(opps):
        opps = defaults["opportunities"].default_factory()
    else:
        opps["amount"] = pd.to_numeric(opps["amount"], errors="coerce").astype("float64")
    hist = _times(hist, "changed_at") if len(hist) else defaults["opportunity_history"].default_factory()
    return opps, hist


def _opportunity_amounts(conn: sa.Connection, until: dt.datetime | None) -> pd.DataFrame:
    """Each converted lead's Opportunity Amount (the raw `Amount` field, as a number; NaN when the
    Opportunity is not mirrored or carries no Amount), for the revenue a breach put at stake."""
    r = s.records
    opp = r.alias("opportunity")
    q = (
        sa.select(
            r.c.record_id,
            r.c.converted_opportunity_id.label("opportunity_id"),
            opp.c.fields["Amount"].as_string().label("amount"),
        )
        .select_from(
            r.outerjoin(
                opp,
                sa.and_(
                    opp.c.object_type == "Opportunity",
                    opp.c.record_id == r.c.converted_opportunity_id,
                    opp.c.is_deleted.is_(False),
                ),
            )
        )
        .where(
            r.c.object_type == "Lead", r.c.is_deleted.is_(False), r.c.converted_opportunity_id.is_not(None)
        )
    )
    if until is not None:
        q = q.where(r.c.created_at < until)
    out = _frame(conn, q.order_by(r.c.record_id))
    if not len(out):
        return ReportData.__dataclass_fields__["opportunity_amounts"].default_factory()
    out["amount"] = pd.to_numeric(out["amount"], errors="coerce").astype("float64")
    return out


def _ownership(
    conn: sa.Connection,
    until: dt.datetime | None,
    routing: Routing | None,
    automation_user_ids: Iterable[str],
) -> Ownership:
    """The `Ownership` rows, in a set order (see `load`)."""
    r, h, u, q, au = s.records, s.field_history, s.users, s.queues, s.audit
    change_q = sa.select(
        h.c.record_id, h.c.field, h.c.old_value, h.c.new_value, h.c.changed_by, h.c.changed_at
    ).where(h.c.object_type == "Lead", h.c.field.in_(OWNER_FIELDS))
    routed_q = sa.select(au.c.record_id, au.c.at, au.c.detail).where(
        au.c.event == ROUTED_EVENT, au.c.record_id.is_not(None)
    )
    if until is not None:
        change_q = change_q.where(h.c.changed_at < until)
        routed_q = routed_q.where(au.c.at < until)
    changes = _times(
        _frame(conn, change_q.order_by(h.c.record_id, h.c.changed_at, h.c.history_id)), "changed_at"
    )
    rows = conn.execute(routed_q.order_by(au.c.record_id, au.c.at, au.c.audit_id)).all()
    routed = _times(
        pd.DataFrame(
            [(rid, at, (d or {}).get("owner"), (d or {}).get("rule")) for rid, at, d in rows],
            columns=list(_ROUTED),
        ),
        "at",
    )
    queues = _frame(conn, sa.select(q.c.queue_id, q.c.name).order_by(q.c.queue_id))
    people = _frame(
        conn, sa.select(u.c.user_id, u.c.email, u.c.manager_id, u.c.out_of_office).order_by(u.c.user_id)
    )
    score_field = routing.score.field if routing is not None and routing.score is not None else None
    if score_field:
        score_q = sa.select(r.c.record_id, r.c.fields[score_field].as_string().label("score")).where(
            r.c.object_type == "Lead", r.c.is_deleted.is_(False)
        )
        if until is not None:
            score_q = score_q.where(r.c.created_at < until)
        scores = _frame(conn, score_q.order_by(r.c.record_id))
    else:
        scores = _empty({"record_id": "object", "score": "object"})
    return Ownership(
        changes, routed, queues, people, scores, routing, frozenset(str(a) for a in automation_user_ids)
    )
