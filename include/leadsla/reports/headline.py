"""The block each leadership report opens with, read in a minute: compliance against target,
breaches, revenue affected and red flags raised, each beside its change from the previous period.

The headline is about the whole SLA matrix (every handoff the report has a section for): its
four figures pool the handoffs' clocks, so an AE or CS breach is in the first lines a leader
reads; the compliance figure names the lowest handoff (a small handoff is not hidden by the
volume of sales touches) and the breaches figure says how many each handoff had. The sections
that follow (`reports.handoffs`) give each handoff's own figures.

Every figure is a sentence that is either a number or "n/a (why)": a reader never sees `nan` or
`inf`. Revenue affected is the Opportunity Amount of breached records' Opportunities
(`handoffs.revenue_of`: a lead's once it converted by the period's end, an Opportunity's own),
each Opportunity once (a real figure from the CRM, not the estimate); when none has one the figure
says why. Pure functions over `ReportData`; never reads the store or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from leadsla.reports import handoffs as hf
from leadsla.reports import metrics as m
from leadsla.reports import review
from leadsla.reports.config import ReportConfig
from leadsla.reports.data import ReportData, handoffs_of
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
    revenue: hf.Revenue
    noun: str
    flags: tuple[str, ...]
    flag_checks: int
    flag_ids: tuple[str, ...]
    #: (handoff name, its compliance or None, its breaches), one per handoff.
    per_handoff: tuple[tuple[str, float | None, int], ...] = ()


def _measure(data: ReportData, period: Period, cfg: ReportConfig) -> _Measure:
    met = decided = breaches = 0
    parts, per, breach_ids = [], [], set()
    for h, hd in handoffs_of(data):
        clocks = m.judged_clocks(hd, period)
        d = clocks[clocks["outcome"].isin(m.DECIDED)]
        h_met, h_decided = int((d["outcome"] == "met").sum()), len(d)
        violated = clocks[clocks["outcome"] == "violated"]
        ids = m.ids(violated["record_id"])
        parts.append((h, ids, hf.opportunity_of(hd, period, h, ids)))
        per.append((h.name, h_met / h_decided if h_decided else None, len(violated)))
        met, decided, breaches = met + h_met, decided + h_decided, breaches + len(violated)
        breach_ids.update(ids)
    flags = review.red_flags(data, period, cfg)
    raised = [f for f in flags if f.raised]
    return _Measure(
        label=period.label,
        compliance=met / decided if decided else None,
        met=met,
        decided=decided,
        breaches=breaches,
        breach_ids=tuple(sorted(breach_ids)),
        revenue=hf.revenue_of(parts),
        noun=hf.noun_of([h for h, _ in handoffs_of(data)]),
        flags=tuple(f.named for f in raised),
        flag_checks=len(flags),
        flag_ids=tuple(sorted(set().union(*(f.record_ids for f in raised)))) if raised else (),
        per_handoff=tuple(per),
    )


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
        judged = [(name, c) for name, c, _ in now.per_handoff if c is not None]
        if len(judged) > 1:
            name, low = min(judged, key=lambda nc: nc[1])
            value += f"; lowest handoff: {name} {low:.0%}"
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
    note = "; ".join(f"{name} {n}" for name, _, n in now.per_handoff) if len(now.per_handoff) > 1 else ""
    return Figure("Breaches", str(now.breaches), change, note, record_ids=now.breach_ids)


def _revenue_figure(now: _Measure, prev: _Measure, against: str) -> Figure:
    value = hf.revenue_text(now.revenue, now.label, now.noun)
    if now.revenue.amount is None:
        change = f"n/a (no figure for {now.label})"
    elif prev.revenue.amount is None:
        change = f"n/a ({prev.label}: {prev.revenue.why})"
    else:
        delta = now.revenue.amount - prev.revenue.amount
        change = _change(delta, _money(abs(delta)), against, _money(prev.revenue.amount))
    note = (
        "Opportunity Amount (current value) of the Opportunities behind breached records: a lead's once "
        "it converted by the period's end, an Opportunity's own; each Opportunity counted once."
    )
    return Figure("Revenue affected", value, change, note, now.revenue.record_ids)


def _flags(now: _Measure, prev: _Measure, against: str) -> Figure:
    value = f"{len(now.flags)} of {now.flag_checks}" + (f": {'; '.join(now.flags)}" if now.flags else "")
    delta = len(now.flags) - len(prev.flags)
    change = _change(delta, str(abs(delta)), against, str(len(prev.flags)))
    return Figure("Red flags raised", value, change, record_ids=now.flag_ids)
