"""Seed 002's go-live QA checklist, one test per line, each run against both shipped policies
through the engine's public API and the monitor's decisions. Expectations come from the policy
(tiers, calendars, holidays, checkpoints, who is told); the checklist's own rules (what never
counts as a touch) are fixed. A line is "n/a" only where a policy genuinely lacks the feature."""

from __future__ import annotations

import pytest

from tests.scenarios.policies import SHIPPED, result, shipped


@pytest.fixture(scope="module", params=list(SHIPPED))
def named_policy(request):
    return request.param, shipped(request.param)


@pytest.fixture(scope="module")
def policy(named_policy):
    return named_policy[1]


def test_an_owner_change_across_timezones_counts_on_each_owners_hours(policy) -> None:
    outcome = result(policy, "owner_changed_across_timezones")
    assert outcome.status == "pass", outcome.detail
    # New York to Sydney: the new owner's first hour is Wednesday morning in Sydney.
    assert "then Fiona Far on apac" in outcome.detail and "(Wed 12:00 AEDT)" in outcome.detail


def test_a_holiday_does_not_count(policy) -> None:
    outcome = result(policy, "holiday")
    assert outcome.status == "pass", outcome.detail
    assert "Thanksgiving Day (Thu 2026-11-26) skipped: due Fri 2026-11-27 11:00 EST" in outcome.detail


def test_friday_evening_is_due_on_monday(policy) -> None:
    outcome = result(policy, "friday_evening")
    assert outcome.status == "pass", outcome.detail
    assert "due Mon 2026-11-23 13:00 EST" in outcome.detail


def test_the_five_minute_demo_tier(named_policy) -> None:
    name, policy = named_policy
    outcome = result(policy, "demo_request_tier")
    if name == "flat":
        # The flat policy gives every SAL the same 4 business hours: it has no demo tier.
        assert (outcome.status, outcome.detail) == (
            "n/a",
            "sales_touch has no tier for lead type Demo Request",
        )
        return
    assert outcome.status == "pass", outcome.detail
    assert "tier demo_request: 5m in business time on us_east, critical" in outcome.detail


def test_the_24_hour_webinar_tier(named_policy) -> None:
    name, policy = named_policy
    outcome = result(policy, "webinar_tier")
    if name == "flat":
        # No webinar tier in the flat policy either.
        assert (outcome.status, outcome.detail) == (
            "n/a",
            "sales_touch has no tier for lead type Webinar or Event",
        )
        return
    assert outcome.status == "pass", outcome.detail
    assert "tier webinar_event: 24h" in outcome.detail and "due Fri 2026-11-20 10:00 EST" in outcome.detail


def test_an_out_of_hours_inbound_lead_counts_from_the_next_opening(named_policy) -> None:
    name, policy = named_policy
    outcome = result(policy, "out_of_hours_inbound")
    assert outcome.status == "pass", outcome.detail
    if name == "tiered":  # the inbound tier: 2 h in hours, 4 h when the lead arrives outside them
        assert "4h out of hours instead of 2h, due Wed 2026-11-18 13:00 EST" in outcome.detail
    else:  # the flat policy's one tier has no out-of-hours target: 4 h from the next opening
        assert (
            "4h (the tier has no separate out-of-hours target), due Wed 2026-11-18 13:00 EST"
            in outcome.detail
        )


def test_an_automated_email_does_not_stop_the_clock(policy) -> None:
    outcome = result(policy, "automated_email_does_not_stop")
    assert outcome.status == "pass", outcome.detail
    assert "reassigned to Max Manager, locked 24h" in outcome.detail


def test_a_colleagues_touch_does_not_count_under_by_owner(policy) -> None:
    outcome = result(policy, "touch_by_someone_else")
    assert outcome.status == "pass", outcome.detail
    assert outcome.detail.startswith("touch by: owner; a teammate's Call")


def test_an_open_todo_does_not_count_until_completed(policy) -> None:
    outcome = result(policy, "open_todo_task")
    assert outcome.status == "pass", outcome.detail


def test_a_breach_warns_at_each_checkpoint_and_tells_owner_manager_and_vps(named_policy) -> None:
    name, policy = named_policy
    outcome = result(policy, "breach_checkpoints")
    assert outcome.status == "pass", outcome.detail
    warnings = (
        ["half (50%) at Tue 2026-11-17 12:00 EST", "warning (80%) at Tue 2026-11-17 13:12 EST"]
        if name == "tiered"
        else ["warning (2h elapsed) at Tue 2026-11-17 12:00 EST"]
    )
    for expected in [
        *warnings,
        # The tiered policy's escalation ladder: the VPs get the day's breaches in a digest instead.
        "breach (target + 1m) at Tue 2026-11-17 14:01 EST: breach told owner, owner_manager"
        + (" by" if name == "tiered" else ", vp_sales, vp_marketing, vp_revops"),
    ]:
        assert expected in outcome.detail
