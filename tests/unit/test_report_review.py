"""Monthly and quarterly review logic on hand-built orgs whose verdicts are worked out below:
the five red flags, the refinement triggers, systemic vs individual root causes, and the
quarterly threshold what-if recommendation."""

from __future__ import annotations

import datetime as dt

import pytest

from leadsla.reports import review
from leadsla.reports.config import load_report_config
from leadsla.reports.period import parse
from tests.reports_data import Builder, t, through_store  # noqa: F401 - fixture

NOV = parse("month", "2026-11", "UTC")
H = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def cfg():
    return load_report_config()


def _flags(flags) -> dict:
    return {f.check: f for f in flags}


def test_red_flags_raised_and_not(cfg, through_store):  # noqa: F811 - fixture
    b = (
        Builder()
        .user("R1", "Rita", "A")
        .user("R2", "Rob", "A")
        .user("R3", "Sam", "B")
        .user("M1", "Vera VP", "leadership", role="VP Sales")
        .user("M2", "Max", "A", role="SDR Manager")
    )
    # Team A: L1 met 1 h, L2 met late after 17 h, L3 breached untouched -> 1 of 3 = 33% (< 80%: raised).
    # Team B: L4 met 2 h -> 100%. Inbound mean response (1 + 17) / 2 = 9 h = 2.25x the 4 h target (> 2x).
    b.lead(
        "L1",
        owner="R1",
        lead_type="Inbound",
        stages={"MQL": t("2026-11-02 08:00"), "SAL": t("2026-11-02 09:00")},
    )
    b.lead(
        "L2",
        owner="R1",
        lead_type="Inbound",
        stages={"MQL": t("2026-11-03 08:00"), "SAL": t("2026-11-03 09:00")},
    )
    b.lead(
        "L3",
        owner="R2",
        lead_type="Inbound",
        stages={"MQL": t("2026-11-04 08:00"), "SAL": t("2026-11-04 09:00")},
    )
    b.lead(
        "L4",
        owner="R3",
        lead_type="Event",
        stages={"MQL": t("2026-11-05 08:00"), "SAL": t("2026-11-05 09:00")},
    )
    b.clock(
        "L1",
        t("2026-11-02 09:00"),
        target_h=4,
        elapsed_h=1,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-02 10:00"),
    )
    b.clock(
        "L2",
        t("2026-11-03 09:00"),
        target_h=4,
        elapsed_h=17,
        owner="R1",
        team="A",
        stopped_at=t("2026-11-04 09:00"),
        breached_at=t("2026-11-03 13:00"),
    )
    b.clock(
        "L3",
        t("2026-11-04 09:00"),
        target_h=4,
        elapsed_h=3.9,
        owner="R2",
        team="A",
        breached_at=t("2026-11-04 13:00"),
    )
    b.clock(
        "L4",
        t("2026-11-05 09:00"),
        target_h=4,
        elapsed_h=2,
        owner="R3",
        team="B",
        stopped_at=t("2026-11-05 11:00"),
    )
    # Rejects: No budget 3 of 4 = 75% (> 40%: raised).
    for lid, reason in (
        ("L5", "No budget"),
        ("L6", "No budget"),
        ("L7", "No budget"),
        ("L8", "Wrong contact"),
    ):
        b.lead(
            lid,
            owner="R3",
            reason=reason,
            stages={"MQL": t("2026-11-06 08:00"), "Recycled": t("2026-11-07 08:00")},
        )
    # Activity on L1, L2, L4 only: 5 of 8 MQLs untouched = 62% (> 10%: raised).
    b.activity("L1", t("2026-11-02 10:00")).activity("L2", t("2026-11-04 09:00")).activity(
        "L4", t("2026-11-05 11:00")
    )
    # Leaders Vera (VP) and Max (Manager); Vera opened the War Room in November: 1 of 2 = 50% (not < 50%).
    b.event("war_room_visit", t("2026-11-10 12:00"), actor="Vera VP")
    b.event("war_room_visit", t("2026-10-10 12:00"), actor="M2")  # October: not this month
    flags = _flags(review.red_flags(through_store(b), NOV, cfg))
    team = flags["Team below compliance target"]
    assert team.raised and team.record_ids == ("L2", "L3") and team.value == "A 33%; B 100%"
    slow = flags["Average response above target for a lead type"]
    assert slow.raised and slow.record_ids == ("L1", "L2") and "Inbound 9.0 h vs 4.0 h" in slow.value
    reason = flags["Single rejection reason dominates"]
    assert (
        reason.raised
        and reason.record_ids == ("L5", "L6", "L7")
        and reason.value == "No budget 75% of 4 rejects"
    )
    idle = flags["MQLs with no sales activity"]
    assert idle.raised and idle.record_ids == ("L3", "L5", "L6", "L7", "L8") and idle.value == "5 of 8 (62%)"
    usage = flags["Leaders opening the War Room"]
    assert not usage.raised and usage.value == "1 of 2 (50%)"
    # Without Vera's visit only Max's October one remains: 0 of 2, raised.
    b.audit = [a for a in b.audit if a["actor"] != "Vera VP"]
    assert _flags(review.red_flags(through_store(b), NOV, cfg))["Leaders opening the War Room"].raised


