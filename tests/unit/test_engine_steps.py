"""The engine's steps one at a time: tiers, policy windows, segments, checkpoint order and statuses,
states and colours, each on small hand-built arrays (test_engine.py runs them end to end)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml

from leadsla import clock as clock_module
from leadsla import engine as engine_module
from leadsla.engine import CHECKPOINT_STATUSES, COLOURS, STATES
from leadsla.policy import DEFAULT_POLICY_PATH, load_policy, policy_from_dict

INT64_MIN, INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _lowest_bit_tier(mask: int, n_tiers: int) -> int:
    return next((k for k in range(n_tiers - 1) if mask >> k & 1), n_tiers - 1)


@pytest.mark.parametrize("n_tiers", [1, 2, 6, 16, 17, 40])
def test_first_tier_is_the_lowest_accepting_non_default_tier(n_tiers):
    # Up to 16 tiers a lookup table over every mask, above that one pass per tier: same answer.
    rng = np.random.default_rng(n_tiers)
    ok = rng.integers(0, 1 << min(n_tiers, 62), 500, dtype=np.int64)
    ok[:3] = [0, 1 << (n_tiers - 1), (1 << n_tiers) - 1]
    got = engine_module._first_tier(ok, n_tiers)
    assert got.dtype == np.int8
    assert got.tolist() == [_lowest_bit_tier(int(m), n_tiers) for m in ok]


@pytest.mark.parametrize(
    "wanted",
    [
        {"Web": 0b001, "Chat": 0b011},  # a few values: == passes
        {"Web": 0b001, "Chat": 0b011, "Event": 0b100, "Partner": 0b010, "Absent": 0b100},  # factorised
    ],
)
def test_tier_bits_adds_the_tiers_that_accept_each_value_to_the_free_ones(wanted):
    column = np.array(["Web", "Chat", None, "Other", np.nan, "Event", "Partner", "Web"], dtype=object)
    free = 0b1000
    got = engine_module._tier_bits(column, wanted, free)
    expected = [free | wanted.get(v, 0) if isinstance(v, str) else free for v in column]
    assert got.tolist() == expected


def test_version_windows_cover_every_start_without_overlap():
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    versions = [
        policy_from_dict({**raw, "version": v, "effective_from": f})
        for v, f in [
            ("a", "2026-01-01T00:00:00Z"),
            ("b", "2026-06-01T00:00:00Z"),
            ("c", "2026-11-01T00:00:00Z"),
        ]
    ]
    jun, nov = (int(dt.datetime(2026, m, 1, tzinfo=dt.UTC).timestamp()) for m in (6, 11))
    # The earliest version also governs clocks older than every version; the latest every later one.
    assert engine_module._version_windows(versions) == [(INT64_MIN, jun), (jun, nov), (nov, INT64_MAX)]
    assert engine_module._version_windows(versions[:1]) == [(INT64_MIN, INT64_MAX)]


def test_clocks_in_window_is_half_open_so_a_start_at_effective_from_belongs_to_the_new_version():
    clocks = clock_module.Clocks(np.arange(4), np.array([99, 100, 150, 200]), np.full(4, -1))
    got = engine_module._clocks_in_window(clocks, (100, 200))
    assert got.start.tolist() == [100, 150] and got.record.tolist() == [1, 2]
    assert engine_module._clocks_in_window(clocks, (0, 1000)) is clocks  # all kept: no copies
    assert engine_module._clocks_in_window(clocks, (300, 400)) is None


# --- segments ------------------------------------------------------------------------------------


def _bounds(changes: list[tuple[int, int]], records, starts, ends):
    breaks = clock_module.Events.build(
        np.array([r for r, _ in changes], np.int64), np.array([t for _, t in changes], np.int64)
    )
    clocks = clock_module.Clocks(np.array(records), np.array(starts), np.full(len(records), -1))
    return clock_module._segment_bounds(breaks, clocks, np.array(ends))


def test_segment_bounds_split_at_changes_inside_a_clock_and_at_its_end():
    # Record 0's clock [100, 500): changes at 100 (its start: no split), 200, 300 and 500 (its end:
    # a zero-length last segment, so the owner/pause state at the end is right). Record 1: none.
    clock, record, start, end, single = _bounds(
        [(0, 100), (0, 200), (0, 300), (0, 500), (0, 900), (1, 50)], [0, 1], [100, 100], [500, 400]
    )
    assert not single
    assert clock.tolist() == [0, 0, 0, 0, 1]
    assert record.tolist() == [0, 0, 0, 0, 1]
    assert list(zip(start.tolist(), end.tolist(), strict=True)) == [
        (100, 200),
        (200, 300),
        (300, 500),
        (500, 500),
        (100, 400),
    ]


def test_segment_bounds_without_changes_inside_any_clock_is_one_segment_per_clock():
    records, starts, ends = np.array([0, 1]), np.array([100, 100]), np.array([500, 400])
    for changes in ([], [(0, 50), (0, 501), (1, 100), (1, 401)]):
        clock, record, start, end, single = _bounds(changes, records, starts, ends)
        assert single and clock.tolist() == [0, 1]
        assert record.tolist() == [0, 1] and start.tolist() == [100, 100] and end.tolist() == [500, 400]


# --- checkpoints -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sla_with_early_checkpoint():
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["slas"][0]["checkpoints"].append({"id": "early", "at": "2h elapsed", "notify": ["owner"]})
    return policy_from_dict(raw).sla("sales_touch")  # half 50 %, warning 80 %, early, breach


def test_checkpoint_offsets_share_one_order_when_every_clock_sorts_the_same(sla_with_early_checkpoint):
    # 4 h and 3 h targets: half (2 h / 1.5 h) ties with or precedes "2h elapsed" (a tie keeps
    # declaration order), so one order serves every clock.
    offsets = engine_module._checkpoint_offsets(sla_with_early_checkpoint, np.array([4 * 3600, 3 * 3600]))
    assert offsets.order is None
    assert offsets.order0.tolist() == [0, 2, 1, 3]
    assert offsets.seconds.tolist() == [[7200, 7200, 11520, 14460], [5400, 7200, 8640, 10860]]


def test_checkpoint_offsets_sort_each_clock_when_orders_differ(sla_with_early_checkpoint):
    target = np.array([4 * 3600, 300, 4 * 3600])  # a 5-minute tier reaches "2h elapsed" last
    offsets = engine_module._checkpoint_offsets(sla_with_early_checkpoint, target)
    assert offsets.order is not None
    assert offsets.order.tolist() == [[0, 2, 1, 3], [0, 1, 3, 2], [0, 2, 1, 3]]
    assert offsets.seconds.tolist() == [
        [7200, 7200, 11520, 14460],
        [150, 240, 360, 7200],
        [7200, 7200, 11520, 14460],
    ]


def test_checkpoint_offsets_break_a_later_clocks_tie_by_declaration(sla_with_early_checkpoint):
    # The first clock sorts "2h elapsed" before warning (80 % of 4 h); for a 2.5 h target the two
    # tie at 2 h, and a tie goes to the checkpoint declared first (warning), whatever came first.
    offsets = engine_module._checkpoint_offsets(sla_with_early_checkpoint, np.array([4 * 3600, 9000]))
    assert offsets.order is not None
    assert offsets.order.tolist() == [[0, 2, 1, 3], [0, 1, 2, 3]]
    assert offsets.seconds[1].tolist() == [4500, 7200, 7200, 9060]


def _status_names(codes) -> list[str]:
    return [CHECKPOINT_STATUSES[c] for c in codes]


def test_checkpoint_statuses_due_superseded_past_and_next():
    # Columns in catch-up order. Clock 0: open, three reached, the first at or before `since`.
    # Clock 1: open, one reached after `since`, the next one pending. Clock 2: stopped.
    reached = np.array([[True, True, True], [True, False, False], [True, True, False]])
    reached_at = np.array([[100, 200, 300], [150, 400, 500], [100, 200, 300]])
    running = np.array([True, True, False])
    status, nxt = engine_module._checkpoint_statuses(reached, reached_at, running, since_s=100)
    assert _status_names(status[0]) == ["past", "superseded", "due"]
    assert _status_names(status[1])[0] == "due"
    assert _status_names(status[2][:2]) == ["past", "past"]
    assert nxt.tolist() == [-1, 1, -1]  # all reached; the second; a stopped clock has no next
    # Without `since` every reached checkpoint of an open clock is a candidate.
    status, _ = engine_module._checkpoint_statuses(reached, reached_at, running, since_s=None)
    assert _status_names(status[0]) == ["superseded", "superseded", "due"]


def test_next_checkpoints_map_catch_up_columns_to_checkpoint_codes():
    seconds = np.zeros((2, 3), np.int64)
    reached_at = np.array([[10, 20, 30], [40, 50, 60]])
    nxt = np.array([1, -1])
    shared = engine_module._Offsets(seconds, np.array([2, 0, 1]), None)
    code, at = engine_module._next_checkpoints(nxt, shared, reached_at)
    assert code.tolist() == [0, -1] and code.dtype == np.int8
    assert at.tolist() == [20, engine_module._NAT]
    per_clock = engine_module._Offsets(seconds, np.array([2, 0, 1]), np.array([[1, 2, 0], [0, 1, 2]]))
    code, _ = engine_module._next_checkpoints(np.array([1, 2]), per_clock, reached_at)
    assert code.tolist() == [2, 2]


# --- states and colours ----------------------------------------------------------------------------


def test_states_a_stop_decides_met_or_late_then_breach_then_pause():
    over = np.array([False, True, True, True, False, False, False, True])
    stopped = np.array([True, True, False, False, False, False, True, True])
    left = np.array([False, False, False, False, False, False, True, True])
    paused = np.array([True, True, True, False, True, False, False, False])
    got = [STATES[c] for c in engine_module._states(over, stopped, left, paused)]
    assert got == [
        "met",
        "met_late",
        "breached",
        "breached",
        "paused",
        "running",
        "handed_on",
        "handed_on_late",
    ]


def test_colours_turn_yellow_at_75_percent_and_red_when_over():
    over = np.array([False, False, False, True])
    percent = np.array([74.99, 75.0, 100.0, 100.01])
    assert [COLOURS[c] for c in engine_module._colours(over, percent)] == ["green", "yellow", "yellow", "red"]


def test_live_activities_leave_out_deleted_future_and_unknown_record_rows():
    records = pd.DataFrame({"object_type": "Lead", "record_id": ["L1", "L2"]})
    index = clock_module.RecordIndex.build(clock_module.Columns(records, "records"), "Lead")
    acts = pd.DataFrame(
        {
            "who_id": ["L1", "L2", "L1", "L9", "L2"],
            "what_id": None,
            "owner_id": ["U1", "U2", "U3", "U4", "U5"],
            "created_at": pd.to_datetime([10, 20, 30, 15, 99], unit="s", utc=True),
            "is_deleted": [False, None, True, False, False],
        }
    )
    code, owner, t, rows, _ = clock_module._live_activities(
        index, "Lead", clock_module.Columns(acts, "activities"), 50
    )
    assert (code.tolist(), owner.tolist(), t.tolist(), rows.tolist()) == (
        [0, 1],
        ["U1", "U2"],
        [10, 20],
        [0, 1],
    )
    # An Opportunity's activities link by what_id.
    code, *_ = clock_module._live_activities(
        index, "Opportunity", clock_module.Columns(acts, "activities"), 50
    )
    assert len(code) == 0
    # A completed Task counts when it was completed: after `now` it is not live yet.
    done = acts.assign(completed_at=pd.to_datetime([60, None, None, None, None], unit="s", utc=True))
    code, _, t, *_ = clock_module._live_activities(
        index, "Lead", clock_module.Columns(done, "activities"), 50
    )
    assert (code.tolist(), t.tolist()) == ([1], [20])


def test_tier_terms_resolve_fixed_owner_and_real_time_calendars():
    policy = load_policy()
    sla = policy.sla("sales_touch")
    cals = engine_module._Calendars(policy)
    terms = engine_module._TierTerms.of(sla, cals)
    by_tier = {t.id: k for k, t in enumerate(sla.tiers)}
    assert terms.calendar[by_tier["enterprise"]] == cals.code["24x7"]  # real time
    assert terms.calendar[by_tier["standard"]] == -1  # the owner's team calendar
    assert terms.outside_hours[by_tier["inbound"]] == 4 * 3600
    assert terms.outside_hours[by_tier["standard"]] == -1
    assert bool(terms.critical[by_tier["enterprise"]]) and not terms.critical[by_tier["standard"]]
    kickoff = policy.sla("cs_kickoff")
    assert engine_module._TierTerms.of(kickoff, cals).calendar.tolist() == [cals.code["us_east"]]
