"""Recycling in the feedback digest and the monthly review, on a hand-checked org read through the
store (SQLite and PostgreSQL): recycled (by anyone, by Lead SLA Monitor), recommended, re-engaged
and converted after recycling, each with the record ids behind it."""

from __future__ import annotations

import csv
import io

from leadsla.reports import builders, recycling
from leadsla.reports.config import load_report_config
from leadsla.reports.period import parse
from tests.reports_data import Builder, t, through_store  # noqa: F401 - fixture

WEEK = parse("week", "2026-W46", "UTC")  # Mon 9 Nov - Mon 16 Nov 2026


def _moves(b: Builder, lead: str, *moves: tuple[str, str, str]) -> None:
    """Status changes beyond `Builder.lead`'s one arrival per stage: (old, new, at)."""
    for old, new, at in moves:
        b.history.append(
            {
                "history_id": f"H{len(b.history):08d}",
                "object_type": "Lead",
                "record_id": lead,
                "field": "Status",
                "old_value": old,
                "new_value": new,
                "changed_by": "R1",
                "changed_at": t(at),
            }
        )


def _org() -> Builder:
    b = Builder().user("R1", "Rita", "A")
    # AUTO: recycled by Lead SLA Monitor on Tue 10 Nov. HAND: recycled by its rep on Wed 11 Nov.
    b.lead("AUTO", owner="R1", stages={"MQL": t("2026-11-02 09:00"), "Recycled": t("2026-11-10 14:00")})
    b.event("lead_recycled", t("2026-11-10 14:00"), "AUTO", actor="recycling")
    b.lead("HAND", owner="R1", stages={"MQL": t("2026-11-02 09:00"), "Recycled": t("2026-11-11 10:00")})
    # BACK: recycled in October, re-engaged as an MQL on Wed 11 Nov, accepted, converted Sat 14 Nov.
    b.lead("BACK", owner="R1", stages={"MQL": t("2026-10-01 09:00"), "Recycled": t("2026-10-05 09:00")})
    _moves(
        b,
        "BACK",
        ("Recycled", "MQL", "2026-11-11 09:00"),
        ("MQL", "SAL", "2026-11-11 10:00"),
        ("SAL", "SQL", "2026-11-12 10:00"),
        ("SQL", "Converted", "2026-11-14 10:00"),
    )
    b.event("lead_reengaged", t("2026-11-11 09:00"), "BACK", actor="recycling")
    # FIRST: converted in the week, never recycled. LATE: back from Recycled after the week.
    b.lead(
        "FIRST",
        owner="R1",
        stages={
            "MQL": t("2026-11-02 09:00"),
            "SQL": t("2026-11-09 09:00"),
            "Opportunity": t("2026-11-12 09:00"),
        },
    )
    b.lead("LATE", owner="R1", stages={"MQL": t("2026-10-01 09:00"), "Recycled": t("2026-10-02 09:00")})
    _moves(b, "LATE", ("Recycled", "MQL", "2026-11-20 09:00"))
    # TOLD: recommended on Thu 12 Nov (one audit row per recipient and channel), not recycled yet.
    b.lead("TOLD", owner="R1", stages={"MQL": t("2026-11-02 09:00"), "SAL": t("2026-11-02 10:00")})
    for who in ("slack", "email"):
        b.event("recycle_recommended", t("2026-11-12 10:00"), "TOLD", actor=f"recycling.{who}")
    b.event("recycle_recommended", t("2026-11-02 10:00"), "HAND", actor="recycling.slack")  # last week
    return b


def test_the_weeks_recycling_figures_and_their_records(through_store) -> None:  # noqa: F811
    data = through_store(_org())
    rows = {r["figure"]: (r["leads"], r["record_ids"]) for r in recycling.figures(data, WEEK)}
    assert rows == {
        "Recycled": (2, ("AUTO", "HAND")),
        "Recycled by Lead SLA Monitor (no response)": (1, ("AUTO",)),
        "Recommended for recycling": (1, ("TOLD",)),
        "Re-engaged (back from Recycled)": (1, ("BACK",)),
        "Converted after recycling": (1, ("BACK",)),
    }


def test_the_feedback_digest_and_monthly_review_show_recycling(through_store) -> None:  # noqa: F811
    data = through_store(_org())
    cfg = load_report_config()
    feedback = builders.build("feedback", data, WEEK, cfg)
    table = list(csv.DictReader(io.StringIO(feedback.csvs["recycling.csv"])))
    assert [(r["figure"], r["leads"], r["record_ids"]) for r in table][3:] == [
        ("Re-engaged (back from Recycled)", "1", "BACK"),
        ("Converted after recycling", "1", "BACK"),
    ]
    html = feedback.html()
    assert '<table id="recycling">' in html and "<td>Converted after recycling</td><td>1</td>" in html
    monthly = builders.build("monthly", data, parse("month", "2026-11", "UTC"), cfg)
    month = {r["figure"]: r["leads"] for r in monthly.context["recycling"]}
    # November: AUTO and HAND recycled, TOLD and HAND recommended, BACK and LATE re-engaged.
    assert month == {
        "Recycled": 2,
        "Recycled by Lead SLA Monitor (no response)": 1,
        "Recommended for recycling": 2,
        "Re-engaged (back from Recycled)": 2,
        "Converted after recycling": 1,
    }
    assert "recycling.csv" in monthly.csvs and '<table id="recycling">' in monthly.html()
