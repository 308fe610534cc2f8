"""Deployment tuning read from the environment (``LEADSLA_*`` variables): how long a try delivers,
how far ahead the monitor plans, when a full evaluation is sharded. Unset or blank means the
default; a value out of range is one clear error naming the variable, its value and what it takes.
"""

from __future__ import annotations

import datetime as dt
import os

from leadsla.errors import LeadSlaError


def seconds_from_env(
    name: str, default: dt.timedelta, *, low: float, high: float, why: str = ""
) -> dt.timedelta:
    """`name` as a number of seconds from `low` to `high`, or `default` when unset.

    Raises:
        LeadSlaError: the variable is set but is not a number of seconds in range (`why` says
            where the range comes from).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not low <= seconds <= high:  # NaN is never in range
        raise LeadSlaError(f"{name}={raw!r}: expected seconds from {low:g} to {high:g}{why}")
    return dt.timedelta(seconds=seconds)


def count_from_env(name: str, default: int, *, of: str) -> int:
    """`name` as a whole number of at least 1 (`of`: what it counts), or `default` when unset.

    Raises:
        LeadSlaError: the variable is set but is not a whole number of at least 1.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise LeadSlaError(f"{name}={raw!r}: expected a whole number of {of}, at least 1")
    return int(raw)
