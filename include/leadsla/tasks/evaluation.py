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

A full evaluation runs on the first run, on a policy change, every `reconcile_every` runs and when
asked; it reads the mirror in chunks of records (by a hash of the record id) so memory stays
bounded, and compares each chunk with what the incremental state held (an open clock's moving
columns as projected from its `evaluated_at`): a difference is corrected
by the run's writes and recorded (`reconciles`, read by `leadsla.health.reconcile`). Reads only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import zlib
from collections.abc import Iterable
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
from leadsla.store.mirror import converted_into, landed_since, load_frames, owned_by, record_ids

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
    """How a run evaluates: `full` or not, why (first, policy_changed, every_n_runs, asked) and,
    with a previous evaluation to build on, since when mirror rows count as landed."""

    full: bool
    reason: str | None
    landed_after: dt.datetime | None


def choose(conn: sa.Connection, policy: Policy, *, mode: str, reconcile_every: int) -> Choice:
    """Full or incremental (module docstring); `mode` is auto, incremental or full."""
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
    return Choice(False, None, after)


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
    (None: all); `writes`: the clock rows to write; `reconcile`: a full run's comparison.
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


def evaluate_incremental(
    conn: sa.Connection, policy: Policy, now: dt.datetime, *, landed_after: dt.datetime, horizon: dt.timedelta
) -> Result:
    """Re-evaluate the selected records; the decisions get them merged with the stored rest."""
    ids = selected(conn, now, landed_after, horizon)
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
    )


def evaluate_full(
    conn: sa.Connection,
    policy: Policy,
    now: dt.datetime,
    *,
    choice: Choice,
    horizon: dt.timedelta,
    chunk_records: int = CHUNK_RECORDS,
) -> Result:
    """Evaluate every record (in chunks above `chunk_records`) and compare with the incremental
    state (when there is one to compare: not on a first run)."""
    ids = record_ids(conn)
    chunks = max(1, math.ceil(len(ids) / max(1, chunk_records)))
    incremental = None if choice.landed_after is None else selected(conn, now, choice.landed_after, horizon)
    base = load_frames(conn, tables=["users", "queues"])
    writes = ClockWrites()
    compared = differences = 0
    sample: list[dict[str, Any]] = []
    clock_parts, cp_parts, record_parts = [], [], []
    breached_since = now - _breach_window(policy)
    count = 0
    for part in _chunks(ids, chunks):
        frames = load_frames(conn, part, tables=["records", "field_history", "activities"])
        evaluation = evaluate_records({**frames, "users": base["users"]}, policy, now)
        count += len(evaluation.clocks)
        stored = read_stored(conn, part)
        rows = store_rows(evaluation, policy, now)
        chunk = plan_writes(rows, stored, now, scope=part)
        writes.rows += chunk.rows
        writes.stale += chunk.stale
        if incremental is not None:
            n, diff = _compare(rows, chunk, incremental, policy, now)
            compared += n
            differences += len(diff)
            sample += diff[: SAMPLE - len(sample)]
        if chunks == 1:  # the whole picture as one evaluation, exactly as before chunking
            clock_parts.append(evaluation.clocks)
            record_parts.append(frames["records"])
        else:  # only what the decisions can read is kept across chunks
            kept = _decision_window(evaluation.clocks, now, breached_since)
            clock_parts.append(kept)
            records = frames["records"]
            record_parts.append(records[records["record_id"].isin(set(kept["record_id"]))])
        cp = evaluation.checkpoints
        cp_parts.append(cp[cp["status"].isin(["due", "superseded"])] if chunks > 1 else cp)
    records = _concat(record_parts)
    if chunks > 1:  # a kept Opportunity's converted Lead may sit in another chunk
        records = _with_converted_leads(conn, records)
    reconcile = None
    if incremental is not None:
        reconcile = {
            "reason": choice.reason,
            "clocks": compared,
            "differences": differences,
            "detail": {"sample": sample, "chunks": chunks},
        }
    return Result(
        clocks=_concat(clock_parts),
        checkpoints=_concat(cp_parts),
        records=records,
        users=base["users"],
        queues=base["queues"],
        evaluated=None,
        writes=writes,
        count=count,
        reconcile=reconcile,
    )


def _chunks(ids: list[str], chunks: int) -> Iterable[list[str] | None]:
    """The record ids in `chunks` groups by a stable hash (None: one chunk, every record)."""
    if chunks == 1:
        yield None
        return
    groups: list[list[str]] = [[] for _ in range(chunks)]
    for record_id in ids:
        groups[zlib.crc32(record_id.encode()) % chunks].append(record_id)
    yield from groups


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
