"""Checkpoints planned ahead: those falling due within the horizon, decided now, acted on at
their instant.

A running clock's next checkpoints are known in advance (nothing changing, the engine projects
them). The monitor evaluates the few clocks whose next checkpoint falls within `horizon` at
``now + horizon`` (`engine.evaluate` on those records' rows only) and decides each checkpoint
reached in between as the monitor would at its instant: same recipients, same payload as of that
instant, same idempotency key (`decisions.keys`), `not_before` = the instant (or the recipient's
next opening), payload `planned`. So a planned row and the at-reach decision can never both exist: the outbox
holds one row per key, and the planned row makes the checkpoint handled.

A breach is planned whole (`breach_at`): its messages (the ladder's rungs, texts included) and
its CRM action (`decisions.breach`: reassignment and lock, `not_before` = the instant too). What
depends on other clocks is decided as of the instant: the repeat rung counts the rep's breaches
in a book of every clock with the projected ones in (`breach_book`; the delivery's re-check
counts again on the store's latest rows). A breach message to leadership (the capacity alert's
people) is rolled up into the team's capacity alert when the team's day is systemic at the
instant (`decisions.capacity`), which depends on every clock of the team: such a breach is
planned only when the team's day cannot be systemic by the instant, counted high
(`may_roll_up`: every open clock counted as breached unless its deadline falls later); otherwise
it stays an at-reach decision (`Planned.at_reach`), and so does it when the re-check cannot
rule it out either.

`messages_at` and `breach_at` are also the delivery's re-check (`notify.recheck`): the same
decision, on the record's latest rows in the store, right before a planned row goes. Pure: no
store, no wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

import pandas as pd

from leadsla.decisions.breach import decide_breach_actions
from leadsla.decisions.cells import cell_instant
from leadsla.decisions.checkpoints import CheckpointDecisions, decide_checkpoints
from leadsla.decisions.context import ContextFields
from leadsla.decisions.keys import normalise_recipient
from leadsla.decisions.ladder import BreachBook
from leadsla.decisions.plan import BreachAction, CheckpointId, Message
from leadsla.decisions.recipients import Directory
from leadsla.engine import Evaluation
from leadsla.engine import evaluate as evaluate_clocks
from leadsla.policy import Policy

#: How far ahead the monitor plans: longer than the gap between two monitor runs (a minute), so
#: every warning is queued at least one run before its instant. LEADSLA_PLAN_HORIZON_S tunes it.
DEFAULT_HORIZON = dt.timedelta(minutes=3)
#: The checkpoint whose plan carries a CRM action and the ladder's rungs (`breach_at`).
BREACH = "breach"
#: Why a breach was left to the monitor at reach (`plan_ahead`'s `at_reach`): it tells leadership,
#: and its team's day may be systemic by the instant (`may_roll_up`).
MAY_ROLL_UP = "may_roll_up"


@dataclass
class Planned:
    """What planning found: the messages and breach actions, the checkpoints they are for
    (identity, instant), and the breaches left to the at-reach decision (identity, why)."""

    messages: list[Message] = field(default_factory=list)
    checkpoints: list[tuple[CheckpointId, dt.datetime]] = field(default_factory=list)
    actions: list[BreachAction] = field(default_factory=list)
    at_reach: list[tuple[CheckpointId, str]] = field(default_factory=list)


@dataclass(frozen=True)
class BreachPlan:
    """A breach decided for its instant: its messages and its CRM action (if its SLA has one)."""

    messages: list[Message] = field(default_factory=list)
    actions: list[BreachAction] = field(default_factory=list)

    @property
    def keys(self) -> set[str]:
        """Every row's idempotency key: the whole breach, as the outbox holds it."""
        return {m.key for m in self.messages} | {a.key for a in self.actions}

    def __bool__(self) -> bool:
        return bool(self.messages or self.actions)


def leadership(policy: Policy) -> set[str]:
    """The capacity alert's people's addresses (`policy.systemic.notify`, normalised): their breach
    messages may be rolled up into a team's capacity alert (`decisions.capacity`)."""
    found: set[str] = set()
    for role in policy.systemic.notify:
        contact = policy.contacts.get(role)
        if contact is not None:
            found |= {normalise_recipient(a) for a in (contact.email, contact.slack) if a}
    return found


