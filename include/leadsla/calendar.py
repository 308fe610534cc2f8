"""Business-time arithmetic: how much open time lies between two instants, and when a duration ends.

A `BusinessCalendar` is an IANA timezone, opening hours per weekday (several intervals a day;
"00:00-24:00" is the whole day) and closed days (a `holidays` country/subdivision plus explicit
dates). Everything is computed from one representation, so the scalar and vectorised forms cannot
drift apart:

* For every local year that a question touches, the open intervals are materialised, lazily, as
  sorted, disjoint UTC epoch-second pairs ``[start, end)``, and a cumulative array of open seconds
  before each interval is kept. ``F(t)`` = open seconds before instant ``t`` (one
  ``np.searchsorted``); ``elapsed(a, b) = F(b) - F(a)``; ``deadline(a, d)`` is the smallest ``t``
  with ``F(t) = F(a) + d`` (the inverse, another ``searchsorted``).

* **DST rule (wall-clock semantics).** An instant is open when the local wall clock, on a local
  date that is not closed, reads a time inside that weekday's hours. So a 00:00-24:00 day is 23 or
  25 real hours long; a wall time that does not exist (the spring-forward gap) is simply never
  read, so hours starting inside the gap open at the jump (e.g. 02:30-05:00 in New York on the
  spring day opens at 03:00 EDT); a wall time that happens twice (the fall-back hour) is open both
  times it is read. Intervals are mapped through the zone's constant-offset segments, found by
  bisecting `zoneinfo` offsets to the second, so the rule holds exactly at every transition.

* Second precision: instants are floored to whole UTC seconds. Inputs must be timezone-aware
  (a naive value is refused, naming the argument); results are aware UTC.

This module never reads the policy file, the store or the clock on the wall.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from leadsla.errors import LeadSlaError
from leadsla.yaml_file import shown_key

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SECOND = dt.timedelta(seconds=1)
_DAY = 86_400
#: IANA names of UTC itself: offset zero at every instant.
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Universal", "Zulu"})
#: Years a calendar will materialise; outside them a question is almost certainly a data error.
MIN_YEAR, MAX_YEAR = 1971, 2200
_HOURS_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_DURATION_RE = re.compile(r"(\d+)\s*(d|h|m|s)")
_DURATION_FULL_RE = re.compile(r"^\s*(?:\d+\s*[dhms]\s*)+$")


class CalendarError(LeadSlaError):
    """A calendar spec or a business-time question is malformed."""


# --- parsing -------------------------------------------------------------------------------------


#: The longest duration anything in the policy or the CLI may name (a century: far beyond any SLA,
#: far inside what the business-time arithmetic can represent).
MAX_DURATION_SECONDS = 100 * 365 * _DAY


def parse_duration(text: str | int | dt.timedelta, *, what: str = "duration") -> int:
    """Parse "4h", "5m", "1h30m", "3d" (24 h days), "90s" or whole seconds into seconds.

    Raises:
        CalendarError: naming `what`, the value and the accepted forms.
    """
    if isinstance(text, dt.timedelta):
        seconds = text.total_seconds()
        if seconds < 0 or seconds != int(seconds):
            raise CalendarError(f"{what} {text} must be a non-negative whole number of seconds")
        return _at_most_max(int(seconds), text, what)
    if isinstance(text, bool):
        raise CalendarError(f"{what} {text!r} is not a duration: expected e.g. 4h, 5m, 1h30m, 3d")
    if isinstance(text, int):
        if text < 0:
            raise CalendarError(f"{what} {text} must not be negative")
        return _at_most_max(text, text, what)
    if not isinstance(text, str) or not _DURATION_FULL_RE.match(text):
        raise CalendarError(f"{what} {text!r} is not a duration: expected e.g. 4h, 5m, 1h30m, 3d, 90s")
    unit = {"d": _DAY, "h": 3600, "m": 60, "s": 1}
    return _at_most_max(sum(int(n) * unit[u] for n, u in _DURATION_RE.findall(text)), text, what)


def _at_most_max(seconds: int, text: object, what: str) -> int:
    if seconds > MAX_DURATION_SECONDS:
        raise CalendarError(f"{what} {text!r} is longer than a hundred years: expected e.g. 4h, 5m, 3d")
    return seconds


def format_duration(seconds: int, *, days: bool = True) -> str:
    """Seconds as a short human duration: 14460 -> "4h 1m". With days=False, 86400 -> "24h" (a day of
    business time is not a business day, so business durations are shown in hours)."""
    seconds = int(seconds)
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit, size in (("d", _DAY if days else 10**18), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return sign + " ".join(parts)


def is_timezone(name: object) -> bool:
    """Whether `name` is an IANA timezone name this machine knows (e.g. America/New_York)."""
    if not isinstance(name, str):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        return False
    return True


def _parse_hours(text: Any, where: str) -> tuple[int, int]:
    m = _HOURS_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise CalendarError(
            f"{where}: {text!r} is not an opening interval: expected HH:MM-HH:MM, e.g. 09:00-17:00"
        )
    h1, m1, h2, m2 = map(int, m.groups())
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if h1 > 23 or m1 > 59 or m2 > 59 or end > _DAY or end <= start:
        raise CalendarError(
            f"{where}: {text!r} is not an opening interval: expected HH:MM-HH:MM with start < end <= 24:00"
        )
    return start, end


def to_epoch_seconds(value: dt.datetime, name: str) -> int:
    """An aware datetime as whole UTC epoch seconds (floored).

    Raises:
        CalendarError: if `value` is not a datetime or is naive, naming `name`.
    """
    if not isinstance(value, dt.datetime):
        raise CalendarError(
            f"{name} must be a timezone-aware datetime, got {type(value).__name__}: {value!r}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise CalendarError(f"{name} {value.isoformat()} is naive: give it a timezone (e.g. +00:00)")
    return (value - _EPOCH) // _SECOND


def from_epoch_seconds(seconds: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(seconds=int(seconds))


def epoch_seconds_array(values: Any, name: str) -> np.ndarray:
    """Aware pandas datetimes (Series/Index/array) as int64 UTC epoch seconds (floored).

    Integer numpy arrays are taken as epoch seconds already. Naive datetimes are refused.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    if isinstance(values, np.ndarray) and values.dtype.kind == "M":
        raise CalendarError(
            f"{name} is a naive datetime64 array: localise it (e.g. pd.DatetimeIndex(x, tz='UTC'))"
        )
    idx = pd.DatetimeIndex(values) if not isinstance(values, pd.DatetimeIndex) else values
    if idx.tz is None:
        raise CalendarError(
            f"{name} holds naive datetimes: give them a timezone (e.g. .dt.tz_localize('UTC'))"
        )
    if idx.hasnans:
        raise CalendarError(f"{name} holds missing datetimes (NaT)")
    return np.floor_divide(idx.as_unit("ns").asi8, 10**9)


