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
  otherwise = owner_id, team), state (running | paused | met | met_late | breached | handed_on |
  handed_on_late: met by a stop rule, or ended by the record leaving the watched state, such as
  SAL -> SQL or Recycled, before or after the target ran out), elapsed_seconds,
  remaining_seconds (target - elapsed; negative when overdue), percent_elapsed, colour (green
  < 75 %, yellow >= 75 %, red when over the target), deadline (when the target is or was
  used up, projected through past pauses and owner changes on the current owner's calendar, as if
  the clock kept running from `now`/the stop), stopped_at, breached_at (= deadline for breached,
  met-late and handed-on-late clocks), critical, next_checkpoint, next_checkpoint_at, evaluated_at.
* ``checkpoints``: one row per reached checkpoint: sla_id, record_id, clock_start,
  policy_version, checkpoint, offset_seconds, reached_at, status. Status is ``due`` (reached
  after `since`, the latest such of its clock), ``superseded`` (reached after `since` but a later
  checkpoint of the same clock is also due: catch-up sends the breach, not a stale warning) or
  ``past`` (reached at or before `since`, or the clock has stopped). Without `since` every
  reached checkpoint of an open clock is a candidate.

A stored open clock row (the `clocks` table) holds elapsed_seconds, remaining_seconds and
percent_elapsed (`MOVING_COLUMNS`) as of its evaluated_at; `as_of` projects them to a later instant
(they grow with the clock's calendar's open seconds), and `next_changes` says when anything else
about it can change with no new CRM data (its next checkpoint, colour turn or breach), which is
when the incremental monitor re-evaluates it.

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
    CREATED_FIELD,
    OWNER_FIELD,
    Actors,
    Clocks,
    Columns,
    RecordIndex,
    Segments,
    Timeline,
    derive_clocks,
    split_segments,
)
from leadsla.errors import LeadSlaError
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
STATES = ("running", "paused", "met", "met_late", "breached", "handed_on", "handed_on_late")
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
    tests: dict[str, list[tuple[int, list[str]]]] = {}
    for k, t in enumerate(tiers):
        if not t.default:
            for name, accepted in (t.when or {}).items():
                tests.setdefault(name, []).append((k, accepted))
    if not tests:
        return np.full(n, len(tiers) - 1, np.int8)
    ok = None  # per record: bit k set while tier k's conditions hold
    everything = (1 << len(tiers)) - 1
    for name, items in tests.items():
        free = everything & ~sum(1 << k for k, _ in items)  # tiers that do not read this column
        wanted: dict[str, int] = {}
        for k, accepted in items:
            for value in accepted:
                wanted[value] = wanted.get(value, 0) | (1 << k)
        bits = _tier_bits(index.column(name), wanted, free)
        ok = bits if ok is None else np.bitwise_and(ok, bits, out=ok)
    return _first_tier(ok, len(tiers))


def _tier_bits(column: np.ndarray, wanted: dict[str, int], free: int) -> np.ndarray:
    """Per record, the tiers one column lets through: `free` (the tiers that ignore the column)
    plus `wanted[value]` for the record's value (missing values and others add nothing)."""
    if len(wanted) <= 3:  # a few == passes cost less than factorising the column
        bits = np.full(len(column), free, np.int64)
        for value, mask in wanted.items():
            bits[column == value] |= mask
        return bits
    codes, uniques = pd.factorize(column)  # missing values: code -1, the last entry
    table = np.full(len(uniques) + 1, free, np.int64)
    pos = pd.Index(uniques, dtype=object).get_indexer(list(wanted))
    for p, mask in zip(pos, wanted.values(), strict=True):
        if p >= 0:
            table[p] |= mask
    return table[codes]


def _first_tier(ok: np.ndarray, n_tiers: int) -> np.ndarray:
    """The lowest set bit of each tier mask among the non-default tiers, else the default (last)
    tier, as int8 tier indexes."""
    default = n_tiers - 1
    if n_tiers <= 16:  # a lookup table over every mask is small: one gather for all records
        lowest = np.full(1 << n_tiers, default, np.int8)
        for k in range(default - 1, -1, -1):
            lowest[(np.arange(len(lowest)) >> k) & 1 == 1] = k
        return lowest[ok]
    tier = np.full(len(ok), default, np.int8)
    for k in range(default - 1, -1, -1):
        tier[(ok >> k) & 1 == 1] = k
    return tier


