"""SLA evaluation: record timelines + policy + `now` -> every clock's state and its due checkpoints.

Pure and deterministic for a given `now`: no Airflow, no store, no wall clock. Vectorised end to
end: the only Python loops run over policy versions, SLAs, calendars and checkpoint definitions
(a handful each), never over clocks.

Input frames (the store's column names, so the alerts task can pass query results straight in;
timestamps must be timezone-aware, any unit):

* ``records``: object_type, record_id, status, owner_id, lead_source, lead_type, account_tier,
  country, created_at, [fields (dict of raw CRM fields, used for pause fields without history)]
* ``field_history``: object_type, record_id, field, old_value, new_value, changed_at, changed_by
  (ownership changes are field ``OwnerId``)
* ``activities``: activity_id, kind, who_id (Lead), what_id (Opportunity), owner_id, type, subtype,
  created_at, [is_deleted]
* ``users``: user_id, manager_id, team, timezone, is_active

Rows after `now` are ignored, so re-evaluating an old `now` reproduces the old answer.

Output (`Evaluation`):

* ``clocks``: one row per clock, exactly the store's ``clocks`` columns (see `CLOCK_COLUMNS`):
  sla_id, record_id, clock_start, object_type, policy_version, tier, calendar, target_seconds,
  owner_id, team, state (running | paused | met | met_late | breached), elapsed_seconds,
  remaining_seconds (target - elapsed; negative when overdue), percent_elapsed, colour (green
  < 75 %, yellow >= 75 %, red when breached or met late), deadline (when the target is or was
  used up, projected through past pauses and owner changes on the current owner's calendar, as if
  the clock kept running from `now`/the stop), stopped_at, breached_at (= deadline for breached
  and met-late clocks), critical, next_checkpoint, next_checkpoint_at, evaluated_at.
* ``checkpoints``: one row per reached checkpoint: sla_id, record_id, clock_start,
  policy_version, checkpoint, offset_seconds, reached_at, status. Status is ``due`` (reached
  after `since`, the latest such of its clock), ``superseded`` (reached after `since` but a later
  checkpoint of the same clock is also due: catch-up sends the breach, not a stale warning) or
  ``past`` (reached at or before `since`, or the clock has stopped). Without `since` every
  reached checkpoint of an open clock is a candidate.

Decisions: elapsed counts business seconds on the calendar of whoever owned the record during
each span ("owner" targets are re-based at each ownership change); paused spans count nothing;
a target that starts outside the calendar's hours may use the tier's ``outside_hours_duration``;
a clock is breached once elapsed > target and met if stopped with elapsed <= target; tiers are
matched on the record's current fields; each clock is governed by the policy version whose
``effective_from`` is the latest at or before its start (clocks older than every version use the
earliest).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadsla.calendar import BusinessCalendar, to_epoch_seconds
from leadsla.clock import RecordIndex, Segments, Timeline, derive_clocks, split_segments
from leadsla.policy import OWNER_CALENDAR, REAL_TIME_CALENDAR, Policy, Sla

#: The store's `clocks` columns, in order (leadsla.store.schema.clocks).
CLOCK_COLUMNS = [
    "sla_id",
    "record_id",
    "clock_start",
    "object_type",
    "policy_version",
    "tier",
    "calendar",
    "target_seconds",
    "owner_id",
    "team",
    "state",
    "elapsed_seconds",
    "remaining_seconds",
    "percent_elapsed",
    "colour",
    "deadline",
    "stopped_at",
    "breached_at",
    "critical",
    "next_checkpoint",
    "next_checkpoint_at",
    "evaluated_at",
]
CHECKPOINT_COLUMNS = [
    "sla_id",
    "record_id",
    "clock_start",
    "policy_version",
    "checkpoint",
    "offset_seconds",
    "reached_at",
    "status",
]
STATES = ("running", "paused", "met", "met_late", "breached")


@dataclass
class Evaluation:
    clocks: pd.DataFrame
    checkpoints: pd.DataFrame

    def clock_rows(self) -> list[dict]:
        """Rows for the store's `clocks` table (aware datetimes, None for missing)."""
        frame = self.clocks.astype(object).where(self.clocks.notna(), None)
        rows = frame.to_dict("records")
        for row in rows:
            for key in (
                "clock_start",
                "deadline",
                "stopped_at",
                "breached_at",
                "next_checkpoint_at",
                "evaluated_at",
            ):
                if row[key] is not None:
                    row[key] = row[key].to_pydatetime()
        return rows


