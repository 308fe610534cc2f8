"""A full evaluation in shards (`tasks.monitor.plan_shards` / `run_shard` / `run_merge`) against one
process's full evaluation, on both store backends: the demo org's day, reconciled in shards, leaves
the same clock rows, outbox rows, audit entries and handled checkpoints as unsharded; a retried
shard and a retried merge double nothing; a missing shard fails the merge before anything is
written; the mirror read in ranges of record ids gives every record once."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from leadsla.errors import LeadSlaError
from leadsla.store import open_store, schema
from leadsla.store.connection import read_only
from leadsla.store.mirror import key_ranges, load_frames
from leadsla.tasks.monitor import plan_shards, run_merge, run_monitor, run_shard
from tests.integration.test_incremental_monitor import (  # noqa: F401  (demo_mirror: the fixture)
    DAY_END,
    URL,
    ctx,
    demo_mirror,
    land,
    second_url,
    snapshot,
)

#: The day's first run (a full evaluation of what had landed), and the reconcile, hours later.
FIRST = DAY_END - dt.timedelta(hours=6)
RECONCILE = DAY_END


def _rows(frame: pd.DataFrame) -> list[tuple]:
    """A frame's rows as comparable text (a missing value as one marker, whatever its dtype)."""
    plain = frame.astype(object)
    return [tuple(r) for r in plain.where(plain.notna(), "-").astype(str).itertuples(index=False)]


def _staged(engine: sa.Engine) -> list[tuple]:
    t = schema.evaluation_shards
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(t.c.run_id, t.c.shard, t.c.shards)))


@pytest.fixture
def two_stores(store, second_url, demo_mirror):  # noqa: F811
    """Two stores with the demo day landed up to `FIRST`, evaluated then, and the rest landed."""
    rows, policy = demo_mirror
    other = open_store(second_url)
    land([store, other], rows, None, FIRST)
    for engine in (store, other):
        run_monitor(engine, FIRST, ctx("first"), policy=policy, url=URL)
    land([store, other], rows, FIRST, RECONCILE)
    yield store, other, policy
    other.dispose()


def test_a_sharded_reconcile_leaves_what_one_process_leaves(two_stores) -> None:
    whole, sharded, policy = two_stores
    expected = run_monitor(whole, RECONCILE, ctx("reconcile"), policy=policy, url=URL, mode="full")
    plan = plan_shards(sharded, RECONCILE, ctx("reconcile"), policy=policy, mode="full", shard_above=1)
    assert len(plan) >= 2
    assert {p["shards"] for p in plan} == {len(plan)} and [p["shard"] for p in plan] == list(range(len(plan)))
    for shard in plan:
        run_shard(sharded, RECONCILE, ctx("reconcile"), shard, policy=policy)
    assert _staged(sharded) == [("reconcile", i, len(plan)) for i in range(len(plan))]
    got = run_merge(sharded, RECONCILE, ctx("reconcile"), plan, policy=policy, url=URL)
    assert got.pop("shards") == len(plan)
    assert got == expected
    assert got["due"] + got["superseded"] + got["clocks_written"] > 0  # the reconcile decided things
    assert snapshot(sharded, policy, RECONCILE) == snapshot(whole, policy, RECONCILE)

    # A retried (or doubled) shard replaces its part; a retried merge decides from the same parts:
    # every write is keyed, so nothing is queued, audited or handled twice.
    run_shard(sharded, RECONCILE, ctx("reconcile"), plan[0], policy=policy)
    again = run_merge(sharded, RECONCILE, ctx("reconcile"), plan, policy=policy, url=URL)
    assert again["queued"] == again["clock_events"] == 0
    assert snapshot(sharded, policy, RECONCILE) == snapshot(whole, policy, RECONCILE)

    # The next sharded run clears this run's parts when it writes.
    later = RECONCILE + dt.timedelta(minutes=1)
    nxt = plan_shards(sharded, later, ctx("next"), policy=policy, mode="full", shard_above=1)
    for shard in nxt:
        run_shard(sharded, later, ctx("next"), shard, policy=policy)
    run_merge(sharded, later, ctx("next"), nxt, policy=policy, url=URL)
    assert {r[0] for r in _staged(sharded)} == {"next"}


