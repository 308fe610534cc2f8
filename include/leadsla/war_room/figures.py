"""The War Room's range figures - compliance by team, rep and week, median first touch, the funnel
of the range's MQL cohort and rejection reasons - from the rows `queries` reads for one filter set.

The same figures as `leadsla.reports.metrics.compliance` / `funnel.funnel` /
`funnel.rejection_reasons` (tests/integration/test_war_room_figures.py holds the two side by side),
computed for a page that must answer in under a second: the store has already judged each clock
(outcome as of the range's end, rep, team, week) and returns each cohort lead's Status changes;
here every frame is sorted by record id once, so the record ids behind every figure come out
sorted and deduplicated without a sort per figure. Pure: never reads the store or the clock.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from leadsla.reports.data import FUNNEL, REJECTED, STAGE_OF_STATUS
from leadsla.reports.period import Period

#: Clock outcome codes as the clocks query returns them (judged as of the range's end); EXCLUDED:
#: handed on, under an SLA whose `left_counts_as` is `excluded` (neither met nor violated).
OPEN, MET, VIOLATED, EXCLUDED = 0, 1, 2, 3
#: Every stage a lead can reach, in the order of the columns of `stage_arrivals`.
STAGES = FUNNEL + REJECTED
_STATUSES = pd.Index(list(STAGE_OF_STATUS), dtype=object)
#: `STAGES` index of each of `_STATUSES`, then -1 for "no stage" (get_indexer's -1 picks it).
_STAGE_OF_CODE = np.array(
    [STAGES.index(STAGE_OF_STATUS[status]) for status in _STATUSES] + [-1], dtype=np.int64
)
_NONE = np.iinfo(np.int64).max  # "never reached" in the int64 microsecond arrays below


def sorted_by_record(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` ordered by record id as `metrics.ids` orders ids (code points), ties kept in order.

    Sorted here rather than by the store: SQLite sorts the rows slower than numpy sorts the ids,
    and PostgreSQL's collation may order ids differently; rows that already come in order (SQLite
    returns a UNION's rows sorted) cost one pass.
    """
    record_ids = frame["record_id"].to_numpy()
    if len(record_ids) < 2 or bool(np.all(record_ids[1:] >= record_ids[:-1])):
        return frame.reset_index(drop=True)
    order = np.argsort(record_ids.astype(str), kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def _ids_per_group(codes: np.ndarray, record_ids: np.ndarray, groups: int) -> list[tuple[str, ...]]:
    """Distinct record ids of each group 0..groups-1, sorted; rows are already sorted by record id
    (`sorted_by_record`) and `codes` < 0 marks rows no group counts."""
    keep = codes >= 0
    codes, values = codes[keep], record_ids[keep]
    order = np.argsort(codes, kind="stable")  # stable: ids stay sorted inside each group
    codes, values = codes[order], values[order]
    first = np.ones(len(values), dtype=bool)
    first[1:] = (codes[1:] != codes[:-1]) | (values[1:] != values[:-1])
    codes, values = codes[first], values[first].tolist()
    bounds = np.searchsorted(codes, np.arange(groups + 1))
    return [tuple(values[bounds[i] : bounds[i + 1]]) for i in range(groups)]


def _group_codes(frame: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Codes of the rows' groups of `by` in sorted key order (as `groupby(sort=True)`) and the
    groups' keys; [] = one group."""
    if not by:
        return np.zeros(len(frame), dtype=np.int64), pd.DataFrame(index=range(1 if len(frame) else 0))
    combined = np.zeros(len(frame), dtype=np.int64)
    keys = []
    for col in by:
        codes, uniques = pd.factorize(frame[col].to_numpy(), sort=True)
        combined = combined * len(uniques) + codes
        keys.append(np.asarray(uniques, dtype=object))
    present, codes = np.unique(combined, return_inverse=True)
    table = {}
    for col, uniques in zip(by[::-1], keys[::-1], strict=True):
        table[col] = uniques[present % len(uniques)]
        present = present // len(uniques)
    return codes.astype(np.int64), pd.DataFrame({col: table[col] for col in by})


def compliance(clocks: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Compliance = met / (met + violated) of decided clocks, per group of `by` (sorted; [] = one
    overall row), as `metrics.compliance`: decided, met, violated, compliance, record_ids,
    violated_ids. Groups with only open or excluded clocks are absent.

    Args:
        clocks: judged clocks sorted by record id: record_id, outcome (OPEN/MET/VIOLATED/EXCLUDED)
            and the `by` columns (no missing values: the query fills them).
    """
    outcome = clocks["outcome"].to_numpy().astype(np.int64)
    decided = (outcome == MET) | (outcome == VIOLATED)
    group_of_decided, table = _group_codes(clocks[decided], by)
    groups = len(table)
    group_of_clock = np.full(len(clocks), -1, dtype=np.int64)
    group_of_clock[decided] = group_of_decided
    record_ids = clocks["record_id"].to_numpy()
    table["decided"] = np.bincount(group_of_decided, minlength=groups).astype(np.int64)
    table["met"] = np.bincount(group_of_clock[outcome == MET], minlength=groups).astype(np.int64)
    table["violated"] = table["decided"] - table["met"]
    table["compliance"] = table["met"] / table["decided"].where(table["decided"] > 0)
    table["record_ids"] = _ids_per_group(group_of_clock, record_ids, groups)
    table["violated_ids"] = _ids_per_group(
        np.where(outcome == VIOLATED, group_of_clock, -1), record_ids, groups
    )
    return table


def median_first_touch(clocks: pd.DataFrame, by: str) -> pd.Series:
    """Median business hours to the first touch of touched clocks, per `by` (the engine's elapsed
    time of clocks met by a touch or stop rule before the range's end: `touched_seconds`)."""
    seconds = clocks["touched_seconds"].to_numpy().astype(float)
    touched = ~np.isnan(seconds)
    return pd.Series(seconds[touched] / 3600.0).groupby(clocks[by].to_numpy()[touched], sort=True).median()


def _microseconds(values: pd.Series) -> np.ndarray:
    """UTC instants as int64 microseconds, missing = `_NONE`. SQLite's raw text (naive UTC,
    'YYYY-MM-DD HH:MM:SS.ffffff') is parsed by numpy in one call; anything else (PostgreSQL's
    aware datetimes, parsed frames) through pandas."""
    raw = values.to_numpy()
    present = raw[pd.notna(raw)]
    if len(present) and isinstance(present[0], str):
        out = raw.astype("M8[us]").view(np.int64).copy()
        out[out == np.iinfo(np.int64).min] = _NONE
        return out
    instants = (
        pd.DatetimeIndex(pd.to_datetime(raw, utc=True)).as_unit("us") if len(raw) else pd.DatetimeIndex([])
    )
    out = instants.asi8.copy()
    out[instants.isna()] = _NONE
    return out


def _stage_index(statuses: np.ndarray) -> np.ndarray:
    """The `STAGES` index each Status value reaches, -1 for none (one hashed look-up in C)."""
    return _STAGE_OF_CODE[_STATUSES.get_indexer(statuses)]


def stage_arrivals(rows: pd.DataFrame, period: Period) -> pd.DataFrame:
    """Each lead's first arrival at every stage before the period's end, one row per lead sorted by
    record id: record_id, rejection_reason, `<stage>_at` for every stage (NaT = not reached).

    A lead reaches a stage at its first Status change into it; the status it was created with
    (the old value of its first Status change, or its status when it never changed;
    `reports.data.first_status_arrivals`) counts as reached at its creation when that is earlier.

    Args:
        rows: one row per Status change before the period's end (a lead without any: one row with
            no change): record_id, status, created_at, rejection_reason, new_value, old_value,
            changed_at (UTC: datetimes, or SQLite's raw text).
    """
    rows = sorted_by_record(rows)
    record_ids = rows["record_id"].to_numpy()
    first_row = np.ones(len(record_ids), dtype=bool)
    first_row[1:] = record_ids[1:] != record_ids[:-1]
    lead_starts = np.flatnonzero(first_row)  # each lead's first row: its columns repeat on each of its rows
    lead_of_row = np.cumsum(first_row) - 1
    per_lead = rows.iloc[lead_starts]
    created = _microseconds(per_lead["created_at"])
    changed = _microseconds(rows["changed_at"])
    has_change = changed != _NONE
    initial = _initial_stage(rows, per_lead, changed, has_change, lead_starts, lead_of_row)
    by_change = _first_changes_into_stages(rows, changed, has_change, lead_of_row, len(lead_starts))
    end = pd.Timestamp(period.end).as_unit("us").value
    arrivals = pd.DataFrame(
        {"record_id": record_ids[lead_starts], "rejection_reason": per_lead["rejection_reason"].to_numpy()}
    )
    has_created = created != _NONE
    for stage_index, stage in enumerate(STAGES):
        changed_into = by_change[:, stage_index]
        # As `reports.data.load` has it: the earlier of the two, and the first change into the stage
        # wins a tie; an arrival at or after the end does not count.
        keep_change = (
            (initial != stage_index)
            | ((changed_into != _NONE) & has_created & (changed_into <= created))
            | ~has_created
        )
        arrived = np.where(keep_change, changed_into, created)
        arrived = np.where(arrived < end, arrived, _NONE)
        never = arrived == _NONE
        arrived = arrived.copy()
        arrived[never] = np.iinfo(np.int64).min  # NaT
        arrivals[f"{stage}_at"] = pd.DatetimeIndex(arrived.view("M8[us]")).tz_localize("UTC")
    return arrivals


def _initial_stage(
    rows: pd.DataFrame,
    per_lead: pd.DataFrame,
    changed: np.ndarray,
    has_change: np.ndarray,
    lead_starts: np.ndarray,
    lead_of_row: np.ndarray,
) -> np.ndarray:
    """Per lead, the `STAGES` index (-1: none) of the status it was created with: the old value of
    its earliest change (an empty one means the change recorded the first status), else its
    current status."""
    leads = len(lead_starts)
    earliest = np.minimum.reduceat(changed, lead_starts) if leads else np.zeros(0, dtype=np.int64)
    earliest_rows = np.flatnonzero(has_change & (changed == earliest[lead_of_row]))
    _, first_of_lead = np.unique(lead_of_row[earliest_rows], return_index=True)  # a tie: the first row
    chosen = earliest_rows[first_of_lead]
    first_old = np.full(leads, None, dtype=object)
    first_old[lead_of_row[chosen]] = rows["old_value"].to_numpy()[chosen]
    return _stage_index(np.where(earliest != _NONE, first_old, per_lead["status"].to_numpy()))


def _first_changes_into_stages(
    rows: pd.DataFrame, changed: np.ndarray, has_change: np.ndarray, lead_of_row: np.ndarray, leads: int
) -> np.ndarray:
    """Per lead (rows) and stage (columns, as `STAGES`), the int64 microsecond of its first Status
    change into the stage, `_NONE` for none."""
    stage_of_row = _stage_index(rows["new_value"].to_numpy())
    first = np.full((leads, len(STAGES)), _NONE, dtype=np.int64)
    into_stage = has_change & (stage_of_row >= 0)
    np.minimum.at(first, (lead_of_row[into_stage], stage_of_row[into_stage]), changed[into_stage])
    return first


def cohort(rows: pd.DataFrame, period: Period) -> pd.DataFrame:
    """The period's MQL cohort: `stage_arrivals` of the leads whose MQL arrival falls in the period,
    with `rejected` (reached Recycled or Disqualified) and the reason filled with "(none)"."""
    arrivals = stage_arrivals(rows, period)
    mql = arrivals["MQL_at"]
    cohort_leads = arrivals[(mql >= period.start) & (mql < period.end)].reset_index(drop=True)
    cohort_leads["rejected"] = cohort_leads["Recycled_at"].notna() | cohort_leads["Disqualified_at"].notna()
    cohort_leads["rejection_reason"] = cohort_leads["rejection_reason"].fillna("(none)")
    return cohort_leads


def funnel(cohort_leads: pd.DataFrame) -> pd.DataFrame:
    """As `reports.funnel.funnel`: per stage, leads reached, record_ids, conversion from the
    previous stage and from MQL, average days from the previous stage. `cohort_leads` (`cohort`)
    sorted by record id."""
    rows = []
    record_ids = cohort_leads["record_id"].to_numpy()
    for i, stage in enumerate(FUNNEL):
        arrived = cohort_leads[f"{stage}_at"]
        reached = arrived.notna().to_numpy()
        row = {"stage": stage, "leads": int(reached.sum()), "record_ids": tuple(record_ids[reached].tolist())}
        if i:
            previous = cohort_leads[f"{FUNNEL[i - 1]}_at"]
            reached_previous = int(previous.notna().sum())
            row["from_previous"] = row["leads"] / reached_previous if reached_previous else float("nan")
            gap = (arrived[reached] - previous[reached]).dt.total_seconds() / 86400
            row["avg_days_from_previous"] = float(gap.mean()) if gap.notna().any() else float("nan")
        else:
            row["from_previous"] = float("nan")
            row["avg_days_from_previous"] = float("nan")
        row["from_mql"] = row["leads"] / len(cohort_leads) if len(cohort_leads) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def rejection_reasons(cohort_leads: pd.DataFrame) -> pd.DataFrame:
    """As `reports.funnel.rejection_reasons`: rejected cohort leads by reason (rejects, share,
    record_ids), most first. `cohort_leads` (`cohort`) sorted by record id."""
    rejected = cohort_leads[cohort_leads["rejected"]]
    reason_of_lead, reasons = pd.factorize(rejected["rejection_reason"], sort=True)
    table = pd.DataFrame({"rejection_reason": list(reasons)})
    table["rejects"] = np.bincount(reason_of_lead, minlength=len(reasons)).astype(np.int64)
    table["share"] = table["rejects"] / len(rejected) if len(rejected) else 0.0
    table["record_ids"] = _ids_per_group(reason_of_lead, rejected["record_id"].to_numpy(), len(reasons))
    return table.sort_values(["rejects", "rejection_reason"], ascending=[False, True]).reset_index(drop=True)


def unavailable(value: float | None, why: str = "") -> str:
    """ "n/a (why)" for a figure that cannot be computed (None, NaN, infinite), "" for one that can:
    a War Room page never prints `nan` or `inf`."""
    if value is not None and not pd.isna(value) and np.isfinite(float(value)):
        return ""
    return f"n/a ({why})" if why else "n/a"


#: The trend chart's size and plot area (pixels): a line readable beside the trend table.
_CHART_W, _CHART_H = 480, 210
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 12, 14, 44


def trend_chart(trend: list[dict], target: float | None = None) -> Markup:
    """The weekly trend (`range_panel`'s rows: week, decided, violated, compliance) as an inline SVG
    line chart, 0-100% met, with the compliance target as a dashed line; each point's tooltip
    gives the week's figures. Weeks without a decided clock have no point (the table says so).

    Drawn here rather than by a chart library: no script on the page, nothing to download, and a
    few hundred bytes built in microseconds (the page answers in under a second).
    """
    points = [r for r in trend if r.get("compliance") is not None and np.isfinite(r["compliance"])]
    if not points:
        return Markup(
            '<p class="note" id="trend-chart">No decided clocks in the range: no trend to draw.</p>'
        )
    width, height = _CHART_W - _LEFT - _RIGHT, _CHART_H - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (width * (i + 0.5) / len(points))

    def y(share: float) -> float:
        return _TOP + height * (1 - share)

    parts = [
        f'<svg id="trend-chart" role="img" width="{_CHART_W}" height="{_CHART_H}" '
        f'viewBox="0 0 {_CHART_W} {_CHART_H}" xmlns="http://www.w3.org/2000/svg" font-size="11" '
        'font-family="Arial,sans-serif"><title>Compliance by week</title>'
    ]
    for share in (0.0, 0.5, 1.0):
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + width}" y1="{y(share):.1f}" y2="{y(share):.1f}" stroke="#ddd"/>'
            f'<text x="{_LEFT - 4}" y="{y(share) + 4:.1f}" text-anchor="end">{share:.0%}</text>'
        )
    if target is not None and np.isfinite(target):
        parts.append(
            f'<line class="target" x1="{_LEFT}" x2="{_LEFT + width}" y1="{y(target):.1f}" '
            f'y2="{y(target):.1f}" stroke="#c0392b" stroke-dasharray="4 3"/>'
            f'<text x="{_LEFT + width}" y="{y(target) - 3:.1f}" text-anchor="end" fill="#c0392b">'
            f"target {target:.0%}</text>"
        )
    line = " ".join(f"{x(i):.1f},{y(r['compliance']):.1f}" for i, r in enumerate(points))
    parts.append(f'<polyline points="{line}" fill="none" stroke="#3b6ea8" stroke-width="2"/>')
    every = max(1, -(-len(points) // 8))  # at most 8 week labels
    for i, r in enumerate(points):
        week = escape(str(r["week"]))
        tip = escape(
            f"week of {r['week']}: {r['compliance']:.0%} met, {r['violated']} of {r['decided']} violated"
        )
        parts.append(
            f'<circle class="week" cx="{x(i):.1f}" cy="{y(r["compliance"]):.1f}" r="3.5" fill="#3b6ea8">'
            f"<title>{tip}</title></circle>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x(i):.1f}" y="{_TOP + height + 16}" text-anchor="middle">{week[5:]}</text>'
            )
    parts.append(
        f'<text x="{_LEFT + width / 2:.0f}" y="{_CHART_H - 6}" text-anchor="middle" fill="#555">'
        "week of (Monday)</text></svg>"
    )
    return Markup("".join(parts))


#: The SLA matrix's trend sparkline (pixels).
_SPARK_W, _SPARK_H, _SPARK_PAD = 96, 24, 3


def sparkline(trend: list[dict], target: float | None = None) -> Markup:
    """A handoff's weekly compliance (`matrix.range_counts`' `trend`: week, decided, compliance or
    None) as a small inline SVG for its row of the SLA matrix: a line through the weeks with
    decided clocks, the target as a dotted line, and a tooltip listing every week (a week without
    decided clocks says so rather than drawing a point)."""
    tip = escape(
        "; ".join(
            f"{r['week']}: {r['compliance']:.0%} of {r['decided']}"
            if r.get("compliance") is not None
            else f"{r['week']}: no decided clocks"
            for r in trend
        )
    )
    if not any(r.get("compliance") is not None for r in trend):
        return Markup(f'<span class="spark note" title="{tip}">no decided clocks</span>')
    width, height = _SPARK_W - 2 * _SPARK_PAD, _SPARK_H - 2 * _SPARK_PAD

    def x(i: int) -> float:
        return _SPARK_PAD + (width * i / max(1, len(trend) - 1))

    def y(share: float) -> float:
        return _SPARK_PAD + height * (1 - share)

    parts = [
        f'<svg class="spark" role="img" width="{_SPARK_W}" height="{_SPARK_H}" '
        f'viewBox="0 0 {_SPARK_W} {_SPARK_H}" xmlns="http://www.w3.org/2000/svg"><title>{tip}</title>'
    ]
    if target is not None and np.isfinite(target):
        parts.append(
            f'<line x1="{_SPARK_PAD}" x2="{_SPARK_W - _SPARK_PAD}" y1="{y(target):.1f}" y2="{y(target):.1f}" '
            'stroke="#c0392b" stroke-dasharray="2 2"/>'
        )
    points = [(x(i), y(r["compliance"])) for i, r in enumerate(trend) if r.get("compliance") is not None]
    if len(points) > 1:
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#3b6ea8" stroke-width="1.5"/>')
    px, py = points[-1]
    parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2" fill="#3b6ea8"/></svg>')
    return Markup("".join(parts))
