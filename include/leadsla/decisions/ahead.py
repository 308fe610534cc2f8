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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from leadsla.decisions.breach import decide_breach_actions
from leadsla.decisions.cells import cell_instant
from leadsla.decisions.checkpoints import CheckpointDecisions, catch_up, checkpoint_messages
from leadsla.decisions.context import ContextFields, converted_leads_in, record_context
from leadsla.decisions.keys import normalise_recipient
from leadsla.decisions.ladder import BreachBook, of_reps, rep_of
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
#: A clock's states that count in its owner's open clocks (`decide_checkpoints`'s count).
_OPEN = ("running", "paused", "breached")


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


def _instant(value: object) -> pd.Timestamp:
    """A timestamp cell in UTC (a naive one read as UTC), as `pd.to_datetime(..., utc=True)` has it."""
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        return stamp
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _clock_key(row: Mapping[str, Any]) -> tuple[str, str, dt.datetime]:
    """The identity of the clock a row (clock or checkpoint) belongs to, as `of_clock` matches it."""
    return (str(row["sla_id"]), str(row["record_id"]), cell_instant(_instant(row["clock_start"])))


def _by_clock(frame: pd.DataFrame) -> dict[tuple[str, str, dt.datetime], list[dict[str, Any]]]:
    """`frame`'s rows as dicts by clock identity, in frame order: read once for every decision."""
    found: dict[tuple[str, str, dt.datetime], list[dict[str, Any]]] = {}
    for row in frame.to_dict("records"):
        found.setdefault(_clock_key(row), []).append(row)
    return found


def _decide(
    clock_rows: list[dict[str, Any]],
    checkpoint_rows: list[dict[str, Any]],
    record: Mapping[str, Any],
    lead: Mapping[str, Any] | None,
    directory: Directory,
    checkpoint: str,
    instant: dt.datetime,
    *,
    done: set[str],
    instance_url: str,
    context: ContextFields | None,
    book: BreachBook | None,
) -> CheckpointDecisions:
    """The monitor's decision on one clock's `checkpoint` as a run at `instant` would take it, or
    nothing (an empty `CheckpointDecisions`): `decide_checkpoints` on that one clock, its
    checkpoints reached by `instant` each fresh, in plain Python over the clock's own rows (a
    decision on a frame of one clock cost ~10 ms of pandas; a run plans about a hundred).

    Args:
        clock_rows, checkpoint_rows: the clock's rows and its checkpoints' (frame order).
        record: the record's row ({} when none); lead: for an Opportunity, the Lead converted
            into it (`decisions.context.converted_leads`).
        done: the clock's checkpoints already handled.
    """
    nothing = CheckpointDecisions()
    if not clock_rows:
        return nothing
    at = pd.Timestamp(instant)
    reached = [r for r in checkpoint_rows if _instant(r["reached_at"]) <= at]
    mine = [r for r in reached if r["checkpoint"] == checkpoint]
    if not mine or max(r["offset_seconds"] for r in reached) > int(mine[0]["offset_seconds"]):
        return nothing
    # Running at the evaluation (or, for a projection past the deadline, breached): not met,
    # handed on or paused. A stopped or paused clock's checkpoint calls for nothing.
    first = clock_rows[0]
    if first["state"] not in ("running", "breached") or pd.notna(first["stopped_at"]):
        return nothing
    # Decided as the run at `instant` would: each reached checkpoint fresh, the latest not
    # handled due (`catch_up`), the payload's elapsed time the checkpoint's own offset.
    if all(r["checkpoint"] in done for r in reached):
        return nothing
    due, _ = catch_up(sorted(reached, key=lambda r: r["offset_seconds"]), done)
    if due is None:
        return nothing
    clock = {**clock_rows[-1], "elapsed_seconds": int(mine[0]["offset_seconds"])}
    found = CheckpointDecisions()
    breach = due["checkpoint"] == BREACH
    if breach:
        found.breaches.append(clock)
    if book is None and breach and directory.policy.sla(clock["sla_id"]).laddered:
        book = BreachBook.of_rows(clock_rows)
    owner = clock["owner_id"]
    owner_load = 0
    if pd.notna(owner):
        owner_load = sum(r["state"] in _OPEN and r["owner_id"] == owner for r in clock_rows)
    triage = record_context(record, context or ContextFields(), lead=lead)
    messages = checkpoint_messages(
        directory, clock, due, record, owner_load, instant, instance_url, found, book, triage
    )
    found.messages = [m for m in messages if m.checkpoint == checkpoint]
    if checkpoint != BREACH:
        found.breaches = []
    return found


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
    clock_rows = clocks[of_clock(clocks, identity)].to_dict("records")
    if not clock_rows:
        return CheckpointDecisions()
    key = _clock_key(clock_rows[0])
    rows = records.to_dict("records")
    mine = [r for r in rows if str(r["record_id"]) == key[1]]
    record = mine[-1] if mine else {}
    return _decide(
        clock_rows,
        cps[of_clock(cps, identity)].to_dict("records"),
        record,
        _lead_of(record, rows),
        directory,
        checkpoint,
        instant,
        done={h[3] for h in handled if (h[0], h[1], cell_instant(h[2])) == key},
        instance_url=instance_url,
        context=context,
        book=book,
    )