@dataclass(frozen=True)
class _TierTerms:
    """One SLA's tier terms as small arrays indexed by tier code, so a clock's terms are gathers."""

    target: np.ndarray  # seconds
    critical: np.ndarray  # bool
    calendar: np.ndarray  # fixed calendar code; -1: the segment owner's team calendar
    outside_hours: np.ndarray  # target seconds when a clock starts outside hours; -1: no such rule

    @classmethod
    def of(cls, sla: Sla, cals: _Calendars) -> _TierTerms:
        def calendar(target) -> int:
            if target.time == "calendar":
                return cals.code[REAL_TIME_CALENDAR]
            return -1 if target.calendar == OWNER_CALENDAR else cals.code[target.calendar]

        targets = [t.target for t in sla.tiers]
        return cls(
            np.array([t.seconds for t in targets], np.int64),
            np.array([t.critical for t in sla.tiers], bool),
            np.array([calendar(t) for t in targets], np.int64),
            np.array([t.outside_hours_seconds or -1 for t in targets], np.int64),
        )


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
    tiers: _TierTerms
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
    """One SLA's clocks that started inside `window` (the epoch seconds its policy version
    governs) as (clock columns, checkpoint columns) for `_frame`, or None if there are none."""
    clocks = _clocks_in_window(derive_clocks(sla, tl, _actors(policy, users)), window)
    if clocks is None:
        return None
    owner_team, owner_cal = _owner_calendars(policy, cals, users, tl.owners().vocab)
    record_tier = _match_tiers(sla, tl.index)
    ctx = _Context(
        policy, sla, tl, cals, owner_team, owner_cal, record_tier, _TierTerms.of(sla, cals), now_s, since_s
    )
    if len(clocks.record) <= _BLOCK_CLOCKS:
        clock, cp = _evaluate_clocks(ctx, clocks)
        _look_up_ids(ctx, clock)
        _look_up_ids(ctx, cp)
    else:
        clock, cp = _evaluate_blocks(ctx, clocks)
    _add_accountable(ctx, clock)
    return _assemble(ctx, clock, cp)


def _actors(policy: Policy, users: pd.DataFrame) -> Actors:
    """The policy's automation users and each user's team, for the SLA's touch rules."""
    teams = users.drop_duplicates("user_id", keep="last")
    team_of = {
        str(u): policy.team_key(t if isinstance(t, str) else None)
        for u, t in zip(teams["user_id"], teams["team"], strict=True)
    }
    return Actors(frozenset(policy.automation_user_ids), team_of)


def _clocks_in_window(clocks: Clocks, window: tuple[int, int]) -> Clocks | None:
    """The clocks that started in [window), or None if none did."""
    keep = (clocks.start >= window[0]) & (clocks.start < window[1])
    if not keep.any():
        return None
    if keep.all():
        return clocks
    return clocks.take(keep)


def _block(clocks: Clocks, a: int, b: int) -> Clocks:
    return clocks.take(slice(a, b))


def _evaluate_blocks(ctx: _Context, clocks: Clocks) -> tuple[dict, dict]:
    """Evaluate many clocks in blocks of `_BLOCK_CLOCKS`, on up to `_THREADS` threads, and join
    the blocks' columns in order: the result is the same as in one go."""
    n = len(clocks.record)
    bounds = [*range(0, n, _BLOCK_CLOCKS), n]
    out = _BlockOutput(ctx, clocks, bounds)

    def run(i: int) -> None:
        out.write(i, *_evaluate_clocks(ctx, _block(clocks, bounds[i], bounds[i + 1])))

    n_blocks = len(bounds) - 1
    threads = max(1, min(_THREADS, n // _PARALLEL_MIN_CLOCKS, n_blocks))
    if threads == 1:
        for i in range(n_blocks):
            run(i)
    else:
        # Blocks are independent, so they run on the machine's cores (numpy releases the GIL in
        # its integer kernels). The timelines' lazy caches are filled first so the threads only
        # read shared state.
        ctx.tl.prepare(ctx.sla)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, range(n_blocks)))
    return out.clock, out.checkpoints()