def tells_leadership(messages: Iterable[Message], leaders: set[str]) -> bool:
    """Whether any of `messages` is a breach message a capacity alert could roll up."""
    return any(
        m.checkpoint == BREACH
        and m.channel in ("email", "slack")
        and normalise_recipient(m.recipient) in leaders
        for m in messages
    )


def of_clock(frame: pd.DataFrame, identity: tuple[str, str, dt.datetime]) -> pd.Series:
    """The rows of `frame` (clocks or checkpoints) that belong to the clock `identity` (sla id,
    record id, clock start)."""
    sla_id, record_id, clock_start = identity
    return (
        (frame["sla_id"] == sla_id)
        & (frame["record_id"] == record_id)
        & (pd.to_datetime(frame["clock_start"], utc=True) == clock_start)
    )


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


def may_roll_up(clocks: pd.DataFrame, policy: Policy, team: str | None, instant: dt.datetime) -> bool:
    """Whether `team`'s day may be systemic at `instant` (`decisions.capacity.systemic_teams`),
    counted high: of the team's clocks started on its calendar day of `instant`, every one that
    breached by then, and every open one (paused, or running with no deadline after `instant`),
    counts as breached. A clock starting later only adds to the day's clocks (the share falls),
    so False means no run at `instant` would roll the team's leadership breach messages up.

    Args:
        clocks: every clock of the team that day (more is harmless), with `team`, `clock_start`,
            `state`, `deadline` and `breached_at`.
    """
    if team is None or clocks.empty:
        return False
    rule = policy.systemic
    zone = policy.calendar(policy.team_calendar(team)).timezone
    mine = clocks[clocks["team"] == team]
    starts = pd.to_datetime(mine["clock_start"], utc=True).dt.tz_convert(zone).dt.date
    mine = mine[starts == instant.astimezone(ZoneInfo(zone)).date()]
    if len(mine) < rule.min_clocks:
        return False
    at = pd.Timestamp(instant)
    breached_at = pd.to_datetime(mine["breached_at"], utc=True)
    deadline = pd.to_datetime(mine["deadline"], utc=True)
    could = (
        (breached_at.notna() & (breached_at <= at))
        | (mine["state"] == "paused")
        | ((mine["state"] == "running") & ~(deadline > at))
    )
    return int(could.sum()) / len(mine) > rule.share


