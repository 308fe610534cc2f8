"""The SLA matrix in the reports: one section per handoff (every SLA of the policy: sales touch,
MQL acceptance, demo to proposal, closed-won to CS kickoff, CS onboarding) with its compliance,
breaches, worst owners and the revenue its breaches put at stake, and the quarterly what-if's
proposed target per handoff and tier.

Revenue affected is the Opportunity Amount (current value): a Lead handoff's breached lead counts
with the Opportunity it converted into by the period's end, an Opportunity handoff's breached
record with its own Amount; each Opportunity is counted once however many of its handoffs breached.
A figure that cannot be computed is None with a sentence saying why. Pure functions over
`ReportData`; never reads the store or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadsla.reports import metrics as m
from leadsla.reports.config import Conversion, ReportConfig
from leadsla.reports.data import STAGE_OF_STATUS, Handoff, ReportData, handoffs_of
from leadsla.reports.period import Period

#: How many owners a section names as the worst (most breaches, then lowest compliance).
WORST_OWNERS = 3
#: The what-if's alternative targets, as multiples of each clock's own target (a tier's clocks can
#: have different targets: an inbound lead arriving out of hours, owner calendars).
TARGET_FACTORS = (0.25, 0.5, 0.75, 1.5, 2.0, 3.0)


def pct(x: float | None, why: str = "") -> str:
    """A share as "28%", or "n/a (why)" when it cannot be computed (never "nan" or "inf")."""
    if x is None or not np.isfinite(x):
        return f"n/a ({why})" if why else "n/a"
    return f"{x:.0%}"


def money(x: float) -> str:
    return f"${x:,.0f}"


def hours(x: float) -> str:
    """A target in words: "30 min", "4 h", "336 h" (hours of the SLA's own time, business or
    calendar: never days, which would read as calendar days)."""
    if x < 1:
        return f"{x * 60:.0f} min"
    return f"{x:,.1f}".removesuffix(".0") + " h"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class Revenue:
    """The Opportunity Amount a set of breached records put at stake, or None and why."""

    amount: float | None
    why: str
    record_ids: tuple[str, ...]  # the breached records with an Amount
    opportunity_ids: tuple[str, ...]  # the Opportunities counted, each once
    breached: int  # breached records (a record breached in two handoffs counts in each)
    with_amount: int = 0  # of them, those with an Opportunity Amount (counted the same way)


def opportunity_of(data: ReportData, period: Period, handoff: Handoff, ids: tuple[str, ...]) -> pd.DataFrame:
    """The Opportunity (and its Amount) behind each of `ids`, records of `handoff`'s object: an
    Opportunity is itself, a lead its converted Opportunity once it reached Opportunity before the
    period's end. Columns record_id, opportunity_id, amount (NaN without one); unconverted leads
    are left out."""
    if handoff.object == "Opportunity":
        opps = data.opportunities.drop_duplicates("record_id").set_index("record_id")["amount"]
        return pd.DataFrame(
            {
                "record_id": list(ids),
                "opportunity_id": list(ids),
                "amount": [float(opps.get(i, np.nan)) for i in ids],
            }
        )
    st = data.stages
    converted = set(st.loc[(st["stage"] == "Opportunity") & (st["at"] < period.end), "record_id"]) & set(ids)
    amounts = data.opportunity_amounts
    mine = amounts[amounts["record_id"].isin(converted)].drop_duplicates("record_id")
    out = pd.DataFrame({"record_id": pd.Series(sorted(converted), dtype=object)}).merge(
        mine[["record_id", "opportunity_id", "amount"]], on="record_id", how="left"
    )
    out["opportunity_id"] = out["opportunity_id"].fillna(out["record_id"])
    return out


def revenue_of(parts: list[tuple[Handoff, tuple[str, ...], pd.DataFrame]]) -> Revenue:
    """The Amount of the Opportunities behind breached records of one or more handoffs: `parts` is
    (handoff, its breached ids, `opportunity_of` them). Each Opportunity counts once."""
    breached = sum(len(ids) for _, ids, _ in parts)
    if not breached:
        return Revenue(0.0, "", (), (), 0)
    frames = [f for _, _, f in parts if len(f)]
    found = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["record_id", "amount"])
    with_amount = found[np.isfinite(found["amount"].astype("float64"))] if len(found) else found
    if not len(with_amount):
        return Revenue(None, _why_no_amount(parts), (), (), breached)
    once = with_amount.drop_duplicates("opportunity_id")
    return Revenue(
        float(once["amount"].sum()),
        "",
        m.ids(with_amount["record_id"]),
        m.ids(once["opportunity_id"]),
        breached,
        len(with_amount),
    )


def _why_no_amount(parts: list[tuple[Handoff, tuple[str, ...], pd.DataFrame]]) -> str:
    """Why none of the breached records has an Amount, per object ("none of the 2 breached leads
    became an Opportunity; ...")."""
    leads = [(ids, f) for h, ids, f in parts if h.object != "Opportunity"]
    opps = [(ids, f) for h, ids, f in parts if h.object == "Opportunity"]
    reasons = []
    n_leads = len({i for ids, _ in leads for i in ids})
    converted = len({i for _, f in leads for i in f["record_id"]})
    if n_leads and not converted:
        leads_word = "lead" if n_leads == 1 else "leads"
        reasons.append(f"none of the {n_leads} breached {leads_word} became an Opportunity")
    elif n_leads:
        reasons.append(
            f"the Opportunities of the {converted} breached leads that converted carry no Amount "
            "in the synced data"
        )
    n_opps = len({i for ids, _ in opps for i in ids})
    if n_opps == 1:
        reasons.append("the 1 breached Opportunity carries no Amount in the synced data")
    elif n_opps:
        reasons.append(f"the {n_opps} breached Opportunities carry no Amount in the synced data")
    return "; ".join(reasons)


def revenue_text(rev: Revenue, label: str, noun: str = "records") -> str:
    """The revenue figure in words."""
    if rev.amount is None:
        return f"n/a ({rev.why})"
    if rev.breached == 0:
        return f"{money(0)} (no breaches in {label})"
    rest = rev.breached - rev.with_amount
    return (
        f"{money(rev.amount)} Opportunity Amount on {rev.with_amount} of {rev.breached} breached "
        f"{noun}" + (f" ({rest} without an Opportunity Amount)" if rest else "")
    )


def noun_of(handoffs: list[Handoff]) -> str:
    """What a handoff's records are called: leads, Opportunities, or records for a mix."""
    objects = {h.object for h in handoffs}
    if objects == {"Lead"}:
        return "leads"
    return "Opportunities" if objects == {"Opportunity"} else "records"


@dataclass(frozen=True)
class Section:
    """One handoff's figures for a period, each a sentence that is a number or says why not."""

    handoff: Handoff
    decided: int
    met: int
    breaches: int
    open: int
    compliance: float | None
    compliance_text: str
    change: str
    breach_text: str
    revenue: Revenue
    revenue_text: str
    owners: pd.DataFrame  # every owner with a decided clock, worst first
    worst: tuple[str, ...]  # the worst owners in words

    def row(self) -> dict:
        """The section's figures as one CSV row."""
        return {
            "sla_id": self.handoff.sla_id,
            "handoff": self.handoff.name,
            "object": self.handoff.object,
            "decided": self.decided,
            "met": self.met,
            "breaches": self.breaches,
            "open": self.open,
            "compliance": self.compliance_text,
            "change": self.change,
            "revenue_affected": self.revenue_text,
            "worst_owners": "; ".join(self.worst) or "none (no breaches)",
            "breached_ids": m.ids(self.owners["violated_ids"].explode()) if len(self.owners) else (),
        }


def _owners(
    data: ReportData, period: Period, handoff: Handoff, clocks: pd.DataFrame
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Each accountable owner's decided clocks, breaches, compliance and revenue affected, worst
    first (most breaches, lowest compliance, then name), and the worst owners in words."""
    owners = m.compliance(clocks, ["team", "rep"])
    if not len(owners):
        owners["revenue"] = pd.Series([], dtype="float64")
        return owners, ()
    revenue = []
    for ids in owners["violated_ids"]:
        rev = revenue_of([(handoff, ids, opportunity_of(data, period, handoff, ids))])
        revenue.append(rev.amount if rev.amount is not None else np.nan)
    owners["revenue"] = revenue
    owners = owners.sort_values(
        ["violated", "compliance", "rep", "team"], ascending=[False, True, True, True], kind="stable"
    ).reset_index(drop=True)
    worst = tuple(
        f"{r.rep} ({r.team}): {r.violated} of {r.decided} breached"
        + (f", {money(r.revenue)} at stake" if np.isfinite(r.revenue) and r.revenue > 0 else "")
        for r in owners[owners["violated"] > 0].head(WORST_OWNERS).itertuples()
    )
    return owners, worst


def section(
    handoff: Handoff, data: ReportData, period: Period, cfg: ReportConfig, clocks: pd.DataFrame | None = None
) -> Section:
    """`handoff`'s section for `period` (`data` as `handoffs_of` gives it for the handoff;
    `clocks`: its judged clocks, when already computed)."""
    clocks = m.judged_clocks(data, period) if clocks is None else clocks
    before = m.judged_clocks(data, period.previous())
    target = cfg.thresholds.team_compliance
    now_met, now_decided = _counts(clocks)
    prev_met, prev_decided = _counts(before)
    comp = now_met / now_decided if now_decided else None
    prev = prev_met / prev_decided if prev_decided else None
    against = period.previous().label + (" (whole period)" if period.partial else "")
    if comp is None:
        comp_text = f"n/a (no decided clocks in {period.label}); target {target:.0%}"
    else:
        comp_text = f"{comp:.0%} ({now_met} of {now_decided} decided clocks met; target {target:.0%})"
    if comp is None or prev is None:
        change = f"n/a (no decided clocks in {period.label if comp is None else against})"
    else:
        points = round((comp - prev) * 100)
        change = (
            f"unchanged from {against} ({prev:.0%})"
            if points == 0
            else f"{'up' if points > 0 else 'down'} {_plural(abs(points), 'point')} from {against} "
            f"({prev:.0%})"
        )
    violated = clocks[clocks["outcome"] == "violated"]
    breached = m.ids(violated["record_id"])
    prev_breaches = int((before["outcome"] == "violated").sum())
    delta = len(violated) - prev_breaches
    breach_text = (
        f"{len(violated)} ("
        + (
            f"unchanged from {against}"
            if delta == 0
            else f"{'up' if delta > 0 else 'down'} {abs(delta)} from {against}, {prev_breaches}"
        )
        + ")"
    )
    rev = revenue_of([(handoff, breached, opportunity_of(data, period, handoff, breached))])
    owners, worst = _owners(data, period, handoff, clocks)
    return Section(
        handoff,
        now_decided,
        now_met,
        len(violated),
        int((clocks["outcome"] == "open").sum()),
        comp,
        comp_text,
        change,
        breach_text,
        rev,
        revenue_text(rev, period.label, noun_of([handoff])),
        owners,
        worst,
    )


def _counts(clocks: pd.DataFrame) -> tuple[int, int]:
    decided = clocks[clocks["outcome"].isin(m.DECIDED)]
    return int((decided["outcome"] == "met").sum()), len(decided)


def sections(data: ReportData, period: Period, cfg: ReportConfig) -> list[Section]:
    """Every handoff's section, in the policy's order (the measured SLA first)."""
    return [section(h, d, period, cfg) for h, d in handoffs_of(data)]


def owners_frame(sec: Section) -> pd.DataFrame:
    """A section's owners as its CSV attachment's rows."""
    cols = ["team", "rep", "decided", "met", "violated", "compliance", "revenue", "violated_ids"]
    out = sec.owners[cols].copy() if len(sec.owners) else pd.DataFrame(columns=cols)
    out.insert(0, "sla_id", sec.handoff.sla_id)
    out["compliance"] = [pct(x, "nothing decided") for x in out["compliance"]]
    out["revenue"] = [money(x) if np.isfinite(x) else "n/a (no Opportunity Amount)" for x in out["revenue"]]
    return out


# --- the quarterly what-if per handoff and tier --------------------------------------------------


def converted(data: ReportData, period: Period, handoff: Handoff, conv: Conversion) -> set[str]:
    """The records of `handoff`'s object that reached `conv` before the period's end."""
    if handoff.object == "Lead":
        stages = {STAGE_OF_STATUS.get(v, v) for v in conv.in_} if conv.field == "Status" else set()
        st = data.stages
        return set(st.loc[st["stage"].isin(stages) & (st["at"] < period.end), "record_id"])
    h = data.opportunity_history
    wanted = {v.lower() for v in conv.in_}
    hit = (
        (h["field"] == conv.field)
        & h["new_value"].astype(str).str.lower().isin(wanted)
        & (h["changed_at"] < period.end)
    )
    return set(h.loc[hit, "record_id"])


def response_hours(clocks: pd.DataFrame) -> np.ndarray:
    """Each decided clock's time to answer in the handoff's own time (business or calendar, as the
    engine measured it): a met clock's elapsed time; a breached one's, at least its target; a clock
    handed on in time counts the time it ran before the record left."""
    untouched = np.where(
        clocks["outcome"] == "violated",
        np.maximum(clocks["elapsed_seconds"], clocks["target_seconds"] + 1) / 3600,
        clocks["elapsed_seconds"] / 3600,
    )
    return np.where(clocks["touched"], clocks["hours"], untouched)


def tier_what_if(data: ReportData, period: Period, cfg: ReportConfig) -> list[dict]:
    """For each handoff and each tier with decided clocks in the period: the current target, a
    proposed one and the estimated change in violations, and the conversion difference between
    records answered inside and outside the proposed target.

    The proposal replays the engine's measured time against multiples of each clock's own target
    (`TARGET_FACTORS`): above `loosen_breach_rate` breached, the tightest looser target that brings
    it to at most that rate (else the loosest); at or below `tighten_breach_rate`, the tightest
    target that keeps it there; otherwise keep. Conversion is the handoff's `conversions` entry
    (reports.yaml): a Lead handoff's "reached SQL", demo to proposal's "won", CS kickoff's
    "onboarded"; a handoff without one says so.
    """
    th = cfg.thresholds
    rows = []
    for handoff, hd in handoffs_of(data):
        c = m.judged_clocks(hd, period)
        c = c[c["outcome"].isin(m.DECIDED)].copy()
        conv = cfg.conversions.get(handoff.sla_id)
        if conv is None and handoff.object == "Lead":
            conv = Conversion(label="reached SQL", field="Status", **{"in": ["SQL"]})
        won = converted(hd, period, handoff, conv) if conv is not None else set()
        if not len(c):
            rows.append(_none(handoff, period))
            continue
        c["response"] = response_hours(c)
        c["converted"] = c["record_id"].isin(won)
        for tier, t in c.groupby("tier", sort=True):
            rows.append(_proposal(handoff, str(tier), t, conv, th))
    return rows


def _none(handoff: Handoff, period: Period) -> dict:
    """The what-if row of a handoff without a decided clock in the period: every figure says why."""
    why = f"n/a (no decided clocks in {period.label})"
    return {
        "sla_id": handoff.sla_id,
        "handoff": handoff.name,
        "tier": "(none)",
        "clocks": 0,
        "current_target": why,
        "breach_rate": None,
        "proposed_target": why,
        "proposal": why,
        "violations_now": 0,
        "violations_proposed": 0,
        "violation_change": why,
        "conversion_label": "",
        "conversion_difference": why,
        "conversion_points": None,
    }


def _rate(t: pd.DataFrame, factor: float) -> float:
    return float((t["response"] > factor * t["target_hours"]).mean())


def _proposal(handoff: Handoff, tier: str, t: pd.DataFrame, conv: Conversion | None, th) -> dict:
    now = _rate(t, 1.0)
    looser = [f for f in TARGET_FACTORS if f > 1]
    tighter = [f for f in TARGET_FACTORS if f < 1]
    if now > th.loosen_breach_rate:
        fits = [f for f in looser if _rate(t, f) <= th.loosen_breach_rate]
        factor, why = (fits[0] if fits else looser[-1]), f"loosen: {now:.0%} breached"
    elif now <= th.tighten_breach_rate:
        fits = [f for f in tighter if _rate(t, f) <= th.tighten_breach_rate]
        factor, why = (fits[0] if fits else 1.0), f"tighten: {now:.0%} breached"
        if not fits:
            why = (
                f"keep: {now:.0%} breached, and any tighter target breaches more than "
                f"{th.tighten_breach_rate:.0%}"
            )
    else:
        factor, why = 1.0, f"keep: {now:.0%} breached"
    current = float(t["target_hours"].median())
    inside = t["response"] <= factor * t["target_hours"]
    violations_now = int((t["response"] > t["target_hours"]).sum())
    violations_then = int((~inside).sum())
    delta = violations_then - violations_now
    if conv is None:
        conversion = f"n/a (no conversion defined for {handoff.sla_id} in reports.yaml conversions)"
        diff = None
    elif not inside.any() or inside.all():
        side = "inside" if not inside.any() else "outside"
        conversion = f"n/a (no record answered {side} the proposed target)"
        diff = None
    else:
        rin, rout = float(t.loc[inside, "converted"].mean()), float(t.loc[~inside, "converted"].mean())
        diff = (rin - rout) * 100
        conversion = (
            f"{conv.label}: {rin:.0%} of {int(inside.sum())} answered inside vs {rout:.0%} of "
            f"{int((~inside).sum())} outside ({_points(diff)})"
        )
    return {
        "sla_id": handoff.sla_id,
        "handoff": handoff.name,
        "tier": tier,
        "clocks": len(t),
        "current_target": hours(current),
        "breach_rate": now,
        "proposed_target": hours(current * factor),
        "proposal": why,
        "violations_now": violations_now,
        "violations_proposed": violations_then,
        "violation_change": (
            "no change"
            if delta == 0
            else f"{'up' if delta > 0 else 'down'} {abs(delta)} ({violations_now} to {violations_then})"
        ),
        "conversion_label": conv.label if conv is not None else "",
        "conversion_difference": conversion,
        "conversion_points": diff,
    }


def _points(diff: float) -> str:
    shown = f"{abs(diff):.0f}"
    if shown == "0":
        return "no difference"
    return f"{shown} point{'' if shown == '1' else 's'} {'higher' if diff > 0 else 'lower'} inside"
