"""The War Room's filters: the handoff (an SLA of the policy; default the reports' SLA), date range
(default the last 30 days), lead source, owner and team.

Parsed from query-string values into a validated `Filters`; a bad value is a `FilterError` naming
the parameter and what was expected (the page answers 400). A range is at most `MAX_RANGE_DAYS`
long and lies within `EARLIEST_DAY`..`LATEST_DAY`: an unbounded one built a statement of one CASE
branch per week (444 kB for year 1 to 9999) or overflowed the date arithmetic (a 500). Never reads
the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from leadsla.errors import LeadSlaError
from leadsla.reports.period import Period

DEFAULT_DAYS = 30
#: The longest range the page computes, in days (two years: a quarter-on-quarter or year-on-year look).
MAX_RANGE_DAYS = 731
#: The dates a range may name: nothing in a CRM predates the epoch, and the page's arithmetic
#: (local midnights, week labels) stays far inside what Python and pandas can represent.
EARLIEST_DAY = dt.date(1970, 1, 1)
LATEST_DAY = dt.date(2199, 12, 31)


class FilterError(LeadSlaError):
    """A War Room filter value that cannot be used."""


@dataclass(frozen=True)
class Filters:
    """Dates are local days in `timezone`, both inclusive; empty strings mean "any"; `sla` is the
    handoff whose panels the page shows (its SLA id; part of every link and of the range cache's
    key)."""

    start: dt.date
    end: dt.date
    timezone: str
    lead_source: str = ""
    owner: str = ""  # user id
    team: str = ""
    sla: str = ""

    @property
    def period(self) -> Period:
        """The range as a half-open UTC `Period` (local midnight of start to the day after end)."""
        zone = ZoneInfo(self.timezone)
        start = dt.datetime.combine(self.start, dt.time(), zone).astimezone(dt.UTC)
        end = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
        return Period("range", f"{self.start.isoformat()}..{self.end.isoformat()}", start, end, self.timezone)

    def query(self, **extra: str) -> str:
        """The filters (plus `extra`) as a query string, for links that keep them."""
        params = {
            "sla": self.sla,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "lead_source": self.lead_source,
            "owner": self.owner,
            "team": self.team,
            **extra,
        }
        return urlencode({name: value for name, value in params.items() if value})


def _date(name: str, value: str | None) -> dt.date | None:
    """The date in `value` (YYYY-MM-DD), None when empty; `name` is the filter's, for the error."""
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise FilterError(f"filter {name}={value!r} is not a date: expected YYYY-MM-DD") from None
    return _within_bounds(name, day)


def _within_bounds(name: str, day: dt.date) -> dt.date:
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise FilterError(
            f"filter {name}={day.isoformat()!r} is outside the dates the War Room shows: expected a day "
            f"from {EARLIEST_DAY} to {LATEST_DAY}"
        )
    return day


def parse_filters(
    now: dt.datetime,
    timezone: str,
    *,
    start: str | None = None,
    end: str | None = None,
    lead_source: str | None = None,
    owner: str | None = None,
    team: str | None = None,
    sla: str | None = None,
    slas: Collection[str] = (),
    default_sla: str = "",
    max_days: int = MAX_RANGE_DAYS,
) -> Filters:
    """Filters from query values; the range defaults to the 30 days ending today (in `timezone`),
    the handoff to `default_sla`.

    Raises:
        FilterError: a date is malformed or outside `EARLIEST_DAY`..`LATEST_DAY`, the range ends
            before it starts, or it is longer than `max_days`; `sla` is none of `slas` (the
            policy's SLA ids; empty: any value is kept).
    """
    handoff = (sla or "").strip() or default_sla
    if slas and handoff not in slas:
        raise FilterError(
            f"filter sla={handoff!r} is not an SLA of the policy: expected one of {', '.join(slas)}"
        )
    today = now.astimezone(ZoneInfo(timezone)).date()
    last_day = _date("end", end) or today
    first_day = _date("start", start) or max(last_day - dt.timedelta(days=DEFAULT_DAYS - 1), EARLIEST_DAY)
    if last_day < first_day:
        raise FilterError(f"date range {first_day} to {last_day} ends before it starts")
    days = (last_day - first_day).days + 1
    if days > max_days:
        raise FilterError(
            f"date range {first_day} to {last_day} spans {days} days: the War Room shows at most "
            f"{max_days} days at a time; choose a later start or an earlier end"
        )
    return Filters(
        first_day,
        last_day,
        timezone,
        (lead_source or "").strip(),
        (owner or "").strip(),
        (team or "").strip(),
        handoff,
    )