def test_a_missing_shard_fails_the_merge_before_anything_is_written(two_stores) -> None:
    _, sharded, policy = two_stores
    plan = plan_shards(sharded, RECONCILE, ctx("r"), policy=policy, mode="full", shard_above=1)
    for shard in plan[1:]:
        run_shard(sharded, RECONCILE, ctx("r"), shard, policy=policy)
    before = snapshot(sharded, policy, RECONCILE)
    with pytest.raises(LeadSlaError, match=r"lacks shard\(s\) \[0\]"):
        run_merge(sharded, RECONCILE, ctx("r"), plan, policy=policy, url=URL)
    # A part staged by another run (or at another instant) is not this run's.
    run_shard(sharded, RECONCILE, ctx("other"), plan[0], policy=policy)
    with pytest.raises(LeadSlaError, match=r"lacks shard\(s\) \[0\]"):
        run_merge(sharded, RECONCILE, ctx("r"), plan, policy=policy, url=URL)
    assert snapshot(sharded, policy, RECONCILE) == before


def test_no_shards_below_the_threshold_or_on_an_incremental_run(two_stores) -> None:
    _, sharded, policy = two_stores
    assert plan_shards(sharded, RECONCILE, ctx("r"), policy=policy, mode="full", shard_above=10**6) == []
    assert plan_shards(sharded, RECONCILE, ctx("r"), policy=policy, mode="incremental", shard_above=1) == []


def test_a_shard_refuses_a_policy_it_was_not_planned_under(two_stores) -> None:
    _, sharded, policy = two_stores
    plan = plan_shards(sharded, RECONCILE, ctx("r"), policy=policy, mode="full", shard_above=1)
    changed = policy.model_copy(update={"version": f"{policy.version}-changed"})
    with pytest.raises(LeadSlaError, match="policy changed after its shards were planned"):
        run_shard(sharded, RECONCILE, ctx("r"), plan[0], policy=changed)
    assert _staged(sharded) == []


def test_ranges_of_record_ids_read_every_record_once(two_stores) -> None:
    whole, _, _ = two_stores
    with read_only(whole) as conn:
        everything = load_frames(conn, tables=["records", "field_history", "activities"])
        ranges = key_ranges(conn, 7)
        parts = [
            load_frames(conn, tables=["records", "field_history", "activities"], within=r) for r in ranges
        ]
    assert len(ranges) > 1
    for name in ("records", "field_history"):  # each row once
        assert sorted(r for p in parts for r in _rows(p[name])) == sorted(_rows(everything[name]))
    # An activity on a Lead and an Opportunity in two ranges is read by both: the engine sees it
    # with each record, as a list of ids read it.
    acts = {i for p in parts for i in p["activities"]["activity_id"]}
    assert acts == set(everything["activities"]["activity_id"])


def test_the_threshold_comes_from_the_environment_or_fails_naming_it(monkeypatch) -> None:
    from leadsla.tasks.monitor import SHARD_ABOVE, shard_above_from_env

    monkeypatch.delenv("LEADSLA_SHARD_ABOVE", raising=False)
    assert shard_above_from_env() == SHARD_ABOVE == 20_000
    monkeypatch.setenv("LEADSLA_SHARD_ABOVE", "5000")
    assert shard_above_from_env() == 5000
    for bad in ("0", "-3", "many", "1.5"):
        monkeypatch.setenv("LEADSLA_SHARD_ABOVE", bad)
        with pytest.raises(LeadSlaError, match=f"LEADSLA_SHARD_ABOVE='{bad}'"):
            shard_above_from_env()


def test_shards_take_consecutive_runs_of_ranges_as_even_as_they_divide() -> None:
    from leadsla.store.mirror import KeyRange
    from leadsla.tasks.evaluation import shard_ranges

    ranges = [
        KeyRange(None, "b"),
        *(KeyRange(a, b) for a, b in zip("bcdef", "cdefg", strict=True)),
        KeyRange("g"),
    ]
    shards = shard_ranges(ranges, 3)
    assert [len(s) for s in shards] == [2, 2, 3] and [r for s in shards for r in s] == ranges
    assert shard_ranges(ranges, 50) == [[r] for r in ranges]  # never an empty shard
