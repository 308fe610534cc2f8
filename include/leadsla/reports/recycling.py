"""Recycling in a period: leads recycled (and how many of them by Lead SLA Monitor), recommended for
recycling, re-engaged (back in the funnel from Recycled), and converted after a recycling.

From the Status history (`ReportData.transitions`) and lead_recycling's audit rows
(`ReportData.recycling`); each figure keeps its record ids. Never reads the store or the clock.
"""

from __future__ import annotations

import pandas as pd

from leadsla.decisions.recycling import RECOMMENDED_EVENT, RECYCLED_EVENT
from leadsla.reports.data import FUNNEL, STAGE_OF_STATUS, ReportData
from leadsla.reports.metrics import ids
from leadsla.reports.period import Period

RECYCLED = "Recycled"


def _in(frame: pd.DataFrame, column: str, period: Period) -> pd.DataFrame:
    if not len(frame):
        return frame
    at = pd.to_datetime(frame[column], utc=True)
    return frame[(at >= pd.Timestamp(period.start)) & (at < pd.Timestamp(period.end))]


def figures(data: ReportData, period: Period) -> list[dict]:
    """The period's recycling figures as rows: figure, leads, record_ids (in reading order)."""
    moves = data.transitions.assign(
        old_stage=data.transitions["old_value"].map(STAGE_OF_STATUS),
        new_stage=data.transitions["new_value"].map(STAGE_OF_STATUS),
    )
    moved = _in(moves, "changed_at", period)
    audit = _in(data.recycling, "at", period)
    recycled = moved[moved["new_stage"] == RECYCLED]
    back = moved[(moved["old_stage"] == RECYCLED) & moved["new_stage"].isin(FUNNEL)]
    # Converted in the period after having been recycled at some time before the conversion.
    first_recycled = moves[moves["new_stage"] == RECYCLED].groupby("record_id")["changed_at"].min().to_dict()
    converted = moved[moved["new_stage"] == "Opportunity"]
    after = [
        rid in first_recycled and first_recycled[rid] < at
        for rid, at in zip(converted["record_id"], converted["changed_at"], strict=True)
    ]
    converted = converted[pd.Series(after, index=converted.index, dtype=bool)]
    rows = [
        ("Recycled", recycled["record_id"]),
        ("Recycled by Lead SLA Monitor (no response)", audit[audit["event"] == RECYCLED_EVENT]["record_id"]),
        ("Recommended for recycling", audit[audit["event"] == RECOMMENDED_EVENT]["record_id"]),
        ("Re-engaged (back from Recycled)", back["record_id"]),
        ("Converted after recycling", converted["record_id"]),
    ]
    out = []
    for figure, column in rows:
        found = ids(pd.Series(column, dtype=object))
        out.append({"figure": figure, "leads": len(found), "record_ids": found})
    return out
