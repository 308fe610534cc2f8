"""Which periods `make run` e-mails the four reports for: the ones holding most of the demo's
two weeks of history (sandbox.devstack.demo_report_periods), in leadership's timezone."""

from __future__ import annotations

import datetime as dt

import pytest

from sandbox.devstack import DEMO_BACKLOG_HOURS, demo_report_periods

UTC = dt.UTC


@pytest.mark.parametrize("now,expected", [
    # Monday 08:00 in New York: last full week W47 (all of it in the history) beats W48's 8 hours;
    # November holds all two weeks, October none.
    (dt.datetime(2026, 11, 23, 13, tzinfo=UTC), {"weekly": "2026-W47", "feedback": "2026-W47",
                                                "monthly": "2026-11", "quarterly": "2026-Q4"}),
    # Wednesday 2 December: November holds 12 days of the history, December 1.5.
    (dt.datetime(2026, 12, 2, 12, tzinfo=UTC), {"weekly": "2026-W48", "feedback": "2026-W48",
                                               "monthly": "2026-11", "quarterly": "2026-Q4"}),
    # Sunday 3 January: the last full quarter and month hold most of it.
    (dt.datetime(2027, 1, 3, 12, tzinfo=UTC), {"weekly": "2026-W52", "feedback": "2026-W52",
                                              "monthly": "2026-12", "quarterly": "2026-Q4"}),
    # 20 January: this quarter and month hold all of it.
    (dt.datetime(2027, 1, 20, 12, tzinfo=UTC), {"weekly": "2027-W02", "feedback": "2027-W02",
                                               "monthly": "2027-01", "quarterly": "2027-Q1"}),
])
def test_periods_hold_most_of_the_demo_history(now, expected):
    start = now - dt.timedelta(hours=DEMO_BACKLOG_HOURS)
    assert demo_report_periods(start, now, "America/New_York") == expected


def test_two_weeks_of_history_always_hold_the_last_full_week():
    from leadsla.reports.period import last_full

    for hours in range(0, 7 * 24, 5):  # every weekday and hour of a week
        now = dt.datetime(2026, 11, 23, 0, tzinfo=UTC) + dt.timedelta(hours=hours)
        week = last_full("week", now, "America/New_York")
        assert week.start >= now - dt.timedelta(hours=DEMO_BACKLOG_HOURS), now
