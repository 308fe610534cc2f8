"""bench/latency.py's figures on synthetic rows (tests/latency_metrics.py): the percentile, and how a
checkpoint is judged delivered, accounted for, held or lost, and a message stale or duplicated."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.latency_metrics import Message, Reached, clock_id, compute, percentile, stale_messages

T0 = dt.datetime(2026, 12, 6, 14, 0, tzinfo=dt.UTC)
WINDOW = (T0, T0 + dt.timedelta(minutes=20))
END = T0 + dt.timedelta(minutes=30)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def clock(record: str, start: float = 0.0, sla: str = "sales_touch"):
    return clock_id(sla, record, at(start))


def message(record: str, cp: str, *, received=(), due: float = 150.0, status="delivered", **kw) -> Message:
    return Message(
        key=f"{record}-{cp}-{kw.pop('recipient', 'owner')}-{kw.get('channel', 'slack')}",
        clock=clock(record),
        checkpoint=cp,
        channel=kw.pop("channel", "slack"),
        status=status,
        due_at=at(due),
        received=tuple(at(s) for s in received),
        distinct_copies=kw.pop("distinct_copies", len(received)),
        **kw,
    )


@pytest.mark.parametrize(
    "values,q,expected",
    [
        ([1.0], 0.95, 1.0),
        ([float(v) for v in range(1, 21)], 0.95, 19.0),  # 19 of 20 values are at or below 19
        ([float(v) for v in range(1, 21)], 0.50, 10.0),
        ([5.0, 1.0, 3.0], 0.5, 3.0),  # unsorted input
        ([2.04, 2.06], 1.0, 2.1),
    ],
)
def test_percentile_is_the_nearest_rank(values, q, expected):
    assert percentile(values, q) == expected


def test_percentile_of_nothing_is_none_and_q_is_checked():
    assert percentile([], 0.95) is None
    with pytest.raises(ValueError, match="q must be in"):
        percentile([1.0], 0)


def test_clock_ids_agree_across_spellings():
    naive = dt.datetime(2026, 12, 6, 14, 0, 0, 123000)
    aware_elsewhere = dt.datetime(2026, 12, 6, 15, 0, 0, 123000, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert clock_id("s", "r", naive) == clock_id("s", "r", aware_elsewhere)


def test_latency_is_first_copy_minus_the_engines_instant_per_message():
    reached = [Reached(clock("L1"), "half", at(150))]
    messages = [
        message("L1", "half", received=(152.5, 170.0), distinct_copies=1, channel="email"),
        message("L1", "half", received=(156.0,), recipient="manager"),
    ]
    figures = compute(reached, messages, [], window=WINDOW, end=END)
    assert sorted(figures.latencies_s) == [2.5, 6.0]
    assert figures.delivered == 1 and figures.lost == []
    assert figures.as_json()["checkpoint_to_post_p95_s"] == 6.0
    assert figures.email_resends == 1 and figures.duplicates == 0


def test_checkpoints_outside_the_window_are_not_judged():
    reached = [Reached(clock("L1"), "half", at(-30)), Reached(clock("L2"), "half", at(1300))]
    figures = compute(reached, [], [], window=WINDOW, end=END)
    assert figures.checkpoints == 0 and figures.lost == []


def test_a_checkpoint_without_a_message_is_lost_unless_an_audit_entry_or_a_hold_accounts_for_it():
    reached = [
        Reached(clock("L1"), "warning", at(240)),  # nothing at all: lost
        Reached(clock("L2"), "warning", at(240)),  # digested into a digest
        Reached(clock("L3"), "warning", at(240)),  # held for the recipient's morning
        Reached(clock("L4"), "warning", at(240)),  # queued, never sent: lost
        Reached(clock("L5"), "warning", at(240)),  # only an unrelated audit entry: lost
    ]
    messages = [
        message("L3", "warning", status="pending", not_before=END + dt.timedelta(hours=8)),
        message("L4", "warning", status="pending", not_before=at(240)),
    ]
    audit = [
        ((clock("L2"), "warning"), "message_digested"),
        ((clock("L5"), "warning"), "checkpoint_due"),
    ]
    figures = compute(reached, messages, audit, window=WINDOW, end=END)
    assert figures.lost == [(clock("L1"), "warning"), (clock("L4"), "warning"), (clock("L5"), "warning")]
    assert figures.excused == 1 and figures.held == 1 and figures.delivered == 0
    assert figures.as_json()["lost"] == 3


def test_a_touch_cancel_accounts_for_its_checkpoint():
    reached = [Reached(clock("L1"), "half", at(150))]
    figures = compute(reached, [], [((clock("L1"), "half"), "cancelled_by_touch")], window=WINDOW, end=END)
    assert figures.lost == [] and figures.excused == 1


def test_stale_is_a_received_warning_about_a_checkpoint_at_least_15_s_after_the_touch():
    touched = {"L1": at(220), "L2": at(230), "L3": at(200)}
    messages = [
        message("L1", "warning", due=240, received=(241,)),  # touched 20 s before: stale
        message("L2", "warning", due=240, received=(241,)),  # 10 s before: the sync may not know yet
        message("L3", "warning", due=240, status="pending"),  # never received: not stale
        message("L4", "warning", due=240, received=(241,)),  # never touched
        message("L1", "half", due=150, received=(151,)),  # before the touch: rightly sent
    ]
    assert stale_messages(messages, touched, "sales_touch") == [messages[0].key]
    # Another SLA's clock on the touched record is not this touch's business.
    other = Message(
        "k", clock("L1", sla="mql_acceptance"), "half", "slack", "delivered", at(240), None, (at(241),), 1
    )
    assert stale_messages([other], touched, "sales_touch") == []


def test_duplicates_count_copies_a_person_can_tell_apart():
    messages = [
        message("L1", "half", received=(151, 152)),  # two Slack posts of one key
        message("L2", "half", received=(151, 152, 153), channel="email", distinct_copies=2),
        message("L3", "half", received=(151,)),
    ]
    figures = compute([], messages, [], window=WINDOW, end=END)
    assert figures.duplicates == 2
    assert figures.email_resends == 1
