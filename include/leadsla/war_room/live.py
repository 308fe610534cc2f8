"""An open clock's moving figures as the War Room shows them: as of the monitor's latest run.

A stored open clock holds its elapsed time, remaining time and percent as of its own
`evaluated_at` (`engine.as_of`): the incremental monitor re-evaluates it only when something else
about it can change (a checkpoint, its colour, the breach). The page shows them as of the latest
monitor run (`evaluations`), as it did when every run re-evaluated every open clock: the same
numbers, whichever run last re-evaluated the row.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadsla.engine import MOVING_COLUMNS, as_of
from leadsla.errors import LeadSlaError
from leadsla.policy import Policy
from leadsla.store import schema
from leadsla.store.clocks import last_run_at

#: The columns `engine.as_of` reads besides the moving ones.
PROJECTION_COLUMNS = ("state", "calendar", "target_seconds", "evaluated_at", *MOVING_COLUMNS)
#: Open clocks whose elapsed time grows with their calendar's open hours.
ADVANCING = ("running", "breached")


def latest_run(conn: sa.Connection, now: dt.datetime) -> dt.datetime | None:
    """The `now` of the monitor's latest run (at most `now`), or None before the first."""
    return last_run_at(conn, now)


def project(frame: pd.DataFrame, policy: Policy | None, at: dt.datetime | None) -> pd.DataFrame:
    """`frame` (with `PROJECTION_COLUMNS`) with its moving columns at `at`; as stored without a
    policy or a run to project to."""
    if policy is None or at is None or frame.empty:
        return frame
    frame = frame.copy()
    frame["evaluated_at"] = pd.to_datetime(frame["evaluated_at"], utc=True, format="ISO8601")
    return as_of(frame, policy, at)


def lag_seconds(conn: sa.Connection, policy: Policy, at: dt.datetime, conditions: list) -> int:
    """The most open seconds any running or breached clock meeting `conditions` has advanced since
    its evaluation, per its calendar, up to `at`: a stored remaining time exceeds the live one by
    at most this. A calendar the policy lacks is not projected (`engine.as_of`): 0."""
    clocks = schema.clocks
    oldest = conn.execute(
        sa.select(clocks.c.calendar, sa.func.min(clocks.c.evaluated_at))
        .where(clocks.c.state.in_(ADVANCING), *conditions)
        .group_by(clocks.c.calendar)
    ).all()
    at_s = int(at.timestamp())
    lag = 0
    for name, since in oldest:
        if since is None or since >= at:
            continue
        try:
            calendar = policy.calendar(str(name))
        except LeadSlaError:
            continue
        lag = max(lag, int(calendar.elapsed_seconds(np.array([int(since.timestamp())]), np.array([at_s]))[0]))
    return lag