# --- the calendar --------------------------------------------------------------------------------


@dataclass
class _Table:
    """The materialised open intervals for a contiguous run of local years."""

    first_year: int
    last_year: int
    starts: np.ndarray  # int64 UTC epoch seconds, sorted
    ends: np.ndarray
    cum: np.ndarray  # open seconds before interval i
    cum_end: np.ndarray  # open seconds up to the end of interval i


@dataclass
class BusinessCalendar:
    """Opening hours in one timezone, minus closed days. Build with `from_dict`."""

    name: str
    timezone: str
    hours: tuple[tuple[tuple[int, int], ...], ...]  # per weekday mon..sun, seconds after local midnight
    country: str | None = None
    subdivision: str | None = None
    dates: frozenset[dt.date] = frozenset()
    _tz: ZoneInfo = field(init=False, repr=False)
    _table: _Table | None = field(default=None, init=False, repr=False)
    _years: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _holiday_names: dict[dt.date, str] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not is_timezone(self.timezone):
            raise CalendarError(
                f"calendar {self.name!r}: timezone {self.timezone!r} is not an IANA timezone name (e.g. "
                "America/New_York)"
            ) from None
        self._tz = ZoneInfo(self.timezone)
        if not any(self.hours):
            raise CalendarError(f"calendar {self.name!r}: no opening hours on any weekday")

    # -- construction --

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], name: str = "calendar") -> BusinessCalendar:
        """Build a calendar from one `calendars:` entry of the policy.

        Raises:
            CalendarError: naming the key, the bad value and what was expected.
        """
        if not isinstance(spec, Mapping):
            raise CalendarError(f"calendar {name!r}: expected a mapping with timezone, hours, holidays")
        unknown = set(spec) - {"timezone", "hours", "holidays", "description"}
        if unknown:
            raise CalendarError(
                f"calendar {name!r}: unknown key(s) {sorted(map(shown_key, unknown))}: expected timezone, "
                "hours, holidays"
            )
        if "timezone" not in spec:
            raise CalendarError(f"calendar {name!r}: timezone is required (an IANA name, e.g. Europe/London)")
        raw_hours = spec.get("hours") or {}
        if not isinstance(raw_hours, Mapping):
            raise CalendarError(
                f"calendar {name!r}: hours must map weekday (mon..sun) to a list of HH:MM-HH:MM"
            )
        bad_days = set(raw_hours) - set(WEEKDAYS)
        if bad_days:
            raise CalendarError(
                f"calendar {name!r}: hours.{sorted(map(shown_key, bad_days))[0]} is not a weekday: expected "
                f"one of {', '.join(WEEKDAYS)}"
            )
        hours = []
        for day in WEEKDAYS:
            items = raw_hours.get(day) or []
            if isinstance(items, str):
                items = [items]
            if not isinstance(items, list):  # `fri: 9`
                raise CalendarError(
                    f"calendar {name!r}: hours.{day}: {items!r} is not a list of opening intervals: "
                    "expected e.g. [09:00-17:00]"
                )
            intervals = sorted(_parse_hours(item, f"calendar {name!r}: hours.{day}") for item in items)
            for (_, e1), (s2, _) in zip(intervals, intervals[1:], strict=False):
                if s2 < e1:
                    raise CalendarError(f"calendar {name!r}: hours.{day} has overlapping intervals {items!r}")
            hours.append(tuple(intervals))
        hol = spec.get("holidays") or {}
        if not isinstance(hol, Mapping):
            raise CalendarError(
                f"calendar {name!r}: holidays must be a mapping with country, subdivision, dates"
            )
        unknown = set(hol) - {"country", "subdivision", "dates"}
        if unknown:
            raise CalendarError(
                f"calendar {name!r}: holidays has unknown key(s) {sorted(map(shown_key, unknown))}: expected "
                "country, subdivision, dates"
            )
        dates = set()
        listed = hol.get("dates") or []
        if not isinstance(listed, list):
            raise CalendarError(
                f"calendar {name!r}: holidays.dates: {listed!r}: expected a list of YYYY-MM-DD"
            )
        for i, item in enumerate(listed):
            try:
                dates.add(item if isinstance(item, dt.date) else dt.date.fromisoformat(str(item)))
            except ValueError:
                raise CalendarError(
                    f"calendar {name!r}: holidays.dates[{i}] {item!r} is not a date: expected YYYY-MM-DD"
                ) from None
        cal = cls(
            name=name,
            timezone=spec["timezone"],
            hours=tuple(hours),
            country=hol.get("country"),
            subdivision=hol.get("subdivision"),
            dates=frozenset(dates),
        )
        if cal.country is not None:
            import holidays as holidays_lib

            try:
                holidays_lib.country_holidays(cal.country, subdiv=cal.subdivision, years=2026)
            except NotImplementedError:
                raise CalendarError(
                    f"calendar {name!r}: holidays.country {cal.country!r} is not a country the holidays "
                    "package knows (ISO code, e.g. US)"
                ) from None
            except Exception as exc:  # the package raises NotImplementedError or ValueError for subdivisions
                raise CalendarError(
                    f"calendar {name!r}: holidays.subdivision {cal.subdivision!r} is not valid for "
                    f"{cal.country}: {exc}"
                ) from None
        return cal

    @classmethod
    def always_open(cls, name: str = "24x7") -> BusinessCalendar:
        """Real (calendar) time: open every second, no holidays, for targets in calendar time."""
        return cls(name=name, timezone="UTC", hours=tuple(((0, _DAY),) for _ in WEEKDAYS))

    # -- materialisation --

    def holiday_name(self, day: dt.date) -> str | None:
        """The closed-day name for a local date, or None if it is not a holiday."""
        self._year(day.year)
        return self._holiday_names.get(day)

    def _holidays_for(self, year: int) -> dict[dt.date, str]:
        names: dict[dt.date, str] = {}
        if self.country:
            import holidays as holidays_lib

            for day, label in holidays_lib.country_holidays(
                self.country, subdiv=self.subdivision, years=year
            ).items():
                names[day] = label
        for day in self.dates:
            if day.year == year:
                names.setdefault(day, "policy closed day")
        return names

    def _offset_segments(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """Constant-UTC-offset segments covering [lo, hi) as (start, end, offset_seconds)."""

        def offset(u: int) -> int:
            return int(dt.datetime.fromtimestamp(u, self._tz).utcoffset().total_seconds())

        if self.timezone in _UTC_NAMES:  # no transitions to look for (the 24x7 real-time calendar)
            return [(lo, hi, 0)]
        step = 3 * 3600  # real zones never change offset twice within three hours
        segments = []
        seg_start, seg_off = lo, offset(lo)
        u = lo
        while u < hi:
            nxt = min(u + step, hi)
            off = offset(nxt)
            if off != seg_off:
                a, b = u, nxt  # offset(a) == seg_off, offset(b) != seg_off: bisect to the second
                while b - a > 1:
                    mid = (a + b) // 2
                    if offset(mid) == seg_off:
                        a = mid
                    else:
                        b = mid
                segments.append((seg_start, b, seg_off))
                seg_start, seg_off = b, offset(b)
            u = nxt
        segments.append((seg_start, hi, seg_off))
        return segments

    def _year(self, year: int) -> np.ndarray:
        """The open intervals of local year `year`, as an (n, 2) int64 array of UTC epoch seconds."""
        cached = self._years.get(year)
        if cached is not None:
            return cached
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise CalendarError(f"calendar {self.name!r}: year {year} is outside {MIN_YEAR}-{MAX_YEAR}")
        names = self._holidays_for(year)
        self._holiday_names.update(names)
        first = np.datetime64(f"{year:04d}-01-01", "D").astype(np.int64)
        last = np.datetime64(f"{year + 1:04d}-01-01", "D").astype(np.int64)
        days = np.arange(first, last, dtype=np.int64)
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        closed = np.isin(days, np.array([(d - dt.date(1970, 1, 1)).days for d in names], dtype=np.int64))
        wall_a, wall_b = [], []  # local wall times as if they were UTC epoch seconds
        for wd, intervals in enumerate(self.hours):
            sel = days[(weekday == wd) & ~closed] * _DAY
            for a, b in intervals:
                wall_a.append(sel + a)
                wall_b.append(sel + b)
        a = np.concatenate(wall_a) if wall_a else np.empty(0, np.int64)
        b = np.concatenate(wall_b) if wall_b else np.empty(0, np.int64)
        pieces_a, pieces_b = [], []
        # Preimage of each wall-time interval under local = utc + offset, per constant-offset segment.
        for seg_lo, seg_hi, off in self._offset_segments(first * _DAY - 2 * _DAY, last * _DAY + 2 * _DAY):
            lo = np.maximum(a - off, seg_lo)
            hi = np.minimum(b - off, seg_hi)
            keep = lo < hi
            pieces_a.append(lo[keep])
            pieces_b.append(hi[keep])
        lo = np.concatenate(pieces_a)
        hi = np.concatenate(pieces_b)
        order = np.argsort(lo, kind="stable")
        result = np.stack([lo[order], hi[order]], axis=1) if len(lo) else np.empty((0, 2), np.int64)
        self._years[year] = result
        return result

    def _ensure(self, first_year: int, last_year: int) -> _Table:
        """Materialise (at least) local years first_year..last_year as one contiguous table."""
        table = self._table
        if table is not None and table.first_year <= first_year and last_year <= table.last_year:
            return table
        with self._lock:
            table = self._table
            if table is not None:
                first_year, last_year = min(first_year, table.first_year), max(last_year, table.last_year)
            first_year, last_year = max(first_year, MIN_YEAR), min(last_year, MAX_YEAR)
            if first_year > last_year:
                raise CalendarError(
                    f"calendar {self.name!r}: instants must fall within {MIN_YEAR}-{MAX_YEAR}"
                )
            pairs = np.concatenate([self._year(y) for y in range(first_year, last_year + 1)])
            starts, ends = pairs[:, 0], pairs[:, 1]
            # Merge touching intervals (24:00 meets the next day's 00:00) so spans read naturally.
            if len(starts):
                new_run = np.ones(len(starts), dtype=bool)
                new_run[1:] = starts[1:] > ends[:-1]
                starts = starts[new_run]
                ends = np.maximum.reduceat(ends, np.flatnonzero(new_run))
            lengths = ends - starts
            cum_end = np.cumsum(lengths)
            table = _Table(first_year, last_year, starts, ends, cum_end - lengths, cum_end)
            self._table = table
            return table

    @staticmethod
    def _years_for(lo: int, hi: int) -> tuple[int, int]:
        # Local years can differ from UTC years by up to a day either side.
        y_lo = (np.datetime64(int(lo) - _DAY, "s").astype("datetime64[Y]").astype(int)) + 1970
        y_hi = (np.datetime64(int(hi) + _DAY, "s").astype("datetime64[Y]").astype(int)) + 1970
        return int(y_lo), int(y_hi)

    # -- the two primitives every other form is built on --

    def open_seconds_before(self, t: np.ndarray | int, *, table: _Table | None = None) -> np.ndarray:
        """F(t): open seconds from the table's origin to each epoch second `t` (vectorised)."""
        t = np.asarray(t, dtype=np.int64)
        if table is None:
            if t.size == 0:
                return np.zeros(t.shape, np.int64)
            table = self._ensure(*self._years_for(t.min(), t.max()))
        i = np.searchsorted(table.starts, t, side="right") - 1
        ic = np.clip(i, 0, None)
        inside = (
            np.clip(t - table.starts[ic], 0, table.ends[ic] - table.starts[ic]) if len(table.starts) else 0
        )
        return (
            np.where(i >= 0, table.cum[ic] + inside, 0) if len(table.starts) else np.zeros(t.shape, np.int64)
        )

    def instant_at(self, f: np.ndarray, *, table: _Table) -> np.ndarray:
        """F^-1: the earliest epoch second at which F reaches `f` (f must be within the table)."""
        j = np.searchsorted(table.cum_end, f, side="left")
        return table.starts[j] + (f - table.cum[j])

    def elapsed_seconds(self, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Open seconds between epoch-second arrays (end >= start)."""
        start = np.asarray(start, dtype=np.int64)
        end = np.asarray(end, dtype=np.int64)
        if start.size == 0:
            return np.zeros(np.broadcast(start, end).shape, np.int64)
        if np.any(end < start):
            raise CalendarError("end is before start: elapsed business time needs start <= end")
        table = self._ensure(*self._years_for(min(start.min(), end.min()), max(start.max(), end.max())))
        return self.open_seconds_before(end, table=table) - self.open_seconds_before(start, table=table)

    def deadline_seconds(self, start: np.ndarray, duration: np.ndarray) -> np.ndarray:
        """Epoch second at which `duration` open seconds after `start` have passed (vectorised)."""
        start = np.asarray(start, dtype=np.int64)
        duration = np.asarray(duration, dtype=np.int64)
        start, duration = np.broadcast_arrays(start, duration)
        if start.size == 0:
            return np.zeros(start.shape, np.int64)
        if np.any(duration < 0):
            raise CalendarError("duration must not be negative")
        lo_year, hi_year = self._years_for(start.min(), start.max())
        # Grow the horizon a year at a time until every target falls inside it.
        for _ in range(MAX_YEAR):
            table = self._ensure(lo_year, hi_year)
            f = self.open_seconds_before(start, table=table) + duration
            if len(table.cum_end) and f.max() <= table.cum_end[-1]:
                break
            if hi_year >= MAX_YEAR:
                raise CalendarError(f"calendar {self.name!r}: the deadline falls after {MAX_YEAR}")
            hi_year = min(
                MAX_YEAR,
                hi_year
                + max(1, int(np.ceil((f.max() - table.cum_end[-1]) / max(1, self._open_per_year(table))))),
            )
        return np.maximum(self.instant_at(f, table=table), start)

    def _open_per_year(self, table: _Table) -> int:
        years = table.last_year - table.first_year + 1
        return int(table.cum_end[-1] // years) if len(table.cum_end) else 1

    def is_open(self, t: np.ndarray) -> np.ndarray:
        """True where epoch second `t` is inside opening hours."""
        t = np.asarray(t, dtype=np.int64)
        if t.size == 0:
            return np.zeros(t.shape, bool)
        table = self._ensure(*self._years_for(t.min(), t.max()))
        i = np.searchsorted(table.starts, t, side="right") - 1
        ic = np.clip(i, 0, None)
        return (i >= 0) & (t < table.ends[ic])

    # -- public scalar forms --

    def elapsed(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Open (business) time between two aware instants, to the second.

        Raises:
            CalendarError: a naive or non-datetime argument (named), or end before start.
        """
        s, e = to_epoch_seconds(start, "start"), to_epoch_seconds(end, "end")
        return dt.timedelta(seconds=int(self.elapsed_seconds(np.array([s]), np.array([e]))[0]))

    def deadline(self, start: dt.datetime, duration: dt.timedelta | str | int) -> dt.datetime:
        """The earliest aware UTC instant at which `duration` of open time has passed since `start`.

        A start outside hours counts from the next opening. `duration` may be a timedelta, seconds
        or text such as "4h".
        """
        s = to_epoch_seconds(start, "start")
        d = parse_duration(duration)
        return from_epoch_seconds(self.deadline_seconds(np.array([s]), np.array([d]))[0])

    # -- public vectorised forms --

    def elapsed_many(self, starts: Any, ends: Any) -> pd.Series:
        """Vectorised `elapsed`: aware datetimes in, a timedelta64[s] Series out (same answers)."""
        s = epoch_seconds_array(starts, "starts")
        e = epoch_seconds_array(ends, "ends")
        out = self.elapsed_seconds(s, e).astype("timedelta64[s]")
        index = starts.index if isinstance(starts, pd.Series) else None
        return pd.Series(out, index=index, name="elapsed")

    def deadline_many(self, starts: Any, durations: Any) -> pd.Series:
        """Vectorised `deadline`: aware datetimes and durations (seconds, timedeltas) in, aware UTC out."""
        s = epoch_seconds_array(starts, "starts")
        d = _durations_array(durations)
        out = self.deadline_seconds(s, d)
        index = starts.index if isinstance(starts, pd.Series) else None
        return pd.Series(pd.to_datetime(out, unit="s", utc=True), index=index, name="deadline")

    # -- reasoning for people --

    def explain_deadline(self, start: dt.datetime, duration: dt.timedelta | str | int) -> dict[str, Any]:
        """The deadline plus the closed spans skipped on the way, for the CLI.

        Returns:
            {"start", "deadline" (aware UTC), "duration_seconds", "open_seconds", "skipped": [
            {"from", "to" (local aware), "kind" (outside hours | closed day | weekend | holiday),
            "label", "seconds"}]}.
        """
        s = to_epoch_seconds(start, "start")
        d = parse_duration(duration)
        end = int(self.deadline_seconds(np.array([s]), np.array([d]))[0])
        table = self._ensure(*self._years_for(s, end))
        lo = np.searchsorted(table.ends, s, side="right")
        hi = np.searchsorted(table.starts, end, side="left")
        skipped: list[dict[str, Any]] = []
        cursor = s
        for i in range(lo, hi):
            if table.starts[i] > cursor:
                skipped.extend(self._describe_gap(cursor, int(table.starts[i])))
            cursor = max(cursor, int(table.ends[i]))
        return {
            "start": from_epoch_seconds(s),
            "deadline": from_epoch_seconds(end),
            "duration_seconds": d,
            "skipped": _merge_gaps(skipped),
        }

    def _describe_gap(self, lo: int, hi: int) -> list[dict[str, Any]]:
        """Split a closed span at local midnights and say why each piece was closed."""
        pieces = []
        cursor = lo
        while cursor < hi:
            local = from_epoch_seconds(cursor).astimezone(self._tz)
            next_midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), self._tz)
            piece_end = min(hi, to_epoch_seconds(next_midnight, "midnight"))
            day = local.date()
            name = self.holiday_name(day)
            if name:
                kind, label = "holiday", f"{name} ({day.isoformat()})"
            elif not self.hours[day.weekday()]:
                kind = "weekend" if day.weekday() >= 5 else "closed day"
                label = day.strftime("%A")
            else:
                kind, label = "outside hours", day.strftime("%a %Y-%m-%d")
            pieces.append({"from": cursor, "to": piece_end, "kind": kind, "label": label})
            cursor = piece_end
        return pieces

    def local(self, seconds: int) -> dt.datetime:
        return from_epoch_seconds(seconds).astimezone(self._tz)


