"""Report metrics on a hand-checked org: every expected number below is worked out in the comments."""

from __future__ import annotations

import math

import pytest

from leadsla.reports import funnel as fn
from leadsla.reports import metrics as m
from leadsla.reports.config import Revenue
from leadsla.reports.period import parse
from tests.reports_data import Builder, t, through_store  # noqa: F401 - fixture

NOV = parse("month", "2026-11", "UTC")


@pytest.fixture
def data(through_store):  # noqa: F811 - fixture
    b = Builder().user("R1", "Rita", "A").user("R2", "Rob", "A").user("R3", "Sam", "B")
    # Clocks, target 4 h. L1 met (1 h), L2 met late (6 h), L3 breached untouched, L4 met (2 h),
    # L5 stops after the month (open as of Nov 30), L6 started in October (out of scope).
    b.clock(
        "L1",
        t("2026-11-02 10:00"),
        target_h=4,
        elapsed_h=1,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-02 11:00"),
    )
    b.clock(
        "L2",
        t("2026-11-03 10:00"),
        target_h=4,
        elapsed_h=6,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-03 18:00"),
        breached_at=t("2026-11-03 14:00"),
    )
    b.clock(
        "L3",
        t("2026-11-04 10:00"),
        target_h=4,
        elapsed_h=3.6,
        owner="R2",
        team="A",
        breached_at=t("2026-11-04 14:00"),
    )
    b.clock(
        "L4",
        t("2026-11-05 10:00"),
        target_h=4,
        elapsed_h=2,
        owner="R3",
        team="B",
        stopped_at=t("2026-11-05 12:00"),
    )
    b.clock(
        "L5",
        t("2026-11-30 20:00"),
        target_h=4,
        elapsed_h=3,
        owner="R3",
        team="B",
        stopped_at=t("2026-12-01 10:00"),
    )
    b.clock(
        "L6",
        t("2026-10-30 10:00"),
        target_h=4,
        elapsed_h=9,
        owner="R3",
        team="B",
        stopped_at=t("2026-10-31 10:00"),
        breached_at=t("2026-10-30 14:00"),
    )
    # Funnel cohort: MQL in November = L1, L2, L3, L4, L5, L7 (L6 became MQL in October).
    b.lead(
        "L1",
        owner="R1",
        source="Web",
        campaign="C1",
        stages={
            "MQL": t("2026-11-01 00:00"),
            "SAL": t("2026-11-02 00:00"),
            "SQL": t("2026-11-04 00:00"),
            "Opportunity": t("2026-11-08 00:00"),
        },
    )
    b.lead(
        "L2",
        owner="R1",
        source="Web",
        campaign="C1",
        stages={"MQL": t("2026-11-01 00:00"), "SAL": t("2026-11-03 00:00"), "SQL": t("2026-11-10 00:00")},
    )
    b.lead(
        "L3",
        owner="R2",
        source="Webinar",
        campaign="C2",
        stages={"MQL": t("2026-11-02 00:00"), "SAL": t("2026-11-04 00:00")},
    )
    b.lead(
        "L4",
        owner="R3",
        source="Webinar",
        campaign="C2",
        reason="No budget",
        stages={"MQL": t("2026-11-03 00:00"), "Recycled": t("2026-11-05 00:00")},
    )
    b.lead(
        "L5",
        owner="R3",
        source="Web",
        reason="Wrong contact",
        stages={"MQL": t("2026-11-28 00:00"), "Disqualified": t("2026-11-30 00:00")},
    )
    b.lead(
        "L6", owner="R3", source="Web", stages={"MQL": t("2026-10-29 00:00"), "SAL": t("2026-10-30 10:00")}
    )
    b.lead(
        "L7",
        owner="R3",
        source="Webinar",
        reason="No budget",
        stages={"MQL": t("2026-11-10 00:00"), "Recycled": t("2026-11-12 00:00")},
    )
    b.activity("L1", t("2026-11-02 11:00")).activity("L2", t("2026-11-03 18:00"))
    b.activity("L4", t("2026-11-05 12:00")).activity("L7", t("2026-11-20 00:00"))
    return through_store(b)


def test_compliance_overall_and_by_team(data):
    c = m.judged_clocks(data, NOV)
    assert sorted(c["record_id"]) == ["L1", "L2", "L3", "L4", "L5"]
    assert dict(zip(c["record_id"], c["outcome"], strict=False)) == {
        "L1": "met",
        "L2": "violated",
        "L3": "violated",
        "L4": "met",
        "L5": "open",
    }
    overall = m.compliance(c).iloc[0]
    assert (overall["decided"], overall["met"], overall["violated"]) == (4, 2, 2)  # L5 still open on Nov 30
    assert overall["compliance"] == 0.5
    assert overall["violated_ids"] == ("L2", "L3")
    team = m.compliance(c, "team").set_index("team")
    assert team.loc["A", "compliance"] == pytest.approx(1 / 3)  # L1 met; L2, L3 violated
    assert team.loc["A", "violated_ids"] == ("L2", "L3")
    assert team.loc["B", "compliance"] == 1.0 and team.loc["B", "record_ids"] == ("L4",)
    rep = m.compliance(c, "rep").set_index("rep")
    assert rep.loc["Rita", "compliance"] == 0.5 and rep.loc["Rob", "compliance"] == 0.0
    src = m.compliance(c, "lead_source").set_index("lead_source")
    assert src.loc["Web", "compliance"] == 0.5 and src.loc["Webinar", "compliance"] == 0.5  # L1/L2, L3/L4


