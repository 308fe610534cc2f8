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

from leadsla.reports.data import FUNNEL, REJECTED, STAGE_OF_STATUS
from leadsla.reports.period import Period

#: Clock outcome codes as the clocks query returns them (judged as of the range's end).
OPEN, MET, VIOLATED = 0, 1, 2
#: Every stage a lead can reach, in the order of the columns of `stage_arrivals`.
STAGES = FUNNEL + REJECTED
_STATUSES = pd.Index(list(STAGE_OF_STATUS), dtype=object)
#: `STAGES` index of each of `_STATUSES`, then -1 for "no stage" (get_indexer's -1 picks it).
_STAGE_OF_CODE = np.array([STAGES.index(STAGE_OF_STATUS[st]) for st in _STATUSES] + [-1], dtype=np.int64)
_NONE = np.iinfo(np.int64).max  # "never reached" in the int64 microsecond arrays below


def sorted_by_record(df: pd.DataFrame) -> pd.DataFrame:
    """`df` ordered by record id as `metrics.ids` orders ids (code points), ties kept in order.

    Sorted here rather than by the store: SQLite sorts the rows slower than numpy sorts the ids,
    and PostgreSQL's collation may order ids differently; rows that already come in order (SQLite
    returns a UNION's rows sorted) cost one pass.
    """
    rids = df["record_id"].to_numpy()
    if len(rids) < 2 or bool(np.all(rids[1:] >= rids[:-1])):
        return df.reset_index(drop=True)
    order = np.argsort(rids.astype(str), kind="stable")
    return df.iloc[order].reset_index(drop=True)


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
    violated_ids. Groups with only open clocks are absent.

    Args:
        clocks: judged clocks sorted by record id: record_id, outcome (OPEN/MET/VIOLATED) and the
            `by` columns (no missing values: the query fills them).
    """
    outcome = clocks["outcome"].to_numpy().astype(np.int64)
    decided = outcome != OPEN
    gcodes, table = _group_codes(clocks[decided], by)
    n = len(table)
    codes = np.full(len(clocks), -1, dtype=np.int64)
    codes[decided] = gcodes
    rids = clocks["record_id"].to_numpy()
    table["decided"] = np.bincount(gcodes, minlength=n).astype(np.int64)
    table["met"] = np.bincount(codes[outcome == MET], minlength=n).astype(np.int64)
    table["violated"] = table["decided"] - table["met"]
    table["compliance"] = table["met"] / table["decided"].where(table["decided"] > 0)
    table["record_ids"] = _ids_per_group(codes, rids, n)
    table["violated_ids"] = _ids_per_group(np.where(outcome == VIOLATED, codes, -1), rids, n)
    return table


def median_first_touch(clocks: pd.DataFrame, by: str) -> pd.Series:
    """Median business hours to the first touch of touched clocks, per `by` (the engine's elapsed
    time of clocks stopped before the range's end: `touched_seconds`)."""
    seconds = clocks["touched_seconds"].to_numpy().astype(float)
    touched = ~np.isnan(seconds)
    return pd.Series(seconds[touched] / 3600.0).groupby(clocks[by].to_numpy()[touched], sort=True).median()


def _us(values: pd.Series) -> np.ndarray:
    """UTC instants as int64 microseconds, missing = `_NONE`. SQLite's raw text (naive UTC,
    'YYYY-MM-DD HH:MM:SS.ffffff') is parsed by numpy in one call; anything else (PostgreSQL's
    aware datetimes, parsed frames) through pandas."""
    raw = values.to_numpy()
    present = raw[pd.notna(raw)]
    if len(present) and isinstance(present[0], str):
        out = raw.astype("M8[us]").view(np.int64).copy()
        out[out == np.iinfo(np.int64).min] = _NONE
        return out
    idx = pd.DatetimeIndex(pd.to_datetime(raw, utc=True)).as_unit("us") if len(raw) else pd.DatetimeIndex([])
    out = idx.asi8.copy()
    out[idx.isna()] = _NONE
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
    rids = rows["record_id"].to_numpy()
    head = np.ones(len(rids), dtype=bool)
    head[1:] = rids[1:] != rids[:-1]
    starts = np.flatnonzero(head)  # each lead's first row: its columns repeat on each of its rows
    codes = np.cumsum(head) - 1
    n = len(starts)
    per_lead = rows.iloc[starts]
    created = _us(per_lead["created_at"])
    changed = _us(rows["changed_at"])
    has_change = changed != _NONE
    # The status the lead was created with: the old value of its earliest change (an empty one
    # means the change recorded the first status), else its current status.
    earliest = np.minimum.reduceat(changed, starts) if n else np.zeros(0, dtype=np.int64)
    changed_lead = earliest != _NONE
    is_first = has_change & (changed == earliest[codes])
    firsts = np.flatnonzero(is_first)
    _, at = np.unique(codes[firsts], return_index=True)  # the first such row of each lead
    first_old = np.full(n, None, dtype=object)
    first_old[codes[firsts[at]]] = rows["old_value"].to_numpy()[firsts[at]]
    initial = _stage_index(np.where(changed_lead, first_old, per_lead["status"].to_numpy()))
    stage_of_row = _stage_index(rows["new_value"].to_numpy())
    arrived = np.full((n, len(STAGES)), _NONE, dtype=np.int64)
    hit = has_change & (stage_of_row >= 0)
    np.minimum.at(arrived, (codes[hit], stage_of_row[hit]), changed[hit])
    end = pd.Timestamp(period.end).as_unit("us").value
    out = pd.DataFrame(
        {"record_id": rids[starts], "rejection_reason": per_lead["rejection_reason"].to_numpy()}
    )
    has_created = created != _NONE
    for i, stage in enumerate(STAGES):
        hist = arrived[:, i]
        # As `reports.data.load` has it: the earlier of the two, and the first change into the stage
        # wins a tie; an arrival at or after the end does not count.
        keep_hist = (initial != i) | ((hist != _NONE) & has_created & (hist <= created)) | ~has_created
        at = np.where(keep_hist, hist, created)
        at = np.where(at < end, at, _NONE)
        nat = at == _NONE
        at = at.copy()
        at[nat] = np.iinfo(np.int64).min  # NaT
        out[f"{stage}_at"] = pd.DatetimeIndex(at.view("M8[us]")).tz_localize("UTC")
    return out


def cohort(rows: pd.DataFrame, period: Period) -> pd.DataFrame:
    """The period's MQL cohort: `stage_arrivals` of the leads whose MQL arrival falls in the period,
    with `rejected` (reached Recycled or Disqualified) and the reason filled with "(none)"."""
    arrivals = stage_arrivals(rows, period)
    mql = arrivals["MQL_at"]
    c = arrivals[(mql >= period.start) & (mql < period.end)].reset_index(drop=True)
    c["rejected"] = c["Recycled_at"].notna() | c["Disqualified_at"].notna()
    c["rejection_reason"] = c["rejection_reason"].fillna("(none)")
    return c


def funnel(c: pd.DataFrame) -> pd.DataFrame:
    """As `reports.funnel.funnel`: per stage, leads reached, record_ids, conversion from the
    previous stage and from MQL, average days from the previous stage. `c` sorted by record id."""
    rows = []
    rids = c["record_id"].to_numpy()
    for i, stage in enumerate(FUNNEL):
        at = c[f"{stage}_at"]
        reached = at.notna().to_numpy()
        row = {"stage": stage, "leads": int(reached.sum()), "record_ids": tuple(rids[reached].tolist())}
        if i:
            prev = c[f"{FUNNEL[i - 1]}_at"]
            n_prev = int(prev.notna().sum())
            row["from_previous"] = row["leads"] / n_prev if n_prev else float("nan")
            gap = (at[reached] - prev[reached]).dt.total_seconds() / 86400
            row["avg_days_from_previous"] = float(gap.mean()) if gap.notna().any() else float("nan")
        else:
            row["from_previous"] = float("nan")
            row["avg_days_from_previous"] = float("nan")
        row["from_mql"] = row["leads"] / len(c) if len(c) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def rejection_reasons(c: pd.DataFrame) -> pd.DataFrame:
    """As `reports.funnel.rejection_reasons`: rejected cohort leads by reason (rejects, share,
    record_ids), most first. `c` sorted by record id."""
    r = c[c["rejected"]]
    codes, reasons = pd.factorize(r["rejection_reason"], sort=True)
    out = pd.DataFrame({"rejection_reason": list(reasons)})
    out["rejects"] = np.bincount(codes, minlength=len(reasons)).astype(np.int64)
    out["share"] = out["rejects"] / len(r) if len(r) else 0.0
    out["record_ids"] = _ids_per_group(codes, r["record_id"].to_numpy(), len(reasons))
    return out.sort_values(["rejects", "rejection_reason"], ascending=[False, True]).reset_index(drop=True)
