"""What a monitor run evaluates: every record (full), or only what can have changed (incremental).

An incremental run re-evaluates the records whose mirror rows landed since the last evaluation
read the store (their own row, history, activities, or their owner's user row), and those with a
clock whose next change (`clocks.next_change_at`, `engine.next_changes`: a checkpoint, a colour
turn, the breach) falls due by `now + horizon`; everything else keeps its stored clock rows. A
stored open clock's elapsed, remaining and percent are as of its own `evaluated_at`: they grow with
its calendar's open hours, which `engine.as_of` projects. The decisions then read the re-evaluated
clocks merged with the stored current ones they can look at (open, started in the last two days,
breached within the ladder's windows), projected to `now`, so a plan is the one a full evaluation
gives.

A full evaluation runs on the first run, on a policy change, every `reconcile_every` runs, when
asked, and when more records changed than a full evaluation's range holds (`choose`: an incremental
run evaluates its records in one go); it reads the mirror a range of record ids at a time
(`store.mirror.key_ranges`: one index range scan a table) so memory stays bounded - each range's
mirror rows, evaluation and stored rows are freed before the next; kept are the clock rows to write
and what the decisions can read - and compares each range with what the incremental state held (an
open clock's moving columns as projected from its `evaluated_at`): a difference is corrected by the
run's writes and recorded (`reconciles`, read by `leadsla.health.reconcile`). Ranges make the
shards of a sharded evaluation too (`Part`, `merge`; `tasks.monitor.plan_shards`). Reads only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa

from leadsla.decisions.ahead import evaluate_records
from leadsla.decisions.ladder import DIGEST_CATCH_UP
from leadsla.engine import CLOCK_COLUMNS, MOVING_COLUMNS, Evaluation, as_of, next_changes
from leadsla.policy import Policy
from leadsla.store.clocks import (
    OPEN,
    ClockWrites,
    current_clocks,
    current_count,
    due_for_change,
    key_of,
    open_clocks_of,
    plan_writes,
    read_stored,
    recent_evaluations,
)
from leadsla.store.mirror import KeyRange, converted_into, key_ranges, landed_since, load_frames, owned_by

#: A full evaluation (a reconcile) every this many runs.
RECONCILE_EVERY = 60
#: Records per chunk of a full evaluation: the mirror rows of one chunk are in memory at a time.
CHUNK_RECORDS = 50_000
#: Rows landed this long before the last evaluation read the store count as new again: a sync's
#: transaction in flight while it read, and clock skew between the workers that wrote the instants.
LANDING_OVERLAP = dt.timedelta(minutes=5)
#: Clocks started this far back are read for the capacity alerts (a team's calendar day at `now`).
STARTED_WINDOW = dt.timedelta(days=2)
#: The differing clocks a reconcile keeps as a sample.
SAMPLE = 20

_COMPARED = [c for c in CLOCK_COLUMNS if c != "evaluated_at"]


def policy_digest(policy: Policy) -> str:
    """The policy's content digest: a change means every clock is re-evaluated."""
    return hashlib.sha256(policy.model_dump_json().encode()).hexdigest()


@dataclass
class Choice:
    """How a run evaluates: `full` or not, why (first, policy_changed, every_n_runs, asked,
    many_changed) and, with a previous evaluation to build on, since when mirror rows count as
    landed; an incremental run's `ids` are the records it re-evaluates (`selected`)."""

    full: bool
    reason: str | None
    landed_after: dt.datetime | None
    ids: set[str] | None = None