class _BlockOutput:
    """One SLA's whole output columns, written block by block.

    Every block writes its rows straight into the whole columns (so a worker thread, not the
    joining one, faults that memory in). A block's checkpoint rows go to its own region of an
    array sized for every checkpoint of every clock (untouched pages cost nothing), and the
    regions are closed up once every block is in.
    """

    def __init__(self, ctx: _Context, clocks: Clocks, bounds: list[int]) -> None:
        # One clock tells the columns' dtypes.
        probe_clock, probe_cp = _evaluate_clocks(ctx, _block(clocks, 0, 1))
        n = len(clocks.record)
        self.ctx, self.bounds = ctx, bounds
        self.n_cp = len(ctx.sla.all_checkpoints())
        self.clock = {key: np.empty(n, value.dtype) for key, value in probe_clock.items()}
        self.clock |= {column: np.empty(n, object) for column in _object_columns(ctx, probe_clock)}
        self._cp_region = {key: np.empty(n * self.n_cp, value.dtype) for key, value in probe_cp.items()}
        self._cp_counts = [0] * (len(bounds) - 1)

    def write(self, i: int, clock: dict, cp: dict) -> None:
        """Block `i`'s clock and checkpoint columns (codes for ids) into the whole columns."""
        a, b = self.bounds[i], self.bounds[i + 1]
        for key, value in clock.items():
            self.clock[key][a:b] = value
        # The id columns are filled here, a block at a time, so this Python-object work (it
        # holds the GIL) overlaps the other thread's numeric work instead of following it.
        for column, (table, codes) in _object_columns(self.ctx, clock).items():
            np.take(table, clock[codes], out=self.clock[column][a:b])
        at = a * self.n_cp
        for key, value in cp.items():
            self._cp_region[key][at : at + len(value)] = value
        self._cp_counts[i] = len(cp["record"])

    def checkpoints(self) -> dict:
        """Every block's checkpoint rows, closed up in block order, with their ids looked up."""
        total = 0
        for i, m in enumerate(self._cp_counts):
            at = self.bounds[i] * self.n_cp
            if at != total:
                for column in self._cp_region.values():
                    column[total : total + m] = column[at : at + m]  # overlapping moves are safe
            total += m
        cp = {key: column[:total] for key, column in self._cp_region.items()}
        _look_up_ids(self.ctx, cp)
        return cp


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


def _look_up_ids(ctx: _Context, part: dict) -> None:
    """Add the Python-object columns (record id, owner id, team) to a part's code columns."""
    for column, (table, codes) in _object_columns(ctx, part).items():
        part[column] = table[part[codes]]


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


# --- one block of clocks: tier -> spans -> elapsed -> deadline and checkpoints -> state ------------


def _evaluate_clocks(ctx: _Context, clocks: Clocks) -> tuple[dict, dict]:
    """Evaluate a block of one SLA's clocks (every clock independently of the others).

    Returns:
        (clock columns, checkpoint columns): integer arrays only - codes for record, owner, tier,
        calendar, state, colour and checkpoint, and epoch seconds with `_NAT` for missing instants.

    Works column by column (the deadline, then each checkpoint) on 1-D arrays: (clocks x goals)
    temporaries are fresh memory the kernel must fault in and zero, which cost more than the
    arithmetic on them.
    """
    stopped = clocks.stop >= 0
    end = np.where(stopped, clocks.stop, ctx.now_s)
    tier = ctx.record_tier[clocks.record]  # int8
    spans = _spans(ctx, clocks, end, tier)
    target = _targets(ctx, clocks, tier, spans)
    offsets = _checkpoint_offsets(ctx.sla, target)
    reach = _elapsed_and_reach(ctx, spans, end, target, offsets)
    elapsed, deadline = reach.elapsed, reach.deadline
    over = elapsed > target
    percent = np.round(elapsed / target * 100.0, 2)
    running = ~stopped
    status, nxt = _checkpoint_statuses(reach.reached, reach.reached_at, running, ctx.since_s)
    next_cp, next_at = _next_checkpoints(nxt, offsets, reach.reached_at)
    clock_cols = {
        "record": clocks.record.astype(np.int32),
        "clock_start": clocks.start,
        "tier": tier,
        "calendar": spans.current_cal.astype(np.int8),
        "target_seconds": target,
        "owner": spans.current_owner.astype(np.int32),
        "accountable_owner": _accountable_owner(spans, over, reach.target_seg).astype(np.int32),
        "state": _states(over, stopped, clocks.ended_by_leaving(), spans.current_paused & running),
        "elapsed_seconds": elapsed,
        "remaining_seconds": target - elapsed,
        "percent_elapsed": percent,
        "colour": _colours(over, percent),
        "deadline": deadline,
        "stopped_at": np.where(stopped, clocks.stop, _NAT),
        "breached_at": np.where(over, deadline, _NAT),
        "critical": ctx.tiers.critical[tier],
        "next_checkpoint": next_cp,
        "next_checkpoint_at": next_at,
    }
    return clock_cols, _checkpoint_rows(clocks, offsets, reach, status)


@dataclass
class _Spans:
    """A block's segments (`Segments`: each clock split at owner and pause changes) with each
    segment's calendar, and per clock where its segments are and how its last one stands. With
    one segment per clock (`seg.single`) segment i is clock i and `first`/`last` are None."""

    seg: Segments
    cal: np.ndarray  # calendar code per segment
    first: np.ndarray | None  # per clock: index of its first segment
    last: np.ndarray | None  # per clock: index of its last segment
    current_cal: np.ndarray  # per clock: the last segment's calendar (the current owner's)
    current_owner: np.ndarray  # per clock: owner code at now/the stop
    current_paused: np.ndarray  # per clock: paused at now/the stop

    @property
    def single(self) -> bool:
        return self.seg.single


