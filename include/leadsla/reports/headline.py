"""The block each leadership report opens with, read in a minute: compliance against target,
breaches, revenue affected and red flags raised, each beside its change from the previous period.

Every figure is a sentence that is either a number or "n/a (why)": a reader never sees `nan` or
`inf`. Revenue affected is the Opportunity Amount of breached leads that became Opportunities by
the period's end (a real figure from the CRM, not the estimate); when none has one the figure says
why. Pure functions over `ReportData`; never reads the store or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leadsla.reports import metrics as m
from leadsla.reports import review
from leadsla.reports.config import ReportConfig
from leadsla.reports.data import ReportData
from leadsla.reports.period import Period


@dataclass(frozen=True)
class Figure:
    """One headline line: `value` for the period, `change` against the previous one, `note` (how
    the figure is made, when it needs saying) and the record ids behind it."""

    name: str
    value: str
    change: str
    note: str = ""
    record_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Headline:
    period: str
    previous: str
    figures: tuple[Figure, ...]

    def rows(self) -> list[dict]:
        """The figures as CSV rows."""
        return [
            {"figure": f.name, "value": f.value, "change": f.change, "record_ids": f.record_ids}
            for f in self.figures
        ]


@dataclass(frozen=True)
class _Measure:
    """The four figures of one period, as numbers (None: not available, `why` says why)."""

    label: str
    compliance: float | None
    met: int
    decided: int
    breaches: int
    breach_ids: tuple[str, ...]
    revenue: float | None
    revenue_why: str
    revenue_ids: tuple[str, ...]
    with_amount: int
    breached_leads: int
    flags: tuple[str, ...]
    flag_checks: int
    flag_ids: tuple[str, ...]


def _measure(data: ReportData, period: Period, cfg: ReportConfig) -> _Measure:
    clocks = m.judged_clocks(data, period)
    overall = m.compliance(clocks)
    decided = int(overall["decided"].iloc[0]) if len(overall) else 0
    met = int(overall["met"].iloc[0]) if len(overall) else 0
    violated = clocks[clocks["outcome"] == "violated"]
    breached = m.ids(violated["record_id"])
    revenue, why, revenue_ids = _revenue(data, period, breached)
    flags = review.red_flags(data, period, cfg)
    raised = [f for f in flags if f.raised]
    return _Measure(
        label=period.label,
        compliance=met / decided if decided else None,
        met=met,
        decided=decided,
        breaches=len(violated),
        breach_ids=breached,
        revenue=revenue,
        revenue_why=why,
        revenue_ids=revenue_ids,
        with_amount=len(revenue_ids),
        breached_leads=len(breached),
        flags=tuple(f.check for f in raised),
        flag_checks=len(flags),
        flag_ids=tuple(sorted(set().union(*(f.record_ids for f in raised)))) if raised else (),
    )


def _revenue(
    data: ReportData, period: Period, breached: tuple[str, ...]
) -> tuple[float | None, str, tuple[str, ...]]:
    """Opportunity Amount of the breached leads that reached Opportunity before the period's end.

    Returns (amount or None, why it is None, the leads with an Amount).
    """
    if not breached:
        return 0.0, "", ()
    st = data.stages
    converted = set(st.loc[(st["stage"] == "Opportunity") & (st["at"] < period.end), "record_id"])
    converted &= set(breached)
    if not converted:
        n = len(breached)
        return None, f"none of the {n} breached lead{'s' if n != 1 else ''} became an Opportunity", ()
    amounts = data.opportunity_amounts
    mine = amounts[amounts["record_id"].isin(converted) & np.isfinite(amounts["amount"])]
    mine = mine.drop_duplicates("record_id")
    if not len(mine):
        return (
            None,
            f"the Opportunities of the {len(converted)} breached leads that converted carry no Amount "
            "in the synced data",
            (),
        )
    return float(mine["amount"].sum()), "", m.ids(mine["record_id"])


def _money(x: float) -> str:
    return f"${x:,.0f}"


def _change(delta: float, shown: str, against: str, before: str) -> str:
    """ "up 5 points from 2026-10 (72%)", "down $3,000 ...", "unchanged ...": words, not a sign (a
    leading + or - would be a formula to a spreadsheet opening the CSV, and reads slower)."""
    if shown in ("0", "$0"):
        return f"unchanged from {against} ({before})"
    return f"{'up' if delta > 0 else 'down'} {shown} from {against} ({before})"


def headline(data: ReportData, period: Period, cfg: ReportConfig) -> Headline:
    """The four headline figures of `period` against the period before it (a period reported to
    date is compared with the whole previous period, and says so)."""
    prev_period = period.previous()
    now, prev = _measure(data, period, cfg), _measure(data, prev_period, cfg)
    target = cfg.thresholds.team_compliance
    against = f"{prev.label}" + (" (whole period)" if period.partial else "")
    figures = (
        _compliance(now, prev, target, against),
        _breaches(now, prev, against),
        _revenue_figure(now, prev, against),
        _flags(now, prev, against),
    )
    return Headline(period.title, against, figures)


def _compliance(now: _Measure, prev: _Measure, target: float, against: str) -> Figure:
    if now.compliance is None:
        value = f"n/a (no decided clocks in {now.label}); target {target:.0%}"
    else:
        gap = (now.compliance - target) * 100
        side = "above" if gap >= 0 else "below"
        value = (
            f"{now.compliance:.0%} (target {target:.0%}, {abs(gap):.0f} points {side}; "
            f"{now.met} of {now.decided} decided clocks met)"
        )
    if now.compliance is None or prev.compliance is None:
        missing = now.label if now.compliance is None else prev.label
        change = f"n/a (no decided clocks in {missing})"
    else:
        points = (now.compliance - prev.compliance) * 100
        shown = f"{abs(points):.0f}"
        change = _change(
            points, shown if shown == "0" else f"{shown} points", against, f"{prev.compliance:.0%}"
        )
    return Figure("Compliance against target", value, change, record_ids=())


def _breaches(now: _Measure, prev: _Measure, against: str) -> Figure:
    delta = now.breaches - prev.breaches
    change = _change(delta, str(abs(delta)), against, str(prev.breaches))
    return Figure("Breaches", str(now.breaches), change, record_ids=now.breach_ids)


def _revenue_figure(now: _Measure, prev: _Measure, against: str) -> Figure:
    if now.revenue is None:
        value = f"n/a ({now.revenue_why})"
    elif now.breaches == 0:
        value = f"{_money(0)} (no breaches in {now.label})"
    else:
        rest = now.breached_leads - now.with_amount
        value = (
            f"{_money(now.revenue)} Opportunity Amount on {now.with_amount} of {now.breached_leads} "
            f"breached leads" + (f" ({rest} without an Opportunity Amount)" if rest else "")
        )
    if now.revenue is None:
        change = f"n/a (no figure for {now.label})"
    elif prev.revenue is None:
        change = f"n/a ({prev.label}: {prev.revenue_why})"
    else:
        delta = now.revenue - prev.revenue
        change = _change(delta, _money(abs(delta)), against, _money(prev.revenue))
    note = "Opportunity Amount (current value) of breached leads that converted by the period's end."
    return Figure("Revenue affected", value, change, note, now.revenue_ids)


def _flags(now: _Measure, prev: _Measure, against: str) -> Figure:
    value = f"{len(now.flags)} of {now.flag_checks}" + (f": {'; '.join(now.flags)}" if now.flags else "")
    delta = len(now.flags) - len(prev.flags)
    change = _change(delta, str(abs(delta)), against, str(len(prev.flags)))
    return Figure("Red flags raised", value, change, record_ids=now.flag_ids)
