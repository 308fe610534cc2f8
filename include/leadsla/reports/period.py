"""Report periods: a week, month or quarter in leadership's timezone, as a half-open UTC range.

Parsing is strict ("2026-W46", "2026-11", "2026-Q4"); the default is the last *full* period before
the run's time, so a scheduled run and a later re-run of the same period see the same range.
Never reads the wall clock: the caller passes the run's time.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from leadsla.errors import LeadSlaError

KINDS = ("week", "month", "quarter")
#: The years a report can cover (nothing in a CRM predates 1970; the date arithmetic stays far from
#: Python's year 1 and 9999).
FIRST_YEAR, LAST_YEAR = 1970, 2199


class PeriodError(LeadSlaError):
    """A period string that does not name a week, month or quarter."""


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC; `label` is what a reader sees ("2026-W46", "2026-11", "2026-Q4").

    `partial`: the period was not over at the run's time and `end` is that time (see `to_date`).
    """

    kind: str
    label: str
    start: dt.datetime
    end: dt.datetime
    timezone: str
    partial: bool = False

    @property
    def title(self) -> str:
        """The label, marked when the period is not over ("2026-W48 to 25 Nov 14:00")."""
        if not self.partial:
            return self.label
        return f"{self.label} to {self.end.astimezone(ZoneInfo(self.timezone)):%d %b %H:%M}"

    def to_date(self, at: dt.datetime) -> Period:
        """This period cut at the run's time `at` when it is not over yet (itself otherwise), so a
        report of the current week/month/quarter covers what has happened so far and says so.

        Raises:
            PeriodError: `at` is naive or before the period starts.
        """
        if at.tzinfo is None:
            raise PeriodError(f"run time {at.isoformat()} is naive: give it a timezone")
        if at >= self.end:
            return self
        if at <= self.start:
            raise PeriodError(
                f"period {self.label} has not started at {at.isoformat()}: pick a past or current one"
            )
        # To the minute: a readable title, and the same report for two requests in the same minute.
        cut = max(at.astimezone(dt.UTC).replace(second=0, microsecond=0), self.start)
        return Period(self.kind, self.label, self.start, cut, self.timezone, partial=True)

    def previous(self) -> Period:
        """The period of the same kind just before this one."""
        local = self.start.astimezone(ZoneInfo(self.timezone)) - dt.timedelta(days=1)
        return period_containing(self.kind, local.date(), self.timezone)

    def contains(self, when: dt.datetime) -> bool:
        return self.start <= when < self.end


def _local_midnight(day: dt.date, tz: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), ZoneInfo(tz)).astimezone(dt.UTC)


def _local_day(at: dt.datetime, tz: str) -> dt.date:
    try:
        return at.astimezone(ZoneInfo(tz)).date()
    except OverflowError:
        raise PeriodError(
            f"run time {at.isoformat()} is outside the years reports cover ({FIRST_YEAR} to {LAST_YEAR})"
        ) from None


def period_containing(kind: str, day: dt.date, tz: str) -> Period:
    """The period of `kind` that the local `day` falls in.

    Raises:
        PeriodError: an unknown kind, or a day outside FIRST_YEAR..LAST_YEAR.
    """
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise PeriodError(
            f"{day.isoformat()} is outside the years reports cover ({FIRST_YEAR} to {LAST_YEAR})"
        )
    if kind == "week":
        first = day - dt.timedelta(days=day.weekday())
        after = first + dt.timedelta(days=7)
        iso = first.isocalendar()
        label = f"{iso.year}-W{iso.week:02d}"
    elif kind == "month":
        first = day.replace(day=1)
        after = (first + dt.timedelta(days=32)).replace(day=1)
        label = f"{first.year}-{first.month:02d}"
    elif kind == "quarter":
        q = (day.month - 1) // 3
        first = dt.date(day.year, 3 * q + 1, 1)
        after = dt.date(day.year + (q == 3), (3 * q + 3) % 12 + 1, 1)
        label = f"{first.year}-Q{q + 1}"
    else:
        raise PeriodError(f"unknown period kind {kind!r}: expected one of {', '.join(KINDS)}")
    return Period(kind, label, _local_midnight(first, tz), _local_midnight(after, tz), tz)


def containing(kind: str, at: dt.datetime, tz: str) -> Period:
    """The period of `kind` that `at` falls in (the current one, for the run's time)."""
    if at.tzinfo is None:
        raise PeriodError(f"run time {at.isoformat()} is naive: give it a timezone")
    return period_containing(kind, _local_day(at, tz), tz)


def last_full(kind: str, at: dt.datetime, tz: str) -> Period:
    """The last complete period of `kind` ending at or before `at` (the run's time)."""
    if at.tzinfo is None:
        raise PeriodError(f"run time {at.isoformat()} is naive: give it a timezone")
    today = _local_day(at, tz)
    current = period_containing(kind, today, tz)
    return current.previous()


_PATTERNS = {
    "week": re.compile(r"^(\d{4})-W(\d{2})$"),
    "month": re.compile(r"^(\d{4})-(\d{2})$"),
    "quarter": re.compile(r"^(\d{4})-Q([1-4])$"),
}


def parse(kind: str, text: str, tz: str) -> Period:
    """A period from its label.

    Raises:
        PeriodError: the text is not a label of that kind (the message shows the expected form).
    """
    m = _PATTERNS.get(kind, re.compile("$^")).match(text.strip())
    example = {"week": "2026-W46", "month": "2026-11", "quarter": "2026-Q4"}.get(kind, "?")
    if not m:
        raise PeriodError(f"period {text!r} is not a {kind}: expected e.g. {example}")
    year, n = int(m.group(1)), int(m.group(2))
    try:
        if kind == "week":
            day = dt.date.fromisocalendar(year, n, 1)
        elif kind == "month":
            day = dt.date(year, n, 1)
        else:
            day = dt.date(year, 3 * (n - 1) + 1, 1)
    except ValueError as exc:
        raise PeriodError(f"period {text!r} does not exist: {exc}") from None
    return period_containing(kind, day, tz)
