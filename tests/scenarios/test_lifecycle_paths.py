"""The lead lifecycle paths, each run against both shipped policies through the engine's public API
(`leadsla.engine.evaluate`) and, where it matters who is told, the monitor's decisions
(`leadsla.decisions.monitor.decide`). Every expectation is worked out from the policy itself
(`leadsla.scenarios`); here each must pass."""

from __future__ import annotations

import pytest

from tests.scenarios.policies import SHIPPED, result, shipped


@pytest.fixture(scope="module", params=list(SHIPPED))
def policy(request):
    return shipped(request.param)


def test_sal_then_touched_in_time_is_met_and_nobody_is_chased(policy) -> None:
    outcome = result(policy, "touched_in_time")
    assert outcome.status == "pass", outcome.detail
    assert "met it after 1h; nothing sent afterwards" in outcome.detail


def test_sal_then_qualified_without_a_task_is_handed_on_never_breached(policy) -> None:
    outcome = result(policy, "qualified_without_a_task")
    assert outcome.status == "pass", outcome.detail
    assert "SQL at Tue 2026-11-17 11:00 EST: handed_on, never breached" in outcome.detail


def test_sal_then_recycled_or_disqualified_without_a_task_is_handed_on(policy) -> None:
    outcome = result(policy, "rejected_without_a_task")
    assert outcome.status == "pass", outcome.detail
    assert "Recycled" in outcome.detail and "Disqualified" in outcome.detail


def test_recycled_and_back_gets_a_second_clock_with_its_own_alerts(policy) -> None:
    outcome = result(policy, "recycled_and_back")
    assert outcome.status == "pass", outcome.detail
    assert "a second clock" in outcome.detail and "distinct keys" in outcome.detail


def test_paused_in_nurture_and_resumed_keeps_one_clock(policy) -> None:
    outcome = result(policy, "paused_in_nurture")
    assert outcome.status == "pass", outcome.detail
    assert "counted nothing: 2h elapsed" in outcome.detail


def test_an_mql_accepted_in_time_is_met(policy) -> None:
    outcome = result(policy, "mql_accepted_in_time")
    assert outcome.status == "pass", outcome.detail
    assert outcome.detail.startswith("mql_acceptance: tier standard: 8h")


def test_a_stuck_mql_breaches_and_tells_owner_manager_and_marketing(policy) -> None:
    outcome = result(policy, "mql_stuck")
    assert outcome.status == "pass", outcome.detail
    sla = next(s for s in policy.slas if s.id == "mql_acceptance")
    if sla.ladder is None or sla.ladder.flat:  # seed 000: marketing is told of every breach at once
        assert "breach told owner, owner_manager, vp_marketing" in outcome.detail
    else:  # the ladder: owner and manager at once, marketing in the morning's digest
        assert "breach told owner, owner_manager by" in outcome.detail
        assert "vp_marketing" in sla.ladder.digest.notify
