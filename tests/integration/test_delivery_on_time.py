"""Warnings at their checkpoint's instant: planned by the monitor (`decisions.ahead`), sent by the
delivery loop at the second, re-checked against the store right before they go (`notify.recheck`).

The demo policy's five-minute demo-request tier (50 % at 2.5 min, 80 % at 4 min to the rep and her
manager), its owner calendar open all week so the wall-clock test runs any day. Both backends.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from leadsla.decisions.ahead import DEFAULT_HORIZON
from leadsla.decisions.plan import Message
from leadsla.errors import LeadSlaError
from leadsla.notify.delivery import LOOP_POLL, deliver_due, loop_budget_from_env
from leadsla.notify.outbox import claim, enqueue
from leadsla.notify.recheck import Recheck
from leadsla.store import open_store, schema
from leadsla.store.audit import AuditContext
from leadsla.tasks.monitor import horizon_from_env, run_monitor
from tests.notify_fixtures import alert_payload
from tests.ontime_fixtures import (
    MANAGER,
    MANAGER_EMAIL,
    REP,
    REP_EMAIL,
    URL,
    audit_rows,
    log_call,
    open_all_week_policy,
    outbox_rows,
    seed_people,
    seed_sal_lead,
    set_status,
)

pytest_plugins = ["tests.notify_fixtures"]  # the stand-in fixtures

POLICY = open_all_week_policy()
MONITOR = AuditContext(dag_id="sla_monitor", run_id="scheduled__1", task_id="evaluate", try_number=1)
DELIVERY = AuditContext(dag_id="sla_delivery", run_id="scheduled__1", task_id="deliver", try_number=1)
HALF = dt.timedelta(seconds=150)  # 50 % of the five-minute tier
SAL_AT = dt.datetime(2026, 12, 6, 13, 0, 0, tzinfo=dt.UTC)


def monitor(engine, at: dt.datetime, **kwargs) -> dict:
    return run_monitor(engine, at, MONITOR, policy=POLICY, url=URL, **kwargs)


def deliver(engine, at: dt.datetime, **kwargs) -> dict:
    return deliver_due(engine, at, DELIVERY, recheck=Recheck(POLICY), **kwargs)


def slack_keys(sandbox) -> list[str]:
    return [
        m["metadata"]["event_payload"]["idempotency_key"] for m in sandbox.messages() if m.get("metadata")
    ]


def test_the_monitor_plans_the_half_warning_for_its_instant_with_the_at_reach_key(store, tmp_path) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    rid = seed_sal_lead(store, 1, SAL_AT)
    summary = monitor(store, SAL_AT + dt.timedelta(seconds=20))
    assert summary["planned"] == 1 and summary["queued"] == 0
    (row,) = outbox_rows(store)
    assert (row.checkpoint, row.recipient, row.channel) == ("half", REP_EMAIL, "slack")
    assert row.not_before == SAL_AT + HALF and row.payload["elapsed_seconds"] == 150
    queued = audit_rows(store, "message_queued")
    assert queued[-1].detail["planned_for"].startswith("2026-12-06T13:02:30")
    # The at-reach runs decide nothing more: the checkpoint is handled, never queued twice.
    for seconds in (80, 150, 155, 200):
        monitor(store, SAL_AT + dt.timedelta(seconds=seconds))
    halves = outbox_rows(store, checkpoint="half")
    assert len(halves) == 1 and halves[0].idempotency_key == row.idempotency_key
    warnings = outbox_rows(store, checkpoint="warning")  # 80 %: rep and manager, Slack and e-mail
    assert {(w.recipient, w.channel) for w in warnings} == {
        (REP_EMAIL, "slack"),
        (REP_EMAIL, "email"),
        (MANAGER_EMAIL, "slack"),
        (MANAGER_EMAIL, "email"),
    }
    assert all(w.not_before == SAL_AT + dt.timedelta(seconds=240) for w in warnings)
    # Without planning, the same checkpoint at reach gets the very same key.
    other = open_store(f"sqlite:///{tmp_path / 'at_reach.db'}")
    seed_people(other, SAL_AT - dt.timedelta(hours=1))
    seed_sal_lead(other, 1, SAL_AT)
    assert monitor(other, SAL_AT + dt.timedelta(seconds=20), horizon=dt.timedelta(0))["planned"] == 0
    monitor(other, SAL_AT + dt.timedelta(seconds=160), horizon=dt.timedelta(0))
    (reached,) = outbox_rows(other, checkpoint="half")
    assert reached.idempotency_key == row.idempotency_key and reached.record_id == rid
    other.dispose()


def test_a_planned_warning_is_posted_within_a_second_of_its_instant(store, slack_api) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    wall = dt.datetime.now(dt.UTC).replace(microsecond=0)
    instant = wall + dt.timedelta(seconds=12)  # time for a cold process to plan and warm up
    seed_sal_lead(store, 1, instant - HALF)
    assert monitor(store, wall, horizon=dt.timedelta(seconds=60))["planned"] == 1
    started = dt.datetime.now(dt.UTC)
    counts = deliver(store, started, budget=instant + dt.timedelta(seconds=3) - started, poll=LOOP_POLL)
    assert counts["delivered"] == 1
    (post,) = [m for m in slack_api.messages() if m.get("metadata")]
    late = post["received_at"] - instant.timestamp()
    assert 0 <= late < 2.5, f"posted {late:.3f} s after the checkpoint"  # ~0.3 s on an idle laptop


def test_a_touch_in_the_store_before_the_instant_cancels_the_planned_warning(store, slack_api) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    rid = seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + dt.timedelta(seconds=20))
    called = SAL_AT + dt.timedelta(seconds=120)  # 30 s before the warning
    log_call(store, rid, called)
    counts = deliver(store, SAL_AT + HALF, budget=dt.timedelta(0))
    assert counts["cancelled_by_touch"] == 1 and counts["delivered"] == 0
    assert slack_keys(slack_api) == []
    (row,) = outbox_rows(store)
    assert row.status == "cancelled" and row.attempts == 0
    (entry,) = audit_rows(store, "cancelled_by_touch")
    assert (
        entry.detail["touched_at"].startswith("2026-12-06T13:02:00") and entry.detail["reason"] == "touched"
    )
    assert entry.record_id == rid and entry.checkpoint == "half"
    # The clock is met: the monitor decides nothing more, and no deliverer sends the row later.
    assert monitor(store, SAL_AT + dt.timedelta(seconds=170))["queued"] == 0
    assert deliver(store, SAL_AT + dt.timedelta(minutes=10))["claimed"] == 0


def test_a_status_moved_on_before_the_instant_cancels_it_too(store, slack_api) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    rid = seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + dt.timedelta(seconds=20))
    set_status(store, rid, "SAL", "SQL", SAL_AT + dt.timedelta(seconds=140))
    assert deliver(store, SAL_AT + HALF + dt.timedelta(seconds=1))["cancelled_by_touch"] == 1
    (entry,) = audit_rows(store, "cancelled_by_touch")
    assert entry.detail["reason"] == "moved_on" and entry.detail["touched_at"].startswith(
        "2026-12-06T13:02:20"
    )
    assert slack_keys(slack_api) == []


def test_a_reassignment_withdraws_it_and_the_monitor_tells_the_new_owner(store, slack_api) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    rid = seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + dt.timedelta(seconds=20))
    moved = SAL_AT + dt.timedelta(seconds=100)
    with store.begin() as conn:
        conn.execute(
            schema.records.update().where(schema.records.c.record_id == rid).values(owner_id=MANAGER)
        )
        conn.execute(
            schema.field_history.insert(),
            {
                "history_id": "017000000000000099",
                "object_type": "Lead",
                "record_id": rid,
                "field": "OwnerId",
                "old_value": REP,
                "new_value": MANAGER,
                "changed_by": MANAGER,
                "changed_at": moved,
            },
        )
    counts = deliver(store, SAL_AT + HALF)
    assert counts["cancelled_by_change"] == 1 and counts["delivered"] == 0
    (entry,) = audit_rows(store, "cancelled_by_change")
    assert entry.detail["reason"] == "changed" and entry.detail["owner_id"] == MANAGER
    # Withdrawn is not handled: the next run decides the checkpoint for the lead's new owner.
    monitor(store, SAL_AT + HALF + dt.timedelta(seconds=30))
    halves = {(r.recipient, r.status) for r in outbox_rows(store, checkpoint="half")}
    assert halves == {(REP_EMAIL, "withdrawn"), (MANAGER_EMAIL, "pending")}
    deliver(store, SAL_AT + HALF + dt.timedelta(seconds=31))
    (manager_row,) = outbox_rows(store, checkpoint="half", recipient=MANAGER_EMAIL)
    assert manager_row.status == "delivered" and slack_keys(slack_api) == [manager_row.idempotency_key]


def test_a_pause_withdraws_it_and_a_resume_plans_it_again_under_the_same_key(store, slack_api) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    rid = seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + dt.timedelta(seconds=20))
    (planned,) = outbox_rows(store)
    set_status(store, rid, "SAL", "Nurture - contact later", SAL_AT + dt.timedelta(seconds=60), n=2)
    assert deliver(store, SAL_AT + HALF)["cancelled_by_change"] == 1
    assert audit_rows(store, "cancelled_by_change")[0].detail["reason"] == "paused"
    # Back in SAL 60 s later: the same clock resumes, its half is 60 s later than first planned.
    set_status(store, rid, "Nurture - contact later", "SAL", SAL_AT + dt.timedelta(seconds=200), n=3)
    assert monitor(store, SAL_AT + dt.timedelta(seconds=201))["planned"] == 1 + 4  # and the 80 %
    (again,) = outbox_rows(store, checkpoint="half")
    assert again.idempotency_key == planned.idempotency_key and again.status == "pending"
    assert again.not_before == SAL_AT + HALF + dt.timedelta(seconds=140)
    assert deliver(store, again.not_before)["delivered"] == 1
    assert slack_keys(slack_api) == [planned.idempotency_key]


def test_catch_up_after_a_dead_deliverer_sends_the_planned_warning_once(store, slack_api) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + dt.timedelta(seconds=20))
    with store.begin() as conn:  # a deliverer takes it at the instant and dies before sending
        (taken,) = claim(conn, SAL_AT + HALF)
    assert deliver(store, SAL_AT + HALF + dt.timedelta(seconds=5))["claimed"] == 0  # its lease holds
    later = SAL_AT + HALF + dt.timedelta(minutes=7)  # nobody delivered for minutes: due at once
    counts = deliver(store, later)
    assert counts["delivered"] == 1 and slack_keys(slack_api) == [taken.idempotency_key]
    assert deliver(store, later + dt.timedelta(minutes=1))["claimed"] == 0


def test_planned_warnings_leave_digests_and_keys_as_at_reach(store, tmp_path) -> None:
    """Eight leads of one rep go SAL together (max_alerts 5): the same minute-by-minute runs, with
    planning and without, end with the same rows: keys, statuses, digests (nothing delivered in
    between, so every planned row is still untouched when its checkpoint's run digests it)."""
    at_reach = open_store(f"sqlite:///{tmp_path / 'at_reach.db'}")
    for engine in (store, at_reach):
        seed_people(engine, SAL_AT - dt.timedelta(hours=1))
        for n in range(8):
            seed_sal_lead(engine, n, SAL_AT)
    planned = 0
    for k in range(6):  # runs at +20 s ... +320 s: both warnings and the breach
        at = SAL_AT + dt.timedelta(seconds=20 + 60 * k)
        planned += monitor(store, at)["planned"]
        with store.connect() as conn:
            from leadsla.notify.outbox import queue_state

            visible = queue_state(conn, at, window_minutes=10).rows
        assert all(
            dt.datetime.fromisoformat(q.payload["due_at"]) <= at for q in visible if "due_at" in q.payload
        )
        monitor(at_reach, at, horizon=dt.timedelta(0))
    assert planned == 8 * (1 + 4)  # the halves and the 80 % warnings (rep + manager, two channels)

    def rows(engine) -> set[tuple]:
        o = schema.outbox
        with engine.connect() as conn:
            found = conn.execute(
                sa.select(o.c.idempotency_key, o.c.checkpoint, o.c.recipient, o.c.channel, o.c.status)
            )
            return {tuple(r) for r in found}

    assert rows(store) == rows(at_reach)
    digests = [r for r in rows(store) if r[1] == "digest"]
    assert len(digests) == 5  # the rep's Slack halves, and the 80 % warnings to both people on both channels
    at_reach.dispose()


def _at_the_rate_limit(store, slack_api, leads: int) -> None:
    """`leads` SAL leads whose half warnings are planned for the same instant, and the rep already
    sent five warnings about other leads on Slack a minute before it: max_alerts (5)."""
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    for n in range(1, leads + 1):
        seed_sal_lead(store, n, SAL_AT)
    assert monitor(store, SAL_AT + dt.timedelta(seconds=20))["planned"] == leads  # the halves
    others = [
        Message(
            "mql_to_sal",
            f"00Q{n:015d}",
            SAL_AT - dt.timedelta(hours=2),
            "warn_50",
            REP_EMAIL,
            "slack",
            alert_payload(lead={"id": f"00Q{n:015d}", "name": f"Other {n}", "tier": "standard"}),
        )
        for n in range(100, 105)
    ]
    earlier = SAL_AT + dt.timedelta(seconds=90)
    with store.begin() as conn:
        enqueue(conn, others, earlier, MONITOR)
    assert deliver(store, earlier, budget=dt.timedelta(seconds=30))["delivered"] == 5  # Slack paces
    assert len(slack_keys(slack_api)) == 5


def test_a_lone_warning_over_the_rate_limit_goes_at_its_second(store, slack_api) -> None:
    """A digest of one is never made, so holding the one warning over the limit would only make it late."""
    _at_the_rate_limit(store, slack_api, leads=1)
    counts = deliver(store, SAL_AT + HALF, budget=dt.timedelta(seconds=30))  # Slack paces
    assert counts["delivered"] == 1 and counts.get("held_for_digest", 0) == 0
    assert len(slack_keys(slack_api)) == 6
    assert not [e for e in audit_rows(store, "message_deferred") if e.detail["reason"] == "held_for_digest"]


def test_a_warning_queued_at_reach_in_the_same_batch_is_not_counted_foldable(store, slack_api) -> None:
    """The monitor queued another warning to the same person at reach; it is claimed in the loop's
    batch with the planned one but goes as queued (the monitor's digest decision already saw it),
    so the planned warning is the only one over the limit and goes at its second too."""
    _at_the_rate_limit(store, slack_api, leads=1)
    at_reach = Message(
        "mql_to_sal",
        "00Q000000000000200",
        SAL_AT - dt.timedelta(minutes=30),
        "warn_50",
        REP_EMAIL,
        "slack",
        alert_payload(lead={"id": "00Q000000000000200", "name": "At reach", "tier": "standard"}),
    )
    with store.begin() as conn:
        enqueue(conn, [at_reach], SAL_AT + HALF, MONITOR)
    counts = deliver(store, SAL_AT + HALF, budget=dt.timedelta(seconds=30))  # Slack paces
    assert counts["delivered"] == 2 and counts.get("held_for_digest", 0) == 0
    assert len(slack_keys(slack_api)) == 7


def test_warnings_the_digest_will_fold_are_held_for_it_once(store, slack_api) -> None:
    _at_the_rate_limit(store, slack_api, leads=2)
    counts = deliver(store, SAL_AT + HALF)
    assert counts["held_for_digest"] == 2 and len(slack_keys(slack_api)) == 5
    held = [e for e in audit_rows(store, "message_deferred") if e.detail["reason"] == "held_for_digest"]
    assert {(e.record_id, e.checkpoint) for e in held} == {
        ("00Q000000000000001", "half"),
        ("00Q000000000000002", "half"),
    }
    assert {e.detail["digest_of"] for e in held} == {2}
    assert all(r.status == "pending" and r.attempts == 0 for r in outbox_rows(store, checkpoint="half"))
    # The hold is a lease: nobody sends them meanwhile; the monitor's next run folds them into one
    # digest, which goes instead of both.
    assert deliver(store, SAL_AT + HALF + dt.timedelta(seconds=30))["claimed"] == 0
    assert monitor(store, SAL_AT + HALF + dt.timedelta(seconds=40))["digests"] == 1
    assert {r.status for r in outbox_rows(store, checkpoint="half")} == {"digested"}
    assert (
        deliver(store, SAL_AT + HALF + dt.timedelta(seconds=41), budget=dt.timedelta(seconds=30))["delivered"]
        == 1
    )
    (digest,) = outbox_rows(store, checkpoint="digest")
    assert digest.status == "delivered" and len(digest.payload["items"]) == 2
    assert slack_keys(slack_api)[5:] == [digest.idempotency_key]  # one message instead of two


def test_a_held_warning_the_digest_did_not_take_goes_once_after_the_hold(store, slack_api) -> None:
    _at_the_rate_limit(store, slack_api, leads=2)
    assert deliver(store, SAL_AT + HALF)["held_for_digest"] == 2
    # No monitor run came in between (stopped, or late): after the hold each goes as itself, once.
    after = SAL_AT + HALF + dt.timedelta(seconds=80)
    assert deliver(store, after, budget=dt.timedelta(seconds=30))["delivered"] == 2  # Slack paces
    assert deliver(store, after + dt.timedelta(seconds=60))["claimed"] == 0
    assert len(slack_keys(slack_api)) == 7


def test_the_knobs_for_the_horizon_and_the_loop(monkeypatch) -> None:
    monkeypatch.delenv("LEADSLA_PLAN_HORIZON_S", raising=False)
    monkeypatch.delenv("LEADSLA_DELIVERY_LOOP_S", raising=False)
    assert horizon_from_env() == DEFAULT_HORIZON == dt.timedelta(minutes=3)
    monkeypatch.setenv("LEADSLA_PLAN_HORIZON_S", "0")
    assert horizon_from_env() == dt.timedelta(0)
    monkeypatch.setenv("LEADSLA_PLAN_HORIZON_S", "soon")
    with pytest.raises(LeadSlaError, match="LEADSLA_PLAN_HORIZON_S='soon'"):
        horizon_from_env()
    # Ten minutes, stretched to end at second 30 (inside sla_monitor's minute of delivery).
    start = dt.datetime(2026, 12, 6, 13, 0, 41, tzinfo=dt.UTC)
    assert start + loop_budget_from_env(start) == dt.datetime(2026, 12, 6, 13, 11, 30, tzinfo=dt.UTC)
    monkeypatch.setenv("LEADSLA_DELIVERY_LOOP_S", "60")
    assert start + loop_budget_from_env(start) == dt.datetime(2026, 12, 6, 13, 2, 30, tzinfo=dt.UTC)
    monkeypatch.setenv("LEADSLA_DELIVERY_LOOP_S", "7200")
    with pytest.raises(LeadSlaError, match="LEADSLA_DELIVERY_LOOP_S"):
        loop_budget_from_env(start)