def _spans(ctx: _Context, clocks: Clocks, end: np.ndarray, tier: np.ndarray) -> _Spans:
    """Split each clock's [start, end) into segments and give each its calendar: the tier's fixed
    calendar (real time or a named one) if it has one, else the segment owner's team calendar."""
    seg = split_segments(ctx.sla, ctx.tl, clocks, end)
    cal = ctx.owner_cal[seg.owner]
    fixed = ctx.tiers.calendar
    if (fixed >= 0).any():
        seg_fixed = fixed[tier] if seg.single else fixed[tier][seg.clock]
        cal = np.where(seg_fixed >= 0, seg_fixed, cal)
    if seg.single:
        return _Spans(seg, cal, None, None, cal, seg.owner, seg.paused)
    clock_ix = np.arange(len(clocks.record))
    first = np.searchsorted(seg.clock, clock_ix, side="left")
    last = np.searchsorted(seg.clock, clock_ix, side="right") - 1
    return _Spans(seg, cal, first, last, cal[last], seg.owner[last], seg.paused[last])


def _targets(ctx: _Context, clocks: Clocks, tier: np.ndarray, spans: _Spans) -> np.ndarray:
    """Each clock's target seconds: its tier's, or the tier's outside-hours target ("2 h in hours,
    4 h outside") when the clock started outside its first segment's calendar hours."""
    target = ctx.tiers.target[tier]
    outside = ctx.tiers.outside_hours
    if (outside >= 0).any():
        outside = outside[tier]
        which = np.flatnonzero(outside >= 0)
        if len(which):
            first_cal = spans.cal[which] if spans.single else spans.cal[spans.first[which]]
            opened = ctx.cals.fused.is_open(first_cal, clocks.start[which])
            target[which] = np.where(opened, target[which], outside[which])
    return target


@dataclass
class _Offsets:
    """Each clock's checkpoint offsets in catch-up order: by offset, then declaration."""

    seconds: np.ndarray  # (clocks, checkpoints) offsets from the clock start, in elapsed seconds
    order0: np.ndarray  # the first clock's order: column j holds checkpoint order0[j]
    order: np.ndarray | None  # (clocks, checkpoints) per-clock order; None: order0 is every clock's


def _checkpoint_offsets(sla: Sla, target: np.ndarray) -> _Offsets:
    """Every checkpoint's offset per clock (percent of the clock's target, fixed elapsed, or
    relative to the target), sorted into catch-up order."""
    columns = [_offsets(cp, target) for cp in sla.all_checkpoints()]
    order0 = np.argsort(np.array([c[0] for c in columns]), kind="stable")
    # The order is usually the same for every clock, so the first clock's is tried before sorting
    # all. order0 is every clock's order if it sorts every row, ties broken by declaration (so the
    # answer never depends on which clock came first, e.g. in a block of a parallel run).
    same_order = all(
        np.all(columns[a] < columns[b] if a > b else columns[a] <= columns[b])
        for a, b in zip(order0, order0[1:], strict=False)
    )
    seconds = np.empty((len(target), len(columns)), np.int64)
    if same_order:
        for j, o in enumerate(order0):
            seconds[:, j] = columns[o]
        return _Offsets(seconds, order0, None)
    stacked = np.stack(columns, axis=1)
    order = np.argsort(stacked, axis=1, kind="stable")
    seconds[:] = np.take_along_axis(stacked, order, axis=1)
    return _Offsets(seconds, order0, order)


def _offsets(cp, target: np.ndarray) -> np.ndarray:
    """One checkpoint's offset per clock, in elapsed seconds (never before the clock start)."""
    kind, value = cp.offset()
    if kind == "percent":
        return np.rint(target * value / 100.0).astype(np.int64)
    if kind == "elapsed":
        return np.full(len(target), int(value), np.int64)
    return np.maximum(target + int(value), 0)


@dataclass
class _Reach:
    """Per clock: elapsed seconds, and when the target and each checkpoint offset are reached."""

    elapsed: np.ndarray
    deadline: np.ndarray  # epoch seconds
    target_seg: np.ndarray | None  # the segment in which the target runs out (None: single)
    reached: np.ndarray  # (clocks, checkpoints) bool: reached within the clock's segments
    reached_at: np.ndarray  # (clocks, checkpoints) epoch seconds, projected if not reached