def _month(
    b: Builder, tag: str, day0: dt.datetime, *, mqls: int, sql: int, rejected: int, met: int, touched: int
) -> None:
    """`mqls` leads on consecutive hours from day0: the first `sql` reach SQL, the next `rejected` are
    recycled; clocks: the first `met` met in 1 h, the rest breached untouched; the first `touched`
    get an activity an hour after MQL (the others leak)."""
    for i in range(mqls):
        lid, mql = f"{tag}{i:02d}", day0 + i * H
        stages = {"MQL": mql, "SAL": mql + H}
        if i < sql:
            stages["SQL"] = mql + 5 * H
        elif i < sql + rejected:
            stages = {"MQL": mql, "Recycled": mql + 5 * H}
        b.lead(lid, owner="R1", reason="No budget" if "Recycled" in stages else None, stages=stages)
        if i < met:
            b.clock(lid, mql + H, target_h=4, elapsed_h=1, owner="R1", team="A", stopped_at=mql + 2 * H)
        else:
            b.clock(lid, mql + H, target_h=4, elapsed_h=3.9, owner="R1", team="A", breached_at=mql + 5 * H)
        if i < touched:
            b.activity(lid, mql + H, "R1")


def test_refinement_triggers(cfg, through_store):  # noqa: F811 - fixture
    cfg = cfg.model_copy(update={"baseline_month": "2026-09"})
    bad = Builder().user("R1", "Rita", "A")
    _month(
        bad, "S", t("2026-09-02 08:00"), mqls=10, sql=8, rejected=1, met=10, touched=10
    )  # baseline: 80% SQL
    _month(bad, "O", t("2026-10-02 08:00"), mqls=10, sql=1, rejected=6, met=3, touched=3)
    _month(bad, "N", t("2026-11-02 08:00"), mqls=10, sql=1, rejected=6, met=3, touched=3)
    got = {f.check: f.raised for f in review.refinement_triggers(through_store(bad), NOV, cfg)}
    # Compliance 30% both months (< 70%); MQL-to-SQL 80% -> 10% (-70 points); leakage 7 of 10;
    # rejection rate 60% both months (> 50%).
    assert got == {
        "Compliance below target two months running": True,
        "MQL-to-SQL conversion down from baseline": True,
        "Lead leakage": True,
        "Rejection rate high two months running": True,
    }
    good = Builder().user("R1", "Rita", "A")
    _month(good, "S", t("2026-09-02 08:00"), mqls=10, sql=8, rejected=1, met=10, touched=10)
    _month(good, "O", t("2026-10-02 08:00"), mqls=10, sql=8, rejected=1, met=10, touched=10)
    _month(
        good, "N", t("2026-11-02 08:00"), mqls=10, sql=8, rejected=1, met=3, touched=10
    )  # one bad month only
    flags = {f.check: f for f in review.refinement_triggers(through_store(good), NOV, cfg)}
    assert {k: f.raised for k, f in flags.items()} == {
        "Compliance below target two months running": False,
        "MQL-to-SQL conversion down from baseline": False,
        "Lead leakage": False,
        "Rejection rate high two months running": False,
    }
    assert flags["Compliance below target two months running"].value == "2026-10 100%, 2026-11 30%"


def test_a_month_to_date_does_not_judge_conversion_against_the_baseline(cfg, through_store):  # noqa: F811
    cfg = cfg.model_copy(update={"baseline_month": "2026-09"})
    b = Builder().user("R1", "Rita", "A")
    _month(b, "S", t("2026-09-02 08:00"), mqls=10, sql=8, rejected=1, met=10, touched=10)  # baseline: 80% SQL
    _month(b, "N", t("2026-11-02 08:00"), mqls=10, sql=1, rejected=1, met=10, touched=10)  # young leads: 10%
    data = through_store(b)
    over = {f.check: f for f in review.refinement_triggers(data, NOV, cfg)}
    assert over["MQL-to-SQL conversion down from baseline"].raised  # a whole month: judged
    to_date = {f.check: f for f in review.refinement_triggers(data, NOV.to_date(t("2026-11-20 12:00")), cfg)}
    flag = to_date["MQL-to-SQL conversion down from baseline"]
    assert not flag.raised and "not judged until the month is over" in flag.value