def _merge_gaps(pieces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for p in pieces:
        if (
            merged
            and merged[-1]["to"] == p["from"]
            and merged[-1]["kind"] == p["kind"]
            and p["kind"] == "weekend"
        ):
            merged[-1]["to"] = p["to"]
            merged[-1]["label"] += f"-{p['label']}"
        elif (
            merged
            and merged[-1]["to"] == p["from"]
            and p["kind"] == "outside hours"
            and merged[-1]["kind"] == "outside hours"
        ):
            merged[-1]["to"] = p["to"]
            merged[-1]["label"] = "overnight"
        else:
            merged.append(dict(p))
    for p in merged:
        p["seconds"] = p["to"] - p["from"]
        p["from"] = from_epoch_seconds(p["from"])
        p["to"] = from_epoch_seconds(p["to"])
    return merged


def _durations_array(values: Any) -> np.ndarray:
    if isinstance(values, pd.Series | pd.Index | np.ndarray) and getattr(values, "dtype", None) is not None:
        dtype = values.dtype
        if getattr(dtype, "kind", "") == "m":
            return np.floor_divide(pd.TimedeltaIndex(values).as_unit("ns").asi8, 10**9)
        if getattr(dtype, "kind", "") in "iu":
            return np.asarray(values, dtype=np.int64)
    return np.array(
        [parse_duration(v, what=f"durations[{i}]") for i, v in enumerate(_iter(values))], dtype=np.int64
    )


def _iter(values: Any) -> Iterable[Any]:
    return list(values)


#: Bucket width (as a power of two) of the search accelerator: ~68 minutes of time or open time.
_BUCKET_BITS = 12
#: Forward steps tried from a bucket's hint before falling back to a binary search.
_MAX_STEPS = 16


def _bucket_bits(span: int) -> int:
    """Bucket width for a domain `span` seconds long: at least 2**12 s, at most ~32k buckets."""
    return max(_BUCKET_BITS, int(span >> 15).bit_length())


def _walk(keys: np.ndarray, q: np.ndarray, i: np.ndarray, side: str) -> np.ndarray:
    """Move each hint `i` forward to the exact `np.searchsorted(keys[:-1], q, side)` answer.

    `keys` ends with a sentinel larger than every query; each hint must be at or before its
    answer. Most hints are exact or one step short, so only the few that move are revisited;
    the rare query still short after `_MAX_STEPS` steps gets a binary search.
    """
    move = keys[i] <= q if side == "right" else keys[i] < q
    idx = np.flatnonzero(move)
    for _ in range(_MAX_STEPS):
        if not len(idx):
            return i
        i[idx] += 1
        sub = i[idx]
        idx = idx[keys[sub] <= q[idx] if side == "right" else keys[sub] < q[idx]]
    if len(idx):
        i[idx] = np.searchsorted(keys[:-1], q[idx], side=side)
    return i


class CalendarCodes:
    """Calendar codes prepared for repeated lookups in one `FusedTable` (the per-code offsets are
    computed once, not once per question)."""

    def __init__(self, table: FusedTable, codes: np.ndarray) -> None:
        self.table = table
        self.codes = np.asarray(codes).astype(np.int64, copy=False)
        self.offset = self.codes * CalendarSet._SHIFT
        self._time_base: np.ndarray | None = None
        self._open_base: np.ndarray | None = None
        self._total: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def time_base(self) -> np.ndarray:
        if self._time_base is None:
            self._time_base = self.codes * self.table._index["time_n"]
        return self._time_base

    @property
    def open_base(self) -> np.ndarray:
        if self._open_base is None:
            self._open_base = self.codes * self.table._index["open_n"]
        return self._open_base

    @property
    def total(self) -> np.ndarray:
        """Open seconds in the table of each code's calendar."""
        if self._total is None:
            self._total = self.table.total[self.codes]
        return self._total


@dataclass(frozen=True)
class FusedTable:
    """One immutable snapshot of a `CalendarSet`'s fused interval table (see there).

    Besides the fused arrays it keeps two bucket indexes (one over time, one over open seconds,
    per calendar), so finding an instant's interval or an open-seconds value's interval is a
    lookup plus a step or two forward instead of a binary search over the whole table: the
    engine asks millions of these questions per evaluation, in no particular order, and a binary
    search over unsorted queries is mostly branch mispredictions. The answers are exactly those
    of `np.searchsorted` (queries outside the indexed domain use it directly).
    """

    starts: np.ndarray
    ends: np.ndarray
    cum: np.ndarray
    cum_end: np.ndarray
    total: np.ndarray  # open seconds in the table, per calendar
    domain: tuple[int, int] = (0, 0)  # epoch seconds covered by the time index
    _index: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n_cals = len(self.total)
        shift = CalendarSet._SHIFT
        sentinel = np.array([np.iinfo(np.int64).max], np.int64)
        ix = self._index
        ix["starts"] = np.concatenate([self.starts, sentinel])
        ix["cum_end"] = np.concatenate([self.cum_end, sentinel])
        ix["lengths"] = self.ends - self.starts
        # Time index: bucket b of calendar c holds searchsorted(starts, c*SHIFT + t0 + b*width, right).
        t0, t1 = self.domain
        bits = _bucket_bits(t1 - t0)
        n_time = ((t1 - t0) >> bits) + 1
        edges = (np.arange(n_cals, dtype=np.int64)[:, None] * shift + t0) + (
            np.arange(n_time, dtype=np.int64) << bits
        )
        ix["time"] = (np.searchsorted(self.starts, edges.ravel(), side="right") - 1).astype(np.int64)
        ix["time_bits"], ix["time_n"] = bits, n_time
        # Open-seconds index: bucket b of calendar c holds searchsorted(cum_end, c*SHIFT + b*width, left).
        top = int(self.total.max()) if n_cals else 0
        bits_f = _bucket_bits(top)
        n_open = (top >> bits_f) + 1
        edges = np.arange(n_cals, dtype=np.int64)[:, None] * shift + (
            np.arange(n_open, dtype=np.int64) << bits_f
        )
        ix["open"] = np.searchsorted(self.cum_end, edges.ravel(), side="left").astype(np.int64)
        ix["open_bits"], ix["open_n"] = bits_f, n_open
        # Each calendar's first opening (unshifted; the largest int64 for a calendar with none).
        first = np.searchsorted(self.starts, np.arange(n_cals, dtype=np.int64) * shift)
        firsts = np.full(n_cals, np.iinfo(np.int64).max, np.int64)
        has = first < len(self.starts)
        has[has] = self.starts[first[has]] < (np.flatnonzero(has) + 1) * shift
        firsts[has] = self.starts[first[has]] - np.flatnonzero(has) * shift
        ix["first_start"] = firsts

    def covers_from(self, t: int) -> bool:
        """True if every calendar with openings in the table has one at or before instant `t` (so
        F(t) is read inside that calendar's own part of the table)."""
        firsts = self._index["first_start"]
        return bool(np.all((firsts <= t) | (firsts == np.iinfo(np.int64).max)))

    def prepare(self, codes: np.ndarray | CalendarCodes) -> CalendarCodes:
        """Codes ready for several lookups in this table."""
        if isinstance(codes, CalendarCodes) and codes.table is self:
            return codes
        return CalendarCodes(self, codes.codes if isinstance(codes, CalendarCodes) else codes)

    def interval(
        self, codes: np.ndarray | CalendarCodes, t: np.ndarray, q: np.ndarray | None = None
    ) -> np.ndarray:
        """Index of the last fused interval starting at or before each instant on its calendar
        (`np.searchsorted(starts, t + code * SHIFT, "right") - 1`); codes and t are 1-D, same
        length; `q` is `t + code * SHIFT` if the caller has it."""
        cc = self.prepare(codes)
        if q is None:
            q = t + cc.offset
        t0, t1 = self.domain
        ix = self._index
        if len(t) == 0 or t.min() < t0 or t.max() >= t1:
            return np.searchsorted(self.starts, q, side="right") - 1
        g = t - t0
        g >>= ix["time_bits"]
        g += cc.time_base
        i = ix["time"][g]
        i += 1  # walk over starts[i + 1] (the sentinel-padded array): i + 1 <= answer + 1
        return _walk(ix["starts"], q, i, "right") - 1

    def open_before(self, codes: np.ndarray | CalendarCodes, t: np.ndarray) -> np.ndarray:
        """F: open seconds before each instant on its calendar (1-D codes and t, same length)."""
        if not isinstance(codes, CalendarCodes) and (codes.ndim != 1 or codes.shape != t.shape):
            codes, t = np.broadcast_arrays(codes, t)
            return self.open_before(codes.ravel(), t.ravel()).reshape(t.shape)
        cc = self.prepare(codes)
        q = t + cc.offset
        i = self.interval(cc, t, q)
        # cum[i] + clip(q - starts[i], 0, length[i]) - offset, in place.
        q -= np.take(self.starts, i)
        np.clip(q, 0, np.take(self._index["lengths"], i), out=q)
        q += np.take(self.cum, i)
        q -= cc.offset
        return q

    def inverse(self, codes: np.ndarray | CalendarCodes, f: np.ndarray) -> np.ndarray:
        """F's inverse: the earliest instant at which calendar `codes` reaches `f` open seconds
        (1-D codes and f of the same length; f within the table, 0 <= f <= total)."""
        if not isinstance(codes, CalendarCodes) and (codes.ndim != 1 or codes.shape != f.shape):
            codes, f = np.broadcast_arrays(codes, f)
            return self.inverse(codes.ravel(), f.ravel()).reshape(f.shape)
        cc = self.prepare(codes)
        fq = f + cc.offset
        ix = self._index
        if len(f) == 0 or f.min() < 0 or (int(f.max()) >> ix["open_bits"]) >= ix["open_n"]:
            j = np.searchsorted(self.cum_end, fq, side="left")
        else:
            g = f >> ix["open_bits"]
            g += cc.open_base
            j = _walk(ix["cum_end"], fq, ix["open"][g], "left")
        # starts[j] + (fq - cum[j]) - offset, in place: fresh temporaries cost page faults.
        fq -= np.take(self.cum, j)
        fq += np.take(self.starts, j)
        fq -= cc.offset
        return fq

    def is_open(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """True where each instant is inside its calendar's hours."""
        cc = self.prepare(codes)
        q = t + cc.offset
        return q < np.take(self.ends, self.interval(cc, t, q))


class CalendarSet:
    """Several calendars fused into one interval table, so one lookup answers for every
    (calendar, instant) pair at once - the engine's hot path.

    Calendar ``c``'s intervals are stored shifted by ``c * 2**36`` seconds and its cumulative open
    seconds by ``c * 2**36``, so the calendars occupy disjoint, sorted ranges of one array. The
    per-calendar year tables are the very ones the scalar API uses, so answers cannot differ.
    """

    _SHIFT = np.int64(1 << 36)  # > every epoch second up to MAX_YEAR and every open-seconds total

    def __init__(self, calendars: Iterable[BusinessCalendar]) -> None:
        self.calendars = list(calendars)
        self._years: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.table: FusedTable | None = None

    def _build(self, first_year: int, last_year: int) -> None:
        tables = [cal._ensure(first_year, last_year) for cal in self.calendars]
        shift = [np.int64(i) * self._SHIFT for i in range(len(tables))]
        years = (
            max(first_year, max(t.first_year for t in tables)),
            min(last_year, min(t.last_year for t in tables)),
        )
        # Instants of the local years first..last all lie within a day of their UTC years.
        domain = (
            int(np.datetime64(f"{years[0]:04d}-01-01", "s").astype(np.int64)) - 2 * _DAY,
            int(np.datetime64(f"{years[1] + 1:04d}-01-01", "s").astype(np.int64)) + 2 * _DAY,
        )
        # One object assigned at once: a thread holding the previous snapshot keeps a consistent
        # table (F values are relative to a table's first year, so tables must never be mixed).
        self.table = FusedTable(
            np.concatenate([t.starts + s for t, s in zip(tables, shift, strict=True)]),
            np.concatenate([t.ends + s for t, s in zip(tables, shift, strict=True)]),
            np.concatenate([t.cum + s for t, s in zip(tables, shift, strict=True)]),
            np.concatenate([t.cum_end + s for t, s in zip(tables, shift, strict=True)]),
            np.array([t.cum_end[-1] if len(t.cum_end) else 0 for t in tables], np.int64),
            domain,
        )
        self._years = years

    def _ensure_locked(self, lo: int, hi: int, extra_years: int) -> FusedTable:
        first, last = BusinessCalendar._years_for(lo, hi)
        first, last = max(MIN_YEAR, first), min(MAX_YEAR, last + extra_years)
        while True:
            if self._years is None or not (self._years[0] <= first and last <= self._years[1]):
                if self._years is not None:
                    first, last = min(first, self._years[0]), max(last, self._years[1])
                self._build(first, last)
            # A year can open days after it starts (New Year, a weekend): reach back a year until
            # every calendar has an opening at or before `lo`.
            if self.table.covers_from(int(lo)) or self._years[0] <= MIN_YEAR:
                return self.table
            first = self._years[0] - 1

    @property
    def max_year(self) -> int | None:
        return None if self._years is None else self._years[1]

    def prepare(self, lo: int, hi: int, extra_years: int = 1) -> FusedTable:
        """Make the table cover instants lo..hi plus `extra_years` (for projections past hi).

        Returns:
            The table as it now is: use this one snapshot for every F value and its inverse.
        """
        with self._lock:
            return self._ensure_locked(lo, hi, extra_years)

    def elapsed(self, codes: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
        """Open seconds between `start` and `end` (epoch seconds) on calendar `codes[i]`."""
        if len(codes) == 0:
            return np.zeros(0, np.int64)
        table = self.prepare(min(start.min(), end.min()), max(start.max(), end.max()), 0)
        return table.open_before(codes, end) - table.open_before(codes, start)

    def advance(self, codes: np.ndarray, start: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """The deadline: earliest epoch second at which `seconds` open seconds follow `start`."""
        if len(codes) == 0:
            return np.zeros(0, np.int64)
        extra = 0
        while True:
            table = self.prepare(start.min(), start.max(), extra)
            f = table.open_before(codes, start) + seconds
            if np.all(f <= table.total[codes]):
                break
            if self._years[1] >= MAX_YEAR:
                raise CalendarError(f"a deadline falls after {MAX_YEAR}")
            extra = extra * 2 + 1
        return np.maximum(table.inverse(codes, f), start)

    def is_open(self, codes: np.ndarray, t: np.ndarray) -> np.ndarray:
        if len(codes) == 0:
            return np.zeros(0, bool)
        return self.prepare(t.min(), t.max(), 0).is_open(codes, t)
