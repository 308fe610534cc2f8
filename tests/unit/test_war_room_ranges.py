"""War Room date ranges are bounded: at most two years, within dates the page can compute; any
other range is a `FilterError` (the page's 400), never an OverflowError or a statement with one
CASE branch per week of eight millennia."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadsla.war_room.filters import (
    EARLIEST_DAY,
    LATEST_DAY,
    MAX_RANGE_DAYS,
    FilterError,
    parse_filters,
)
from leadsla.war_room.queries import week_starts

NOW = dt.datetime(2026, 11, 10, 15, tzinfo=dt.UTC)
TZ = "America/New_York"


def test_two_years_is_the_longest_range_and_one_day_more_is_refused() -> None:
    f = parse_filters(NOW, TZ, start="2024-11-09", end="2026-11-09")
    assert (f.end - f.start).days + 1 == MAX_RANGE_DAYS == 731
    assert len(week_starts(f)) in (105, 106)
    with pytest.raises(FilterError, match=r"spans 732 days: the War Room shows at most 731 days"):
        parse_filters(NOW, TZ, start="2024-11-08", end="2026-11-09")
    with pytest.raises(FilterError, match="spans 1097 days"):
        parse_filters(NOW, TZ, start="2023-11-10")  # to today by default


@pytest.mark.parametrize(
    ("start", "end", "named"),
    [
        ("0001-01-01", "9999-12-31", "end='9999-12-31' is outside"),
        ("9999-12-30", "9999-12-31", "end='9999-12-31' is outside"),
        ("0001-01-01", "0001-01-02", "end='0001-01-02' is outside"),
        (None, "9999-12-31", "end='9999-12-31' is outside"),
        ("0001-01-01", None, "start='0001-01-01' is outside"),
        ("1969-12-31", "1970-01-02", "start='1969-12-31' is outside"),
    ],
)
def test_dates_outside_what_the_page_computes_are_named(start, end, named) -> None:
    with pytest.raises(FilterError, match=named):
        parse_filters(NOW, TZ, start=start, end=end)


def test_the_default_range_never_starts_before_the_earliest_day() -> None:
    f = parse_filters(NOW, TZ, end="1970-01-05")
    assert (f.start, f.end) == (EARLIEST_DAY, dt.date(1970, 1, 5))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    start=st.dates() | st.none(),
    end=st.dates() | st.none(),
    timezone=st.sampled_from(["America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"]),
)
def test_any_range_is_either_computed_or_refused_with_a_filter_error(start, end, timezone) -> None:
    try:
        f = parse_filters(NOW, timezone, start=start and start.isoformat(), end=end and end.isoformat())
    except FilterError as exc:
        assert "\n" not in str(exc)
        return
    assert EARLIEST_DAY <= f.start <= f.end <= LATEST_DAY
    assert (f.end - f.start).days < MAX_RANGE_DAYS
    period = f.period  # local midnights to UTC: no overflow at either end
    assert period.start < period.end
    assert 1 <= len(week_starts(f)) <= MAX_RANGE_DAYS // 7 + 2
