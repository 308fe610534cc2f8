"""A stored open clock holds its moving columns as of its evaluation (`engine.as_of` projects them)
and changes in anything else only at `engine.next_changes`: checked against the engine itself, by
evaluating the same timelines again just before and at each open clock's next change."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from leadsla.engine import (
    CLOCK_COLUMNS,
    COLOURS,
    MOVING_COLUMNS,
    _yellow_elapsed,
    as_of,
    evaluate,
    next_changes,
)
from leadsla.policy import load_policy
from tests.unit.test_engine import USERS, change, lead, utc

#: Columns that must hold until the next change (the moving ones are projected; `evaluated_at` is
#: the evaluation's own instant).
STILL = [c for c in CLOCK_COLUMNS if c not in (*MOVING_COLUMNS, "evaluated_at")]
SECOND = dt.timedelta(seconds=1)
#: Leads accepted across a working week (us_east: Mon-Fri 09:00-17:00 New York): breached, about to
#: turn yellow, fresh, accepted after hours, and one whose owner works on Sydney's calendar.
RECORDS = pd.DataFrame(
    [lead("L1"), lead("L2"), lead("L3"), lead("L4"), lead("L5", owner="U_APAC", country="AU")]
)
HISTORY = pd.DataFrame(
    [
        change("L1", "2026-11-20 14:00", "Status", "MQL", "SAL"),
        change("L2", "2026-11-23 09:00", "Status", "MQL", "SAL"),
        change("L3", "2026-11-23 10:15", "Status", "MQL", "SAL"),
        change("L4", "2026-11-22 20:00", "Status", "MQL", "SAL"),
        change("L5", "2026-11-23 08:00", "Status", "MQL", "SAL"),
    ]
)
ACTIVITIES = pd.DataFrame(
    columns=["activity_id", "kind", "who_id", "what_id", "owner_id", "type", "subtype", "created_at"]
).astype({"created_at": "datetime64[s, UTC]"})


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def clocks_at(policy, now: dt.datetime) -> pd.DataFrame:
    ev = evaluate(
        records=RECORDS, field_history=HISTORY, activities=ACTIVITIES, users=USERS, policy=policy, now=now
    )
    return ev.clocks.sort_values(["sla_id", "record_id", "clock_start"]).reset_index(drop=True)


def values(frame: pd.DataFrame, columns: list[str]) -> list[list]:
    return frame[columns].astype(object).where(frame[columns].notna(), None).values.tolist()


@pytest.mark.parametrize(
    "now",
    ["2026-11-23 10:30", "2026-11-23 11:30", "2026-11-23 12:30", "2026-11-23 17:30", "2026-11-21 12:00"],
)
def test_an_open_clock_changes_only_in_its_moving_columns_until_its_next_change(policy, now) -> None:
    now = utc(now)
    base = clocks_at(policy, now)
    changes = next_changes(base, policy, now)
    due = (base["state"].astype(str).isin(["running", "breached", "paused"]) & changes.notna()).to_numpy()
    assert due.any()
    for i in np.flatnonzero(due):
        t = changes.iloc[i].to_pydatetime()
        assert t >= now
        row = base.iloc[[i]].reset_index(drop=True)
        before, at_t = clocks_at(policy, t - SECOND).iloc[[i]], clocks_at(policy, t).iloc[[i]]
        if t > now:  # just before: the same row, its moving columns where `as_of` projects them
            assert values(before, STILL) == values(row, STILL), (row, t)
            projected = as_of(row, policy, t - SECOND)
            assert values(projected, list(MOVING_COLUMNS)) == values(before, list(MOVING_COLUMNS))
        if row["state"].iloc[0] != "paused":  # at it: something else changed (a paused clock's projection)
            assert values(at_t, STILL) != values(row, STILL), (row, t)


def test_as_of_projects_across_closed_hours_and_leaves_ended_and_paused_clocks(policy) -> None:
    friday = utc("2026-11-20 16:00")
    monday = utc("2026-11-23 09:20")
    kept = as_of(clocks_at(policy, friday), policy, monday)
    fresh = clocks_at(policy, monday)
    shared = kept["record_id"].isin(fresh["record_id"])
    mine = fresh[fresh["record_id"].isin(kept["record_id"])]
    assert values(kept[shared], list(MOVING_COLUMNS)) == values(mine, list(MOVING_COLUMNS))


def test_the_yellow_threshold_is_the_engines_rounding_exactly() -> None:
    targets = np.array([1, 3, 7, 60, 999, 3600, 14_400, 86_399, 2_592_000, 31_536_001], np.int64)
    e = _yellow_elapsed(targets)
    percent = lambda x: np.round(x / targets * 100.0, 2)  # noqa: E731  (the engine's `_colours` input)
    assert (percent(e) >= 75).all() and (percent(e - 1) < 75).all()
    assert COLOURS[1] == "yellow"