def _decided_at(
    evaluation: Evaluation,
    records: pd.DataFrame,
    directory: Directory,
    identity: tuple[str, str, dt.datetime],
    checkpoint: str,
    instant: dt.datetime,
    *,
    handled: Iterable[CheckpointId],
    instance_url: str,
    context: ContextFields | None,
    book: BreachBook | None,
) -> CheckpointDecisions:
    """The monitor's decision on one clock's `checkpoint` as a run at `instant` would take it
    (`messages_at`), or nothing (an empty `CheckpointDecisions`)."""
    clocks, cps = evaluation.clocks, evaluation.checkpoints
    nothing = CheckpointDecisions()
    same = of_clock(clocks, identity)
    if not same.any():
        return nothing
    clock = clocks[same].copy()
    reached = cps[of_clock(cps, identity) & (pd.to_datetime(cps["reached_at"], utc=True) <= instant)].copy()
    mine = reached[reached["checkpoint"] == checkpoint]
    if mine.empty or reached["offset_seconds"].max() > int(mine["offset_seconds"].iloc[0]):
        return nothing
    # Running at the evaluation (or, for a projection past the deadline, breached): not met,
    # handed on or paused. A stopped or paused clock's checkpoint calls for nothing.
    if clock["state"].iloc[0] not in ("running", "breached") or pd.notna(clock["stopped_at"].iloc[0]):
        return nothing
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
        book=book,
    )
    found.messages = [m for m in found.messages if m.checkpoint == checkpoint]
    if checkpoint != BREACH:
        found.breaches = []
    return found


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
    book: BreachBook | None = None,
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
        book: for a breach of a laddered SLA with a repeat rung, the rep's breaches as of
            `instant` (`BreachBook.of` every clock that can count; default: `evaluation`'s).
    """
    found = _decided_at(
        evaluation,
        records,
        directory,
        identity,
        checkpoint,
        instant,
        handled=handled,
        instance_url=instance_url,
        context=context,
        book=book,
    )
    return _with_open_clocks(found.messages, open_clocks)


def breach_at(
    evaluation: Evaluation,
    records: pd.DataFrame,
    directory: Directory,
    identity: tuple[str, str, dt.datetime],
    instant: dt.datetime,
    *,
    handled: Iterable[CheckpointId] = (),
    instance_url: str,
    context: ContextFields | None = None,
    open_clocks: int | None = None,
    book: BreachBook | None = None,
) -> BreachPlan:
    """The whole breach the monitor would decide for one clock at `instant` (the breach's own
    instant): its messages (`messages_at`) and its CRM action (`decisions.breach`), the action
    marked `planned_for` the instant. Empty when the clock does not breach there."""
    found = _decided_at(
        evaluation,
        records,
        directory,
        identity,
        BREACH,
        instant,
        handled=handled,
        instance_url=instance_url,
        context=context,
        book=book,
    )
    actions = [replace(a, planned_for=instant) for a in decide_breach_actions(found.breaches, directory)]
    return BreachPlan(_with_open_clocks(found.messages, open_clocks), actions)


def _with_open_clocks(messages: list[Message], open_clocks: int | None) -> list[Message]:
    if open_clocks is None:
        return messages
    return [replace(m, payload={**m.payload, "open_clocks": open_clocks}) for m in messages]


def with_projection(current: pd.DataFrame, projected: pd.DataFrame) -> pd.DataFrame:
    """Every clock as of the projection: `current`'s clocks, those of the records in `projected`
    replaced by their projection (their breaches before its instant included)."""
    ids = set(projected["record_id"])
    return pd.concat([current[~current["record_id"].isin(ids)], projected], ignore_index=True)


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
    """The checkpoints falling due in (now, now + horizon], decided for their instants: warnings'
    messages, and breaches whole (messages and CRM action), except a breach that would tell
    leadership while its team's day may be systemic (module docstring), listed in `at_reach`.

    Args:
        frames: the store's mirror (`store.mirror.load_frames`), the frames `current` came from.
        current: the evaluation at `now` (its clocks' `next_checkpoint_at` picks the records; its
            clocks are every clock, for the repeat rung's count of a rep's breaches).
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
    upcoming = cps[at > now]
    done = set(handled)
    # Each decision is about one clock, and reads only that clock's handled checkpoints: grouped
    # once here, not regrouped from every handled checkpoint by each of a run's hundred decisions.
    done_of: dict[tuple, list[CheckpointId]] = {}
    for sla_id, record_id, clock_start, checkpoint in done:
        done_of.setdefault((sla_id, record_id, cell_instant(clock_start)), []).append(
            (sla_id, record_id, clock_start, checkpoint)
        )
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
    # Every clock with the projection in (the repeat rung's book, the capacity bound): at the first breach.
    projected: pd.DataFrame | None = None
    book: BreachBook | None = None
    leaders = leadership(directory.policy)
    for row in upcoming.sort_values("reached_at").itertuples():
        identity = (str(row.sla_id), str(row.record_id), cell_instant(row.clock_start))
        key = (*identity, str(row.checkpoint))
        if identity not in live or key in done:
            continue
        instant = cell_instant(row.reached_at)
        record_id = str(row.record_id)
        clock = clocks_of[record_id]
        owners = clock.loc[clock["sla_id"] == row.sla_id, "owner_id"]
        args = (
            Evaluation(clock, cps_of[record_id]),
            records_of.get(record_id, rows["records"].iloc[:0]),
            directory,
            identity,
        )
        kwargs: dict = {
            "handled": done_of.get(identity, ()),
            "instance_url": instance_url,
            "context": context,
            "open_clocks": int(open_by_owner.get(owners.iloc[0], 0)) if len(owners) else None,
        }
        if row.checkpoint == BREACH:
            if projected is None:
                projected = with_projection(current.clocks, ahead.clocks)
                book = BreachBook.of(projected)
            whole = breach_at(*args, instant, book=book, **kwargs)
            team = clock.loc[clock["sla_id"] == row.sla_id, "team"]
            if tells_leadership(whole.messages, leaders) and may_roll_up(
                projected,
                directory.policy,
                None if team.empty or pd.isna(team.iloc[0]) else str(team.iloc[0]),
                instant,
            ):
                planned.at_reach.append((key, MAY_ROLL_UP))
                continue
            messages, actions = whole.messages, whole.actions
        else:
            messages, actions = messages_at(*args, str(row.checkpoint), instant, **kwargs), []
        if messages or actions:
            planned.messages.extend(replace(m, payload={**m.payload, "planned": True}) for m in messages)
            planned.actions.extend(actions)
            planned.checkpoints.append((key, instant))
    return planned
