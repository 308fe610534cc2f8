"""The five-minute demo tier's 50 % notice reaches the rep within 5 s of 2.5 minutes after the lead
entered SAL, in real time (about three minutes of wall time: the one long test of the feature);
and a second demo lead's breach (SAL 200 s before the first, so its breach at target + 1 min falls
10 s after that notice), planned whole by the same runs, reaches the rep and her manager within
5 s of its instant too.

As in production, minus the scheduler: the lead lands in the store 15 s after it went SAL (a sync
poll); `sla_monitor` runs once a minute (`run_monitor` at the wall clock's time, then its own
`deliver` with the one-minute budget); `sla_delivery`'s loop runs try after try with a gap
between two tries (the scheduler starting the next run), the gap placed over the checkpoint's
instant, so the minute's `deliver` must cover it. Both deliverers run the real delivery code
(`deliver_due`, leases, the re-check against the store) against the Slack stand-in; the warning
is posted once, within 5 s of its instant (the goal; it is well under a second here). The breach's
CRM action is left queued (no CRM here: tests/integration/test_breach_on_time.py performs it).

The owner's calendar is open all week (tests/ontime_fixtures.py): business time is real time
whenever this runs. SQLite (the planning and the re-check run on both backends in
tests/integration/test_delivery_on_time.py).
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from leadsla.notify.delivery import DEFAULT_BUDGET, LOOP_POLL, deliver_due
from leadsla.notify.recheck import Recheck
from leadsla.store import open_store
from leadsla.store.audit import AuditContext
from leadsla.tasks.monitor import run_monitor
from tests.ontime_fixtures import (
    MANAGER_EMAIL,
    REP_EMAIL,
    URL,
    lead_id,
    open_all_week_policy,
    outbox_rows,
    seed_people,
    seed_sal_lead,
)

pytest_plugins = ["tests.notify_fixtures"]  # the stand-in fixtures

POLICY = open_all_week_policy()
HALF = dt.timedelta(seconds=150)
BREACH = dt.timedelta(seconds=360)  # the demo tier's target (5 min) + 1 min
EARLIER = dt.timedelta(seconds=200)  # the second lead went SAL this long before the first
GOAL_S = 5.0


def wait_until(at: dt.datetime) -> None:
    time.sleep(max((at - dt.datetime.now(dt.UTC)).total_seconds(), 0.0))


@pytest.mark.slow
@pytest.mark.xdist_group("realtime")
def test_the_demo_tiers_half_notice_is_posted_within_5_s_of_two_and_a_half_minutes(
    tmp_path, slack_api, smtp_sink
) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    sal_at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=2)
    instant = sal_at + HALF
    breach_at = sal_at - EARLIER + BREACH  # 10 s after the half notice
    for channel in ("#sales-leadership", "#marketing-leadership", "#revops"):  # a critical breach's
        slack_api.add_channel(channel, channel[1:])
    seed_people(engine, sal_at - dt.timedelta(hours=1))
    errors: list[BaseException] = []
    summaries: list[dict] = []

    def guarded(body):
        def run():
            try:
                body()
            except BaseException as exc:  # surfaced by the test below
                errors.append(exc)

        return threading.Thread(target=run, daemon=True)

    def sync() -> None:  # the CRM poll lands the lead 15 s after it went SAL
        wait_until(sal_at + dt.timedelta(seconds=15))
        seed_sal_lead(engine, 1, sal_at)
        seed_sal_lead(engine, 2, sal_at - EARLIER)

    def sla_monitor() -> None:  # every minute: evaluate (plans ahead), then the minute's deliver
        for k in range(3):  # at +5 s (the lead not landed yet), +65 s and +125 s
            run_at = sal_at + dt.timedelta(seconds=5 + 60 * k)
            wait_until(run_at)
            ctx = AuditContext(
                dag_id="sla_monitor", run_id=f"scheduled__{k}", task_id="evaluate", try_number=1
            )
            summaries.append(run_monitor(engine, dt.datetime.now(dt.UTC), ctx, policy=POLICY, url=URL))
            ctx = AuditContext(
                dag_id="sla_monitor", run_id=f"scheduled__{k}", task_id="deliver", try_number=1
            )
            deliver_due(engine, dt.datetime.now(dt.UTC), ctx, budget=DEFAULT_BUDGET, recheck=Recheck(POLICY))

    def sla_delivery() -> None:  # the loop, try after try; the gap between two tries spans the instant
        tries = [
            (sal_at, instant - dt.timedelta(seconds=3)),
            (instant + dt.timedelta(seconds=2), instant + dt.timedelta(seconds=20)),
        ]
        for n, (start, end) in enumerate(tries):
            wait_until(start)
            ctx = AuditContext(
                dag_id="sla_delivery", run_id=f"continuous__{n}", task_id="deliver", try_number=1
            )
            now = dt.datetime.now(dt.UTC)
            deliver_due(engine, now, ctx, budget=end - now, poll=LOOP_POLL, recheck=Recheck(POLICY))

    threads = [guarded(sync), guarded(sla_monitor), guarded(sla_delivery)]
    for thread in threads:
        thread.start()
    wait_until(instant + dt.timedelta(seconds=20))
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    # Planned by the run of +65 s (with the 80 % warnings, due at +240 s), not decided at reach.
    assert [s["planned"] > 0 for s in summaries] == [False, True, False]
    (row,) = outbox_rows(engine, checkpoint="half", record_id=lead_id(1))
    assert row.status == "delivered" and row.created_at < instant
    posts = {
        m["metadata"]["event_payload"]["idempotency_key"]: m
        for m in slack_api.messages()
        if m.get("metadata")
    }
    late = posts[row.idempotency_key]["received_at"] - instant.timestamp()
    print(f"half notice posted {late:.3f} s after 2.5 minutes")
    assert 0 <= late <= GOAL_S
    # The second lead's breach: planned by the same run (with its action), posted at its instant.
    assert summaries[1]["planned_actions"] == 1
    breach = outbox_rows(engine, checkpoint="breach", record_id=lead_id(2), channel="slack")
    dms = [r for r in breach if r.recipient in (REP_EMAIL, MANAGER_EMAIL)]
    assert len(dms) == 2 and all(r.status == "delivered" and r.created_at < breach_at for r in dms)
    for r in dms:
        late = posts[r.idempotency_key]["received_at"] - breach_at.timestamp()
        print(f"breach to {r.recipient} posted {late:.3f} s after its instant")
        assert 0 <= late <= GOAL_S
    engine.dispose()