def _elapsed_and_reach(
    ctx: _Context, spans: _Spans, end: np.ndarray, target: np.ndarray, offsets: _Offsets
) -> _Reach:
    """Elapsed, deadline and checkpoint instants of a block of clocks.

    Everything works in "open seconds" space F of the fused calendar table: elapsed is
    F(end) - F(start) per segment, and the instant an offset is reached is F's inverse. F values
    are relative to one table snapshot, so the table is grown (and everything recomputed) until
    every instant falls inside it.

    Raises:
        CalendarError: a deadline or checkpoint falls after `MAX_YEAR`.
    """
    n, n_cp = offsets.seconds.shape
    reached = np.empty((n, n_cp), dtype=bool)
    reached_at = np.empty((n, n_cp), np.int64)
    # The table must reach past every projected instant: guess generously from the largest goal
    # (a business hour is rarely more than five real ones), then grow it if a goal falls outside.
    horizon = (
        int(spans.seg.end.max()) + 5 * int(max(target.max(), offsets.seconds.max(initial=0))) + 21 * 86_400
    )
    extra_years = 0
    while True:
        table = ctx.cals.fused.prepare(int(spans.seg.start.min()), horizon, extra_years)
        elapsed = _elapsed(table, spans, ctx.now_s)
        deadline = _reach(elapsed, spans, end, target)
        if deadline is not None and _reach_checkpoints(elapsed, spans, end, offsets, reached, reached_at):
            at, _, target_seg = deadline
            return _Reach(elapsed.elapsed, at, target_seg, reached, reached_at)
        if ctx.cals.fused.max_year >= MAX_YEAR:
            raise CalendarError(f"an SLA {ctx.sla.id!r} deadline falls after {MAX_YEAR}")
        extra_years = extra_years * 2 + 1


@dataclass
class _Elapsed:
    """A block's elapsed open seconds on one `FusedTable` snapshot (F values are relative to it)."""

    table: FusedTable
    seg_codes: CalendarCodes  # the segments' calendars, prepared for `table`
    f_start: np.ndarray  # per segment: F(start)
    elapsed: np.ndarray  # per clock: open seconds over its unpaused segments
    projected_base: np.ndarray  # per clock: F(end) - elapsed, where goals past the end count from
    cum_after: np.ndarray | None  # per segment: the block's running elapsed up to its end
    cum_before: np.ndarray | None  # per segment: ... up to its start
    base: np.ndarray | None  # per clock: cum_before of its first segment


def _elapsed(table: FusedTable, spans: _Spans, now_s: int) -> _Elapsed:
    """Elapsed per segment on its own calendar (paused segments count nothing), summed per clock:
    an ownership change re-bases the clock onto the new owner's calendar."""
    seg = spans.seg
    seg_codes = table.prepare(spans.cal)
    f_start = table.open_before(seg_codes, seg.start)
    f_end = _open_at(table, seg_codes, seg.end, now_s)
    seg_elapsed = f_end - f_start
    seg_elapsed[seg.paused] = 0
    if spans.single:
        return _Elapsed(table, seg_codes, f_start, seg_elapsed, f_end - seg_elapsed, None, None, None)
    cum_after = np.cumsum(seg_elapsed)
    cum_before = cum_after - seg_elapsed
    base = cum_before[spans.first]
    elapsed = cum_after[spans.last] - base
    projected_base = f_end[spans.last] - elapsed
    return _Elapsed(table, seg_codes, f_start, elapsed, projected_base, cum_after, cum_before, base)


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


