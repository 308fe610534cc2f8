"""Warnings planned ahead: the checkpoints falling due within the horizon, decided now, sent at
their instant.

A running clock's next checkpoints are known in advance (nothing changing, the engine projects
them). The monitor evaluates the few clocks whose next checkpoint falls within `horizon` at
``now + horizon`` (`engine.evaluate` on those records' rows only) and decides each checkpoint
reached in between as the monitor would at its instant: same recipients, same payload as of that
instant, same idempotency key (`decisions.keys`), `not_before` = the instant (or the recipient's
next opening), payload `planned`. So a planned row and the at-reach decision can never both exist: the outbox
holds one row per key, and the planned row makes the checkpoint handled.

Warnings only: a breach comes with its CRM actions, leadership's ladder and capacity roll-ups,
decided together at the breach (`decisions.monitor`), so it stays an at-reach decision.

`messages_at` is also the delivery's re-check (`notify.recheck`): the same decision, on the
record's latest rows in the store, right before a planned warning goes. Pure: no store, no
wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import pandas as pd

from leadsla.decisions.cells import cell_instant
from leadsla.decisions.checkpoints import decide_checkpoints
from leadsla.decisions.context import ContextFields
from leadsla.decisions.plan import CheckpointId, Message
from leadsla.decisions.recipients import Directory
from leadsla.engine import Evaluation
from leadsla.engine import evaluate as evaluate_clocks
from leadsla.policy import Policy

#: How far ahead the monitor plans: longer than the gap between two monitor runs (a minute), so
#: every warning is queued at least one run before its instant. LEADSLA_PLAN_HORIZON_S tunes it.
DEFAULT_HORIZON = dt.timedelta(minutes=3)
#: The checkpoint that is never planned (see the module docstring).
BREACH = "breach"


@dataclass
class Planned:
    """What planning found: the messages, and the checkpoints they are for (identity, instant)."""

    messages: list[Message] = field(default_factory=list)
    checkpoints: list[tuple[CheckpointId, dt.datetime]] = field(default_factory=list)


def due_within(clocks: pd.DataFrame, now: dt.datetime, horizon: dt.timedelta) -> set[str]:
    """Record ids of the running clocks whose next checkpoint falls in (now, now + horizon]."""
    if clocks.empty or horizon <= dt.timedelta(0):
        return set()
    at = pd.to_datetime(clocks["next_checkpoint_at"], utc=True)
    soon = (clocks["state"] == "running") & at.notna() & (at > now) & (at <= now + horizon)
    return {str(r) for r in clocks.loc[soon, "record_id"]}


def record_rows(frames: dict[str, pd.DataFrame], record_ids: Iterable[str]) -> dict[str, pd.DataFrame]:
    """The mirror frames cut down to `record_ids` (their history and activities; every user)."""
    ids = set(record_ids)
    acts = frames["activities"]
    return {
        **frames,
        "records": frames["records"][frames["records"]["record_id"].isin(ids)],
        "field_history": frames["field_history"][frames["field_history"]["record_id"].isin(ids)],
        "activities": acts[acts["who_id"].isin(ids) | acts["what_id"].isin(ids)],
    }


def evaluate_records(frames: dict[str, pd.DataFrame], policy: Policy, at: dt.datetime) -> Evaluation:
    """The engine at `at` on (cut-down) mirror frames."""
    return evaluate_clocks(
        records=frames["records"],
        field_history=frames["field_history"],
        activities=frames["activities"],
        users=frames["users"],
        policy=policy,
        now=at,
    )


def messages_at(
    evaluation: Evaluation,
    records: pd.DataFrame,
    directory: Directory,
    identity: tuple[str, str, dt.datetime],
    checkpoint: str,
    instant: dt.datetime,
    *,
    handled: Iterable[CheckpointId] = (),
    instance_url: str,
    context: ContextFields | None = None,
    open_clocks: int | None = None,
) -> list[Message]:
    """The messages the monitor would queue for one clock's `checkpoint` at `instant`.

    `evaluation` must have been taken at or after `instant` with nothing after it changing the
    clock (a projection, or the engine at `instant`); the clock's checkpoints reached by
    `instant` are decided as a run at `instant` would, and only `checkpoint`'s messages are kept
    (none when the clock is not running there, the checkpoint is not reached by then, or a later
    one is). The payload's elapsed time is the checkpoint's own offset.

    Args:
        evaluation, records: at least the record's clocks, checkpoints and row (pass just those:
            the decision's cost grows with the frames).
        open_clocks: the owner's open clocks for the payload (default: counted in `evaluation`).
    """
    clocks, cps = evaluation.clocks, evaluation.checkpoints
    sla_id, record_id, clock_start = identity
    same = (
        (clocks["sla_id"] == sla_id)
        & (clocks["record_id"] == record_id)
        & (pd.to_datetime(clocks["clock_start"], utc=True) == clock_start)
    )
    if not same.any():
        return []
    clock = clocks[same].copy()
    reached = cps[
        (cps["sla_id"] == sla_id)
        & (cps["record_id"] == record_id)
        & (pd.to_datetime(cps["clock_start"], utc=True) == clock_start)
        & (pd.to_datetime(cps["reached_at"], utc=True) <= instant)
    ].copy()
    mine = reached[reached["checkpoint"] == checkpoint]
    if mine.empty or reached["offset_seconds"].max() > int(mine["offset_seconds"].iloc[0]):
        return []
    # Running at the evaluation (or, for a projection past the deadline, breached): not met,
    # handed on or paused. A stopped or paused clock's checkpoint calls for nothing.
    if clock["state"].iloc[0] not in ("running", "breached") or pd.notna(clock["stopped_at"].iloc[0]):
        return []
    clock["elapsed_seconds"] = int(mine["offset_seconds"].iloc[0])
    reached["status"] = "due"  # decided as the run at `instant` would: each reached one fresh
    found = decide_checkpoints(
        clock,
        reached,
        records,
        directory,
        now=instant,
        handled=handled,
        instance_url=instance_url,
        context=context,
    )
    messages = [m for m in found.messages if m.checkpoint == checkpoint]
    if open_clocks is None:
        return messages
    return [replace(m, payload={**m.payload, "open_clocks": open_clocks}) for m in messages]


def plan_ahead(
    frames: dict[str, pd.DataFrame],
    current: Evaluation,
    directory: Directory,
    *,
    now: dt.datetime,
    horizon: dt.timedelta,
    handled: Iterable[CheckpointId],
    instance_url: str,
    context: ContextFields | None = None,
) -> Planned:
    """The warnings falling due in (now, now + horizon], decided for their instants.

    Args:
        frames: the store's mirror (`store.mirror.load_frames`), the frames `current` came from.
        current: the evaluation at `now` (its clocks' `next_checkpoint_at` picks the records).
        handled: checkpoints already acted on (a planned one is, from its queueing).
    """
    planned = Planned()
    ids = due_within(current.clocks, now, horizon)
    if not ids:
        return planned
    rows = record_rows(frames, ids)
    ahead = evaluate_records(rows, directory.policy, now + horizon)
    cps = ahead.checkpoints
    at = pd.to_datetime(cps["reached_at"], utc=True)
    upcoming = cps[(at > now) & (cps["checkpoint"] != BREACH)]
    done = set(handled)
    # Open clocks at `now` only (the projection cannot start new ones, but be sure of identities).
    running = current.clocks[current.clocks["state"] == "running"]
    live = {
        (str(r.sla_id), str(r.record_id), cell_instant(r.clock_start))
        for r in running[running["record_id"].isin(ids)].itertuples()
    }
    # Each decision sees its own record only (the cost of one is the frames' size), and the
    # owner's open clocks counted once over every clock, as the at-reach decision counts them.
    clocks_of = {str(r): g for r, g in ahead.clocks.groupby("record_id", observed=True)}
    cps_of = {str(r): g for r, g in cps.groupby("record_id", observed=True)}
    records_of = {str(r): g for r, g in rows["records"].groupby("record_id")}
    open_now = current.clocks[current.clocks["state"].isin(["running", "paused", "breached"])]
    open_by_owner = open_now.groupby("owner_id", observed=True).size()
    for row in upcoming.sort_values("reached_at").itertuples():
        identity = (str(row.sla_id), str(row.record_id), cell_instant(row.clock_start))
        key = (*identity, str(row.checkpoint))
        if identity not in live or key in done:
            continue
        instant = cell_instant(row.reached_at)
        record_id = str(row.record_id)
        clock = clocks_of[record_id]
        owners = clock.loc[clock["sla_id"] == row.sla_id, "owner_id"]
        messages = messages_at(
            Evaluation(clock, cps_of[record_id]),
            records_of.get(record_id, rows["records"].iloc[:0]),
            directory,
            identity,
            str(row.checkpoint),
            instant,
            handled=done,
            instance_url=instance_url,
            context=context,
            open_clocks=int(open_by_owner.get(owners.iloc[0], 0)) if len(owners) else None,
        )
        if messages:
            planned.messages.extend(replace(m, payload={**m.payload, "planned": True}) for m in messages)
            planned.checkpoints.append((key, instant))
    return planned
