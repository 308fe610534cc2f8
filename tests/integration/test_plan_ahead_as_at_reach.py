"""Planning ahead decides each checkpoint as a run at its instant would: `decisions.ahead.plan_ahead`
(every due-soon clock's rows read once, each decision in plain Python) gives the same plan as
deciding each checkpoint with `decisions.checkpoints.decide_checkpoints` on that clock's frames
alone (the reference below: the at-reach decision, one clock at a time), on both store backends.

The input is the demo org's day at three instants: several SLAs, tiers and teams, paused clocks,
warnings and breaches (messages and CRM actions), the runs' handled checkpoints, none or half of
them, and, with a VP who is also a team's manager and a low systemic share, breaches left to the
at-reach decision (`may_roll_up`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pandas as pd

from leadsla.configuration import alert_context
from leadsla.decisions.ahead import (
    BREACH,
    MAY_ROLL_UP,
    Planned,
    due_within,
    evaluate_records,
    leadership,
    may_roll_up,
    of_clock,
    plan_ahead,
    record_rows,
    tells_leadership,
    with_projection,
)
from leadsla.decisions.breach import decide_breach_actions
from leadsla.decisions.cells import cell_instant
from leadsla.decisions.checkpoints import decide_checkpoints
from leadsla.decisions.ladder import BreachBook
from leadsla.decisions.recipients import Directory
from leadsla.engine import Evaluation
from leadsla.policy import Contact, Policy
from leadsla.store.connection import read_only
from leadsla.tasks.evaluation import Choice, evaluate_full
from leadsla.tasks.monitor import _decision_reads, run_monitor
from tests.integration.test_incremental_monitor import (  # noqa: F401  (demo_mirror: the fixture)
    DAY_END,
    URL,
    ctx,
    demo_mirror,
    land,
)

HORIZON = dt.timedelta(hours=12)  # many warnings and breaches planned at each instant
RUN_HORIZON = dt.timedelta(hours=2)  # the runs before: some of them handled
INSTANTS = [DAY_END - dt.timedelta(hours=h) for h in (22, 14, 4)]


def _at_reach(evaluation, records, directory, identity, checkpoint, instant, *, handled, context, book):
    """What a run at `instant` decides for the clock `identity`'s `checkpoint` (messages, breach
    rows): `decide_checkpoints` on the clock's frames, its checkpoints reached by then each due."""
    clocks, cps = evaluation.clocks, evaluation.checkpoints
    clock = clocks[of_clock(clocks, identity)].copy()
    if clock.empty:
        return [], []
    reached = cps[of_clock(cps, identity) & (pd.to_datetime(cps["reached_at"], utc=True) <= instant)].copy()
    mine = reached[reached["checkpoint"] == checkpoint]
    if mine.empty or reached["offset_seconds"].max() > int(mine["offset_seconds"].iloc[0]):
        return [], []  # not reached by then, or a later one is
    if clock["state"].iloc[0] not in ("running", "breached") or pd.notna(clock["stopped_at"].iloc[0]):
        return [], []
    clock["elapsed_seconds"] = int(mine["offset_seconds"].iloc[0])
    reached["status"] = "due"
    found = decide_checkpoints(
        clock,
        reached,
        records,
        directory,
        now=instant,
        handled=handled,
        instance_url=URL,
        context=context,
        book=book,
    )
    return [
        m for m in found.messages if m.checkpoint == checkpoint
    ], found.breaches if checkpoint == BREACH else []


