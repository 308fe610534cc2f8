"""A full run's planning ahead turns only on the handled checkpoints of the records it plans for
(`decisions.ahead.plan_ahead` groups them by clock once, and each decision reads its own clock's):
the demo org's day, evaluated in full after a run that queued and planned, gives the same plan
(messages, breach actions, checkpoints, breaches left to the at-reach decision) with the run's
whole outbox state as with that share of it, on both store backends."""

from __future__ import annotations

import datetime as dt

from leadsla.configuration import alert_context
from leadsla.decisions.ahead import due_within, plan_ahead
from leadsla.decisions.recipients import Directory
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

HORIZON = dt.timedelta(hours=6)  # many warnings and breaches planned
FIRST = DAY_END - dt.timedelta(hours=20)  # Tuesday 11:00 New York
LATER = FIRST + dt.timedelta(hours=1)  # what the first run planned is handled; more falls due since


def test_a_full_run_plans_the_same_with_only_its_records_handled(store, demo_mirror) -> None:  # noqa: F811
    rows, policy = demo_mirror
    land([store], rows, None, FIRST)
    first = run_monitor(store, FIRST, ctx("first"), policy=policy, url=URL, mode="full", horizon=HORIZON)
    assert first["planned"] + first["queued"] > 0
    land([store], rows, FIRST, LATER)
    with read_only(store) as conn:
        choice = Choice(True, "asked", FIRST)
        result = evaluate_full(conn, policy, LATER, choice=choice, horizon=HORIZON)
        state, frames = _decision_reads(conn, result, policy, LATER, HORIZON, full=True)
    soon = due_within(result.clocks, LATER, HORIZON)
    mine = frozenset(h for h in state.handled if h[1] in soon)  # the planned records' own
    assert soon and frames is not None
    assert mine and len(mine) < len(state.handled)  # some of the planned records' own, and fewer

    def planned(handled):
        return plan_ahead(
            frames,
            result.evaluation,
            Directory(policy, result.users, result.queues),
            now=LATER,
            horizon=HORIZON,
            handled=handled,
            instance_url=URL,
            context=alert_context(policy, None),
        )

    whole, share = planned(state.handled), planned(mine)
    assert whole.messages or whole.actions
    assert share == whole
    assert planned(frozenset()) != whole  # the share kept is what the plan turns on
