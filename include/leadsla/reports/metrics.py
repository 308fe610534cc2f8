"""SLA compliance, first-touch time, week-over-week trend and revenue affected by delay.

Vectorised over the frames from `leadsla.reports.data`. Every table keeps `record_ids` (the rows
behind each figure) so a reader can drill down. Clocks are judged *as of the period's end* from
their stored instants (breached_at, stopped_at), never from their current state, so re-running a
past period gives the same answer after those clocks move on. Never reads the store or the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from leadsla.reports.config import Revenue
from leadsla.reports.data import ReportData
from leadsla.reports.period import Period, period_containing

#: Report dimensions -> column of the enriched clock frame.
DIMENSIONS = {
    "rep": "rep",
    "team": "team",
    "lead_source": "lead_source",
    "lead_type": "lead_type",
    "tier": "tier",
}


def ids(series: pd.Series) -> tuple[str, ...]:
    """The record ids behind a figure, sorted so renders are deterministic."""
    # np.unique sorts and dedupes in C; the War Room calls this for every figure on each request.
    return tuple(np.unique(series.dropna().to_numpy().astype(str)).tolist())


def ids_by(groups, column: str) -> list[tuple[str, ...]]:
    """`ids` of `column` for every group of `groups` (a DataFrameGroupBy), in the groups' order.

    One sort over the whole frame instead of a Python call per group: the War Room builds a few
    hundred figures per request from tens of thousands of clocks.
    """
    codes = groups.ngroup().to_numpy()
    values = groups.obj[column]
    keep = values.notna().to_numpy() & (codes >= 0)
    codes, values = codes[keep], values.to_numpy()[keep].astype(str)
    order = np.argsort(values, kind="stable")
    order = order[np.argsort(codes[order], kind="stable")]
    codes, values = codes[order], values[order]
    first = np.ones(len(values), dtype=bool)
    first[1:] = (codes[1:] != codes[:-1]) | (values[1:] != values[:-1])
    codes, values = codes[first], values[first].tolist()
    bounds = np.searchsorted(codes, np.arange(groups.ngroups + 1))
    return [tuple(values[bounds[i] : bounds[i + 1]]) for i in range(groups.ngroups)]


#: Clock states (`leadsla.engine.STATES`) of a clock a touch or stop rule met, and of one that
#: ended by its record leaving the watched state (SAL -> SQL, Recycled) before or after its target.
MET_STATES = ("met", "met_late")
HANDED_ON_STATES = ("handed_on", "handed_on_late")
#: Outcomes compliance counts; `open` (not decided by the end) and `excluded` are left out.
DECIDED = ("met", "violated")


#: `judged_clocks`' recent answers: a report asks for the same handoff and period from its
#: headline, sections, flags and triggers. Keyed by the frames' identity (each entry holds them, so
#: an id cannot be reused while it is cached), the SLA's `left_counts_as` and the period's bounds.
_JUDGED: dict[tuple, tuple[tuple, pd.DataFrame]] = {}
_JUDGED_KEEP = 32


def judged_clocks(data: ReportData, period: Period) -> pd.DataFrame:
    """`_judged_clocks`, remembered for the same frames and period (a copy each time: callers add
    columns). The frames are read-only once loaded (`reports.data`), so identity is enough."""
    frames = (data.clocks, data.users, data.leads)
    key = (*map(id, frames), data.left_counts_as, period.start, period.end)
    hit = _JUDGED.get(key)
    if hit is None or any(a is not b for a, b in zip(hit[0], frames, strict=True)):
        hit = (frames, _judged_clocks(data, period))
        _JUDGED[key] = hit
        while len(_JUDGED) > _JUDGED_KEEP:
            del _JUDGED[next(iter(_JUDGED))]
    return hit[1].copy()


def _judged_clocks(data: ReportData, period: Period) -> pd.DataFrame:
    """Clocks that started in the period, with lead/rep attributes and their outcome at period end.

    Columns added: rep, lead_source, lead_type, outcome (met | violated | excluded | open),
    touched (bool: met by a touch or stop rule before the end; a clock handed on is not a touch),
    hours (business hours elapsed, for touched clocks), target_hours. A clock that breached before
    the end is violated; one stopped before it is met, except a clock handed on in time when the
    SLA's `left_counts_as` is `excluded` (`data.left_counts_as`): it is excluded.
    `rep` and `team` are the clock's accountable owner and team (the engine's: the owner when it
    breached, else the current owner), so a breach escalated to a manager stays on the rep who let
    it happen; `owner_id` (who has the lead now) is left as it is.
    """
    c = data.clocks
    c = c[(c["clock_start"] >= period.start) & (c["clock_start"] < period.end)].copy()
    names = data.users.set_index("user_id")["name"] if len(data.users) else pd.Series(dtype=object)
    teams = data.users.set_index("user_id")["team"] if len(data.users) else pd.Series(dtype=object)
    owner = c["accountable_owner_id"]
    c["rep"] = owner.map(names).fillna(owner).fillna("(no owner)")
    c["team"] = c["accountable_team"].fillna(owner.map(teams)).fillna("(no team)")
    leads = data.leads.set_index("record_id")
    for col in ("lead_source", "lead_type"):
        c[col] = c["record_id"].map(leads[col]).fillna("(none)") if len(leads) else "(none)"
    violated = c["breached_at"].notna() & (c["breached_at"] < period.end)
    stopped = c["stopped_at"].notna() & (c["stopped_at"] < period.end)
    touched = stopped & c["state"].isin(MET_STATES)
    excluded = stopped & c["state"].isin(HANDED_ON_STATES) & (data.left_counts_as == "excluded")
    c["outcome"] = np.where(
        violated, "violated", np.where(excluded, "excluded", np.where(stopped, "met", "open"))
    )
    c["touched"] = touched
    c["hours"] = np.where(touched, c["elapsed_seconds"] / 3600.0, np.nan)
    c["target_hours"] = c["target_seconds"] / 3600.0
    return c.reset_index(drop=True)


def compliance(clocks: pd.DataFrame, by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Compliance = met / (met + violated) among decided clocks; open and excluded clocks are not
    counted.

    Returns one row per group (or one row overall): decided, met, violated, compliance (0-1, NaN
    when nothing was decided), record_ids, violated_ids.
    """
    d = clocks[clocks["outcome"].isin(DECIDED)].assign(_met=lambda f: f["outcome"] == "met")
    d = d.assign(_vid=d["record_id"].where(~d["_met"]))
    keys = [by] if isinstance(by, str) else list(by or [])
    if not keys:
        d = d.assign(_all="all")
        keys = ["_all"]
    g = d.groupby(keys, sort=True, dropna=False)
    out = g.agg(decided=("_met", "size"), met=("_met", "sum")).reset_index()
    out["violated"] = out["decided"] - out["met"]
    out["compliance"] = out["met"] / out["decided"].where(out["decided"] > 0)
    out["record_ids"] = ids_by(g, "record_id")
    out["violated_ids"] = ids_by(g, "_vid")
    if keys == ["_all"]:
        out = out.drop(columns="_all")
    return out