def choose(
    conn: sa.Connection,
    policy: Policy,
    *,
    mode: str,
    reconcile_every: int,
    now: dt.datetime,
    horizon: dt.timedelta,
    most: int = CHUNK_RECORDS,
) -> Choice:
    """Full or incremental (module docstring); `mode` is auto, incremental or full.

    An incremental run re-evaluates its records in one go; when more than `most` are selected (a
    sync that landed every user's row, a bulk update of the org), the run is a full one instead,
    read and evaluated a range of `most` records at a time, so no run holds more of the mirror
    than a full run's range (reason ``many_changed``).
    """
    if mode not in ("auto", "incremental", "full"):
        raise ValueError(f"monitor mode {mode!r}: expected auto, incremental or full")
    recent = recent_evaluations(conn, max(1, reconcile_every))
    last = recent[0] if recent else None
    after = None if last is None or last.mode is None else last.read_at - LANDING_OVERLAP
    if after is None:
        return Choice(True, "first", None)
    if last.policy_digest != policy_digest(policy):
        return Choice(True, "policy_changed", after)
    if mode == "full":
        return Choice(True, "asked", after)
    if mode == "auto" and len(recent) >= reconcile_every and all(r.mode == "incremental" for r in recent):
        return Choice(True, "every_n_runs", after)
    ids = selected(conn, now, after, horizon)
    if len(ids) > most:
        return Choice(True, "many_changed", after)
    return Choice(False, None, after, ids)


def selected(
    conn: sa.Connection, now: dt.datetime, landed_after: dt.datetime, horizon: dt.timedelta
) -> set[str]:
    """The records an incremental run re-evaluates (module docstring)."""
    records, users = landed_since(conn, landed_after)
    if users:
        records |= owned_by(conn, users) | open_clocks_of(conn, users)
    return records | due_for_change(conn, now + horizon)


@dataclass
class Result:
    """What a run evaluated, for the decisions and the writes.

    `clocks`: the clocks the decisions read; `checkpoints`: the re-evaluated clocks' reached
    checkpoints; `records`: the records the decisions read; `evaluated`: the records re-evaluated
    (None: all); `writes`: the clock rows to write; `reconcile`: a full run's comparison;
    `frames`: an incremental run's mirror frames of `evaluated`.
    """

    clocks: pd.DataFrame
    checkpoints: pd.DataFrame
    records: pd.DataFrame
    users: pd.DataFrame
    queues: pd.DataFrame
    evaluated: set[str] | None
    writes: ClockWrites
    count: int
    reconcile: dict[str, Any] | None = None
    reached: set[str] = field(default_factory=set)
    #: An incremental run's mirror frames of the records it re-evaluated (`evaluated`), for the
    #: planning ahead to cut its records' rows from instead of reading them again.
    frames: dict[str, pd.DataFrame] | None = None

    @property
    def evaluation(self) -> Evaluation:
        return Evaluation(self.clocks, self.checkpoints)


def store_rows(evaluation: Evaluation, policy: Policy, now: dt.datetime) -> list[dict[str, Any]]:
    """The evaluation's rows for the clocks table, with their next change and current (not stale)."""
    rows = evaluation.clock_rows()
    for row, at in zip(rows, next_changes(evaluation.clocks, policy, now), strict=True):
        row["next_change_at"] = None if pd.isna(at) else at.to_pydatetime()
        row["stale_since"] = None
    return rows


def evaluate_incremental(conn: sa.Connection, policy: Policy, now: dt.datetime, *, ids: set[str]) -> Result:
    """Re-evaluate the selected records (`choose`: `selected`); the decisions get them merged
    with the stored rest."""
    frames = load_frames(conn, ids)
    evaluation = evaluate_records(frames, policy, now)
    stored = read_stored(conn, ids)
    writes = plan_writes(store_rows(evaluation, policy, now), stored, now, scope=ids)
    breached_since = _breached_since(policy, now, evaluation.clocks)
    others = current_clocks(
        conn,
        started_since=now - STARTED_WINDOW,
        breached_since=breached_since,
        sla_ids=[sla.id for sla in policy.slas],
    )
    # The stored rows hold their moving columns as of their evaluation: the decisions read them now.
    others = as_of(others[~others["record_id"].isin(ids)], policy, now)
    clocks = _merge(evaluation.clocks, others)
    records = _decision_records(conn, frames["records"], clocks, now)
    return Result(
        clocks=clocks,
        checkpoints=evaluation.checkpoints,
        records=records,
        users=frames["users"],
        queues=frames["queues"],
        evaluated=ids,
        writes=writes,
        count=current_count(conn)
        - sum(1 for r in stored.values() if r["stale_since"] is None)
        + len(evaluation.clocks),
        frames=frames,
    )