def test_first_touch_in_business_hours(data):
    ft = m.first_touch(m.judged_clocks(data, NOV)).iloc[0]
    # Touched before the end: L1 1 h, L2 6 h, L4 2 h. p90 of [1, 2, 6] interpolates 2 + 0.8 * 4.
    assert ft["touched"] == 3 and ft["median_hours"] == 2.0
    assert ft["p90_hours"] == pytest.approx(5.2)
    assert ft["mean_hours"] == 3.0 and ft["target_hours"] == 4.0 and ft["vs_target"] == 0.75
    assert ft["record_ids"] == ("L1", "L2", "L4")


def test_revenue_affected_prints_its_assumption(data):
    rev = m.revenue_affected(m.judged_clocks(data, NOV), Revenue())
    # L2: kept 60% at the 4 h target, 40% at 6 h -> 0.20; L3 untouched -> worst 25% -> 0.35.
    # (0.20 + 0.35) x $25,000 x 10% = $1,375.
    assert rev["amount"] == 1375.0 and rev["record_ids"] == ("L2", "L3")
    assert "$25,000" in rev["assumption"] and "10%" in rev["assumption"]


def test_funnel_conversion_and_cycle_times(data):
    c = fn.cohort(data, NOV)
    assert sorted(c["record_id"]) == ["L1", "L2", "L3", "L4", "L5", "L7"]
    f = fn.funnel(c).set_index("stage")
    assert list(f["leads"]) == [6, 3, 2, 1]
    assert f.loc["SAL", "from_previous"] == 0.5
    assert f.loc["SAL", "avg_days_from_previous"] == pytest.approx(5 / 3)  # 1, 2, 2 days
    assert f.loc["SQL", "from_previous"] == pytest.approx(2 / 3)
    assert f.loc["SQL", "avg_days_from_previous"] == 4.5  # 2 and 7 days
    assert (
        f.loc["Opportunity", "from_previous"] == 0.5 and f.loc["Opportunity", "avg_days_from_previous"] == 4.0
    )
    assert f.loc["SQL", "from_mql"] == pytest.approx(1 / 3)
    assert f.loc["Opportunity", "record_ids"] == ("L1",)
    assert math.isnan(f.loc["MQL", "from_previous"])


def test_rejections_acceptance_and_campaigns(data):
    c = fn.cohort(data, NOV)
    r = fn.rejection_reasons(c)
    assert list(r["rejection_reason"]) == ["No budget", "Wrong contact"]
    assert list(r["rejects"]) == [2, 1] and r.loc[0, "share"] == pytest.approx(2 / 3)
    assert r.loc[0, "record_ids"] == ("L4", "L7")
    assert fn.rejection_rate(c)["rate"] == 0.5
    src = fn.by_source(c).set_index("lead_source")
    assert src.loc["Web", "sal_acceptance"] == pytest.approx(2 / 3)  # L1, L2 of L1, L2, L5
    assert src.loc["Webinar", "sal_acceptance"] == pytest.approx(1 / 3)  # L3 of L3, L4, L7
    camp = fn.by_campaign(c)
    assert (
        camp.loc[0, "campaign"] == "C1" and camp.loc[0, "sql"] == 2 and camp.loc[0, "sql_ids"] == ("L1", "L2")
    )


def test_no_activity_and_leakage(data):
    c = fn.cohort(data, NOV)
    na = fn.no_activity(c)
    assert (na["leads"], na["mqls"], na["record_ids"]) == (2, 6, ("L3", "L5"))
    leak = fn.leakage(c, NOV, days=7)
    # Judged: MQL on or before Nov 24 (L5 is too recent). Leaked: L3 (never), L7 (first touch after 10 days).
    assert (leak["leaked"], leak["eligible"], leak["record_ids"]) == (2, 5, ("L3", "L7"))
    assert leak["share"] == 0.4


def test_weekly_trend_changes(data):
    w = m.weekly_trend(data, NOV, weeks=3)
    # Weeks (UTC, Monday start) ending with the one holding Nov 30: W47 (Nov 16), W48 (Nov 23), W49 (Nov 30).
    assert list(w["week"]) == ["2026-W47", "2026-W48", "2026-W49"]
    assert list(w["decided"]) == [0, 0, 0]  # L5 started Nov 30 but is open at the end
    w = m.weekly_trend(data, NOV, weeks=6)
    assert w.loc[1, "week"] == "2026-W45" and w.loc[1, "decided"] == 4 and w.loc[1, "compliance"] == 0.5
    assert w.loc[0, "week"] == "2026-W44" and w.loc[0, "compliance"] == 0.0  # L6 only (Oct 30)
    assert w.loc[1, "change_points"] == pytest.approx(50.0)


