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
Ownership changes are read from ``field_history`` rows with field ``OwnerId`` whose old/new
values are user (or queue) ids; before the first change the record's ``owner_id`` is used.

Output (`Evaluation`):

* ``clocks``: one row per clock, exactly the store's ``clocks`` columns (see `CLOCK_COLUMNS`):
  sla_id, record_id, clock_start, object_type, policy_version, tier, calendar, target_seconds,
  owner_id, team (the owner at `now`/the stop and the team of that user), accountable_owner_id,
  accountable_team (who answers for the clock: for a breached or met-late clock the owner of the
  span in which the target ran out, i.e. the owner at the breach instant, so an escalation that
  reassigns the lead to a manager afterwards leaves the breach on the rep who let it happen;
  otherwise = owner_id, team), state (running | paused | met | met_late | breached), elapsed_seconds,
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

Low-cardinality text columns (sla_id, tier, calendar, state, colour, checkpoint, status, ...) are
pandas Categoricals: they compare equal to plain strings; ``Evaluation.clock_rows()`` gives plain
Python values for inserts.

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
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadsla.calendar import (
    MAX_YEAR,
    CalendarCodes,
    CalendarError,
    CalendarSet,
    FusedTable,
    to_epoch_seconds,
)
from leadsla.clock import (
    OWNER_FIELD,
    Clocks,
    Columns,
    RecordIndex,
    Segments,
    Timeline,
    derive_clocks,
    split_segments,
)
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
    "accountable_owner_id",
    "accountable_team",
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
#: Threads for large evaluations (the clocks are split into contiguous blocks, joined in order).
_THREADS = min(2, os.cpu_count() or 1)
#: Below this many clocks, threads cost more than they save.
_PARALLEL_MIN_CLOCKS = 100_000
#: Clocks per block: the block's temporaries (a few hundred KiB each) are recycled by the
#: allocator and stay in cache, where million-row temporaries would be fresh memory every time
#: (page faults and zeroing cost more than the arithmetic on them).
_BLOCK_CLOCKS = 1 << 16
STATES = ("running", "paused", "met", "met_late", "breached")
COLOURS = ("green", "yellow", "red")
CHECKPOINT_STATUSES = ("due", "superseded", "past")


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


#: A missing instant in the blocks' epoch-second output columns: int64 min is datetime64's NaT,
#: so the columns become datetimes without a pass over them.
_NAT = np.iinfo(np.int64).min


def _to_utc(seconds: np.ndarray) -> pd.Series:
    """Epoch seconds (`_NAT` = missing) as an aware UTC datetime column (a view, no copy)."""
    seconds = np.asarray(seconds, dtype=np.int64)
    return pd.Series(seconds.view("datetime64[s]"), dtype=pd.DatetimeTZDtype("s", "UTC"), copy=False)


class _Calendars:
    """The policy's calendars as small integer codes over one fused interval table."""

    def __init__(self, policy: Policy) -> None:
        self.names = [*policy.calendar_names, REAL_TIME_CALENDAR]
        self.code = {n: i for i, n in enumerate(self.names)}
        self.fused = CalendarSet(policy.calendar(n) for n in self.names)


