"""`store.clocks.current_clocks`: the stored current clocks the incremental monitor's decisions
read - every open clock, those breached since the breach window's start and those started since
the capacity window's start (of the given SLAs) - each once, with its instants exactly as stored,
on both backends."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from leadsla.engine import CLOCK_COLUMNS
from leadsla.store import schema
from leadsla.store.clocks import current_clocks

NOW = dt.datetime(2026, 3, 9, 16, 0, 0, tzinfo=dt.UTC)
BREACHED_SINCE = NOW - dt.timedelta(days=9)
STARTED_SINCE = NOW - dt.timedelta(days=2)
INSTANTS = ["clock_start", "deadline", "stopped_at", "breached_at", "next_checkpoint_at", "evaluated_at"]


def _clock(n: int, state: str, *, started: dt.timedelta, breached: dt.timedelta | None, **extra) -> dict:
    start = NOW - started
    return {
        "sla_id": extra.pop("sla_id", "sales_touch"),
        "record_id": f"00Q{n:015d}",
        "clock_start": start,
        "object_type": "Lead",
        "policy_version": "v1",
        "tier": "standard",
        "calendar": "us_east",
        "target_seconds": 14400,
        "owner_id": "005000000000000001",
        "team": None,
        "accountable_owner_id": "005000000000000002",
        "accountable_team": None,
        "state": state,
        "elapsed_seconds": 100 + n,
        "remaining_seconds": 14300 - n,
        "percent_elapsed": round((100 + n) / 144, 2),
        "colour": "green",
        # Microseconds, whole seconds and none: each instant must come back exactly.
        "deadline": start + dt.timedelta(hours=4, microseconds=n),
        "stopped_at": None if state in ("running", "paused", "breached") else start + dt.timedelta(hours=1),
        "breached_at": None if breached is None else NOW - breached,
        "critical": n % 2 == 0,
        "next_checkpoint": "warn_50",
        "next_checkpoint_at": start + dt.timedelta(hours=2, microseconds=123456),
        "evaluated_at": NOW - dt.timedelta(minutes=n),
        "stale_since": None,
        **extra,
    }


CLOCKS = [
    # open: always read, whenever started, breached or not
    _clock(1, "running", started=dt.timedelta(hours=1), breached=None),
    _clock(2, "breached", started=dt.timedelta(days=30), breached=dt.timedelta(days=20)),
    _clock(3, "paused", started=dt.timedelta(days=5), breached=None, sla_id="mql_to_sal"),
    _clock(4, "breached", started=dt.timedelta(hours=30), breached=dt.timedelta(hours=2)),
    # ended and breached within the window, started long ago or recently
    _clock(5, "met_late", started=dt.timedelta(days=6), breached=dt.timedelta(days=5)),
    _clock(6, "met_late", started=dt.timedelta(hours=10), breached=dt.timedelta(hours=5)),
    # ended, started within the capacity window, never breached
    _clock(7, "met", started=dt.timedelta(hours=20), breached=None),
    _clock(8, "met", started=dt.timedelta(hours=20), breached=None, sla_id="mql_to_sal"),  # not asked
    # ended, neither recent nor breached within the window: not read
    _clock(9, "met", started=dt.timedelta(days=3), breached=None),
    _clock(10, "met_late", started=dt.timedelta(days=40), breached=dt.timedelta(days=30)),
    # stale: never read
    _clock(11, "running", started=dt.timedelta(hours=1), breached=None, stale_since=NOW),
]


def test_every_clock_a_decision_can_read_comes_back_once_with_its_stored_values(store) -> None:
    with store.begin() as conn:
        conn.execute(schema.clocks.insert(), CLOCKS)
    with store.connect() as conn:
        frame = current_clocks(
            conn, started_since=STARTED_SINCE, breached_since=BREACHED_SINCE, sla_ids=["sales_touch"]
        )
    assert list(frame.columns) == CLOCK_COLUMNS
    assert sorted(frame["record_id"]) == [f"00Q{n:015d}" for n in (1, 2, 3, 4, 5, 6, 7)]
    by_id = {r["record_id"]: r for r in frame.to_dict("records")}
    for stored in CLOCKS[:7]:
        row = by_id[stored["record_id"]]
        for col in CLOCK_COLUMNS:
            want, got = stored[col], row[col]
            if col in INSTANTS:
                assert pd.isna(got) if want is None else got == pd.Timestamp(want), (col, want, got)
            else:
                assert got == want or (want is None and pd.isna(got)), (col, want, got)
                # The type too: a boolean read as 0/1, or a number as text, would compare equal above.
                assert want is None or type(got) is type(want), (col, want, got)
    for col in INSTANTS:
        assert isinstance(frame[col].dtype, pd.DatetimeTZDtype) and str(frame[col].dt.tz) == "UTC"


def test_no_clock_is_read_when_none_is_current(store) -> None:
    with store.begin() as conn:
        conn.execute(schema.clocks.insert(), CLOCKS[-1:])
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.clocks)).scalar_one() == 1
    with store.connect() as conn:
        frame = current_clocks(
            conn, started_since=STARTED_SINCE, breached_since=BREACHED_SINCE, sla_ids=["sales_touch"]
        )
    assert frame.empty and list(frame.columns) == CLOCK_COLUMNS