def test_a_breach_escalated_to_the_manager_counts_against_the_rep_who_let_it_breach(through_store):  # noqa: F811
    # L1 breached under Rita (team A) at 14:00 and the breach escalation handed it to the manager
    # Mo (team M), who touched it later: met late, violated - Rita's violation, not Mo's. L2: Mo's own
    # lead, met. L3: Rita's, met.
    b = Builder().user("R1", "Rita", "A").user("M1", "Mo", "M", role="SDR Manager")
    b.clock(
        "L1",
        t("2026-11-02 10:00"),
        target_h=4,
        elapsed_h=6,
        owner="M1",
        team="M",
        accountable="R1",
        accountable_team="A",
        stopped_at=t("2026-11-02 18:00"),
        breached_at=t("2026-11-02 14:00"),
    )
    b.clock(
        "L2",
        t("2026-11-03 10:00"),
        target_h=4,
        elapsed_h=1,
        owner="M1",
        team="M",
        stopped_at=t("2026-11-03 11:00"),
    )
    b.clock(
        "L3",
        t("2026-11-04 10:00"),
        target_h=4,
        elapsed_h=2,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-04 12:00"),
    )
    for lead in ("L1", "L2", "L3"):
        b.lead(lead, owner="M1" if lead != "L3" else "R1", stages={"MQL": t("2026-11-01 00:00")})
    c = m.judged_clocks(through_store(b), NOV)
    reps = m.compliance(c, ["team", "rep"]).set_index("rep")
    assert (reps.loc["Rita", "team"], reps.loc["Rita", "decided"], reps.loc["Rita", "violated"]) == (
        "A",
        2,
        1,
    )
    assert reps.loc["Rita", "violated_ids"] == ("L1",)
    assert (reps.loc["Mo", "team"], reps.loc["Mo", "decided"], reps.loc["Mo", "violated"]) == ("M", 1, 0)
    teams = m.compliance(c, "team").set_index("team")
    assert (teams.loc["A", "violated"], teams.loc["M", "violated"]) == (1, 0)
    # Who has the lead now is still the manager.
    assert c.set_index("record_id").loc["L1", "owner_id"] == "M1"


def test_a_handed_on_clock_is_no_first_touch_and_counts_as_the_sla_says(through_store):  # noqa: F811
    import dataclasses

    # Target 4 h. L1 touched after 1 h (met); L2 left SAL for SQL untouched after 3 h (handed on);
    # L3 left SAL after 6 h, past its target (handed on late: violated either way).
    b = Builder().user("R1", "Rita", "A")
    b.clock(
        "L1",
        t("2026-11-02 10:00"),
        target_h=4,
        elapsed_h=1,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-02 11:00"),
    )
    b.clock(
        "L2",
        t("2026-11-03 10:00"),
        target_h=4,
        elapsed_h=3,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-03 13:00"),
        handed_on=True,
    )
    b.clock(
        "L3",
        t("2026-11-04 10:00"),
        target_h=4,
        elapsed_h=6,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-04 16:00"),
        breached_at=t("2026-11-04 14:00"),
        handed_on=True,
    )
    data = through_store(b)
    assert (
        data.left_counts_as == "met"
    )  # the loader's default: the seeds' "a lead worked out of SAL was worked"
    met = m.judged_clocks(data, NOV)
    assert met["outcome"].tolist() == ["met", "met", "violated"]
    assert met["touched"].tolist() == [True, False, False]
    assert m.compliance(met)[["decided", "met", "violated"]].iloc[0].tolist() == [3, 2, 1]
    # First touch: only L1's hour (a hand-on is not a touch; before, L2's 3 h and L3's 6 h counted).
    assert m.first_touch(met)[["touched", "median_hours"]].iloc[0].tolist() == [1, 1.0]

    excluded = m.judged_clocks(dataclasses.replace(data, left_counts_as="excluded"), NOV)
    assert excluded["outcome"].tolist() == ["met", "excluded", "violated"]
    row = m.compliance(excluded).iloc[0]
    assert (row["decided"], row["met"], row["violated"], row["record_ids"]) == (2, 1, 1, ("L1", "L3"))


def test_the_reports_take_left_counts_as_from_the_policy() -> None:
    import yaml

    from leadsla.paths import config_dir
    from leadsla.policy import policy_from_dict
    from leadsla.reports.run import left_counts_as

    assert left_counts_as("sales_touch") == "met"  # the active (shipped) policy
    raw = yaml.safe_load((config_dir() / "sla_policy.yaml").read_text())
    next(s for s in raw["slas"] if s["id"] == "sales_touch")["left_counts_as"] = "excluded"
    assert left_counts_as("sales_touch", policy_from_dict(raw)) == "excluded"
