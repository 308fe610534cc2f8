"""Reports a leader reads in a minute: the headline block (compliance against target, breaches,
revenue affected from the Opportunity Amount, red flags, each against the previous period), the
review's baseline month, the 7 x 24 hour-of-week heatmap, and no `nan` / `inf` anywhere a reader
looks - over an empty period, a one-lead period and demo-like data, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import re

import pandas as pd
import pytest

from leadsla.reports import builders, headline, review
from leadsla.reports.config import load_report_config
from leadsla.reports.period import parse
from tests.reports_data import (  # noqa: F401 - fixture
    Builder,
    add_handoffs,
    generate,
    shipped_handoffs,
    t,
    through_store,
)

H = dt.timedelta(hours=1)
TZ = "America/New_York"
#: What a reader must never see: Python's and pandas' spellings of a missing or infinite number.
UNREADABLE = re.compile(r"\b(nan|inf|infinity)\b|\bNaT\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def cfg():
    return load_report_config().model_copy(update={"leadership_timezone": TZ})


def _breached(b: Builder, lead: str, at: dt.datetime, owner: str = "R1", team: str = "A") -> None:
    """A lead MQL at `at`, its clock breached 5 h later and never touched."""
    b.lead(lead, owner=owner, stages={"MQL": at, "SAL": at + H})
    b.clock(lead, at + H, target_h=4, elapsed_h=3.9, owner=owner, team=team, breached_at=at + 5 * H)


def _met(b: Builder, lead: str, at: dt.datetime, owner: str = "R1", team: str = "A") -> None:
    b.lead(lead, owner=owner, stages={"MQL": at, "SAL": at + H})
    b.clock(lead, at + H, target_h=4, elapsed_h=1, owner=owner, team=team, stopped_at=at + 2 * H)
    b.activity(lead, at + 2 * H, owner)


def _figures(report) -> dict[str, headline.Figure]:
    return {f.name: f for f in report.context["headline"].figures}


# --- the baseline month ------------------------------------------------------------------------


def test_the_baseline_is_a_month_over_before_the_reviewed_one(cfg):
    b = Builder().user("R1", "Rita", "A")
    _met(b, "L1", t("2026-11-09 15:00"))  # launch mid-November: the first full month is December
    _met(b, "L2", t("2026-12-09 15:00"))
    data = b.frames()
    nov, dec, jan = (parse("month", m, TZ) for m in ("2026-11", "2026-12", "2027-01"))
    # The demo's November review compared November with December ("2026-12 n/a -> 2026-11").
    for reviewed in (nov, dec):
        got = review.baseline_month(data, cfg, reviewed)
        assert got.month is None
        assert "2026-12" in got.why_none and f"before {reviewed.label} starts" in got.why_none
    assert review.baseline_month(data, cfg, jan).month == dec
    assert review.baseline_month(data, cfg, parse("quarter", "2027-Q1", TZ)).month == dec
    # A launch on the first of a month at midnight (leadership's time) makes that month the baseline.
    early = Builder().user("R1", "Rita", "A")
    _met(early, "L1", t("2026-11-01 04:00"))  # 00:00 in New York
    assert review.baseline_month(early.frames(), cfg, dec).month == nov
    # A configured baseline is used only when it is over before the reviewed month starts.
    fixed = cfg.model_copy(update={"baseline_month": "2026-12"})
    assert review.baseline_month(data, fixed, jan).month == dec
    later = review.baseline_month(data, fixed, nov)
    assert (
        later.month is None
        and later.why_none == "the configured baseline 2026-12 is not over before 2026-11 starts"
    )
    assert review.baseline_month(Builder().frames(), cfg, nov).why_none == "no MQL before 2026-11 ends"


def test_the_november_review_of_a_november_launch_says_why_it_has_no_baseline(cfg, through_store):  # noqa: F811
    b = Builder().user("R1", "Rita", "A")
    for i in range(4):
        (_met if i % 2 else _breached)(b, f"L{i}", t("2026-11-10 15:00") + i * 24 * H)
    flags = {
        f.check: f for f in review.refinement_triggers(through_store(b), parse("month", "2026-11", TZ), cfg)
    }
    flag = flags["MQL-to-SQL conversion down from baseline"]
    assert not flag.raised
    assert flag.value == (
        "n/a (no baseline: the first full month after the first MQL (2026-11-10), 2026-12, "
        "is not over before 2026-11 starts)"
    )
    assert flags["Compliance below target two months running"].value == (
        "2026-10 n/a (no decided clocks in 2026-10), 2026-11 50%"
    )


def test_a_baseline_month_without_mqls_is_named_not_computed(cfg, through_store):  # noqa: F811
    b = Builder().user("R1", "Rita", "A")
    _met(b, "L1", t("2026-11-10 15:00"))
    fixed = cfg.model_copy(update={"baseline_month": "2026-09"})
    flags = {
        f.check: f for f in review.refinement_triggers(through_store(b), parse("month", "2026-11", TZ), fixed)
    }
    flag = flags["MQL-to-SQL conversion down from baseline"]
    assert not flag.raised
    assert flag.value == "2026-09 n/a (no MQLs in 2026-09) -> 2026-11 0%; not judged without both rates"


# --- the headline block ------------------------------------------------------------------------


def test_headline_figures_and_their_change_from_the_previous_period(cfg, through_store):  # noqa: F811
    b = Builder().user("R1", "Rita", "A").user("M1", "Max", "A", role="SDR Manager")
    # October: 1 met, 1 breached (converted, Amount 20,000). November: 1 met, 3 breached, of which
    # one converted with Amount 50,000, one converted without an Amount and one not converted.
    _met(b, "O1", t("2026-10-05 15:00"))
    b.lead(
        "O2",
        owner="R1",
        stages={
            "MQL": t("2026-10-06 15:00"),
            "SAL": t("2026-10-06 16:00"),
            "SQL": t("2026-10-08 15:00"),
            "Opportunity": t("2026-10-09 15:00"),
        },
    )
    b.clock(
        "O2",
        t("2026-10-06 16:00"),
        target_h=4,
        elapsed_h=3.9,
        owner="R1",
        team="A",
        breached_at=t("2026-10-06 20:00"),
    )
    b.opportunity("O2", "006O2", 20000.0)
    _met(b, "N1", t("2026-11-03 15:00"))
    for lead, amount in (("N2", 50000.0), ("N3", None)):
        b.lead(
            lead,
            owner="R1",
            stages={
                "MQL": t("2026-11-04 15:00"),
                "SAL": t("2026-11-04 16:00"),
                "SQL": t("2026-11-06 15:00"),
                "Opportunity": t("2026-11-07 15:00"),
            },
        )
        b.clock(
            lead,
            t("2026-11-04 16:00"),
            target_h=4,
            elapsed_h=3.9,
            owner="R1",
            team="A",
            breached_at=t("2026-11-04 20:00"),
        )
        b.opportunity(lead, f"006{lead}", amount)
    _breached(b, "N4", t("2026-11-05 15:00"))
    nov = parse("month", "2026-11", TZ)
    report = builders.build("monthly", through_store(b, until=nov.end), nov, cfg)
    got = _figures(report)
    assert got["Compliance against target"].value == (
        "25% (target 80%, 55 points below; 1 of 4 decided clocks met)"
    )
    assert got["Compliance against target"].change == "down 25 points from 2026-10 (50%)"
    assert got["Breaches"].value == "3" and got["Breaches"].change == "up 2 from 2026-10 (1)"
    assert got["Breaches"].record_ids == ("N2", "N3", "N4")
    revenue = got["Revenue affected"]
    assert (
        revenue.value
        == "$50,000 Opportunity Amount on 1 of 3 breached leads (2 without an Opportunity Amount)"
    )
    assert revenue.change == "up $30,000 from 2026-10 ($20,000)" and revenue.record_ids == ("N2",)
    assert got["Red flags raised"].value.startswith("3 of 5: Team below compliance target")
    html, text = report.html(), report.text()
    assert 'id="headline"' in html and html.index('id="headline"') < html.index('id="red-flags"')
    assert "Revenue affected: $50,000 Opportunity Amount on 1 of 3 breached leads" in text
    rows = pd.read_csv(io.StringIO(report.csvs["headline.csv"]))
    assert list(rows["figure"]) == [
        "Compliance against target",
        "Breaches",
        "Revenue affected",
        "Red flags raised",
    ]


def test_revenue_affected_says_why_it_is_not_available(cfg, through_store):  # noqa: F811
    b = Builder().user("R1", "Rita", "A")
    _breached(b, "N1", t("2026-11-04 15:00"))
    _breached(b, "N2", t("2026-11-05 15:00"))
    week = parse("week", "2026-W45", TZ)
    got = _figures(builders.build("weekly", through_store(b, until=week.end), week, cfg))
    assert got["Revenue affected"].value == "n/a (none of the 2 breached leads became an Opportunity)"
    assert got["Revenue affected"].change == "n/a (no figure for 2026-W45)"
    assert got["Compliance against target"].change == "n/a (no decided clocks in 2026-W44)"
    # Converted, but the Opportunity carries no Amount (not synced, or left empty in the CRM).
    c = Builder().user("R1", "Rita", "A")
    c.lead(
        "N1",
        owner="R1",
        stages={
            "MQL": t("2026-11-04 15:00"),
            "SAL": t("2026-11-04 16:00"),
            "SQL": t("2026-11-05 15:00"),
            "Opportunity": t("2026-11-06 15:00"),
        },
    )
    c.clock(
        "N1",
        t("2026-11-04 16:00"),
        target_h=4,
        elapsed_h=3.9,
        owner="R1",
        team="A",
        breached_at=t("2026-11-04 20:00"),
    )
    c.opportunity("N1", "006N1", None)
    got = _figures(builders.build("weekly", through_store(c, until=week.end), week, cfg))
    assert got["Revenue affected"].value == (
        "n/a (the Opportunities of the 1 breached leads that converted carry no Amount in the synced data)"
    )
    # No breach at all: nothing affected, which is a figure.
    quiet = Builder().user("R1", "Rita", "A")
    _met(quiet, "N1", t("2026-11-04 15:00"))
    got = _figures(builders.build("weekly", through_store(quiet, until=week.end), week, cfg))
    assert got["Revenue affected"].value == "$0 (no breaches in 2026-W45)"
    assert got["Revenue affected"].change == "unchanged from 2026-W44 ($0)"


# --- the hour-of-week heatmap ------------------------------------------------------------------


def test_violations_by_hour_of_week_are_a_7_by_24_grid(cfg, through_store):  # noqa: F811
    b = Builder().user("R1", "Rita", "A")
    # Clocks start an hour after MQL: Monday 2026-11-02 09:00 and 09:30 New York (14:00, 14:30 UTC),
    # Sunday 2026-11-08 23:00 New York; one met clock on the Tuesday counts nowhere.
    _breached(b, "L1", t("2026-11-02 13:00"))
    _breached(b, "L2", t("2026-11-02 13:30"))
    _breached(b, "L3", t("2026-11-09 03:00"))
    _met(b, "L4", t("2026-11-03 15:00"))
    nov = parse("month", "2026-11", TZ)
    report = builders.build("monthly", through_store(b, until=nov.end), nov, cfg)
    grid = pd.read_csv(io.StringIO(report.csvs["violations_by_hour_of_week.csv"]), index_col="weekday")
    assert list(grid.index) == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert list(grid.columns) == [f"{h:02d}" for h in range(24)]
    assert grid.loc["Mon", "09"] == 2 and grid.loc["Sun", "23"] == 1 and int(grid.to_numpy().sum()) == 3
    png = report.images["hours"]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (860, 340)  # fits an e-mail's 900 px column


# --- no nan, NaN or inf anywhere a reader looks ------------------------------------------------


def _one_lead() -> Builder:
    b = Builder().user("R1", "Rita", "A")
    _breached(b, "L1", t("2026-11-18 15:00"))
    return b


def _demo_like() -> Builder:
    """The demo's two-week history (launched 9 November), some converted leads with an Amount, and
    clocks of every handoff of the shipped policy (MQL acceptance, the AE's and CS's on the
    converted leads' Opportunities)."""
    b = generate(240, start=dt.datetime(2026, 11, 9, tzinfo=dt.UTC), days=14)
    converted = [r["record_id"] for r in list(b.leads) if r["status"] == "Converted"]
    for i, lead in enumerate(converted):
        b.opportunity(lead, f"006{lead[3:]}", None if i % 3 == 0 else 10000.0 + 500 * i)
    return add_handoffs(b, now=dt.datetime(2026, 11, 30, tzinfo=dt.UTC))


SCENARIOS = {
    "empty": lambda: Builder().user("R1", "Rita", "A"),
    "one lead": _one_lead,
    "demo-like": _demo_like,
}
PERIODS = {
    "weekly": [("week", "2026-W47")],
    "feedback": [("week", "2026-W47")],
    # 2027-01: its baseline (2026-12, the first full month) has no MQLs: the rate is n/a, with why.
    "monthly": [("month", "2026-11"), ("month", "2026-10"), ("month", "2027-01")],
    "quarterly": [("quarter", "2026-Q4"), ("quarter", "2027-Q1")],
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_report_prints_nan_or_inf(cfg, through_store, scenario):  # noqa: F811
    b = SCENARIOS[scenario]()
    # Everything ever written, with a section for every handoff of the shipped policy; reports
    # below load as of each period's end.
    handoffs = shipped_handoffs()
    data = through_store(b, handoffs=handoffs)
    assert scenario == "empty" or len(data.clocks)
    if scenario == "demo-like":  # every handoff has clocks, the Opportunity ones Amounts and history
        assert all(len(data.handoff_clocks[h.sla_id]) for h in handoffs)
        assert data.opportunities["amount"].notna().any() and len(data.opportunity_history)
    for name, periods in PERIODS.items():
        for kind, label in periods:
            whole = parse(kind, label, TZ)
            for period in (whole, whole.to_date(whole.start + dt.timedelta(days=3))):
                report = builders.build(name, _until(data, period.end), period, cfg)
                shown = {"html": report.html(), "text": report.text(), **report.csvs}
                for where, text in shown.items():
                    bad = UNREADABLE.search(text)
                    assert bad is None, (
                        name,
                        period.title,
                        where,
                        text[max(0, bad.start() - 80) : bad.end() + 40],
                    )
                if name != "feedback":
                    assert 'id="headline"' in shown["html"] and "Red flags raised:" in shown["text"]
                for h in handoffs:  # a section for every handoff, and its attachment
                    assert f'id="handoff-{h.sla_id}"' in shown["html"]
                    assert f"- {h.name}: " in shown["text"]
                    assert f"handoff_{h.sla_id}.csv" in report.csvs


def _until(data, end: dt.datetime):
    """`data` as `reports.data.load(until=end)` would read it (rows before `end` only)."""
    import dataclasses

    cut = pd.Timestamp(end)
    return dataclasses.replace(
        data,
        leads=data.leads[data.leads["created_at"] < cut],
        stages=data.stages[data.stages["at"] < cut],
        activities=data.activities[data.activities["created_at"] < cut],
        clocks=data.clocks[data.clocks["clock_start"] < cut],
        visits=data.visits[data.visits["at"] < cut],
        handoff_clocks={k: c[c["clock_start"] < cut] for k, c in data.handoff_clocks.items()},
        opportunity_history=data.opportunity_history[data.opportunity_history["changed_at"] < cut],
    )