def test_root_causes_separate_systemic_from_individual(through_store):  # noqa: F811 - fixture
    b = Builder()
    for uid, name, team in (
        ("W1", "Wes", "W"),
        ("W2", "Wyn", "W"),
        ("E1", "Eve", "E"),
        ("E2", "Eli", "E"),
        ("E3", "Ema", "E"),
    ):
        b.user(uid, name, team)
    n = 0

    def clock(owner: str, team: str, start: dt.datetime, late: bool) -> None:
        nonlocal n
        n += 1
        lid = f"C{n:03d}"
        b.lead(lid, owner=owner, stages={"MQL": start - H, "SAL": start})
        if late:  # touched after the breach, so the owner's open load stays normal
            b.clock(
                lid,
                start,
                target_h=4,
                elapsed_h=6,
                owner=owner,
                team=team,
                stopped_at=start + 6 * H,
                breached_at=start + 4 * H,
            )
        else:
            b.clock(lid, start, target_h=4, elapsed_h=1, owner=owner, team=team, stopped_at=start + H)

    # Team W misses on Monday mornings, both reps (3 each): systemic. Fine on Thursdays.
    for day in ("2026-11-02", "2026-11-09", "2026-11-16"):
        clock("W1", "W", t(f"{day} 09:00"), late=True)
        clock("W2", "W", t(f"{day} 10:00"), late=True)
    for day in ("2026-11-05", "2026-11-12", "2026-11-19"):
        clock("W1", "W", t(f"{day} 15:00"), late=False)
        clock("W2", "W", t(f"{day} 15:00"), late=False)
    # Team E: Eve misses all 6 (Tuesdays, alone in that slot), Eli and Ema meet 6 each on Wednesdays.
    for day in ("2026-11-03", "2026-11-10", "2026-11-17", "2026-11-24"):
        clock("E1", "E", t(f"{day} 09:00"), late=True)
    clock("E1", "E", t("2026-11-03 11:00"), late=True)
    clock("E1", "E", t("2026-11-10 11:00"), late=True)
    for day in ("2026-11-04", "2026-11-11", "2026-11-18"):
        for hour in (9, 13):
            clock("E2", "E", t(f"{day} {hour:02d}:00"), late=False)
            clock("E3", "E", t(f"{day} {hour + 1:02d}:00"), late=False)
    rc = review.root_causes(through_store(b), NOV)
    assert [(s["team"], s["weekday"], s["block"], s["decided"], s["reps"]) for s in rc["systemic"]] == [
        ("W", "Monday", "08:00-12:00", 6, 2)
    ]
    assert [(i["rep"], i["team"]) for i in rc["individual"]] == [("Eve", "E")]
    assert rc["individual"][0]["compliance"] == 0 and rc["individual"][0]["team_compliance"] == pytest.approx(
        12 / 18
    )
    text = " ".join(rc["sentences"])
    assert (
        "Systemic (capacity): every W rep (2) missed the SLA on Mondays 08:00-12:00 (UTC) - 100% of 6" in text
    )
    assert "Individual: Eve met 0% of 6 leads against 67% for E" in text
    assert "Wes" not in text and "Wyn" not in text  # team-wide misses are not blamed on a rep


def test_what_if_recommends_tighten_or_loosen(cfg, through_store):  # noqa: F811 - fixture
    q4 = parse("quarter", "2026-Q4", "UTC")
    b = Builder().user("R1", "Rita", "A")
    for month, hours in (("10", 0.25), ("11", 0.75), ("12", 1.5)):  # all met under the 4 h target
        for i in range(10):
            start = t(f"2026-{month}-{i + 2:02d} 10:00")
            b.lead(f"M{month}{i}", owner="R1", stages={"MQL": start - H, "SAL": start})
            b.clock(
                f"M{month}{i}",
                start,
                target_h=4,
                elapsed_h=hours,
                owner="R1",
                team="A",
                stopped_at=start + dt.timedelta(hours=hours),
            )
    w = review.threshold_what_if(through_store(b), q4, cfg)
    assert w["recommendation"].startswith("tighten")
    targets = dict(zip(w["targets"]["target_hours"], w["targets"]["violations"], strict=True))
    assert targets == {
        0.5: 20,
        1: 10,
        2: 0,
        4: 0,
        8: 0,
        24: 0,
    }  # 0.75 h and 1.5 h exceed 0.5 h; 1.5 h exceeds 1 h
    for i in range(10):  # December: ten leads never touched -> 10 of 40 = 25% breached (> 20%)
        start = t(f"2026-12-{i + 14:02d} 10:00")
        b.lead(f"B{i}", owner="R1", stages={"MQL": start - H, "SAL": start})
        b.clock(f"B{i}", start, target_h=4, elapsed_h=3.9, owner="R1", team="A", breached_at=start + 4 * H)
    w = review.threshold_what_if(through_store(b), q4, cfg)
    assert w["recommendation"].startswith("loosen: 25% of clocks breached")
    targets = dict(zip(w["targets"]["target_hours"], w["targets"]["violations"], strict=True))
    assert targets[4] == 10 and targets[8] == 0 and targets[0.5] == 30


def test_a_period_not_over_is_cut_at_the_run_time_and_titled_so():
    from leadsla.reports.period import PeriodError

    week = parse("week", "2026-W48", "America/New_York")  # Mon 23 Nov to Mon 30 Nov, New York
    wednesday = t("2026-11-25 19:30")
    cut = week.to_date(wednesday)
    assert (cut.start, cut.end, cut.partial) == (week.start, wednesday, True)
    assert cut.title == "2026-W48 to 25 Nov 14:30" and cut.label == "2026-W48"
    assert week.to_date(wednesday + dt.timedelta(seconds=59.5)) == cut  # to the minute
    assert week.to_date(week.end) is week and week.title == "2026-W48"  # over: unchanged
    with pytest.raises(PeriodError, match="has not started"):
        week.to_date(t("2026-11-20 12:00"))