@dataclass
class Part:
    """A full evaluation's share (a shard, or every record), evaluated chunk by chunk: the clock
    rows it writes and, of its evaluation, only what the decisions can read (the clocks in their
    window, the reached checkpoints, those clocks' records) and the reconcile's counts. Small
    beside the mirror rows it came from, which are freed chunk by chunk."""

    writes: ClockWrites = field(default_factory=ClockWrites)
    clocks: list[pd.DataFrame] = field(default_factory=list)
    checkpoints: list[pd.DataFrame] = field(default_factory=list)
    records: list[pd.DataFrame] = field(default_factory=list)
    count: int = 0
    compared: int = 0
    differences: int = 0
    sample: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0


def evaluate_full(
    conn: sa.Connection,
    policy: Policy,
    now: dt.datetime,
    *,
    choice: Choice,
    horizon: dt.timedelta,
    chunk_records: int = CHUNK_RECORDS,
) -> Result:
    """Evaluate every record (in ranges of `chunk_records` ids when there are more) and compare
    with the incremental state (when there is one to compare: not on a first run)."""
    ranges = key_ranges(conn, chunk_records)
    base = load_frames(conn, tables=["users", "queues"])
    whole = len(ranges) == 1  # the whole picture as one evaluation, exactly as before chunking
    part = evaluate_part(
        conn, policy, now, None if whole else ranges, choice=choice, horizon=horizon, users=base["users"]
    )
    return merge(conn, [part], choice=choice, users=base["users"], queues=base["queues"], whole=whole)