def _reach(
    elapsed: _Elapsed, spans: _Spans, end: np.ndarray, goal: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """When each clock's elapsed reaches `goal` seconds.

    Inside the clock's own segments, on the calendar of the segment where it happens; otherwise
    projected: the clock keeps running from its end (now, or the stop) on the current owner's
    calendar.

    Returns:
        (instant (written into `out` if given), reached inside the segments, that segment's
        index or None with one segment per clock), or None when some instant lies past the table.
    """
    inside = goal <= elapsed.elapsed
    if spans.single:
        # Inside the one segment: F(start) + goal; projected: F(end) - elapsed + goal (the same
        # unless the clock is paused).
        f_goal = np.where(inside, elapsed.f_start, elapsed.projected_base)
        f_goal += goal
        goal_cal = elapsed.seg_codes
        start_at = np.where(inside, spans.seg.start, end)
        k = None
    else:
        # The first segment whose running elapsed reaches the goal (zero-length spans of earlier
        # clocks share the same running value, hence the clip), from that segment's start.
        wanted = elapsed.base + goal
        k = np.clip(np.searchsorted(elapsed.cum_after, wanted, side="left"), spans.first, spans.last)
        wanted -= elapsed.cum_before[k]
        wanted += elapsed.f_start[k]
        f_goal = np.where(inside, wanted, elapsed.projected_base + goal)
        goal_cal = elapsed.table.prepare(np.where(inside, spans.cal[k], spans.current_cal))
        start_at = np.where(inside, spans.seg.start[k], end)
    if not np.all(f_goal <= goal_cal.total):
        return None
    at = elapsed.table.inverse(goal_cal, f_goal)
    # F's inverse is the earliest instant with that many open seconds: for a goal met exactly at
    # a segment's start in closed hours that is the previous closing, before the segment began.
    return np.maximum(at, start_at, out=at if out is None else out), inside, k


def _reach_checkpoints(
    elapsed: _Elapsed,
    spans: _Spans,
    end: np.ndarray,
    offsets: _Offsets,
    reached: np.ndarray,
    reached_at: np.ndarray,
) -> bool:
    """Fill `reached`/`reached_at` column by column (one checkpoint at a time keeps every
    temporary one block long); False when some instant lies past the table."""
    for j in range(offsets.seconds.shape[1]):
        got = _reach(elapsed, spans, end, offsets.seconds[:, j], out=reached_at[:, j])
        if got is None:
            return False
        reached[:, j] = got[1]
    return True


def _accountable_owner(spans: _Spans, over: np.ndarray, target_seg: np.ndarray | None) -> np.ndarray:
    """Who answers for each clock: for a breached/met-late clock the owner of the segment in which
    the target ran out (the owner at the breach instant: a breach escalation reassigns the lead
    afterwards, and the breach must stay with the rep who let it happen), else the current owner.
    With one segment per clock (no owner change inside any clock) that is the current owner."""
    if spans.single:
        return spans.current_owner
    return np.where(over, spans.seg.owner[target_seg], spans.current_owner)


def _states(over: np.ndarray, stopped: np.ndarray, left: np.ndarray, paused_now: np.ndarray) -> np.ndarray:
    """`STATES` codes (int8): a clock a stop rule ended is met (or met late, over its target); one
    that ended by the record leaving the watched state is handed on (or handed on late); an open
    one is breached once over its target, else paused or running."""
    met = stopped & ~left
    return np.select(
        [met & ~over, met & over, stopped & ~over, stopped, over, paused_now],
        [
            STATES.index("met"),
            STATES.index("met_late"),
            STATES.index("handed_on"),
            STATES.index("handed_on_late"),
            STATES.index("breached"),
            STATES.index("paused"),
        ],
        default=STATES.index("running"),
    ).astype(np.int8)


#: Colour threshold: a clock is yellow from this percent of its target (red once over it).
_YELLOW_PERCENT = 75


def _colours(over: np.ndarray, percent: np.ndarray) -> np.ndarray:
    """`COLOURS` codes (int8): red when over the target, yellow from `_YELLOW_PERCENT`, else green."""
    return np.where(over, 2, np.where(percent >= _YELLOW_PERCENT, 1, 0)).astype(np.int8)


def _checkpoint_statuses(
    reached: np.ndarray, reached_at: np.ndarray, running: np.ndarray, since_s: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Each checkpoint's status and each clock's next checkpoint, columns in catch-up order.

    A checkpoint of an open clock reached after `since` is fresh: the last fresh one (highest
    offset) is due, earlier fresh ones are superseded (catch-up sends the breach, not stale
    warnings); every other reached one is past.

    Returns:
        (status codes (clocks, checkpoints) int8 into `CHECKPOINT_STATUSES`, meaningful where
        reached; per clock the column of the first checkpoint not reached, -1 when the clock has
        stopped or reached them all).
    """
    n, n_cp = reached.shape
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
    return status, nxt


def _next_checkpoints(
    nxt: np.ndarray, offsets: _Offsets, reached_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(checkpoint code (int8, -1: none), projected instant (`_NAT`: none)) of each clock's next
    checkpoint, from its catch-up column `nxt` (-1: none)."""
    nxt_c = np.clip(nxt, 0, None)
    rows = np.arange(len(nxt))
    next_cp = offsets.order0[nxt_c] if offsets.order is None else offsets.order[rows, nxt_c]
    has_next = nxt >= 0
    return np.where(has_next, next_cp, -1).astype(np.int8), np.where(has_next, reached_at[rows, nxt_c], _NAT)


def _checkpoint_rows(clocks: Clocks, offsets: _Offsets, reach: _Reach, status: np.ndarray) -> dict:
    """One row per reached checkpoint, by clock then catch-up order, as code columns."""
    n = len(clocks.record)
    flat = np.flatnonzero(reach.reached)  # row-major: by clock, then catch-up order
    ci = np.repeat(np.arange(n), np.count_nonzero(reach.reached, axis=1))
    if offsets.order is None:
        checkpoint = np.tile(offsets.order0.astype(np.int8), n)[flat]
    else:
        checkpoint = offsets.order.ravel()[flat]
    return {
        "record": clocks.record.astype(np.int32)[ci],
        "clock_start": clocks.start[ci],
        "checkpoint": checkpoint,
        "offset_seconds": offsets.seconds.ravel()[flat],
        "reached_at": reach.reached_at.ravel()[flat],
        "status": status.ravel()[flat],
    }


def _constant(value: str, n: int) -> pd.Categorical:
    return pd.Categorical.from_codes(np.zeros(n, np.int8), [value])


# --- every policy version and SLA ------------------------------------------------------------------


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
    windows = _version_windows(versions)
    clock_parts, cp_parts = [], []
    timelines: dict[str, Timeline] = {}
    record_cols = Columns(records, "records")
    history_cols = Columns(field_history, "field_history")
    activity_cols = Columns(activities, "activities")
    for pol, window in zip(versions, windows, strict=True):
        cals = _Calendars(pol)
        for sla in pol.slas:
            if not sla.enabled:
                continue
            if sla.object not in timelines:  # one timeline per object type, shared by its SLAs
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


def _version_windows(versions: list[Policy]) -> list[tuple[int, int]]:
    """The clock starts each policy version governs, [from, to) in epoch seconds: from its
    `effective_from` to the next version's. `versions` are sorted by `effective_from`; the
    earliest also governs clocks that started before it, the latest every later start."""
    bounds = [to_epoch_seconds(p.effective_from, "effective_from") for p in versions]
    lo, hi = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
    return [
        (lo if v == 0 else bounds[v], bounds[v + 1] if v + 1 < len(versions) else hi)
        for v in range(len(versions))
    ]


def _fields_read(policies: list[Policy], object_type: str) -> list[str]:
    """Every field_history field a rule of any version reads for this object type."""
    fields = [OWNER_FIELD]
    for pol in policies:
        for sla in pol.slas:
            if sla.object == object_type:
                fields.append(sla.start.field)
                if sla.start.becomes is not None:  # a record created holding the value starts one
                    fields.append(CREATED_FIELD)
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


# --- a stored open clock moves with time: its row holds the values at `evaluated_at` ------------

#: The columns of an open clock that move with time alone, linearly in its calendar's open seconds
#: (a stored row holds them as of its `evaluated_at`; `as_of` gives them at a later instant).
MOVING_COLUMNS = ("elapsed_seconds", "remaining_seconds", "percent_elapsed")
#: States whose elapsed time grows while their calendar is open (a paused clock's does not).
_ADVANCING = ("running", "breached")


def as_of(clocks: pd.DataFrame, policy: Policy, at: dt.datetime) -> pd.DataFrame:
    """The clock rows with their moving columns (`MOVING_COLUMNS`) at `at`: a running or breached
    clock's elapsed time grows by the open seconds of its calendar between its `evaluated_at` and
    `at`; remaining and percent follow as the engine derives them. Every other column is as stored.

    Exact while nothing else changed since `evaluated_at` (no CRM data, no state or colour change:
    the incremental monitor re-evaluates a clock at its `next_change_at`, so a row it has not
    re-evaluated by `at` is such a row). A row evaluated at or after `at`, an ended or paused clock,
    and one whose calendar the policy no longer has are returned as stored. Returns a copy.
    """
    out = clocks.copy()
    if out.empty:
        return out
    at_s = to_epoch_seconds(at, "at")
    evaluated = _epoch_seconds(out["evaluated_at"])
    advancing = out["state"].astype(str).isin(_ADVANCING).to_numpy() & (evaluated < at_s)
    if not advancing.any():
        return out
    calendars = out["calendar"].astype(str).to_numpy()
    elapsed = out["elapsed_seconds"].to_numpy(dtype=np.int64).copy()
    for name in np.unique(calendars[advancing]):
        rows = advancing & (calendars == name)
        try:
            calendar = policy.calendar(str(name))
        except LeadSlaError:
            continue
        elapsed[rows] += calendar.elapsed_seconds(evaluated[rows], np.full(int(rows.sum()), at_s))
    target = out["target_seconds"].to_numpy(dtype=np.int64)
    out["elapsed_seconds"] = elapsed
    out["remaining_seconds"] = target - elapsed
    out["percent_elapsed"] = np.round(elapsed / target * 100.0, 2)
    return out


def _epoch_seconds(values: pd.Series) -> np.ndarray:
    """Aware instants (any unit; NaT: int64 max, never reached) as epoch seconds."""
    instants = pd.to_datetime(values, utc=True)
    seconds = instants.dt.tz_localize(None).to_numpy(dtype="datetime64[s]").astype(np.int64)
    return np.where(instants.isna().to_numpy(), np.iinfo(np.int64).max, seconds)


def _yellow_elapsed(target: np.ndarray) -> np.ndarray:
    """The least elapsed seconds at which a clock of each target turns yellow (`_colours`: its
    rounded percent reaches `_YELLOW_PERCENT`), found exactly with the engine's own rounding."""
    target = np.maximum(np.asarray(target, dtype=np.int64), 1)

    def yellow(e: np.ndarray) -> np.ndarray:
        return np.round(e / target * 100.0, 2) >= _YELLOW_PERCENT

    e = np.maximum(np.floor(target * (_YELLOW_PERCENT - 0.005) / 100.0).astype(np.int64) - 2, 0)
    while (low := yellow(e) & (e > 0)).any():  # float rounding put the guess past the threshold
        e[low] -= 1
    while (short := ~yellow(e)).any():
        e[short] += 1
    return e


# --- when a clock's evaluation can next change ----------------------------------------------------

#: States whose evaluation moves with time alone.
_MOVING = ("running", "breached", "paused")


def next_changes(clocks: pd.DataFrame, policy: Policy, now: dt.datetime) -> pd.Series:
    """Per clock evaluated at `now`, the next instant its row can change with no new CRM data other
    than in its moving columns (`MOVING_COLUMNS`, which `as_of` projects from its `evaluated_at`):
    aware UTC, NaT for never. For the incremental monitor.

    - A running or breached clock: its next checkpoint (a warning, the breach, an escalation step);
      for a running one also the instant it turns yellow (`_colours`) and the one it goes over its
      target (state breached, colour red), on its calendar from `now`. Whether the calendar is open
      changes nothing else: elapsed time simply grows only in open hours, as `as_of` counts it. A
      breached clock with no checkpoint left: NaT.
    - A paused clock whose calendar is open: `now` (its deadline and next checkpoint are projected
      from `now`, so they move every second). Closed, nothing moves until the calendar opens: the
      next opening, or its next checkpoint if sooner.
    - An ended clock changes only when its record does: NaT.
    - A calendar the policy no longer has: `now` (re-evaluated until a full evaluation settles it).
    """
    n = len(clocks)
    out = np.full(n, _NAT, np.int64)
    if n == 0:
        return _to_utc(out)
    now_s = to_epoch_seconds(now, "now")
    state = clocks["state"].astype(str).to_numpy()
    moving = np.isin(state, _MOVING)
    calendars = clocks["calendar"].astype(str).to_numpy()
    never = np.iinfo(np.int64).max
    checkpoint_s = _epoch_seconds(clocks["next_checkpoint_at"])
    elapsed = clocks["elapsed_seconds"].to_numpy(dtype=np.int64)
    target = clocks["target_seconds"].to_numpy(dtype=np.int64)
    colour = clocks["colour"].astype(str).to_numpy()
    for name in np.unique(calendars[moving]):
        rows = moving & (calendars == name)
        try:
            calendar = policy.calendar(str(name))
        except LeadSlaError:
            out[rows] = now_s
            continue
        paused = rows & (state == "paused")
        if paused.any():
            if bool(calendar.is_open(np.array([now_s]))[0]):
                out[paused] = now_s
            else:
                opens = int(calendar.deadline_seconds(np.array([now_s]), np.array([1]))[0]) - 1
                out[paused] = np.minimum(opens, checkpoint_s[paused])
        advancing = rows & ~paused
        if advancing.any():
            out[advancing] = _next_advancing_change(
                calendar,
                now_s,
                elapsed[advancing],
                target[advancing],
                colour[advancing],
                checkpoint_s[advancing],
            )
    out[out == never] = _NAT
    return _to_utc(out)


def _next_advancing_change(
    calendar, now_s: int, elapsed: np.ndarray, target: np.ndarray, colour: np.ndarray, checkpoint: np.ndarray
) -> np.ndarray:
    """For running or breached clocks of one calendar at `now`: the first of their next checkpoint,
    turning yellow (a green clock) and going over the target (a clock not yet over), in epoch
    seconds (int64 max: none). A goal past the calendar's last year counts as `now`."""
    never = np.iinfo(np.int64).max
    goal = np.full(len(elapsed), never, np.int64)
    green = colour == "green"
    goal[green] = _yellow_elapsed(target[green])
    under = elapsed <= target
    goal[under] = np.minimum(goal[under], target[under] + 1)
    ahead = goal != never
    at = np.full(len(elapsed), never, np.int64)
    if ahead.any():
        try:
            at[ahead] = calendar.deadline_seconds(
                np.full(int(ahead.sum()), now_s), np.maximum(goal[ahead] - elapsed[ahead], 0)
            )
        except CalendarError:
            at[ahead] = now_s
    return np.minimum(at, checkpoint)