def _owner_calendars(
    policy: Policy, cals: _Calendars, users: pd.DataFrame, owners: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(team, calendar code) of each distinct owner id; unknown owners and queues get the default
    calendar. Per owner code, so the per-segment work is two small-table lookups."""
    users = users.drop_duplicates("user_id", keep="last")
    user_ids = pd.Index(users["user_id"].to_numpy(dtype=object), dtype=object)
    teams = np.append(users["team"].to_numpy(dtype=object, na_value=None), None)
    cal_codes = np.array(
        [cals.code[policy.team_calendar(t if isinstance(t, str) else None)] for t in teams], np.int64
    )
    pos = user_ids.get_indexer(np.asarray(owners, dtype=object))  # -1: a queue or unknown
    return teams[pos], cal_codes[pos]


def _match_tiers(sla: Sla, index: RecordIndex) -> np.ndarray:
    """Index of the first matching tier per record (the default tier is last and always matches).

    Each record column a tier reads is turned into a bitmask per record (bit k: tier k accepts
    this value, or does not look at this column), the columns' masks are ANDed, and the lowest set
    bit is the tier. A column is read once however many tiers test it: with a few accepted values
    by == passes, with more by factorising it once and looking the codes up in a small table.
    Missing values never match.
    """
    tiers = sla.tiers
    n = len(index.ids)
    default = len(tiers) - 1
    tests: dict[str, list[tuple[int, list[str]]]] = {}
    for k, t in enumerate(tiers):
        if not t.default:
            for name, accepted in (t.when or {}).items():
                tests.setdefault(name, []).append((k, accepted))
    if not tests:
        return np.full(n, default, np.int8)
    ok = None  # per record: bit k set while tier k's conditions hold
    everything = (1 << len(tiers)) - 1
    for name, items in tests.items():
        free = everything & ~sum(1 << k for k, _ in items)  # tiers that do not read this column
        wanted: dict[str, int] = {}
        for k, accepted in items:
            for value in accepted:
                wanted[value] = wanted.get(value, 0) | (1 << k)
        column = index.column(name)
        if len(wanted) <= 3:  # a few == passes cost less than factorising the column
            bits = np.full(n, free, np.int64)
            for value, mask in wanted.items():
                bits[column == value] |= mask
        else:
            codes, uniques = pd.factorize(column)  # missing values: code -1, the last entry
            table = np.full(len(uniques) + 1, free, np.int64)
            pos = pd.Index(uniques, dtype=object).get_indexer(list(wanted))
            for p, mask in zip(pos, wanted.values(), strict=True):
                if p >= 0:
                    table[p] |= mask
            bits = table[codes]
        ok = bits if ok is None else np.bitwise_and(ok, bits, out=ok)
    # The lowest set bit among the non-default tiers, else the default tier.
    if len(tiers) <= 16:
        lowest = np.full(1 << len(tiers), default, np.int8)
        for k in range(default - 1, -1, -1):
            lowest[(np.arange(len(lowest)) >> k) & 1 == 1] = k
        return lowest[ok]
    tier = np.full(n, default, np.int8)
    for k in range(default - 1, -1, -1):
        tier[(ok >> k) & 1 == 1] = k
    return tier


@dataclass
class _Context:
    """What every block of one SLA's clocks shares (read only while blocks run)."""

    policy: Policy
    sla: Sla
    tl: Timeline
    cals: _Calendars
    owner_team: np.ndarray  # per owner code
    owner_cal: np.ndarray  # per owner code
    record_tier: np.ndarray  # per record code
    now_s: int
    since_s: int | None

    @property
    def cp_names(self) -> list[str]:
        return [cp.id for cp in self.sla.all_checkpoints()]


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
    if not keep.all():
        clocks = Clocks(clocks.record[keep], clocks.start[keep], clocks.stop[keep])
    owner_team, owner_cal = _owner_calendars(policy, cals, users, tl.owners().vocab)
    ctx = _Context(policy, sla, tl, cals, owner_team, owner_cal, _match_tiers(sla, tl.index), now_s, since_s)
    n = len(clocks.record)
    bounds = [*range(0, n, _BLOCK_CLOCKS), n]
    blocks = [
        Clocks(clocks.record[a:b], clocks.start[a:b], clocks.stop[a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    threads = max(1, min(_THREADS, n // _PARALLEL_MIN_CLOCKS, len(blocks)))
    # The first block gives the columns' dtypes; every block writes its rows straight into the
    # whole columns (so a worker thread, not the joining one, faults that memory in). A block's
    # checkpoint rows go to its own region of an array sized for every checkpoint of every clock
    # (untouched pages cost nothing), and the regions are closed up afterwards.
    if len(blocks) == 1:
        clock, cp = _evaluate_clocks(ctx, blocks[0])
        for column, (table, codes) in _object_columns(ctx, clock).items():
            clock[column] = table[clock[codes]]
        for column, (table, codes) in _object_columns(ctx, cp).items():
            cp[column] = table[cp[codes]]
        _add_accountable(ctx, clock)
        return _assemble(ctx, clock, cp)
    # One clock tells the columns' dtypes.
    probe_clock, probe_cp = _evaluate_clocks(
        ctx, Clocks(clocks.record[:1], clocks.start[:1], clocks.stop[:1])
    )
    n_cp = len(sla.all_checkpoints())
    clock_out = {key: np.empty(n, value.dtype) for key, value in probe_clock.items()}
    clock_out |= {column: np.empty(n, object) for column in _object_columns(ctx, probe_clock)}
    cp_region = {key: np.empty(n * n_cp, value.dtype) for key, value in probe_cp.items()}
    counts = [0] * len(blocks)

    def run(i: int) -> None:
        clock, cp = _evaluate_clocks(ctx, blocks[i])
        a, b = bounds[i], bounds[i + 1]
        for key, value in clock.items():
            clock_out[key][a:b] = value
        # The id columns are filled here, a block at a time, so this Python-object work (it
        # holds the GIL) overlaps the other thread's numeric work instead of following it.
        for column, (table, codes) in _object_columns(ctx, clock).items():
            np.take(table, clock[codes], out=clock_out[column][a:b])
        at = bounds[i] * n_cp
        for key, value in cp.items():
            cp_region[key][at : at + len(value)] = value
        counts[i] = len(cp["record"])

    if threads == 1:
        for i in range(len(blocks)):
            run(i)
    else:
        # Blocks are independent, so they run on the machine's cores (numpy releases the GIL in
        # its integer kernels) and are joined in order: the result is the same as in one go. The
        # timelines' lazy caches are filled first so the threads only read shared state.
        tl.prepare(sla)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, range(len(blocks))))
    total = 0
    for i, m in enumerate(counts):
        at = bounds[i] * n_cp
        if at != total:
            for column in cp_region.values():
                column[total : total + m] = column[at : at + m]  # overlapping moves are safe
        total += m
    cp_out = {key: column[:total] for key, column in cp_region.items()}
    for column, (table, codes) in _object_columns(ctx, cp_out).items():
        cp_out[column] = table[cp_out[codes]]
    _add_accountable(ctx, clock_out)
    return _assemble(ctx, clock_out, cp_out)


def _object_columns(ctx: _Context, part: dict) -> dict[str, tuple[np.ndarray, str]]:
    """The output's Python-object columns of a block's clock or checkpoint columns, as (lookup
    table, code column)."""
    ids = ctx.tl.index.ids.to_numpy()
    if "owner" not in part:  # checkpoint rows
        return {"record_id": (ids, "record")}
    return {
        "record_id": (ids, "record"),
        "owner_id": (ctx.tl.owners().vocab, "owner"),
        "team": (ctx.owner_team, "owner"),
    }


def _add_accountable(ctx: _Context, clock: dict) -> None:
    """accountable_owner_id / accountable_team from the owner columns: the same arrays when every
    clock's accountable owner is its current owner (the usual case, and no copy of two
    million-entry object columns), else copies with the differing rows looked up."""
    differ = np.flatnonzero(clock["accountable_owner"] != clock["owner"])
    if not len(differ):
        clock["accountable_owner_id"], clock["accountable_team"] = clock["owner_id"], clock["team"]
        return
    codes = clock["accountable_owner"][differ]
    for column, source, table in (
        ("accountable_owner_id", "owner_id", ctx.tl.owners().vocab),
        ("accountable_team", "team", ctx.owner_team),
    ):
        out = clock[source].copy()
        out[differ] = table[codes]
        clock[column] = out


def _assemble(ctx: _Context, clock: dict, cp: dict) -> tuple[dict, dict]:
    """The output columns from the blocks' columns (ids already looked up): codes wrapped as
    Categoricals."""
    sla, names = ctx.sla, ctx.cp_names
    n, m = len(clock["record"]), len(cp["record"])
    clock_cols = {
        "sla_id": _constant(sla.id, n),
        "record_id": clock["record_id"],
        "clock_start": clock["clock_start"],
        "object_type": _constant(sla.object, n),
        "policy_version": _constant(ctx.policy.version, n),
        "tier": pd.Categorical.from_codes(clock["tier"], [t.id for t in sla.tiers]),
        "calendar": pd.Categorical.from_codes(clock["calendar"], ctx.cals.names),
        "target_seconds": clock["target_seconds"],
        "owner_id": clock["owner_id"],
        "team": clock["team"],
        "accountable_owner_id": clock["accountable_owner_id"],
        "accountable_team": clock["accountable_team"],
        "state": pd.Categorical.from_codes(clock["state"], STATES),
        "elapsed_seconds": clock["elapsed_seconds"],
        "remaining_seconds": clock["remaining_seconds"],
        "percent_elapsed": clock["percent_elapsed"],
        "colour": pd.Categorical.from_codes(clock["colour"], COLOURS),
        "deadline": clock["deadline"],
        "stopped_at": clock["stopped_at"],
        "breached_at": clock["breached_at"],
        "critical": clock["critical"],
        "next_checkpoint": pd.Categorical.from_codes(clock["next_checkpoint"], names),
        "next_checkpoint_at": clock["next_checkpoint_at"],
    }
    cp_cols = {
        "sla_id": _constant(sla.id, m),
        "record_id": cp["record_id"],
        "clock_start": cp["clock_start"],
        "policy_version": _constant(ctx.policy.version, m),
        "checkpoint": pd.Categorical.from_codes(cp["checkpoint"], names),
        "offset_seconds": cp["offset_seconds"],
        "reached_at": cp["reached_at"],
        "status": pd.Categorical.from_codes(cp["status"], CHECKPOINT_STATUSES),
    }
    return clock_cols, cp_cols


def _open_at(table: FusedTable, cal: CalendarCodes, t: np.ndarray, now_s: int) -> np.ndarray:
    """F(t) per instant on its calendar; instants equal to `now` (every open clock's end) are read
    from a per-calendar F(now), so only stops need a lookup."""
    at_now = t == now_s
    if not at_now.any():
        return table.open_before(cal, t)
    n_cals = len(table.total)
    f_now = table.open_before(np.arange(n_cals, dtype=np.int64), np.full(n_cals, now_s, np.int64))
    out = f_now[cal.codes]
    if not at_now.all():
        other = np.flatnonzero(~at_now)
        out[other] = table.open_before(cal.codes[other], t[other])
    return out


def _evaluate_clocks(ctx: _Context, clocks: Clocks) -> tuple[dict, dict]:
    """Evaluate a block of one SLA's clocks (every clock independently of the others).

    Works column by column (the deadline, then each checkpoint) on 1-D arrays: (clocks x goals)
    temporaries are fresh memory the kernel must fault in and zero, which cost more than the
    arithmetic on them.
    """
    sla, tl, cals, now_s, since_s = ctx.sla, ctx.tl, ctx.cals, ctx.now_s, ctx.since_s
    n = len(clocks.record)
    stopped = clocks.stop >= 0
    end = np.where(stopped, clocks.stop, now_s)
    seg: Segments = split_segments(sla, tl, clocks, end)
    single = seg.single  # segment i is clock i

    # Tier -> target, time kind, calendar per clock.
    tier_ix = ctx.record_tier[clocks.record]  # int8
    tiers = sla.tiers
    target = np.array([t.target.seconds for t in tiers], np.int64)[tier_ix]
    critical = np.array([t.critical for t in tiers], bool)[tier_ix]
    fixed = np.array(
        [
            cals.code[REAL_TIME_CALENDAR]
            if t.target.time == "calendar"
            else (-1 if t.target.calendar == OWNER_CALENDAR else cals.code[t.target.calendar])
            for t in tiers
        ],
        np.int64,
    )
    seg_cal = ctx.owner_cal[seg.owner]
    if (fixed >= 0).any():
        seg_fixed = fixed[tier_ix] if single else fixed[tier_ix][seg.clock]
        seg_cal = np.where(seg_fixed >= 0, seg_fixed, seg_cal)
    if single:
        first = last = None
        cur_cal, seg_last_owner, paused_last = seg_cal, seg.owner, seg.paused
    else:
        clock_ix = np.arange(n)
        first = np.searchsorted(seg.clock, clock_ix, side="left")
        last = np.searchsorted(seg.clock, clock_ix, side="right") - 1
        cur_cal, seg_last_owner, paused_last = seg_cal[last], seg.owner[last], seg.paused[last]

    # "2 h in hours, 4 h outside": decided by whether the clock started inside its first calendar's hours.
    outside = np.array([t.target.outside_hours_seconds or -1 for t in tiers], np.int64)
    if (outside >= 0).any():
        outside = outside[tier_ix]
        which = np.flatnonzero(outside >= 0)
        if len(which):
            first_cal = seg_cal[which] if single else seg_cal[first[which]]
            opened = cals.fused.is_open(first_cal, clocks.start[which])
            target[which] = np.where(opened, target[which], outside[which])

    # Checkpoint offsets per clock (n, K), in catch-up order: by offset, then declaration. The
    # order is usually the same for every clock, so try the first clock's order before sorting all.
    cps = sla.all_checkpoints()
    columns = [_offsets(cp, target) for cp in cps]
    n_cp = len(cps)
    order0 = np.argsort(np.array([c[0] for c in columns]), kind="stable")
    # order0 is every clock's order if it sorts every row, ties broken by declaration (so the
    # answer never depends on which clock came first, e.g. in a block of a parallel run).
    same_order = all(
        np.all(columns[a] < columns[b] if a > b else columns[a] <= columns[b])
        for a, b in zip(order0, order0[1:], strict=False)
    )
    cp_offsets = np.empty((n, n_cp), np.int64)
    if same_order:
        order = None
        for j, o in enumerate(order0):
            cp_offsets[:, j] = columns[o]
    else:
        stacked = np.stack(columns, axis=1)
        order = np.argsort(stacked, axis=1, kind="stable")
        cp_offsets[:] = np.take_along_axis(stacked, order, axis=1)
    del columns

    # Everything below works in "open seconds" space F of the fused calendar table: elapsed is
    # F(end) - F(start) per segment, and the instant an offset is reached is F's inverse. The
    # table is grown until every projected instant falls inside it, then F is final.
    reached = np.empty((n, n_cp), dtype=bool)
    reached_at = np.empty((n, n_cp), np.int64)
    # The table must reach past every projected instant: guess generously from the largest goal
    # (a business hour is rarely more than five real ones), then grow it if a goal falls outside.
    horizon = int(seg.end.max()) + 5 * int(max(target.max(), cp_offsets.max(initial=0))) + 21 * 86_400
    extra_years = 0
    while True:
        table = cals.fused.prepare(int(seg.start.min()), horizon, extra_years)
        seg_codes = table.prepare(seg_cal)
        f_start = table.open_before(seg_codes, seg.start)
        f_end = _open_at(table, seg_codes, seg.end, now_s)
        seg_elapsed = f_end - f_start
        seg_elapsed[seg.paused] = 0
        if single:
            elapsed = seg_elapsed
            # A goal reached inside the clock's one segment is F(start) + goal; otherwise it is
            # projected from the end: F(end) - elapsed + goal (the same unless the clock is paused).
            projected_base = f_end - elapsed
        else:
            cum_after = np.cumsum(seg_elapsed)
            cum_before = cum_after - seg_elapsed
            base = cum_before[first]
            elapsed = cum_after[last] - base
            projected_base = f_end[last] - elapsed
        deadline = None
        for j in range(n_cp + 1):
            goal = target if j == 0 else cp_offsets[:, j - 1]
            inside = goal <= elapsed  # reached within the clock's own segments
            if single:
                f_goal = np.where(inside, f_start, projected_base)
                f_goal += goal
                goal_cal = seg_codes
                start_at = np.where(inside, seg.start, end)
            else:
                # The first segment whose cumulative elapsed reaches the goal (zero-length spans of
                # earlier clocks share the same cumulative value, hence the clip). Inside: from that
                # segment's start on its calendar. Otherwise projected: the clock keeps running from
                # the evaluation end (now, or the stop) on the current owner's calendar.
                wanted = base + goal
                k = np.clip(np.searchsorted(cum_after, wanted, side="left"), first, last)
                wanted -= cum_before[k]
                wanted += f_start[k]
                f_goal = np.where(inside, wanted, projected_base + goal)
                goal_cal = table.prepare(np.where(inside, seg_cal[k], cur_cal))
                start_at = np.where(inside, seg.start[k], end)
            if not np.all(f_goal <= goal_cal.total):
                break
            at = table.inverse(goal_cal, f_goal)
            if j == 0:
                deadline = np.maximum(at, start_at, out=at)
                if not single:
                    target_seg = k  # where the target ran out (for clocks that reached it)
            else:
                reached[:, j - 1] = inside
                np.maximum(at, start_at, out=reached_at[:, j - 1])
        else:
            break
        if cals.fused.max_year >= MAX_YEAR:
            raise CalendarError(f"an SLA {sla.id!r} deadline falls after {MAX_YEAR}")
        extra_years = extra_years * 2 + 1

    over = elapsed > target
    # Who answers for the clock: for a breached/met-late clock the owner of the segment in which
    # the target ran out (the owner at the breach instant: a breach escalation reassigns the lead
    # afterwards, and the breach must stay with the rep who let it happen), else the current owner.
    # With one segment per clock (no owner change inside any clock) that is the current owner.
    if single:
        accountable = seg_last_owner
    else:
        accountable = np.where(over, seg.owner[target_seg], seg_last_owner)
    paused_now = paused_last & ~stopped
    state = np.select(
        [stopped & ~over, stopped & over, over, paused_now],
        [STATES.index("met"), STATES.index("met_late"), STATES.index("breached"), STATES.index("paused")],
        default=STATES.index("running"),
    ).astype(np.int8)
    percent = np.round(elapsed / target * 100.0, 2)
    colour = np.where(over, 2, np.where(percent >= 75, 1, 0)).astype(np.int8)

    # Column by column (a few checkpoints, a million clocks): the last fresh checkpoint (highest
    # offset) is due, earlier fresh ones are superseded; the first one not reached is next.
    running = ~stopped
    fresh = np.empty((n, n_cp), dtype=bool)
    last_fresh = np.full(n, -1, np.int64)
    nxt = np.full(n, -1, np.int64)
    for j in range(n_cp):
        col = fresh[:, j]
        np.logical_and(reached[:, j], running, out=col)
        if since_s is not None:
            col &= reached_at[:, j] > since_s
        last_fresh[col] = j
    for j in range(n_cp - 1, -1, -1):
        nxt[~reached[:, j] & running] = j
    status = np.full((n, n_cp), 2, np.int8)
    for j in range(n_cp):
        status[:, j][fresh[:, j]] = 1
        status[:, j][last_fresh == j] = 0
    nxt_c = np.clip(nxt, 0, None)
    rows = np.arange(n)
    next_cp = order0[nxt_c] if order is None else order[rows, nxt_c]

    clock_cols = {
        "record": clocks.record.astype(np.int32),
        "clock_start": clocks.start,
        "tier": tier_ix,
        "calendar": cur_cal.astype(np.int8),
        "target_seconds": target,
        "owner": seg_last_owner.astype(np.int32),
        "accountable_owner": accountable.astype(np.int32),
        "state": state,
        "elapsed_seconds": elapsed,
        "remaining_seconds": target - elapsed,
        "percent_elapsed": percent,
        "colour": colour,
        "deadline": deadline,
        "stopped_at": np.where(stopped, clocks.stop, _NAT),
        "breached_at": np.where(over, deadline, _NAT),
        "critical": critical,
        "next_checkpoint": np.where(nxt >= 0, next_cp, -1).astype(np.int8),
        "next_checkpoint_at": np.where(nxt >= 0, reached_at[rows, nxt_c], _NAT),
    }
    flat = np.flatnonzero(reached)  # row-major: by clock, then catch-up order
    ci = np.repeat(rows, np.count_nonzero(reached, axis=1))
    cp_cols = {
        "record": clocks.record.astype(np.int32)[ci],
        "clock_start": clocks.start[ci],
        "checkpoint": np.tile(order0.astype(np.int8), n)[flat] if order is None else order.ravel()[flat],
        "offset_seconds": cp_offsets.ravel()[flat],
        "reached_at": reached_at.ravel()[flat],
        "status": status.ravel()[flat],
    }
    return clock_cols, cp_cols


def _constant(value: str, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(np.zeros(n, np.int8), [value])


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
        Evaluation with `clocks` (store `clocks` columns) and `checkpoints` frames, ordered by
        policy version, SLA (policy order), record (order in `records`), clock_start, and for
        checkpoints by offset. Sort by (sla_id, record_id, clock_start) if you need a key order:
        sorting a million string ids would double the engine's run time, so it is not done here.

    Raises:
        CalendarError: naive `now`/`since` or naive timestamps in the frames.
    """
    now_s = to_epoch_seconds(now, "now")
    since_s = None if since is None else to_epoch_seconds(since, "since")
    versions = sorted({p.version: p for p in [*history, policy]}.values(), key=lambda p: p.effective_from)
    bounds = [to_epoch_seconds(p.effective_from, "effective_from") for p in versions]
    clock_parts, cp_parts = [], []
    timelines: dict[str, Timeline] = {}
    record_cols = Columns(records, "records")
    history_cols = Columns(field_history, "field_history")
    activity_cols = Columns(activities, "activities")
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
                index = RecordIndex.build(record_cols, sla.object)
                timelines[sla.object] = Timeline.build(
                    index, sla.object, history_cols, activity_cols, now_s, _fields_read(versions, sla.object)
                )
            result = _evaluate_sla(pol, sla, timelines[sla.object], users, cals, now_s, since_s, window)
            if result is not None:
                clock_parts.append(result[0])
                cp_parts.append(result[1])
    clocks = _frame(
        clock_parts,
        CLOCK_COLUMNS[:-1],
        ("clock_start", "deadline", "stopped_at", "breached_at", "next_checkpoint_at"),
    )
    clocks["evaluated_at"] = pd.Timestamp(now_s, unit="s", tz="UTC")
    checkpoints = _frame(cp_parts, CHECKPOINT_COLUMNS, ("clock_start", "reached_at"))
    return Evaluation(clocks, checkpoints)


def _fields_read(policies: list[Policy], object_type: str) -> list[str]:
    """Every field_history field a rule of any version reads for this object type."""
    fields = [OWNER_FIELD]
    for pol in policies:
        for sla in pol.slas:
            if sla.object == object_type:
                fields.append(sla.start.field)
                fields.extend(rule.field for rule in [*sla.stop, *sla.pause] if rule.field)
    return list(dict.fromkeys(fields))


def _frame(parts: list[dict], columns: list[str], instants: tuple[str, ...]) -> pd.DataFrame:
    """One frame from the per-SLA column dicts; epoch-second columns become aware UTC (-1 -> NaT)."""
    frames = []
    for part in parts:
        cols = {}
        for c in columns:
            value = part[c]
            if c in instants:
                value = _to_utc(value)
            elif isinstance(value, np.ndarray) and value.dtype == object:
                value = pd.Series(value, dtype=object, copy=False)
            cols[c] = value
        frames.append(pd.DataFrame(cols, columns=columns, copy=False))
    if not frames:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        for c in instants:
            frame[c] = pd.Series(dtype="datetime64[s, UTC]")
        return frame
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