def _reference(frames, current, directory, *, now, handled, context) -> Planned:
    """`plan_ahead` one clock at a time, each checkpoint by `_at_reach` on its record's frames."""
    planned = Planned()
    ids = due_within(current.clocks, now, HORIZON)
    rows = record_rows(frames, ids)
    ahead = evaluate_records(rows, directory.policy, now + HORIZON)
    cps = ahead.checkpoints
    running = current.clocks[current.clocks["state"] == "running"]
    live = {(str(r.sla_id), str(r.record_id), cell_instant(r.clock_start)) for r in running.itertuples()}
    open_now = current.clocks[current.clocks["state"].isin(["running", "paused", "breached"])]
    open_by_owner = open_now.groupby("owner_id").size()
    projected = with_projection(current.clocks, ahead.clocks)
    book = BreachBook.of(projected)
    for row in cps[pd.to_datetime(cps["reached_at"], utc=True) > now].sort_values("reached_at").itertuples():
        identity = (str(row.sla_id), str(row.record_id), cell_instant(row.clock_start))
        key = (*identity, str(row.checkpoint))
        if identity not in live or key in handled:
            continue
        instant = cell_instant(row.reached_at)
        clocks = ahead.clocks[ahead.clocks["record_id"] == row.record_id]
        own = Evaluation(clocks, cps[cps["record_id"] == row.record_id])
        records = rows["records"][rows["records"]["record_id"] == row.record_id]
        breach = row.checkpoint == BREACH
        messages, breaches = _at_reach(
            own,
            records,
            directory,
            identity,
            str(row.checkpoint),
            instant,
            handled=[h for h in handled if (h[0], h[1], cell_instant(h[2])) == identity],
            context=context,
            book=book if breach else None,
        )
        first = clocks[clocks["sla_id"] == row.sla_id].iloc[0]
        load = int(open_by_owner.get(first["owner_id"], 0))
        messages = [replace(m, payload={**m.payload, "open_clocks": load}) for m in messages]
        actions = [replace(a, planned_for=instant) for a in decide_breach_actions(breaches, directory)]
        team = None if pd.isna(first["team"]) else str(first["team"])
        if breach and tells_leadership(messages, leadership(directory.policy)):
            if may_roll_up(projected, directory.policy, team, instant):
                planned.at_reach.append((key, MAY_ROLL_UP))
                continue
        if messages or actions:
            planned.messages.extend(replace(m, payload={**m.payload, "planned": True}) for m in messages)
            planned.actions.extend(actions)
            planned.checkpoints.append((key, instant))
    return planned


def _with_manager_as_vp(policy: Policy, users: pd.DataFrame) -> Policy:
    """`policy` with the capacity alert told to a team manager (also a VP) and a low systemic
    share: that manager's breach messages may be rolled up, so some breaches stay at reach."""
    managers = users[users["user_id"].isin(users["manager_id"].dropna())]
    email = str(managers.sort_values("user_id")["email"].iloc[0])
    systemic = policy.systemic.model_copy(update={"notify": ["manager_vp"], "share": 0.01, "min_clocks": 1})
    contacts = {**policy.contacts, "manager_vp": Contact(email=email)}
    return policy.model_copy(update={"systemic": systemic, "contacts": contacts})


def test_plan_ahead_decides_each_checkpoint_as_a_run_at_its_instant(store, demo_mirror) -> None:  # noqa: F811
    rows, policy = demo_mirror
    seen = {"warnings": 0, "breaches": 0, "actions": 0, "at_reach": 0, "handled_mattered": 0}
    previous = None
    for i, now in enumerate(INSTANTS):
        land([store], rows, previous, now)
        previous = now
        run_monitor(store, now, ctx(f"run{i}"), policy=policy, url=URL, mode="full", horizon=RUN_HORIZON)
        with read_only(store) as conn:
            result = evaluate_full(conn, policy, now, choice=Choice(True, "asked", now), horizon=HORIZON)
            state, frames = _decision_reads(conn, result, policy, now, HORIZON, full=True)
        assert frames is not None
        assert (result.clocks["state"] == "paused").any() or i == 0
        for variant in (policy, _with_manager_as_vp(policy, result.users)):
            directory = Directory(variant, result.users, result.queues)
            context = alert_context(variant, None)
            plans = []
            for handled in (frozenset(state.handled), frozenset(), frozenset(sorted(state.handled)[::2])):
                got = plan_ahead(
                    frames,
                    result.evaluation,
                    directory,
                    now=now,
                    horizon=HORIZON,
                    handled=handled,
                    instance_url=URL,
                    context=context,
                )
                want = _reference(
                    frames, result.evaluation, directory, now=now, handled=handled, context=context
                )
                assert got == want
                plans.append(got)
                seen["warnings"] += sum(m.checkpoint != BREACH for m in got.messages)
                seen["breaches"] += sum(m.checkpoint == BREACH for m in got.messages)
                seen["actions"] += len(got.actions)
                seen["at_reach"] += len(got.at_reach)
            seen["handled_mattered"] += plans[0] != plans[1]
    assert all(seen.values()), seen  # the comparison covered each kind of decision