def shard_ranges(ranges: list[KeyRange], shards: int) -> list[list[KeyRange]]:
    """`ranges` (consecutive, `mirror.key_ranges`) dealt into `shards` runs of consecutive ranges,
    as even as they divide: each shard reads its own stretch of the id order."""
    shards = max(1, min(shards, len(ranges)))
    return [ranges[len(ranges) * i // shards : len(ranges) * (i + 1) // shards] for i in range(shards)]


def evaluate_part(
    conn: sa.Connection,
    policy: Policy,
    now: dt.datetime,
    ranges: list[KeyRange] | None,
    *,
    choice: Choice,
    horizon: dt.timedelta,
    users: pd.DataFrame | None = None,
) -> Part:
    """Evaluate the records of `ranges` a range at a time (a shard, or every record; None: every
    record in one go, keeping the whole evaluation), for `merge`."""
    if users is None:
        users = load_frames(conn, tables=["users"])["users"]
    incremental = None if choice.landed_after is None else selected(conn, now, choice.landed_after, horizon)
    breached_since = now - _breach_window(policy)
    part = Part()
    for within in [None] if ranges is None else ranges:
        _evaluate_chunk(
            conn, policy, now, within, part, users, incremental, breached_since, whole=ranges is None
        )
    if ranges is not None:  # frames of plain values, whatever the number of chunks (as `_concat` gives)
        part.clocks, part.checkpoints, part.records = (
            [_concat([_plain(f) for f in frames])] if frames else []
            for frames in (part.clocks, part.checkpoints, part.records)
        )
    return part


def _evaluate_chunk(
    conn: sa.Connection,
    policy: Policy,
    now: dt.datetime,
    within: KeyRange | None,
    part: Part,
    users: pd.DataFrame,
    incremental: set[str] | None,
    breached_since: dt.datetime,
    *,
    whole: bool,
) -> None:
    """One chunk into `part`: its writes, its compare counts and what the decisions can read of it.
    Its mirror frames, evaluation and stored rows are this call's locals, freed when it returns."""
    frames = load_frames(conn, tables=["records", "field_history", "activities"], within=within)
    evaluation = evaluate_records({**frames, "users": users}, policy, now)
    part.count += len(evaluation.clocks)
    part.chunks += 1
    rows = store_rows(evaluation, policy, now)
    chunk = plan_writes(rows, read_stored(conn, within=within), now)
    part.writes.rows += chunk.rows
    part.writes.stale += chunk.stale
    if incremental is not None:
        n, diff = _compare(rows, chunk, incremental, policy, now)
        part.compared += n
        part.differences += len(diff)
        part.sample += diff[: SAMPLE - len(part.sample)]
    if whole:  # the whole picture as one evaluation, exactly as before chunking
        part.clocks.append(evaluation.clocks)
        part.records.append(frames["records"])
        part.checkpoints.append(evaluation.checkpoints)
        return
    kept = _decision_window(evaluation.clocks, now, breached_since)  # only what the decisions can read
    records = frames["records"]
    part.clocks.append(kept)
    part.records.append(records[records["record_id"].isin(set(kept["record_id"]))])
    cp = evaluation.checkpoints
    part.checkpoints.append(cp[cp["status"].isin(["due", "superseded"])])


def merge(
    conn: sa.Connection,
    parts: list[Part],
    *,
    choice: Choice,
    users: pd.DataFrame,
    queues: pd.DataFrame,
    whole: bool = False,
) -> Result:
    """The parts of one full evaluation (every record once: the chunks of one run, or every shard)
    as the decisions and the writes take it; `whole`: one part holding the whole evaluation."""
    writes = ClockWrites()
    for p in parts:
        writes.rows += p.writes.rows
        writes.stale += p.writes.stale
    records = _concat([f for p in parts for f in p.records])
    if not whole:  # a kept Opportunity's converted Lead may sit in another chunk or shard
        records = _with_converted_leads(conn, records)
    reconcile = None
    if choice.landed_after is not None:
        sample = [d for p in parts for d in p.sample][:SAMPLE]
        reconcile = {
            "reason": choice.reason,
            "clocks": sum(p.compared for p in parts),
            "differences": sum(p.differences for p in parts),
            "detail": {"sample": sample, "chunks": sum(p.chunks for p in parts)},
        }
    return Result(
        clocks=_concat([f for p in parts for f in p.clocks]),
        checkpoints=_concat([f for p in parts for f in p.checkpoints]),
        records=records,
        users=users,
        queues=queues,
        evaluated=None,
        writes=writes,
        count=sum(p.count for p in parts),
        reconcile=reconcile,
    )


def _compare(
    rows: list[dict[str, Any]], chunk: ClockWrites, incremental: set[str], policy: Policy, now: dt.datetime
) -> tuple[int, list[dict[str, Any]]]:
    """The clocks of records an incremental run would not have re-evaluated (of `rows`, this
    chunk's full evaluation) whose stored row differs from it: missing or stale, or differing in a
    column but `evaluated_at` (among the rows the chunk writes: the others equal it), and stored
    current rows the evaluation no longer gives (`chunk.stale`).

    A stored open clock holds its moving columns (`engine.MOVING_COLUMNS`) as of its own
    `evaluated_at`: they are compared as `engine.as_of` projects them to `now`, so a clock that was
    simply not due a re-evaluation is no difference, and one whose elapsed time is wrong still is."""
    compared = sum(1 for row in rows if row["record_id"] not in incremental)
    diff = []
    kept: list[tuple[dict[str, Any], Any]] = []
    for row in chunk.rows:
        if row["record_id"] in incremental:
            continue
        old = chunk.stored.get(key_of(row))
        if old is None or old["stale_since"] is not None:
            diff.append(_difference(key_of(row), ["missing"]))
        elif any(row[c] != old[c] for c in _COMPARED):
            kept.append((row, old))
    if kept:
        stored = pd.DataFrame([dict(old) for _, old in kept])
        projected = as_of(stored, policy, now)[list(MOVING_COLUMNS)].to_dict("records")
        for (row, old), moved in zip(kept, projected, strict=True):
            now_old = {**old, **moved}
            if cols := [c for c in _COMPARED if row[c] != now_old[c]]:
                diff.append(_difference(key_of(row), cols))
    diff += [_difference(key, ["gone"]) for key in chunk.stale if key[1] not in incremental]
    return compared, diff


def _difference(key: tuple, columns: list[str]) -> dict[str, Any]:
    return {"sla_id": key[0], "record_id": key[1], "clock_start": key[2].isoformat(), "columns": columns}


def _breach_window(policy: Policy) -> dt.timedelta:
    """How far back the decisions read breaches: the ladder's longest repeat window, or a digest's
    catch-up and the morning before it, whichever is longer, and a day's margin."""
    repeat = max(
        (getattr(getattr(sla.ladder, "repeat", None), "within_days", 0) for sla in policy.slas), default=0
    )
    return max(dt.timedelta(days=repeat), DIGEST_CATCH_UP + dt.timedelta(days=1)) + dt.timedelta(days=1)


def _breached_since(policy: Policy, now: dt.datetime, evaluated: pd.DataFrame) -> dt.datetime:
    """The breach window's start: before `now`, or before the oldest re-evaluated breach (a breach
    decided late, after downtime, counts the rep's breaches before it)."""
    since = now
    if not evaluated.empty:
        oldest = pd.to_datetime(evaluated["breached_at"], utc=True).min()
        if not pd.isna(oldest):
            since = min(since, oldest.to_pydatetime())
    return since - _breach_window(policy)


def _decision_window(clocks: pd.DataFrame, now: dt.datetime, breached_since: dt.datetime) -> pd.DataFrame:
    """The clocks the decisions can read (as `store.clocks.current_clocks` selects them)."""
    if clocks.empty:
        return clocks
    started = pd.to_datetime(clocks["clock_start"], utc=True) >= pd.Timestamp(now - STARTED_WINDOW)
    breached = pd.to_datetime(clocks["breached_at"], utc=True) >= pd.Timestamp(breached_since)
    keep = clocks["state"].astype(str).isin(OPEN) | started | breached.fillna(False)
    return clocks[keep.to_numpy()]


def _merge(evaluated: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """Re-evaluated clocks and stored ones as one frame (plain values, the engine's columns)."""
    parts = [f for f in (evaluated, stored) if not f.empty]
    if not parts:
        return evaluated
    return _concat(parts).reset_index(drop=True)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames of the same columns as one (categoricals as plain values when there are several)."""
    if len(parts) == 1:
        return parts[0]
    plain = [
        p.astype({c: object for c in p.columns if isinstance(p[c].dtype, pd.CategoricalDtype)}) for p in parts
    ]
    return pd.concat(plain, ignore_index=True)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with categoricals as plain values."""
    return frame.astype({c: object for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)})


def _decision_records(
    conn: sa.Connection, evaluated: pd.DataFrame, clocks: pd.DataFrame, now: dt.datetime
) -> pd.DataFrame:
    """The records the decisions read: the re-evaluated ones, those breached within the digests'
    reach (a digest line names its lead), and the Leads converted into any of their Opportunities."""
    have = set(evaluated["record_id"])
    wanted: set[str] = set()
    if not clocks.empty:
        breached = pd.to_datetime(clocks["breached_at"], utc=True) >= pd.Timestamp(
            now - DIGEST_CATCH_UP - dt.timedelta(days=2)
        )
        wanted = set(clocks.loc[breached.fillna(False).to_numpy(), "record_id"]) - have
    extra = load_frames(conn, wanted, tables=["records"])["records"] if wanted else None
    records = evaluated if extra is None or extra.empty else pd.concat([evaluated, extra], ignore_index=True)
    return _with_converted_leads(conn, records)


def _with_converted_leads(conn: sa.Connection, records: pd.DataFrame) -> pd.DataFrame:
    """`records` and the Leads converted into its Opportunities (the alerts' triage context)."""
    opportunities = set(records.loc[records["object_type"] == "Opportunity", "record_id"])
    leads = converted_into(conn, opportunities) - set(records["record_id"]) if opportunities else set()
    if leads:
        records = pd.concat(
            [records, load_frames(conn, leads, tables=["records"])["records"]], ignore_index=True
        )
    return records