def _to_utc(seconds: np.ndarray) -> pd.Series:
    """Epoch seconds (-1 = missing) as an aware UTC datetime column."""
    out = pd.Series(pd.to_datetime(seconds, unit="s", utc=True))
    return out.where(seconds >= 0)


class _Calendars:
    """The policy's calendars as small integer codes, for per-calendar vectorised passes."""

    def __init__(self, policy: Policy) -> None:
        self.names = [*policy.calendar_names, REAL_TIME_CALENDAR]
        self.cals: list[BusinessCalendar] = [policy.calendar(n) for n in self.names]
        self.code = {n: i for i, n in enumerate(self.names)}

    def per_calendar(self, codes: np.ndarray):
        for c in np.unique(codes):
            yield self.cals[c], codes == c

    def elapsed(self, codes: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        out = np.zeros(len(codes), np.int64)
        for cal, sel in self.per_calendar(codes):
            out[sel] = cal.elapsed_seconds(start[sel], end[sel])
        return out

    def advance(self, codes: np.ndarray, start: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        out = np.zeros(len(codes), np.int64)
        for cal, sel in self.per_calendar(codes):
            out[sel] = cal.deadline_seconds(start[sel], seconds[sel])
        return out

    def is_open(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        out = np.zeros(len(codes), bool)
        for cal, sel in self.per_calendar(codes):
            out[sel] = cal.is_open(t[sel])
        return out


def _owner_calendars(
    policy: Policy, cals: _Calendars, users: pd.DataFrame, owners: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(team, calendar code) of each owner id; unknown owners and queues get the default calendar."""
    uniq, inverse = np.unique(owners.astype(str), return_inverse=True)
    team_of = pd.Series(users["team"].to_numpy(dtype=object), index=users["user_id"].astype(str).to_numpy())
    team_of = team_of[~team_of.index.duplicated()]
    teams = team_of.reindex(uniq).to_numpy(dtype=object)
    codes = np.array(
        [cals.code[policy.team_calendar(t if isinstance(t, str) else None)] for t in teams], dtype=np.int64
    )
    return teams[inverse], codes[inverse]


def _match_tiers(sla: Sla, index: RecordIndex, record: np.ndarray) -> np.ndarray:
    """Index of the first matching tier per clock (the default tier is last and always matches)."""
    conditions, choices = [], []
    for k, tier in enumerate(sla.tiers):
        if tier.default:
            break
        mask = np.ones(len(record), dtype=bool)
        for field, accepted in (tier.when or {}).items():
            values = pd.Series(index.column(field)[record], dtype=object).astype("string")
            mask &= values.isin(accepted).to_numpy(dtype=bool)
        conditions.append(mask)
        choices.append(k)
    if not conditions:
        return np.full(len(record), len(sla.tiers) - 1, np.int64)
    return np.select(conditions, choices, default=len(sla.tiers) - 1).astype(np.int64)


def _evaluate_sla(
    policy: Policy,
    sla: Sla,
    tl: Timeline,
    users: pd.DataFrame,
    cals: _Calendars,
    now_s: int,
    since_s: int | None,
    window: tuple[int, int],
) -> tuple[dict, dict] | None:
    clocks = derive_clocks(sla, tl)
    keep = (clocks.start >= window[0]) & (clocks.start < window[1])
    if not keep.any():
        return None
    clocks.record, clocks.start, clocks.stop = clocks.record[keep], clocks.start[keep], clocks.stop[keep]
    n = len(clocks.record)
    stopped = clocks.stop >= 0
    end = np.where(stopped, clocks.stop, now_s)
    seg: Segments = split_segments(sla, tl, clocks, end)

    # Tier -> target, time kind, calendar per clock.
    tier_ix = _match_tiers(sla, tl.index, clocks.record)
    tiers = sla.tiers
    target = np.array([t.target.seconds for t in tiers], np.int64)[tier_ix]
    critical = np.array([t.critical for t in tiers], bool)[tier_ix]
    fixed_cal = np.array(
        [
            cals.code[REAL_TIME_CALENDAR]
            if t.target.time == "calendar"
            else (-1 if t.target.calendar == OWNER_CALENDAR else cals.code[t.target.calendar])
            for t in tiers
        ],
        np.int64,
    )[tier_ix]
    seg_team, owner_cal = _owner_calendars(policy, cals, users, seg.owner)
    seg_cal = np.where(fixed_cal[seg.clock] >= 0, fixed_cal[seg.clock], owner_cal)

    # "2 h in hours, 4 h outside": decided by whether the clock started inside its first calendar's hours.
    outside = np.array([t.target.outside_hours_seconds or -1 for t in tiers], np.int64)[tier_ix]
    if (outside >= 0).any():
        first_seg = np.searchsorted(seg.clock, np.arange(n), side="left")
        opened = cals.is_open(seg_cal[first_seg], clocks.start)
        target = np.where((outside >= 0) & ~opened, outside, target)

    # Elapsed business seconds per segment (0 while paused), cumulated per clock.
    seg_elapsed = np.where(seg.paused, 0, cals.elapsed(seg_cal, seg.start, seg.end))
    cum_after = np.cumsum(seg_elapsed)
    cum_before = cum_after - seg_elapsed
    first = np.searchsorted(seg.clock, np.arange(n), side="left")
    last = np.searchsorted(seg.clock, np.arange(n), side="right") - 1
    base = cum_before[first]
    elapsed = cum_after[last] - base
    cur_cal = seg_cal[last]

    def crossing(offset: np.ndarray) -> np.ndarray:
        """Instant each clock's elapsed reaches `offset`: inside a past segment, else projected."""
        goal = base + offset
        k = np.searchsorted(cum_after, goal, side="left")
        inside = offset <= elapsed  # then the goal is reached within this clock's own segments
        kc = np.clip(k, first, last)  # zero-length spans of earlier clocks share the same cum value
        # Projection: keep running from the evaluation end on the current calendar.
        start_at = np.where(inside, seg.start[kc], end)
        need = np.where(inside, goal - cum_before[kc], offset - elapsed)
        cal = np.where(inside, seg_cal[kc], cur_cal)
        return cals.advance(cal, start_at, np.maximum(need, 0))

    deadline = crossing(target)
    over = elapsed > target
    paused_now = seg.paused[last] & ~stopped
    state = np.select(
        [stopped & ~over, stopped & over, over, paused_now],
        ["met", "met_late", "breached", "paused"],
        default="running",
    )
    percent = np.round(elapsed / target * 100.0, 2)
    colour = np.where(over, "red", np.where(percent >= 75, "yellow", "green"))

    # Checkpoints: offsets per clock, reached instants, then due / superseded / past.
    cps = sorted(enumerate(sla.all_checkpoints()), key=lambda item: item[0])
    cp_offsets = np.stack([_offsets(cp, target) for _, cp in cps], axis=1)  # (n, K)
    order = np.argsort(cp_offsets, axis=1, kind="stable")  # catch-up order: by offset, then declaration
    cp_offsets = np.take_along_axis(cp_offsets, order, axis=1)
    names = np.array([cp.id for _, cp in cps], dtype=object)[order]
    reached = cp_offsets <= elapsed[:, None]
    reached_at = np.stack([crossing(cp_offsets[:, j]) for j in range(cp_offsets.shape[1])], axis=1)
    fresh = reached & ~stopped[:, None]
    if since_s is not None:
        fresh &= reached_at > since_s
    # The last fresh checkpoint (highest offset) is due; earlier fresh ones are superseded.
    last_fresh = np.where(fresh.any(axis=1), fresh.shape[1] - 1 - np.argmax(fresh[:, ::-1], axis=1), -1)
    col = np.arange(fresh.shape[1])[None, :]
    status = np.where(
        fresh & (col == last_fresh[:, None]),
        "due",
        np.where(fresh, "superseded", np.where(reached, "past", "")),
    )
    not_reached = ~reached & ~stopped[:, None]
    nxt = np.where(not_reached.any(axis=1), np.argmax(not_reached, axis=1), -1)
    nxt_c = np.clip(nxt, 0, None)
    rows = np.arange(n)

    record_ids = tl.index.ids.to_numpy()[clocks.record]
    clock_cols = {
        "sla_id": np.full(n, sla.id, dtype=object),
        "record_id": record_ids,
        "clock_start": clocks.start,
        "object_type": np.full(n, sla.object, dtype=object),
        "policy_version": np.full(n, policy.version, dtype=object),
        "tier": np.array([t.id for t in tiers], dtype=object)[tier_ix],
        "calendar": np.array(cals.names, dtype=object)[cur_cal],
        "target_seconds": target,
        "owner_id": seg.owner[last],
        "team": seg_team[last],
        "state": state,
        "elapsed_seconds": elapsed,
        "remaining_seconds": target - elapsed,
        "percent_elapsed": percent,
        "colour": colour,
        "deadline": deadline,
        "stopped_at": clocks.stop,
        "breached_at": np.where(over, deadline, -1),
        "critical": critical,
        "next_checkpoint": np.where(nxt >= 0, names[rows, nxt_c], None),
        "next_checkpoint_at": np.where(nxt >= 0, reached_at[rows, nxt_c], -1),
    }
    ci, cj = np.nonzero(reached)
    cp_cols = {
        "sla_id": np.full(len(ci), sla.id, dtype=object),
        "record_id": record_ids[ci],
        "clock_start": clocks.start[ci],
        "policy_version": np.full(len(ci), policy.version, dtype=object),
        "checkpoint": names[ci, cj],
        "offset_seconds": cp_offsets[ci, cj],
        "reached_at": reached_at[ci, cj],
        "status": status[ci, cj],
    }
    return clock_cols, cp_cols


def _offsets(cp, target: np.ndarray) -> np.ndarray:
    kind, value = cp.offset()
    if kind == "percent":
        return np.rint(target * value / 100.0).astype(np.int64)
    if kind == "elapsed":
        return np.full(len(target), int(value), np.int64)
    return np.maximum(target + int(value), 0)


def evaluate(
    *,
    records: pd.DataFrame,
    field_history: pd.DataFrame,
    activities: pd.DataFrame,
    users: pd.DataFrame,
    policy: Policy,
    now: dt.datetime,
    since: dt.datetime | None = None,
    history: Sequence[Policy] = (),
) -> Evaluation:
    """Evaluate every SLA clock in the timelines at `now`.

    Args:
        records, field_history, activities, users: store-shaped frames (module docstring).
        policy: the current policy.
        now: the evaluation instant (the run's logical time), aware.
        since: the previous evaluation's `now`; checkpoints reached at or before it are `past`.
        history: earlier policy versions, so clocks started under them keep their rules.

    Returns:
        Evaluation with `clocks` (store `clocks` columns) and `checkpoints` frames, sorted by
        (sla_id, record_id, clock_start).

    Raises:
        CalendarError: naive `now`/`since` or naive timestamps in the frames.
    """
    now_s = to_epoch_seconds(now, "now")
    since_s = None if since is None else to_epoch_seconds(since, "since")
    versions = sorted({p.version: p for p in [*history, policy]}.values(), key=lambda p: p.effective_from)
    bounds = [to_epoch_seconds(p.effective_from, "effective_from") for p in versions]
    clock_parts, cp_parts = [], []
    timelines: dict[str, Timeline] = {}
    for v, pol in enumerate(versions):
        window = (
            np.iinfo(np.int64).min if v == 0 else bounds[v],
            bounds[v + 1] if v + 1 < len(versions) else np.iinfo(np.int64).max,
        )
        cals = _Calendars(pol)
        for sla in pol.slas:
            if not sla.enabled:
                continue
            if sla.object not in timelines:
                index = RecordIndex.build(records, sla.object)
                timelines[sla.object] = Timeline.build(index, sla.object, field_history, activities, now_s)
            result = _evaluate_sla(pol, sla, timelines[sla.object], users, cals, now_s, since_s, window)
            if result is not None:
                clock_parts.append(result[0])
                cp_parts.append(result[1])
    clocks = _frame(clock_parts, CLOCK_COLUMNS[:-1])
    clocks["evaluated_at"] = pd.Timestamp(now_s, unit="s", tz="UTC")
    for col in ("clock_start", "deadline", "stopped_at", "breached_at", "next_checkpoint_at"):
        clocks[col] = _to_utc(clocks[col].to_numpy(dtype=np.int64))
    checkpoints = _frame(cp_parts, CHECKPOINT_COLUMNS)
    for col in ("clock_start", "reached_at"):
        checkpoints[col] = _to_utc(checkpoints[col].to_numpy(dtype=np.int64))
    clocks = clocks.sort_values(["sla_id", "record_id", "clock_start"], kind="stable", ignore_index=True)
    checkpoints = checkpoints.sort_values(
        ["sla_id", "record_id", "clock_start", "offset_seconds"], kind="stable", ignore_index=True
    )
    return Evaluation(clocks, checkpoints)


def _frame(parts: list[dict], columns: list[str]) -> pd.DataFrame:
    if not parts:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        for c in columns:
            if c in (
                "clock_start",
                "deadline",
                "stopped_at",
                "breached_at",
                "next_checkpoint_at",
                "reached_at",
            ):
                frame[c] = frame[c].astype(np.int64)
        return frame
    if len(parts) == 1:
        return pd.DataFrame(parts[0], columns=columns)
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in columns})