def first_touch(clocks: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """First-touch time in business hours (the engine's elapsed) for touched clocks (met by a touch
    or stop rule, not handed on): median, p90, mean, and the median target; `vs_target` = mean /
    median target.
    """
    t = clocks[clocks["touched"]]
    keys = [by] if by else []
    if not keys:
        t = t.assign(_all="all")
        keys = ["_all"]
    g = t.groupby(keys, sort=True)
    out = g.agg(
        touched=("hours", "size"),
        median_hours=("hours", "median"),
        p90_hours=("hours", lambda s: float(np.quantile(s, 0.9))),
        mean_hours=("hours", "mean"),
        target_hours=("target_hours", "median"),
    ).reset_index()
    out["vs_target"] = out["mean_hours"] / out["target_hours"]
    out["record_ids"] = ids_by(g, "record_id")
    return out.drop(columns="_all") if keys == ["_all"] else out


def weekly_trend(data: ReportData, period: Period, weeks: int = 8) -> pd.DataFrame:
    """Compliance per week (leadership's weeks, Monday start) for the `weeks` weeks ending with the
    period, each judged as of the period end; plus `change_points` against the week before.
    """
    tz = ZoneInfo(period.timezone)
    last = period_containing(
        "week", (period.end.astimezone(tz) - dt.timedelta(seconds=1)).date(), period.timezone
    )
    spans = [last]
    for _ in range(weeks - 1):
        spans.insert(0, spans[0].previous())
    window = Period(
        "week", f"{spans[0].label}..{last.label}", spans[0].start, min(last.end, period.end), period.timezone
    )
    c = judged_clocks(data, window)
    starts = pd.DatetimeIndex([pd.Timestamp(p.start) for p in spans])
    c["week"] = (
        [spans[i].label for i in np.searchsorted(starts, c["clock_start"], side="right") - 1]
        if len(c)
        else []
    )
    out = compliance(c, "week").set_index("week").reindex([p.label for p in spans])
    out["decided"] = out["decided"].fillna(0).astype(int)
    out["met"] = out["met"].fillna(0).astype(int)
    out["violated"] = out["violated"].fillna(0).astype(int)
    out["record_ids"] = out["record_ids"].apply(lambda v: v if isinstance(v, tuple) else ())
    out["violated_ids"] = out["violated_ids"].apply(lambda v: v if isinstance(v, tuple) else ())
    out["change_points"] = (out["compliance"] - out["compliance"].shift(1)) * 100
    return out.reset_index()


def decay_multiplier(hours: np.ndarray, revenue: Revenue) -> np.ndarray:
    """Share of the base conversion kept when the first touch took `hours` business hours."""
    bounds = np.array(sorted(revenue.decay))
    values = np.array([revenue.decay[b] for b in bounds])
    idx = np.clip(np.searchsorted(bounds, hours, side="left"), 0, len(bounds) - 1)
    return values[idx]


def revenue_affected(clocks: pd.DataFrame, revenue: Revenue) -> dict:
    """Estimated pipeline value lost to late first touches.

    For each violated clock: deal_value x base_conversion x (kept share at the target - kept share
    at the actual response); a clock not yet touched counts at the worst bucket. Returns
    {amount, clocks, record_ids, assumption}.
    """
    v = clocks[clocks["outcome"] == "violated"]
    worst = max(revenue.decay)
    actual = np.where(v["touched"], v["elapsed_seconds"] / 3600.0, worst)
    lost = decay_multiplier(v["target_hours"].to_numpy(), revenue) - decay_multiplier(actual, revenue)
    amount = float(np.clip(lost, 0, None).sum() * revenue.deal_value * revenue.base_conversion)
    buckets = ", ".join(
        f"{'any' if b >= 1e6 else (f'<= {b:g} h')}: {revenue.decay[b]:.0%}" for b in sorted(revenue.decay)
    )
    assumption = (
        f"Estimate: deal value ${revenue.deal_value:,.0f}, base MQL-to-won conversion "
        f"{revenue.base_conversion:.0%}, conversion kept by first-touch time ({buckets}); "
        "untouched breaches count at the worst bucket."
    )
    return {
        "amount": round(amount, 2),
        "clocks": int(len(v)),
        "record_ids": ids(v["record_id"]),
        "assumption": assumption,
    }
