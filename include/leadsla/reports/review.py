"""Monthly and quarterly review logic: red flags, refinement triggers, root causes and the SLA
threshold what-if. Each finding carries its figure and the record ids behind it.

The flags and triggers about a clock (team compliance, response time against target, compliance
two months running) are evaluated per handoff, each naming its handoff; those about the lead
funnel (rejection reasons, MQLs without activity, MQL-to-SQL against the baseline, leakage,
rejection rate) are the Marketing -> Sales funnel's, and War Room use is everyone's.

Pure functions over `ReportData`; never reads the store or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadsla.reports import funnel as fn
from leadsla.reports import metrics as m
from leadsla.reports.config import ReportConfig
from leadsla.reports.data import Handoff, ReportData, handoffs_of
from leadsla.reports.period import Period, parse

#: What a flag about the lead funnel, and one about everyone, names as its handoff.
LEAD_FUNNEL = "Lead funnel (MQL to SQL)"
EVERY_HANDOFF = "Every handoff"


@dataclass(frozen=True)
class Flag:
    check: str
    value: str
    threshold: str
    raised: bool
    record_ids: tuple[str, ...] = ()
    handoff: str = ""  # the handoff's name, `LEAD_FUNNEL` or `EVERY_HANDOFF` ("": not per handoff)

    @property
    def named(self) -> str:
        """The check with its handoff: "Team below compliance target (Demo to proposal)"."""
        return f"{self.check} ({self.handoff})" if self.handoff else self.check


def red_flags(data: ReportData, period: Period, cfg: ReportConfig) -> list[Flag]:
    """The monthly maintenance table's red flags, each computed (raised or not): team compliance
    and response time against target for every handoff, then the lead funnel's three checks and
    War Room use."""
    th = cfg.thresholds
    flags = []
    for handoff, hd in handoffs_of(data):
        flags.extend(_handoff_flags(handoff, hd, period, cfg))
    c = fn.cohort(data, period)
    reasons = fn.rejection_reasons(c)
    top = reasons.iloc[0] if len(reasons) else None
    flags.append(
        Flag(
            "Single rejection reason dominates",
            f"{top['rejection_reason']} {top['share']:.0%} of {int(reasons['rejects'].sum())} rejects"
            if top is not None
            else "no rejects",
            f"> {th.rejection_reason_share:.0%} of rejects",
            bool(top is not None and top["share"] > th.rejection_reason_share),
            top["record_ids"] if top is not None else (),
            LEAD_FUNNEL,
        )
    )
    na = fn.no_activity(c)
    flags.append(
        Flag(
            "MQLs with no sales activity",
            f"{na['leads']} of {na['mqls']} ({_pct(na['share'], f'no MQLs in {period.label}')})",
            f"> {th.no_activity_share:.0%}",
            bool(na["share"] > th.no_activity_share),
            na["record_ids"],
            LEAD_FUNNEL,
        )
    )
    usage = war_room_usage(data, period, cfg)
    flags.append(
        Flag(
            "Leaders opening the War Room",
            f"{usage['visited']} of {usage['leaders']} ({_pct(usage['share'], 'no active leaders')})",
            f"< {th.war_room_leaders:.0%}",
            bool(usage["share"] < th.war_room_leaders),
            (),
            EVERY_HANDOFF,
        )
    )
    return flags


def _handoff_flags(handoff: Handoff, data: ReportData, period: Period, cfg: ReportConfig) -> list[Flag]:
    """One handoff's two clock flags: a team below the compliance target, and the average answer
    slower than the target by a factor (per lead type for a Lead handoff, per tier otherwise)."""
    th = cfg.thresholds
    clocks = m.judged_clocks(data, period)
    flags = []
    teams = m.compliance(clocks, "team")
    low = teams[teams["compliance"] < th.team_compliance]
    flags.append(
        Flag(
            "Team below compliance target",
            "; ".join(f"{r.team} {r.compliance:.0%}" for r in teams.itertuples()) or "no decided clocks",
            f"any team < {th.team_compliance:.0%}",
            bool(len(low)),
            tuple(sorted(set().union(*low["violated_ids"])) if len(low) else ()),
            handoff.name,
        )
    )
    by = "lead_type" if handoff.object == "Lead" else "tier"
    ft = m.first_touch(clocks, by)
    slow = ft[ft["vs_target"] > th.response_vs_target]
    flags.append(
        Flag(
            f"Average response above target for a {'lead type' if by == 'lead_type' else 'tier'}",
            "; ".join(
                f"{getattr(r, by)} {r.mean_hours:.1f} h vs {r.target_hours:.1f} h" for r in ft.itertuples()
            )
            or ("no touched leads" if handoff.object == "Lead" else "no clock met"),
            f"> {th.response_vs_target:g}x target",
            bool(len(slow)),
            tuple(sorted(set().union(*slow["record_ids"])) if len(slow) else ()),
            handoff.name,
        )
    )
    return flags


def _pct(x: float | None, why: str = "") -> str:
    """A share as "28%", or "n/a (why)" when it cannot be computed (never "nan" or "inf")."""
    if x is None or not np.isfinite(x):
        return f"n/a ({why})" if why else "n/a"
    return f"{x:.0%}"


def war_room_usage(data: ReportData, period: Period, cfg: ReportConfig) -> dict:
    """Leaders (active users whose role contains a leader word) who opened the War Room in the period."""
    u = data.users
    role = u["role"].fillna("").str.lower()
    leaders = u[u["is_active"].astype(bool) & role.apply(lambda r: any(w in r for w in cfg.leader_roles))]
    v = data.visits[(data.visits["at"] >= period.start) & (data.visits["at"] < period.end)]
    keys = set(leaders["user_id"]) | set(leaders["name"].dropna())
    visited = leaders[leaders["user_id"].isin(v["actor"]) | leaders["name"].isin(v["actor"])]
    del keys
    n = len(leaders)
    return {
        "leaders": n,
        "visited": len(visited),
        "share": len(visited) / n if n else 0.0,
        "who": sorted(visited["name"].fillna(visited["user_id"])),
    }


def monthly_figures(data: ReportData, period: Period, cfg: ReportConfig) -> dict:
    """Compliance, MQL-to-SQL, leakage and rejection rate of one month (for triggers)."""
    clocks = m.judged_clocks(data, period)
    comp = m.compliance(clocks)
    c = fn.cohort(data, period)
    f = fn.funnel(c).set_index("stage")
    return {
        "label": period.label,
        "compliance": float(comp["compliance"].iloc[0]) if len(comp) else float("nan"),
        "mql_to_sql": float(f.loc["SQL", "from_mql"]),
        "leakage": fn.leakage(c, period, cfg.thresholds.leakage_days)["share"],
        "rejection_rate": fn.rejection_rate(c)["rate"],
    }


@dataclass(frozen=True)
class Baseline:
    """The month a review compares conversion against, or why there is none (`why_none`)."""

    month: Period | None
    why_none: str = ""


def baseline_month(data: ReportData, cfg: ReportConfig, reviewed: Period) -> Baseline:
    """The post-launch baseline month for a review of `reviewed`: the configured one, else the
    first *full* month after the first MQL (a partial launch month would understate it).

    Only a month that is over before `reviewed` starts is a baseline: one inside or after the
    reviewed period would compare the period with itself or with the future (the demo's November
    review read "2026-12 n/a -> 2026-11 28%"). Otherwise `month` is None and `why_none` says why.
    """
    tz = reviewed.timezone
    if cfg.baseline_month:
        month = parse("month", cfg.baseline_month, tz)
        what = f"the configured baseline {month.label}"
    else:
        mqls = data.stages[data.stages["stage"] == "MQL"]["at"]
        mqls = mqls[mqls < reviewed.end]
        if not len(mqls):
            return Baseline(None, f"no MQL before {reviewed.label} ends")
        first = mqls.min()
        local = first.tz_convert(tz)
        month = parse("month", f"{local.year}-{local.month:02d}", tz)
        if pd.Timestamp(month.start) < first:
            month = month_after(month)
        what = f"the first full month after the first MQL ({local:%Y-%m-%d}), {month.label},"
    if month.end > reviewed.start:
        return Baseline(None, f"{what} is not over before {reviewed.label} starts")
    return Baseline(month)


def month_after(month: Period) -> Period:
    """The calendar month after `month`."""
    return parse("month", f"{pd.Timestamp(month.end).tz_convert(month.timezone):%Y-%m}", month.timezone)


def refinement_triggers(data: ReportData, period: Period, cfg: ReportConfig) -> list[Flag]:
    """Triggers across months: this month and the one before (compliance per handoff), and the
    lead funnel against the baseline."""
    th = cfg.thresholds
    now, prev = monthly_figures(data, period, cfg), monthly_figures(data, period.previous(), cfg)
    base = baseline_month(data, cfg, period)
    out = []
    for handoff, hd in handoffs_of(data):
        h_now, h_prev = _compliance_of(hd, period), _compliance_of(hd, period.previous())
        out.append(
            Flag(
                "Compliance below target two months running",
                f"{h_prev['label']} {_compliance(h_prev)}, {h_now['label']} {_compliance(h_now)}",
                f"< {th.compliance_two_months:.0%} both",
                bool(
                    h_now["compliance"] < th.compliance_two_months
                    and h_prev["compliance"] < th.compliance_two_months
                ),
                handoff=handoff.name,
            )
        )
    out.append(_conversion_from_baseline(data, period, cfg, now, base))
    out.append(
        Flag(
            "Lead leakage",
            _pct(now["leakage"], f"no MQL in {now['label']} is {th.leakage_days} days old yet"),
            f"> {th.leakage_share:.0%}",
            bool(now["leakage"] > th.leakage_share),
            handoff=LEAD_FUNNEL,
        )
    )
    out.append(
        Flag(
            "Rejection rate high two months running",
            f"{prev['label']} {_pct(prev['rejection_rate'], _no_mqls(prev))}, "
            f"{now['label']} {_pct(now['rejection_rate'], _no_mqls(now))}",
            f"> {th.rejection_rate_two_months:.0%} both",
            bool(
                now["rejection_rate"] > th.rejection_rate_two_months
                and prev["rejection_rate"] > th.rejection_rate_two_months
            ),
            handoff=LEAD_FUNNEL,
        )
    )
    return out


def _compliance_of(data: ReportData, period: Period) -> dict:
    """The month's compliance of `data`'s clocks (one handoff's), NaN when nothing was decided."""
    comp = m.compliance(m.judged_clocks(data, period))
    return {
        "label": period.label,
        "compliance": float(comp["compliance"].iloc[0]) if len(comp) else float("nan"),
    }


def _no_mqls(month: dict) -> str:
    return f"no MQLs in {month['label']}"


def _compliance(month: dict) -> str:
    return _pct(month["compliance"], f"no decided clocks in {month['label']}")


def _conversion_from_baseline(
    data: ReportData, period: Period, cfg: ReportConfig, now: dict, base: Baseline
) -> Flag:
    """MQL-to-SQL conversion of the month against the baseline month's; judged only when both
    rates exist and the month is over."""
    th = cfg.thresholds
    threshold = f"down > {th.mql_to_sql_drop_points:g} points"
    name = "MQL-to-SQL conversion down from baseline"
    if base.month is None:
        return Flag(name, f"n/a (no baseline: {base.why_none})", threshold, False, handoff=LEAD_FUNNEL)
    then = monthly_figures(data, base.month, cfg)
    value = (
        f"{then['label']} {_pct(then['mql_to_sql'], _no_mqls(then))} -> "
        f"{now['label']} {_pct(now['mql_to_sql'], _no_mqls(now))}"
    )
    if not (np.isfinite(then["mql_to_sql"]) and np.isfinite(now["mql_to_sql"])):
        return Flag(name, value + "; not judged without both rates", threshold, False, handoff=LEAD_FUNNEL)
    drop = (then["mql_to_sql"] - now["mql_to_sql"]) * 100
    value += f" ({-drop:+.1f} points)"
    # A month to date has young leads that have not had a whole month to convert: its rate
    # is low by construction, so the trigger is judged only on a month that is over.
    if period.partial:
        value += "; not judged until the month is over (its newest leads have had less time to convert)"
    return Flag(
        name,
        value,
        threshold,
        bool(drop > th.mql_to_sql_drop_points and not period.partial),
        handoff=LEAD_FUNNEL,
    )


def open_load(data: ReportData, clocks: pd.DataFrame) -> np.ndarray:
    """For each clock, how many other clocks its owner had open when it started (vectorised per
    owner: starts before minus stops before)."""
    allc = data.clocks
    load = np.zeros(len(clocks), dtype=int)
    end = allc["stopped_at"].fillna(pd.Timestamp("2200-01-01", tz="UTC"))
    for owner, idx in clocks.groupby("owner_id").indices.items():
        mine = allc["owner_id"] == owner
        starts = np.sort(allc.loc[mine, "clock_start"].to_numpy())
        stops = np.sort(end[mine].to_numpy())
        at = clocks["clock_start"].iloc[idx].to_numpy()
        load[idx] = np.searchsorted(starts, at, side="left") - np.searchsorted(stops, at, side="right")
    return load


def root_causes(data: ReportData, period: Period, tz: str | None = None) -> dict:
    """Violations by hour of week, lead source and owner's open load; systemic vs individual causes.

    Systemic: a team whose reps (at least two) all have a violation rate >= 50% in the same weekday
    and 4-hour block, with at least 5 decided clocks there (capacity). Individual: a rep whose
    compliance is >= 20 points below the team's while their median open load is within 1.5x the
    team's median + 1 (not overloaded). Returns tables plus `sentences` (plain, with figures).
    """
    tz = tz or period.timezone
    c = m.judged_clocks(data, period)
    c = c[c["outcome"].isin(m.DECIDED)].copy()
    c["violated"] = c["outcome"] == "violated"
    local = c["clock_start"].dt.tz_convert(tz)
    c["weekday"] = local.dt.day_name()
    c["block"] = (local.dt.hour // 4 * 4).map(lambda h: f"{h:02d}:00-{h + 4:02d}:00")
    c["hour_of_week"] = local.dt.day_of_week * 24 + local.dt.hour
    c["load"] = open_load(data, c)
    how = (
        c.groupby("hour_of_week")["violated"]
        .agg(["size", "sum"])
        .rename(columns={"size": "decided", "sum": "violations"})
    )
    src = m.compliance(c, "lead_source")
    c["load_band"] = pd.cut(c["load"], [-1, 2, 5, 10, 10**6], labels=["0-2", "3-5", "6-10", "11+"])
    load = (
        c.groupby("load_band", observed=False)["violated"]
        .agg(["size", "sum"])
        .rename(columns={"size": "decided", "sum": "violations"})
        .reset_index()
    )
    sentences, systemic, individual = [], [], []
    per = c.groupby(["team", "weekday", "block", "rep"])["violated"].agg(["size", "mean"]).reset_index()
    cell = (
        c.groupby(["team", "weekday", "block"])
        .agg(decided=("violated", "size"), rate=("violated", "mean"), record_ids=("record_id", m.ids))
        .reset_index()
    )
    for row in cell[(cell["decided"] >= 5) & (cell["rate"] >= 0.5)].itertuples():
        reps = per[(per["team"] == row.team) & (per["weekday"] == row.weekday) & (per["block"] == row.block)]
        if len(reps) >= 2 and (reps["mean"] >= 0.5).all():
            systemic.append(
                {
                    "team": row.team,
                    "weekday": row.weekday,
                    "block": row.block,
                    "decided": row.decided,
                    "rate": row.rate,
                    "reps": len(reps),
                    "record_ids": row.record_ids,
                }
            )
            sentences.append(
                f"Systemic (capacity): every {row.team} rep ({len(reps)}) missed the SLA on "
                f"{row.weekday}s {row.block} ({tz}) - {row.rate:.0%} of {row.decided} leads violated."
            )
    team_comp = m.compliance(c, "team").set_index("team")["compliance"]
    team_load = c.groupby("team")["load"].median()
    rep_stats = (
        c.groupby(["team", "rep"])
        .agg(
            decided=("violated", "size"),
            compliance=("violated", lambda v: 1 - v.mean()),
            load=("load", "median"),
            record_ids=("record_id", m.ids),
        )
        .reset_index()
    )
    for row in rep_stats.itertuples():
        gap = (team_comp[row.team] - row.compliance) * 100
        if row.decided >= 5 and gap >= 20 and row.load <= 1.5 * team_load[row.team] + 1:
            individual.append(
                {
                    "team": row.team,
                    "rep": row.rep,
                    "compliance": row.compliance,
                    "team_compliance": team_comp[row.team],
                    "load": row.load,
                    "record_ids": row.record_ids,
                }
            )
            sentences.append(
                f"Individual: {row.rep} met {row.compliance:.0%} of {row.decided} leads against "
                f"{team_comp[row.team]:.0%} for {row.team}, at a normal open load "
                f"(median {row.load:g} vs team {team_load[row.team]:g})."
            )
    if len(src):
        worst = src.sort_values(["compliance", "lead_source"]).iloc[0]
        sentences.append(
            f"Lowest-compliance lead source: {worst['lead_source']} at {worst['compliance']:.0%} "
            f"({worst['violated']} of {worst['decided']} violated)."
        )
    if not systemic and not individual:
        sentences.append("No systemic or individual pattern met the thresholds this period.")
    return {
        "by_hour_of_week": how.reset_index(),
        "by_source": src,
        "by_load": load,
        "systemic": systemic,
        "individual": individual,
        "sentences": sentences,
    }


def threshold_what_if(data: ReportData, period: Period, cfg: ReportConfig) -> dict:
    """Replays the quarter's touched and breached clocks under alternative targets.

    Uses the engine's business elapsed time per clock (pauses and owner calendars already applied),
    so a different target changes only the comparison: violations = clocks whose time to first touch
    (or, untouched, its elapsed time at the end) exceeds the target. Also conversion (SQL reached)
    by response-time band, monthly breach rates under the current target and a recommendation.
    """
    th = cfg.thresholds
    c = m.judged_clocks(data, period)
    c = c[c["outcome"].isin(m.DECIDED)].copy()
    # A clock handed on in time (met, not touched) would have breached any target shorter than
    # the time it ran before the record left the watched state.
    untouched_hours = np.where(
        c["outcome"] == "violated",
        np.maximum(c["elapsed_seconds"], c["target_seconds"] + 1) / 3600,
        c["elapsed_seconds"] / 3600,
    )
    c["response_hours"] = np.where(c["touched"], c["hours"], untouched_hours)
    rows = [
        {
            "target_hours": h,
            "violations": int((c["response_hours"] > h).sum()),
            "clocks": len(c),
            "breach_rate": float((c["response_hours"] > h).mean()) if len(c) else float("nan"),
        }
        for h in sorted(set(cfg.what_if_targets_hours))
    ]
    sql = set(
        data.stages.loc[(data.stages["stage"] == "SQL") & (data.stages["at"] < period.end), "record_id"]
    )
    c["converted"] = c["record_id"].isin(sql)
    c["band"] = pd.cut(
        c["response_hours"],
        [0, 1, 4, 8, 24, np.inf],
        labels=["<1 h", "1-4 h", "4-8 h", "8-24 h", "24 h+"],
        include_lowest=True,
    )
    conv = (
        c.groupby("band", observed=False)["converted"]
        .agg(["size", "mean"])
        .rename(columns={"size": "clocks", "mean": "sql_rate"})
        .reset_index()
    )
    months, p = [], period
    start = period.start
    mp = parse("month", f"{pd.Timestamp(start).tz_convert(period.timezone):%Y-%m}", period.timezone)
    while mp.start < p.end:
        mc = c[(c["clock_start"] >= mp.start) & (c["clock_start"] < mp.end)]
        months.append(
            {
                "month": mp.label,
                "clocks": len(mc),
                "breach_rate": float((mc["outcome"] == "violated").mean()) if len(mc) else float("nan"),
            }
        )
        mp = parse("month", f"{pd.Timestamp(mp.end).tz_convert(period.timezone):%Y-%m}", period.timezone)
    rates = [mo["breach_rate"] for mo in months if not np.isnan(mo["breach_rate"])]
    overall = float((c["outcome"] == "violated").mean()) if len(c) else float("nan")
    if rates and overall > th.loosen_breach_rate:
        rec = f"loosen: {overall:.0%} of clocks breached this quarter (above {th.loosen_breach_rate:.0%})"
    elif rates and max(rates) <= th.tighten_breach_rate:
        rec = f"tighten: met consistently (every month at or below {th.tighten_breach_rate:.0%} breached)"
    else:
        rec = f"keep: {_pct(overall, f'no decided clocks in {period.label}')} breached this quarter"
    return {
        "targets": pd.DataFrame(rows),
        "conversion_by_response": conv,
        "months": pd.DataFrame(months),
        "breach_rate": overall,
        "recommendation": rec,
    }
