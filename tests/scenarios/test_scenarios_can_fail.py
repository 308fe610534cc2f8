"""The scenarios are not tautologies: fed a policy that contradicts the checklist, or an engine
with a planted bug, they fail, and say expected vs got. Every scenario has a bug it catches."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from leadsla import clock as clock_module
from leadsla import engine as engine_module
from leadsla.decisions import ahead as ahead_decisions
from leadsla.decisions import checkpoints as checkpoint_decisions
from leadsla.decisions.recipients import Directory
from leadsla.policy import REAL_TIME_CALENDAR, Sla
from leadsla.scenarios.run import SCENARIOS, run_scenarios
from tests.scenarios.policies import (
    counts_any_activity_by_anyone,
    edited_policy,
    result,
    sales_touch,
    shipped,
)


def test_a_stop_rule_counting_any_activity_by_anyone_fails_the_touch_lines() -> None:
    policy = edited_policy("tiered", counts_any_activity_by_anyone)
    outcomes = {r.name: r for r in run_scenarios(policy)}
    failed = {name for name, r in outcomes.items() if r.status == "fail"}
    assert failed == {"automated_email_does_not_stop", "open_todo_task"}
    assert outcomes["automated_email_does_not_stop"].detail.startswith(
        "after mass and sequence e-mails: state: expected breached, got met"
    )
    assert "with the to-do still open: state: expected breached, got met" in outcomes["open_todo_task"].detail
    # Whose touch counts is the policy's choice: with `by: anyone` that line does not apply.
    assert (outcomes["touch_by_someone_else"].status, outcomes["touch_by_someone_else"].detail) == (
        "n/a",
        "sales_touch counts a touch by anyone (touch by: anyone)",
    )


def _demo_target(duration: str):
    def edit(data: dict) -> None:
        tier = next(t for t in sales_touch(data)["tiers"] if t["id"] == "demo_request")
        tier["target"]["duration"] = duration

    return edit


def test_the_expectation_follows_the_policy_and_fails_when_the_engine_does_not(monkeypatch) -> None:
    # A 50-minute demo tier is what the policy says: the scenario expects 50 minutes and passes.
    fifty = edited_policy("tiered", _demo_target("50m"))
    assert result(fifty, "demo_request_tier").status == "pass"
    assert "tier demo_request: 50m" in result(fifty, "demo_request_tier").detail
    # An engine enforcing that 50-minute version while the signed-off policy says 5 minutes fails.
    signed_off = shipped("tiered")
    evaluate = engine_module.evaluate
    monkeypatch.setattr(engine_module, "evaluate", lambda **kw: evaluate(**(kw | {"policy": fifty})))
    outcome = result(signed_off, "demo_request_tier")
    assert outcome.status == "fail"
    assert outcome.detail.startswith(
        "target: expected 5m, got 50m; due: expected Tue 2026-11-17 10:05 EST, got Tue 2026-11-17 10:50 EST"
    )


# --- one planted engine bug per scenario ----------------------------------------------------------


def _touches_ignored(monkeypatch) -> None:
    monkeypatch.setattr(
        clock_module, "touch_events", lambda touch, tl, actors: clock_module.Events(np.empty(0, np.int64))
    )


def _touch_rule_changed(monkeypatch, **change) -> None:
    original = clock_module.touch_events
    monkeypatch.setattr(
        clock_module,
        "touch_events",
        lambda touch, tl, actors: original(touch.model_copy(update=change), tl, actors),
    )


def _never_handed_on(monkeypatch) -> None:
    monkeypatch.setattr(
        clock_module, "exit_events", lambda sla, tl: clock_module.Events(np.empty(0, np.int64))
    )


def _nurture_leaves_sal(monkeypatch) -> None:
    monkeypatch.setattr(Sla, "pause_values", lambda self, field: [])


def _field_stops_ignored(monkeypatch) -> None:
    original = clock_module.stop_events
    monkeypatch.setattr(
        clock_module,
        "stop_events",
        lambda sla, tl, actors=None: original(
            sla.model_copy(update={"stop": [r for r in sla.stop if r.touch_rule is not None]}), tl, actors
        ),
    )


def _owner_calendars(monkeypatch, calendar) -> None:
    original = engine_module._owner_calendars

    def planted(policy, cals, users, owners):
        teams, codes = original(policy, cals, users, owners)
        return teams, np.full_like(codes, cals.code[calendar(policy)])

    monkeypatch.setattr(engine_module, "_owner_calendars", planted)


def _holidays_not_loaded(monkeypatch) -> None:
    original = engine_module.CalendarSet
    monkeypatch.setattr(
        engine_module,
        "CalendarSet",
        lambda calendars: original(replace(c, country=None, dates=frozenset()) for c in calendars),
    )


def _tiers_not_matched(monkeypatch) -> None:
    monkeypatch.setattr(
        engine_module, "_match_tiers", lambda sla, index: np.full(len(index.ids), len(sla.tiers) - 1, np.int8)
    )


def _managers_never_told(monkeypatch) -> None:
    original = Directory.resolve
    monkeypatch.setattr(
        Directory,
        "resolve",
        lambda self, role, *a, **k: [] if role == "owner_manager" else original(self, role, *a, **k),
    )


def _in_real_time(monkeypatch) -> None:
    _owner_calendars(monkeypatch, lambda policy: REAL_TIME_CALENDAR)


def _on_the_default_calendar(monkeypatch) -> None:
    _owner_calendars(monkeypatch, lambda policy: policy.default_calendar)


#: scenario -> (the bug planted, how the failure reads)
PLANTED = {
    "touched_in_time": (_touches_ignored, "state: expected met, got breached"),
    "qualified_without_a_task": (_never_handed_on, "SQL: state: expected handed_on, got breached"),
    "rejected_without_a_task": (_never_handed_on, "Recycled: state: expected handed_on, got breached"),
    "recycled_and_back": (_never_handed_on, "clocks after the return: expected 2, got 1"),
    "paused_in_nurture": (
        _nurture_leaves_sal,
        "in Nurture - contact later: state: expected paused, got handed_on",
    ),
    "mql_accepted_in_time": (_field_stops_ignored, "state: expected met, got handed_on"),
    "mql_stuck": (_in_real_time, "due: expected Wed 2026-11-18 10:00 EST, got Tue 2026-11-17 18:00 EST"),
    "owner_changed_across_timezones": (_on_the_default_calendar, "calendar: expected apac, got us_east"),
    "holiday": (_holidays_not_loaded, "due: expected Fri 2026-11-27 11:00 EST, got Thu 2026-11-26 11:00 EST"),
    "friday_evening": (_in_real_time, "elapsed on Sunday: expected 0s, got 42h"),
    "demo_request_tier": (_tiers_not_matched, "tier: expected demo_request, got standard"),
    "webinar_tier": (_tiers_not_matched, "tier: expected webinar_event, got standard"),
    "out_of_hours_inbound": (_in_real_time, "elapsed: expected 2h, got"),
    "automated_email_does_not_stop": (
        lambda mp: _touch_rule_changed(mp, exclude_subtypes=[]),
        "after mass and sequence e-mails: state: expected breached, got met",
    ),
    "touch_by_someone_else": (
        lambda mp: _touch_rule_changed(mp, by="anyone"),
        "after Tom Teammate's Call: state: expected breached, got met",
    ),
    "open_todo_task": (
        lambda mp: _touch_rule_changed(mp, completed_only=False),
        "with the to-do still open: state: expected breached, got met",
    ),
    "breach_checkpoints": (
        _managers_never_told,
        "warning told: missing email max.manager@example.com, slack max.manager@example.com",
    ),
}


def test_every_scenario_has_a_planted_bug() -> None:
    assert set(PLANTED) == {s.name for s in SCENARIOS}


@pytest.mark.parametrize("name", list(PLANTED))
def test_the_scenario_fails_on_its_planted_bug(name, monkeypatch) -> None:
    policy = shipped("tiered")
    assert result(policy, name).status == "pass"
    plant, reads = PLANTED[name]
    plant(monkeypatch)
    outcome = result(policy, name)
    assert outcome.status == "fail", outcome.detail
    assert reads in outcome.detail, outcome.detail


def test_a_critical_breach_held_for_working_hours_fails_the_demo_line(monkeypatch) -> None:
    # Planted in the decisions: every breach waits for the recipient's working hours.
    original = checkpoint_decisions.checkpoint_messages

    def held(directory, clock, *args, **kw):
        return original(directory, {**clock, "critical": False}, *args, **kw)

    # At reach and when planned ahead: both decide a checkpoint's messages with this function.
    monkeypatch.setattr(checkpoint_decisions, "checkpoint_messages", held)
    monkeypatch.setattr(ahead_decisions, "checkpoint_messages", held)
    outcome = result(shipped("tiered"), "demo_request_tier")
    assert outcome.status == "fail"
    # Made non-critical, the breach also leaves the VPs for their digest (the ladder) and waits for
    # the rep's and manager's working hours: both are named.
    assert "breach told: missing email vp.marketing@example.com" in outcome.detail, outcome.detail
    assert (
        "a critical breach is not held for working hours: got held for "
        "['max.manager@example.com', 'rita.rep@example.com']"
    ) in outcome.detail, outcome.detail


def test_a_scenario_that_cannot_run_fails_with_the_error(monkeypatch) -> None:
    def broken(**kwargs):
        raise RuntimeError("the engine is down")

    monkeypatch.setattr(engine_module, "evaluate", broken)
    outcome = result(shipped("flat"), "touched_in_time")
    assert (outcome.status, outcome.detail) == ("fail", "error: RuntimeError: the engine is down")
