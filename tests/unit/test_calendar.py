"""Business calendars: hand-written golden cases, and properties against a minute-stepping reference.

The reference below is written plainly from the definition (an instant is open when the local wall
clock, on a non-holiday date, reads a time inside that weekday's hours) and shares nothing with
the interval tables in leadsla.calendar.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadsla.calendar import BusinessCalendar, CalendarError, parse_duration

NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


@pytest.fixture(scope="module")
def us_east() -> BusinessCalendar:
    return BusinessCalendar.from_dict(
        {
            "timezone": "America/New_York",
            "hours": {
                "mon": ["09:00-12:00", "13:00-17:00"],
                "tue": ["09:00-12:00", "13:00-17:00"],
                "wed": ["09:00-12:00", "13:00-17:00"],
                "thu": ["09:00-12:00", "13:00-17:00"],
                "fri": ["09:00-15:30"],
            },
            "holidays": {"country": "US", "subdivision": "NY", "dates": ["2026-12-24"]},
        },
        "us_east",
    )


# --- golden cases, worked out by hand --------------------------------------------------------------


def test_friday_afternoon_four_hours_is_due_monday_half_past_eleven(us_east):
    # Fri 14:00 -> 15:30 is 1.5 h; the weekend is closed; Monday 09:00-11:30 is the other 2.5 h.
    due = us_east.deadline(ny(2026, 11, 20, 14, 0), dt.timedelta(hours=4))
    assert due == ny(2026, 11, 23, 11, 30)
    assert due.tzinfo == UTC
    assert us_east.elapsed(ny(2026, 11, 20, 14, 0), due) == dt.timedelta(hours=4)


def test_lunch_gap_is_not_counted(us_east):
    # Mon 11:00 + 2 h: 11:00-12:00 (1 h), lunch, 13:00-14:00 (1 h).
    assert us_east.deadline(ny(2026, 11, 16, 11, 0), "2h") == ny(2026, 11, 16, 14, 0)
    assert us_east.elapsed(ny(2026, 11, 16, 11, 0), ny(2026, 11, 16, 14, 0)) == dt.timedelta(hours=2)


def test_thanksgiving_is_skipped(us_east):
    # Wed 2026-11-25 16:00 + 4 h: 1 h on Wednesday, Thursday is Thanksgiving, Friday 09:00 + 3 h.
    assert us_east.deadline(ny(2026, 11, 25, 16, 0), "4h") == ny(2026, 11, 27, 12, 0)


def test_explicit_policy_closed_day_is_skipped(us_east):
    # Wed 2026-12-23 16:30 + 1 h: 30 min on Wednesday, Thu 12-24 closed by the policy, Fri 12-25
    # Christmas, the weekend, then Monday 09:00 + 30 min.
    assert us_east.deadline(ny(2026, 12, 23, 16, 30), "1h") == ny(2026, 12, 28, 9, 30)


def test_start_outside_hours_counts_from_next_opening(us_east):
    assert us_east.deadline(ny(2026, 11, 17, 6, 15), "30m") == ny(2026, 11, 17, 9, 30)
    assert us_east.deadline(ny(2026, 11, 21, 10, 0), "1h") == ny(2026, 11, 23, 10, 0)  # Saturday start
    assert us_east.elapsed(ny(2026, 11, 21, 10, 0), ny(2026, 11, 22, 23, 0)) == dt.timedelta(0)


def test_zero_duration_is_the_start_itself(us_east):
    assert us_east.deadline(ny(2026, 11, 21, 10, 0), "0s") == ny(2026, 11, 21, 10, 0)


def test_dst_day_all_day_calendar_is_23_and_25_hours():
    cal = BusinessCalendar.from_dict({"timezone": "America/New_York", "hours": {"sun": ["00:00-24:00"]}})
    assert cal.elapsed(ny(2026, 3, 8, 0, 0), ny(2026, 3, 9, 0, 0)) == dt.timedelta(hours=23)
    assert cal.elapsed(ny(2026, 11, 1, 0, 0), ny(2026, 11, 2, 0, 0)) == dt.timedelta(hours=25)
    # 1 h after 01:30 EDT on the fall-back day is 01:30 EST (the hour is read twice).
    first = dt.datetime(2026, 11, 1, 1, 30, tzinfo=NY, fold=0)
    # (PEP 495: an ambiguous time never compares equal across zones, so compare in UTC.)
    assert cal.deadline(first, "1h") == dt.datetime(2026, 11, 1, 1, 30, tzinfo=NY, fold=1).astimezone(UTC)
    assert cal.deadline(first, "1h") == dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def test_hours_starting_in_the_spring_gap_open_at_the_jump():
    cal = BusinessCalendar.from_dict({"timezone": "America/New_York", "hours": {"sun": ["02:30-05:00"]}})
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT; the wall clock reads 03:00-05:00 -> 2 real hours.
    assert cal.elapsed(ny(2026, 3, 8, 0, 0), ny(2026, 3, 9, 0, 0)) == dt.timedelta(hours=2)
    assert cal.deadline(ny(2026, 3, 8, 0, 0), "1m") == ny(2026, 3, 8, 3, 1)


def test_naive_datetimes_are_refused_naming_the_argument(us_east):
    with pytest.raises(CalendarError, match="start .* is naive"):
        us_east.deadline(dt.datetime(2026, 11, 20, 14, 0), "4h")
    with pytest.raises(CalendarError, match="end .* is naive"):
        us_east.elapsed(ny(2026, 11, 20, 14, 0), dt.datetime(2026, 11, 20, 15, 0))
    with pytest.raises(CalendarError, match="starts holds naive"):
        us_east.deadline_many(pd.Series(pd.to_datetime(["2026-11-20 14:00"])), pd.Series([60]))


def test_end_before_start_is_refused(us_east):
    with pytest.raises(CalendarError, match="before start"):
        us_east.elapsed(ny(2026, 11, 20, 14, 0), ny(2026, 11, 20, 13, 0))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"timezone": "Mars/Olympus", "hours": {"mon": ["09:00-17:00"]}}, "not an IANA timezone"),
        ({"timezone": "UTC", "hours": {"mon": ["9-5"]}}, r"hours.mon: '9-5' is not an opening interval"),
        ({"timezone": "UTC", "hours": {"mon": ["17:00-09:00"]}}, "start < end"),
        ({"timezone": "UTC", "hours": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "overlapping"),
        ({"timezone": "UTC", "hours": {"funday": ["09:00-12:00"]}}, "not a weekday"),
        ({"timezone": "UTC", "hours": {}}, "no opening hours"),
        (
            {"timezone": "UTC", "hours": {"mon": ["09:00-17:00"]}, "holidays": {"country": "XX"}},
            "holidays.country 'XX'",
        ),
        (
            {"timezone": "UTC", "hours": {"mon": ["09:00-17:00"]}, "holidays": {"dates": ["2026-13-01"]}},
            r"holidays.dates\[0\]",
        ),
    ],
)
def test_bad_specs_say_what_and_where(spec, message):
    with pytest.raises(CalendarError, match=message):
        BusinessCalendar.from_dict(spec, "east")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("4h", 14400), ("4h1m", 14460), ("5m", 300), ("3d", 259200), ("90s", 90), ("1h 30m", 5400)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "4", "four hours", "-1h", "4x"])
def test_bad_durations(text):
    with pytest.raises(CalendarError, match="not a duration"):
        parse_duration(text)


def test_vectorised_equals_scalar(us_east):
    rng = np.random.default_rng(7)
    base = int(ny(2026, 1, 1).timestamp())
    starts = pd.Series(pd.to_datetime(base + rng.integers(0, 365 * 86400, 300), unit="s", utc=True))
    durations = pd.Series(rng.integers(0, 40 * 3600, 300))
    due = us_east.deadline_many(starts, durations)
    elapsed = us_east.elapsed_many(starts, due)
    for s, d, got, el in zip(starts, durations, due, elapsed, strict=True):
        assert got == us_east.deadline(s.to_pydatetime(), int(d))
        assert el == us_east.elapsed(s.to_pydatetime(), got.to_pydatetime()) == dt.timedelta(seconds=int(d))


def test_explain_deadline_names_weekend_and_holiday(us_east):
    e = us_east.explain_deadline(ny(2026, 11, 25, 16, 0), "12h")
    kinds = [(g["kind"], g["label"]) for g in e["skipped"]]
    assert ("holiday", "Thanksgiving Day (2026-11-26)") in kinds
    assert ("weekend", "Saturday-Sunday") in kinds
    assert sum(g["seconds"] for g in e["skipped"]) + 12 * 3600 == (e["deadline"] - e["start"]).total_seconds()


# --- properties against an independent minute-stepping reference -----------------------------------

ZONES = {
    "America/New_York": ("US", "NY"),
    "America/Santiago": ("CL", None),
    "Europe/London": ("GB", "ENG"),
    "Europe/Berlin": ("DE", "BE"),
    "Australia/Sydney": ("AU", "NSW"),
    "Asia/Kolkata": ("IN", None),
}
# Boundaries placed on the transition hours (01:00-03:00 and midnight) so gaps and repeats are hit.
DENSE_HOURS = {
    "mon": ["00:00-01:30", "02:15-12:00", "13:00-17:45"],
    "tue": ["08:00-18:00"],
    "wed": ["08:00-18:00"],
    "thu": ["08:00-18:00"],
    "fri": ["09:00-15:30", "23:00-24:00"],
    "sat": ["00:00-02:30", "03:10-24:00"],
    "sun": ["00:00-01:30", "01:45-02:30", "02:40-24:00"],
}
OFFICE_HOURS = {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def _spec(zone: str, hours: dict) -> dict:
    country, subdivision = ZONES[zone]
    return {"timezone": zone, "hours": hours, "holidays": {"country": country, "subdivision": subdivision}}


@cache
def _calendar(zone: str, dense: bool) -> BusinessCalendar:
    return BusinessCalendar.from_dict(_spec(zone, DENSE_HOURS if dense else OFFICE_HOURS), zone)


@cache
def _transitions(zone: str) -> tuple[int, ...]:
    """UTC epoch seconds (minute-aligned) of every offset change 2020-2030, found by hourly steps."""
    tz = ZoneInfo(zone)
    out = []
    t = int(dt.datetime(2020, 1, 1, tzinfo=UTC).timestamp())
    end = int(dt.datetime(2031, 1, 1, tzinfo=UTC).timestamp())
    prev = dt.datetime.fromtimestamp(t, tz).utcoffset()
    while t < end:
        t += 3600
        off = dt.datetime.fromtimestamp(t, tz).utcoffset()
        if off != prev:
            out.append(t - t % 60)
            prev = off
    return tuple(out)


class Reference:
    """Minute-stepping: is each UTC minute open by the wall clock? Plain and slow on purpose."""

    def __init__(self, zone: str, hours: dict) -> None:
        self.tz = ZoneInfo(zone)
        country, subdivision = ZONES[zone]
        self.holidays = holidays_lib.country_holidays(country, subdiv=subdivision, years=range(2019, 2032))
        days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        self.hours = {}
        for i, day in enumerate(days):
            spans = []
            for text in hours.get(day, []):
                a, b = text.split("-")
                spans.append((int(a[:2]) * 60 + int(a[3:]), int(b[:2]) * 60 + int(b[3:])))
            self.hours[i] = spans

    def is_open_minute(self, t: int) -> bool:
        local = dt.datetime.fromtimestamp(t, self.tz)
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(a <= minute < b for a, b in self.hours[local.weekday()])

    def elapsed(self, start: int, end: int) -> int:
        return sum(60 for t in range(start, end, 60) if self.is_open_minute(t))

    def deadline(self, start: int, duration: int) -> int:
        t, done = start, 0
        while done < duration:
            if self.is_open_minute(t):
                done += 60
            t += 60
        return t


_REFS: dict[tuple[str, bool], Reference] = {}


def _reference(zone: str, dense: bool) -> Reference:
    key = (zone, dense)
    if key not in _REFS:
        _REFS[key] = Reference(zone, DENSE_HOURS if dense else OFFICE_HOURS)
    return _REFS[key]


def test_every_zone_has_transitions_except_kolkata():
    for zone in ZONES:
        n = len(_transitions(zone))
        assert (n == 0) if zone == "Asia/Kolkata" else (n >= 20), (zone, n)


@st.composite
def near_transition(draw):
    zone = draw(st.sampled_from(sorted(ZONES)))
    transitions = _transitions(zone) or (
        int(dt.datetime(2020 + draw(st.integers(0, 10)), 3, 29, tzinfo=UTC).timestamp()),
    )
    anchor = draw(st.sampled_from(transitions))
    start = anchor + 60 * draw(st.integers(-36 * 60, 12 * 60))
    return zone, draw(st.booleans()), start


_SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@_SETTINGS
@given(case=near_transition(), minutes=st.integers(0, 48 * 60))
def test_elapsed_matches_reference_near_dst(case, minutes):
    zone, dense, start = case
    end = start + 60 * minutes
    cal, ref = _calendar(zone, dense), _reference(zone, dense)
    got = cal.elapsed(dt.datetime.fromtimestamp(start, UTC), dt.datetime.fromtimestamp(end, UTC))
    assert got == dt.timedelta(seconds=ref.elapsed(start, end))


@_SETTINGS
@given(case=near_transition(), minutes=st.integers(0, 20 * 60))
def test_deadline_matches_reference_near_dst(case, minutes):
    zone, dense, start = case
    cal, ref = _calendar(zone, dense), _reference(zone, dense)
    local_start = dt.datetime.fromtimestamp(start, ZoneInfo(zone))  # any aware zone will do as input
    got = cal.deadline(local_start, dt.timedelta(minutes=minutes))
    assert got == dt.datetime.fromtimestamp(ref.deadline(start, 60 * minutes), UTC)
    assert cal.elapsed(local_start, got) == dt.timedelta(minutes=minutes)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    zone=st.sampled_from(sorted(ZONES)),
    dense=st.booleans(),
    offsets=st.lists(st.integers(0, 11 * 365 * 86400), min_size=1, max_size=40),
    durations=st.lists(st.integers(0, 30 * 3600), min_size=40, max_size=40),
)
def test_vectorised_matches_scalar_anywhere_2020_2030(zone, dense, offsets, durations):
    cal = _calendar(zone, dense)
    base = int(dt.datetime(2020, 1, 1, tzinfo=UTC).timestamp())
    starts = pd.Series(pd.to_datetime([base + o for o in offsets], unit="s", utc=True))
    durs = pd.Series(durations[: len(offsets)])
    due = cal.deadline_many(starts, durs)
    back = cal.elapsed_many(starts, due)
    for s, d, got, el in zip(starts, durs, due, back, strict=True):
        assert got == cal.deadline(s.to_pydatetime(), int(d))
        assert el == cal.elapsed(s.to_pydatetime(), got.to_pydatetime()) == dt.timedelta(seconds=int(d))


def test_vectorised_forms_accept_timedeltas_and_keep_the_index(us_east):
    starts = pd.Series(
        pd.to_datetime(["2026-11-20 14:00", "2026-11-25 16:00"]).tz_localize(NY), index=["a", "b"]
    )
    due = us_east.deadline_many(starts, pd.Series(pd.to_timedelta(["4h", "4h"]), index=["a", "b"]))
    assert list(due.index) == ["a", "b"]
    assert due["a"] == ny(2026, 11, 23, 11, 30) and due["b"] == ny(2026, 11, 27, 12, 0)
    assert list(us_east.elapsed_many(starts, due)) == [dt.timedelta(hours=4)] * 2


# --- the fused multi-calendar table: bucket-indexed lookups == binary searches == scalar API ------


def test_fused_table_lookups_equal_binary_search_and_the_scalar_api():
    from leadsla.calendar import CalendarSet

    cals = [
        BusinessCalendar.from_dict(
            {
                "timezone": "America/New_York",
                "hours": {"mon": "09:00-17:00", "fri": ["09:00-09:01", "09:02-15:30"]},
                "holidays": {"country": "US"},
            },
            "ny",
        ),
        BusinessCalendar.from_dict(
            {
                "timezone": "Europe/London",
                "hours": {d: ["09:00-12:30", "13:30-17:30"] for d in ("mon", "tue", "wed")},
            },
            "uk",
        ),
        BusinessCalendar.always_open(),
    ]
    fused = CalendarSet(cals)
    lo = int(pd.Timestamp("2026-01-05", tz="UTC").timestamp())
    table = fused.prepare(lo, lo + 300 * 86400, 1)
    rng = np.random.default_rng(3)
    n = 20_000
    codes = rng.integers(0, len(cals), n)
    t = lo + rng.integers(0, 330 * 86400, n)
    # Exactly on interval edges too (the bucket walk's boundary cases).
    edges = rng.integers(0, len(table.starts), 2000)
    t[:2000] = np.where(rng.random(2000) < 0.5, table.starts[edges], table.ends[edges]) % (1 << 36)
    codes[:2000] = table.starts[edges] >> 36
    shift = codes * CalendarSet._SHIFT
    i = np.searchsorted(table.starts, t + shift, side="right") - 1
    expected_f = (
        table.cum[i] + np.clip(t + shift - table.starts[i], 0, table.ends[i] - table.starts[i]) - shift
    )
    f = table.open_before(codes, t)
    assert (f == expected_f).all()
    assert (table.is_open(codes, t) == (t + shift < table.ends[i])).all()
    goal = np.minimum(f + rng.integers(0, 40 * 3600, n), table.total[codes])
    goal[:100] = 0
    j = np.searchsorted(table.cum_end, goal + shift, side="left")
    expected_at = table.starts[j] + (goal + shift - table.cum[j]) - shift
    assert (table.inverse(codes, goal) == expected_at).all()
    # And the same as each calendar's scalar deadline/elapsed, on a sample.
    for k in range(100, n, 997):
        cal = cals[codes[k]]
        start = dt.datetime.fromtimestamp(int(t[k]), dt.UTC)
        end = dt.datetime.fromtimestamp(int(t[k]) + 5 * 86400, dt.UTC)
        later = table.open_before(codes[k : k + 1], t[k : k + 1] + 5 * 86400)[0]
        assert int(later - f[k]) == int(cal.elapsed(start, end).total_seconds())
        reached = max(int(table.inverse(codes[k : k + 1], goal[k : k + 1])[0]), int(t[k]))
        assert reached == int(cal.deadline(start, int(goal[k] - f[k])).timestamp())
    # Instants outside the indexed years fall back to the binary search with the same answer.
    far = t.copy()
    far[0] = table.domain[1] + 10
    ref = table.open_before(codes[1:], far[1:])
    assert (table.open_before(codes, far)[1:] == ref).all()