def _lead_of(record: Mapping[str, Any], rows: list[dict[str, Any]]) -> Mapping[str, Any] | None:
    """For an Opportunity `record`, the Lead among `rows` converted into it."""
    if record.get("object_type") != "Opportunity":
        return None
    record_id = str(record["record_id"])
    return converted_leads_in(rows, [record_id]).get(record_id)


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
    return _breach_plan(found, directory, instant, open_clocks)


def _breach_plan(
    found: CheckpointDecisions, directory: Directory, instant: dt.datetime, open_clocks: int | None
) -> BreachPlan:
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


def _breach_book(
    current: pd.DataFrame,
    ahead: pd.DataFrame,
    upcoming: pd.DataFrame,
    clock_rows: dict[tuple[str, str, dt.datetime], list[dict[str, Any]]],
) -> BreachBook:
    """The book of every clock with the projection in (`with_projection`), of the reps of the
    clocks whose breach is `upcoming` only: each of their entries, none of another rep's."""
    reps = {
        rep
        for row in upcoming[upcoming["checkpoint"] == BREACH].to_dict("records")
        if (rep := rep_of(clock_rows.get(_clock_key(row), [{}])[-1])) is not None
    }
    current = current[current["breached_at"].notna() & of_reps(current, reps)]
    return BreachBook.of(with_projection(current, ahead), reps)


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
    done_of: dict[tuple, set[str]] = {}
    for sla_id, record_id, clock_start, checkpoint in done:
        done_of.setdefault((sla_id, record_id, cell_instant(clock_start)), set()).add(checkpoint)
    # Open clocks at `now` only (the projection cannot start new ones, but be sure of identities).
    running = current.clocks[current.clocks["state"] == "running"]
    live = {
        (str(r.sla_id), str(r.record_id), cell_instant(r.clock_start))
        for r in running[running["record_id"].isin(ids)].itertuples()
    }
    # Each decision sees its own clock's and record's rows only, read as dicts once here (a
    # decision on pandas frames of one clock cost more than the decision itself), and the owner's
    # open clocks counted once over every clock, as the at-reach decision counts them.
    clock_rows = _by_clock(ahead.clocks)
    checkpoint_rows = _by_clock(cps)
    first_of_sla: dict[tuple[str, str], dict[str, Any]] = {}
    for (sla_id, record_id, _), of_one in clock_rows.items():  # in frame order: the first clock first
        first_of_sla.setdefault((sla_id, record_id), of_one[0])
    records_of: dict[str, list[dict[str, Any]]] = {}
    for r in rows["records"].to_dict("records"):
        records_of.setdefault(str(r["record_id"]), []).append(r)
    open_now = current.clocks[current.clocks["state"].isin(_OPEN)]
    open_by_owner = open_now.groupby("owner_id", observed=True).size().to_dict()
    # The repeat rung's book, of every clock with the projection in, at the first breach: of the
    # reps of the clocks whose breach falls due only (their entries whole; a store has thousands).
    # Every clock with the projection in (the capacity bound): at the first breach to leadership.
    book: BreachBook | None = None
    projected: pd.DataFrame | None = None
    leaders = leadership(directory.policy)
    for row in upcoming.sort_values("reached_at").itertuples():
        identity = (str(row.sla_id), str(row.record_id), cell_instant(row.clock_start))
        key = (*identity, str(row.checkpoint))
        if identity not in live or key in done:
            continue
        instant = cell_instant(row.reached_at)
        record_id = str(row.record_id)
        first = first_of_sla.get((identity[0], record_id))
        open_clocks = int(open_by_owner.get(first["owner_id"], 0)) if first is not None else None
        own = records_of.get(record_id, [])
        record = own[-1] if own else {}
        breach = row.checkpoint == BREACH
        if breach and book is None:
            book = _breach_book(current.clocks, ahead.clocks, upcoming, clock_rows)
        found = _decide(
            clock_rows.get(identity, []),
            checkpoint_rows.get(identity, []),
            record,
            _lead_of(record, own),
            directory,
            str(row.checkpoint),
            instant,
            done=done_of.get(identity, set()),
            instance_url=instance_url,
            context=context,
            book=book if breach else None,
        )
        if breach:
            whole = _breach_plan(found, directory, instant, open_clocks)
            team = None if first is None or pd.isna(first["team"]) else str(first["team"])
            if tells_leadership(whole.messages, leaders):
                if projected is None:
                    projected = with_projection(current.clocks, ahead.clocks)
                rolls = may_roll_up(projected, directory.policy, team, instant)
            else:
                rolls = False
            if rolls:
                planned.at_reach.append((key, MAY_ROLL_UP))
                continue
            messages, actions = whole.messages, whole.actions
        else:
            messages, actions = _with_open_clocks(found.messages, open_clocks), []
        if messages or actions:
            planned.messages.extend(replace(m, payload={**m.payload, "planned": True}) for m in messages)
            planned.actions.extend(actions)
            planned.checkpoints.append((key, instant))
    return planned
