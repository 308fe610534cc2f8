"""The War Room's range figures (queries.range_panel: judged in SQL, `war_room.figures`) equal the
previous pandas computation on a varied org, on SQLite and PostgreSQL.

`_previous_range_data` / `_previous_range_panel` below are the War Room's range panel as it was
before the figures moved into SQL (every Status arrival and clock loaded into `ReportData` and
run through `reports.metrics` / `reports.funnel`), kept verbatim as the reference.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
import sqlalchemy as sa

from leadsla.reports import funnel as fn
from leadsla.reports import metrics as m
from leadsla.reports.data import STAGE_OF_STATUS, ReportData
from leadsla.store import schema as s
from leadsla.war_room import queries
from leadsla.war_room.filters import Filters, parse_filters
from tests.reports_data import Builder, generate, t

_STATUSES_OF_STAGE = {
    stage: [st for st, sg in STAGE_OF_STATUS.items() if sg == stage]
    for stage in dict.fromkeys(STAGE_OF_STATUS.values())
}
CLOCK_COLUMNS = (
    "record_id",
    "clock_start",
    "owner_id",
    "team",
    "accountable_owner_id",
    "accountable_team",
    "elapsed_seconds",
    "target_seconds",
    "stopped_at",
    "breached_at",
    "state",
)


def _previous_range_data(
    engine: sa.Engine,
    f: Filters,
    sla_id: str,
    campaign_field: str = "Campaign__c",
    left_counts_as: str = "met",
) -> ReportData:
    """`ReportData` restricted to the range and filters: clocks started in it, and the leads that
    became MQL in it (the funnel cohort) with their rows, first arrival at each stage and
    activities. Leads of clocks outside the cohort are not loaded (the page shows no per-source
    compliance).

    The store does the stage arithmetic: one row per cohort lead carries the lead's columns, its
    first Status change into each stage before the range's end and the old value of its first
    Status change (its status at creation, see `first_status_arrivals`). Fetching every Status
    change of the cohort instead (~65,000 rows at 100,000 leads) cost most of the page's time.
    """
    p = f.period
    r, h, c, u, a = s.records, s.field_history, s.clocks, s.users, s.activities
    became_mql = sa.select(h.c.record_id).where(
        h.c.object_type == "Lead",
        h.c.field == "Status",
        h.c.new_value == "MQL",
        h.c.changed_at >= p.start,
        h.c.changed_at < p.end,
    )
    # A lead created as MQL has no history row for it: leads created in the range are candidates
    # too, and the funnel keeps those whose MQL arrival falls in the range.
    created = sa.select(r.c.record_id).where(
        r.c.object_type == "Lead", r.c.created_at >= p.start, r.c.created_at < p.end
    )
    if f.owner or f.team or f.lead_source:
        became_mql = became_mql.where(
            h.c.record_id.in_(sa.select(r.c.record_id).where(*queries.lead_filters(f)))
        )
        created = created.where(*queries.lead_filters(f))
    cohort = sa.union(became_mql, created).cte("war_room_cohort")
    in_range = sa.and_(
        c.c.sla_id == sla_id,
        c.c.clock_start >= p.start,
        c.c.clock_start < p.end,
        *queries.clock_filters(f, accountable=True),
    )
    first_h = h.alias("first_change")
    first_old = (
        sa.select(first_h.c.old_value)
        .where(
            first_h.c.object_type == "Lead",
            first_h.c.record_id == r.c.record_id,
            first_h.c.field == queries.STATUS_FIELD,
            first_h.c.changed_at < p.end,
        )
        .order_by(first_h.c.changed_at)
        .limit(1)
        .scalar_subquery()
    )
    first_at = (
        sa.select(sa.func.min(first_h.c.changed_at))
        .where(
            first_h.c.object_type == "Lead",
            first_h.c.record_id == r.c.record_id,
            first_h.c.field == queries.STATUS_FIELD,
            first_h.c.changed_at < p.end,
        )
        .scalar_subquery()
    )
    lead_cols = [
        r.c.record_id,
        r.c.name,
        r.c.owner_id,
        r.c.lead_source,
        r.c.lead_type,
        r.c.account_tier,
        r.c.status,
        r.c.rejection_reason,
        *queries.raw_columns(r, "created_at"),
        r.c.fields[campaign_field].as_string().label("campaign"),
    ]
    with engine.connect() as conn:
        clocks = queries.parse_utc(
            queries.fetch_frame(conn, sa.select(*queries.raw_columns(c, *CLOCK_COLUMNS)).where(in_range)),
            "clock_start",
            "stopped_at",
            "breached_at",
        )
        # Per lead, one look-up in the partial Status index per stage (`STATUS_FIELD`): no sort of the
        # joined rows, and the history table itself is never read.
        rows = queries.fetch_frame(
            conn,
            sa.select(
                *lead_cols,
                first_old.label("first_old"),
                first_at.label("first_at"),
                *[
                    sa.type_coerce(
                        sa.select(sa.func.min(first_h.c.changed_at))
                        .where(
                            first_h.c.object_type == "Lead",
                            first_h.c.record_id == r.c.record_id,
                            first_h.c.field == queries.STATUS_FIELD,
                            first_h.c.changed_at < p.end,
                            first_h.c.new_value.in_(statuses),
                        )
                        .scalar_subquery(),
                        sa.String,
                    ).label(stage)
                    for stage, statuses in _STATUSES_OF_STAGE.items()
                ],
            ).select_from(
                cohort.join(
                    r,
                    sa.and_(
                        r.c.object_type == "Lead",
                        r.c.record_id == cohort.c.record_id,
                        r.c.is_deleted.is_(False),
                    ),
                )
            ),
        )  # fixed in both: see the test below
        users = queries.fetch_frame(conn, sa.select(u.c.user_id, u.c.name, u.c.team, u.c.role, u.c.is_active))
        acts = queries.parse_utc(
            queries.fetch_frame(
                conn,
                sa.select(*queries.raw_columns(a, "who_id", "created_at"))
                .select_from(cohort.join(a, a.c.who_id == cohort.c.record_id))
                .where(a.c.is_deleted.is_(False), a.c.created_at < p.end),
            ),
            "created_at",
        )
    rows = queries.parse_utc(rows, "created_at", *_STATUSES_OF_STAGE)
    leads = rows[
        [
            "record_id",
            "name",
            "owner_id",
            "lead_source",
            "lead_type",
            "account_tier",
            "status",
            "rejection_reason",
            "created_at",
            "campaign",
        ]
    ]
    # The status a lead was created with counts as reached at its creation (`first_status_arrivals`).
    # A lead with Status history started in its first change's old value (none: the change itself
    # records the first status); a lead without history is still in the status it was created with.
    initial = rows["first_old"].where(rows["first_at"].notna(), rows["status"]).map(STAGE_OF_STATUS)
    created = rows["created_at"]
    parts = []
    for stage in _STATUSES_OF_STAGE:
        # The earlier of the first change into the stage and the creation (when created in it);
        # a missing instant never wins, as `load`'s sort-and-keep-first would have it.
        hist = rows[stage]
        at = hist.where((initial != stage) | (hist <= created) | created.isna(), created)
        reached = at.notna()
        parts.append(
            pd.DataFrame({"record_id": rows["record_id"][reached], "stage": stage, "at": at[reached]})
        )
    stages = pd.concat(parts, ignore_index=True)
    visits = queries.parse_utc(pd.DataFrame(columns=["actor", "at"]), "at")
    acts = acts.assign(activity_id=None, owner_id=None)
    return ReportData(leads, stages, acts, users, clocks, visits, left_counts_as)


def _previous_range_panel(
    engine: sa.Engine,
    f: Filters,
    sla_id: str,
    campaign_field: str = "Campaign__c",
    left_counts_as: str = "met",
) -> dict:
    """Scorecards per rep and team beside the team / overall average, the weekly trend, the funnel
    and rejection reasons, for the filtered range (clocks judged as of the range's end)."""
    p = f.period
    data = _previous_range_data(engine, f, sla_id, campaign_field, left_counts_as)
    c = m.judged_clocks(data, p)
    figures: dict[str, tuple[str, ...]] = {}
    overall = m.compliance(c)
    ov = overall.iloc[0] if len(overall) else None
    figures["overall"] = ov["record_ids"] if ov is not None else ()
    figures["overall_violated"] = ov["violated_ids"] if ov is not None else ()
    reps = m.compliance(c, ["team", "rep"])
    teams = m.compliance(c, "team")
    # The page shows only the median of `m.first_touch` (its p90 and record ids are not needed here).
    touched = c[c["touched"]]
    touch_rep = touched.groupby("rep", sort=True)["hours"].median() if len(touched) else None
    touch_team = touched.groupby("team", sort=True)["hours"].median() if len(touched) else None
    team_comp = teams.set_index("team")["compliance"]
    rep_rows = []
    for row in reps.itertuples():
        figures[f"rep:{row.rep}"] = row.record_ids
        figures[f"rep_violated:{row.rep}"] = row.violated_ids
        rep_rows.append(
            {
                "team": row.team,
                "rep": row.rep,
                "decided": row.decided,
                "met": row.met,
                "violated": row.violated,
                "compliance": row.compliance,
                "team_compliance": team_comp.get(row.team),
                "median_hours": touch_rep.get(row.rep) if touch_rep is not None else None,
            }
        )
    team_rows = []
    for row in teams.itertuples():
        figures[f"team:{row.team}"] = row.record_ids
        figures[f"team_violated:{row.team}"] = row.violated_ids
        team_rows.append(
            {
                "team": row.team,
                "decided": row.decided,
                "violated": row.violated,
                "compliance": row.compliance,
                "overall": ov["compliance"] if ov is not None else None,
                "median_hours": touch_team.get(row.team) if touch_team is not None else None,
            }
        )
    local = c["clock_start"].dt.tz_convert(f.timezone)
    c["week"] = (
        (local.dt.normalize() - pd.to_timedelta(local.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
        if len(c)
        else pd.Series([], dtype=object)
    )
    trend = (
        m.compliance(c, "week")
        if len(c)
        else pd.DataFrame(columns=["week", "decided", "violated", "compliance"])
    )
    for row in trend.itertuples():
        figures[f"week:{row.week}"] = row.record_ids
        figures[f"week_violated:{row.week}"] = row.violated_ids
    coh = fn.cohort(data, p)
    fun = fn.funnel(coh)
    for row in fun.itertuples():
        figures[f"funnel:{row.stage}"] = row.record_ids
    reasons = fn.rejection_reasons(coh)
    for row in reasons.itertuples():
        figures[f"reason:{row.rejection_reason}"] = row.record_ids
    return {
        "overall": {
            "decided": int(ov["decided"]) if ov is not None else 0,
            "violated": int(ov["violated"]) if ov is not None else 0,
            "compliance": ov["compliance"] if ov is not None else None,
        },
        "reps": rep_rows,
        "teams": team_rows,
        "trend": queries.plain_rows(trend[["week", "decided", "violated", "compliance"]]),
        "funnel": queries.plain_rows(fun.drop(columns="record_ids")),
        "reasons": queries.plain_rows(reasons.drop(columns="record_ids")),
        "figures": figures,
        "period": p,
    }


def _lead(
    b: Builder,
    record_id: str,
    *,
    status: str,
    created: dt.datetime,
    changes: list[tuple[str | None, str, dt.datetime]],
    owner: str | None = "005R00000000000000",
    source: str = "Web",
    reason: str | None = None,
    deleted: bool = False,
) -> None:
    """A lead with exactly these Status changes (old, new, at) - including none, and first changes
    from a status the lead was created with, which `Builder.lead` never writes."""
    b.leads.append(
        {
            "object_type": "Lead",
            "record_id": record_id,
            "name": record_id,
            "company": "Edge",
            "status": status,
            "owner_id": owner,
            "lead_source": source,
            "lead_type": "Inbound",
            "account_tier": "SMB",
            "is_converted": False,
            "rejection_reason": reason,
            "created_at": created,
            "modified_at": created,
            "is_deleted": deleted,
            "fields": {},
            "synced_at": created,
        }
    )
    for old, new, at in changes:
        b.history.append(
            {
                "history_id": f"E{len(b.history):08d}",
                "object_type": "Lead",
                "record_id": record_id,
                "field": "Status",
                "old_value": old,
                "new_value": new,
                "changed_by": owner,
                "changed_at": at,
            }
        )


def varied_org() -> Builder:
    """`generate`'s org (three teams, every fate, clocks in every state, a DST change on
    2026-11-01 inside the ranges) plus leads and clocks at the edges of the stage and clock rules."""
    b = generate(900, days=90)
    rep = "005R00000000000000"
    _lead(
        b,
        "00QE01",
        status="SAL",
        created=t("2026-11-03 10:00"),  # created as MQL: no MQL row
        changes=[("MQL", "SAL", t("2026-11-03 12:00"))],
    )
    _lead(b, "00QE02", status="MQL", created=t("2026-11-04 10:00"), changes=[])  # never changed
    _lead(
        b,
        "00QE03",
        status="SAL",
        created=t("2026-11-05 10:00"),  # created as Working, MQL later
        changes=[("Working", "MQL", t("2026-11-06 10:00")), ("MQL", "SAL", t("2026-11-06 11:00"))],
    )
    _lead(
        b,
        "00QE04",
        status="MQL",
        created=t("2026-11-07 10:00"),  # created as MQL, MQL row later too
        changes=[("MQL", "Nurture", t("2026-11-08 10:00")), ("Nurture", "MQL", t("2026-11-20 10:00"))],
    )
    _lead(
        b,
        "00QE05",
        status="Unqualified",
        created=t("2026-11-09 10:00"),
        reason="Duplicate",
        deleted=True,
        changes=[(None, "MQL", t("2026-11-09 10:00")), ("MQL", "Unqualified", t("2026-11-10 09:00"))],
    )
    _lead(
        b,
        "00QE06",
        status="Recycled",
        created=t("2026-11-11 10:00"),
        reason=None,
        source="Chat",
        changes=[
            (None, "MQL", t("2026-11-11 10:00")),
            ("MQL", "Recycled", t("2026-11-12 10:00")),
            ("Recycled", "MQL", t("2026-11-25 10:00")),
        ],
    )
    _lead(
        b,
        "00QE07",
        status="Converted",
        created=t("2026-10-20 10:00"),
        owner=None,  # MQL before, SQL in range
        changes=[
            (None, "MQL", t("2026-10-20 10:00")),
            ("MQL", "Qualified", t("2026-11-13 10:00")),
            ("Qualified", "Converted", t("2026-11-14 10:00")),
        ],
    )
    _lead(
        b,
        "00QE08",
        status="MQL",
        created=t("2026-11-15 10:00"),
        owner="005X00000000000000",  # unknown owner
        changes=[(None, "MQL", t("2026-11-15 10:00"))],
    )
    b.clock(
        "00QE01",
        t("2026-11-03 13:00"),
        target_h=4,
        elapsed_h=2,
        owner=rep,
        team=None,  # the owner's team
        stopped_at=t("2026-11-03 15:00"),
    )
    b.clock("00QE02", t("2026-11-04 13:00"), target_h=4, elapsed_h=3, owner=None, team=None)  # no owner, open
    b.clock(
        "00QE08",
        t("2026-11-15 13:00"),
        target_h=4,
        elapsed_h=5,
        owner="005X00000000000000",
        team="ghosts",
        stopped_at=t("2026-11-30 13:00"),
        breached_at=t("2026-11-15 17:00"),
    )  # stopped after some ranges end
    b.clock(
        "00QE03",
        t("2026-11-06 12:00"),
        target_h=4,
        elapsed_h=1,
        owner=rep,
        team="sdr_east",
        stopped_at=t("2026-11-06 13:00"),
    )
    b.clock(
        "00QE03",
        t("2026-11-06 18:00"),
        target_h=4,
        elapsed_h=6,
        owner=rep,
        team="sdr_east",  # 2nd clock
        breached_at=t("2026-11-16 22:00"),
    )
    # Clocks ended by the lead leaving SAL (handed on): in time, late, and after some ranges end.
    b.clock(
        "00QE07",
        t("2026-11-12 13:00"),
        target_h=4,
        elapsed_h=1,
        owner=rep,
        team="sdr_east",
        stopped_at=t("2026-11-13 10:00"),
        handed_on=True,
    )
    b.clock(
        "00QE04",
        t("2026-11-07 13:00"),
        target_h=4,
        elapsed_h=6,
        owner=rep,
        team="sdr_east",
        stopped_at=t("2026-11-08 10:00"),
        breached_at=t("2026-11-07 17:00"),
        handed_on=True,
    )
    b.clock(
        "00QE06",
        t("2026-11-14 13:00"),
        target_h=8,
        elapsed_h=2,
        owner=rep,
        team="sdr_east",
        stopped_at=t("2026-11-18 10:00"),
        handed_on=True,
    )
    # Breaches the escalation handed to a manager: the rep who let them breach stays accountable
    # (rep and team by accountable_owner_id / accountable_team, the latter empty once: that rep's team).
    manager = "005M00000000000000"
    _lead(
        b,
        "00QE09",
        status="SAL",
        created=t("2026-11-17 10:00"),
        owner=manager,
        changes=[(None, "MQL", t("2026-11-17 10:00"))],
    )
    _lead(
        b,
        "00QE10",
        status="SAL",
        created=t("2026-11-18 10:00"),
        owner=manager,
        changes=[(None, "MQL", t("2026-11-18 10:00"))],
    )
    b.clock(
        "00QE09",
        t("2026-11-17 13:00"),
        target_h=4,
        elapsed_h=9,
        owner=manager,
        team="sdr_managers",
        accountable=rep,
        accountable_team="sdr_east",
        breached_at=t("2026-11-17 17:00"),
    )
    b.clock(
        "00QE10",
        t("2026-11-18 13:00"),
        target_h=4,
        elapsed_h=7,
        owner=manager,
        team="sdr_managers",
        accountable=rep,
        accountable_team=None,
        stopped_at=t("2026-11-19 13:00"),
        breached_at=t("2026-11-18 17:00"),
    )
    return b


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def _assert_rows_equal(new: list[dict], old: list[dict], what: str) -> None:
    assert len(new) == len(old), what
    for n, o in zip(new, old, strict=True):
        assert n.keys() == o.keys(), what
        for k in n:
            assert _same(n[k], o[k]), (what, k, n, o)


@pytest.mark.parametrize(
    "filters",
    [
        {},  # the default 30 days ending today
        {"start": "2026-10-15", "end": "2026-11-20"},  # over the DST change
        {"start": "2026-11-03", "end": "2026-11-16"},
        {"start": "2026-11-04", "end": "2026-11-04"},  # one day
        {"start": "2026-10-01", "end": "2026-12-31", "lead_source": "Chat"},
        {"start": "2026-10-01", "end": "2026-12-31", "owner": "005R00000000000000"},
        {"start": "2026-10-01", "end": "2026-12-31", "team": "sdr_west"},
        {"start": "2026-08-01", "end": "2026-08-31"},  # nothing in range
    ],
)
def test_range_figures_equal_the_previous_pandas_computation(store, filters):
    varied_org().write(store)
    now = t("2026-12-05 15:00")
    f = parse_filters(now, "America/New_York", **filters)
    for left_counts_as in ("met", "excluded"):
        new = queries.range_panel(store, f, "sales_touch", left_counts_as)
        old = _previous_range_panel(store, f, "sales_touch", left_counts_as=left_counts_as)
        assert new["figures"] == old["figures"]
        assert new["figures"] or filters.get("start") == "2026-08-01"
        for key in ("reps", "teams", "trend", "funnel", "reasons"):
            _assert_rows_equal(new[key], old[key], key)
        assert {k: v for k, v in new["overall"].items()} == pytest.approx(old["overall"], nan_ok=True)


def test_a_handed_on_clock_is_met_or_excluded_as_the_sla_says_and_never_a_first_touch(store):
    # Rita touched L1 after 1 h (met); L2 left SAL for SQL untouched after 2 h (handed on in time);
    # L3 left SAL after its target (handed on late: a breach either way).
    b = Builder().user("R1", "Rita", "A")
    for lead in ("L1", "L2", "L3"):
        b.lead(lead, owner="R1", stages={"MQL": t("2026-11-02 09:00")})
    b.clock(
        "L1",
        t("2026-11-02 15:00"),
        target_h=4,
        elapsed_h=1,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-02 16:00"),
    )
    b.clock(
        "L2",
        t("2026-11-03 15:00"),
        target_h=4,
        elapsed_h=2,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-03 17:00"),
        handed_on=True,
    )
    b.clock(
        "L3",
        t("2026-11-04 15:00"),
        target_h=4,
        elapsed_h=6,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-05 12:00"),
        breached_at=t("2026-11-04 19:00"),
        handed_on=True,
    )
    b.write(store)
    f = parse_filters(t("2026-11-10 15:00"), "America/New_York", start="2026-11-01", end="2026-11-09")
    counted = queries.range_panel(store, f, "sales_touch", "met")
    assert counted["overall"] == {"decided": 3, "violated": 1, "compliance": pytest.approx(2 / 3)}
    assert counted["figures"]["overall"] == ("L1", "L2", "L3")
    excluded = queries.range_panel(store, f, "sales_touch", "excluded")
    assert excluded["overall"] == {"decided": 2, "violated": 1, "compliance": 0.5}
    assert excluded["figures"]["overall"] == ("L1", "L3")
    for panel in (counted, excluded):  # the first touch is L1's hour, not L2's two hours to SQL
        assert [(r["rep"], r["median_hours"]) for r in panel["reps"]] == [("Rita", 1.0)]
    # The reports judge them the same way.
    from leadsla.reports.data import load

    judged = m.judged_clocks(load(store, "sales_touch", left_counts_as="excluded"), f.period)
    assert dict(zip(judged["record_id"], judged["outcome"], strict=True)) == {
        "L1": "met",
        "L2": "excluded",
        "L3": "violated",
    }
    assert judged["touched"].tolist() == [True, False, False]
    assert m.compliance(judged)[["decided", "met", "violated"]].iloc[0].tolist() == [2, 1, 1]
    assert m.first_touch(judged)[["touched", "median_hours"]].iloc[0].tolist() == [1, 1.0]


def test_the_rep_table_charges_the_rep_who_let_a_lead_breach_not_the_manager_it_went_to(store):
    # Rita's L1 breached and the escalation reassigned it to the manager Mo (the clock's owner_id
    # is Mo now); Mo's own L2 was met. The scorecard: Rita 1 decided 1 violated, Mo 1 decided 0
    # violated; filtering by owner Rita or team A finds Rita's breach.
    b = Builder().user("R1", "Rita", "A").user("M1", "Mo", "M", role="SDR Manager")
    b.lead("L1", owner="M1", stages={"MQL": t("2026-11-02 09:00")})
    b.lead("L2", owner="M1", stages={"MQL": t("2026-11-03 09:00")})
    b.clock(
        "L1",
        t("2026-11-02 15:00"),
        target_h=4,
        elapsed_h=5,
        owner="M1",
        team="M",
        accountable="R1",
        accountable_team="A",
        breached_at=t("2026-11-02 19:00"),
    )
    b.clock(
        "L2",
        t("2026-11-03 15:00"),
        target_h=4,
        elapsed_h=1,
        owner="M1",
        team="M",
        stopped_at=t("2026-11-03 16:00"),
    )
    b.write(store)
    now = t("2026-11-10 15:00")
    rng = queries.range_panel(
        store, parse_filters(now, "America/New_York", start="2026-11-01", end="2026-11-09"), "sales_touch"
    )
    reps = {r["rep"]: (r["team"], r["decided"], r["violated"]) for r in rng["reps"]}
    assert reps == {"Rita": ("A", 1, 1), "Mo": ("M", 1, 0)}
    assert rng["figures"]["rep_violated:Rita"] == ("L1",) and rng["figures"]["rep_violated:Mo"] == ()
    assert {r["team"]: r["violated"] for r in rng["teams"]} == {"A": 1, "M": 0}
    for narrowed in ({"owner": "R1"}, {"team": "A"}):
        f = parse_filters(now, "America/New_York", start="2026-11-01", end="2026-11-09", **narrowed)
        assert [(r["rep"], r["violated"]) for r in queries.range_panel(store, f, "sales_touch")["reps"]] == [
            ("Rita", 1)
        ]


def test_war_room_reads_do_not_hold_the_write_lock(tmp_path):
    """SQLite: a War Room read leaves the store writable (the CRM sync is not held up by a page)."""
    import sqlite3

    from leadsla.store import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with queries.read_only_connection(engine) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(s.records)).scalar() == 0
        writer = sqlite3.connect(tmp_path / "store.db", timeout=0.1)
        writer.execute("BEGIN IMMEDIATE")  # "database is locked" if the read had taken the write lock
        writer.rollback()
        writer.close()
    with engine.connect() as conn:  # every other connection still writes under the write lock
        conn.execute(sa.select(1))
        assert conn.connection.dbapi_connection.in_transaction


def test_a_deleted_lead_counts_nowhere_filtered_or_not(store):
    """The previous code dropped deleted leads only when a filter was set; the reports always do."""
    varied_org().write(store)
    now = t("2026-12-05 15:00")
    for filters in (
        {"start": "2026-10-01", "end": "2026-12-31"},
        {"start": "2026-10-01", "end": "2026-12-31", "owner": "005R00000000000000"},
    ):
        panel = queries.range_panel(store, parse_filters(now, "America/New_York", **filters), "sales_touch")
        ids = {rid for fig in panel["figures"].values() for rid in fig}
        assert ids and "00QE05" not in ids, filters  # funnel:* and reason:* figures hold the cohort's ids
