"""What is not a row's fault does not count against it: Slack's 429 puts the row back for exactly
Retry-After while other rows go on, and a channel that refuses connections trips the try's
circuit breaker (its rows are not tried while it is down, their attempts are not counted, and
they go out as soon as a probe gets through, once each). Also: a backlog drains oldest first.

Waiting is simulated (a clock whose `sleep` jumps ahead), so these tests take seconds.
"""

from __future__ import annotations

import datetime as dt
import urllib.error

import sqlalchemy as sa

from leadsla.decisions.plan import Message
from leadsla.notify.delivery import PROBE_INTERVAL, deliver_due
from leadsla.notify.outbox import DEFAULT_LEASE, claim, enqueue, mark_failed
from leadsla.notify.outcome import Deferred
from leadsla.notify.slack import _unreachable
from leadsla.store.audit import AuditContext
from leadsla.store.schema import audit, outbox
from tests.notify_fixtures import CLOCK_START, MANAGER, REP, SimClock, alert_payload

pytest_plugins = ["tests.notify_fixtures"]

T = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="deliver", try_number=1)
BUDGET = dt.timedelta(seconds=40)


def engine_at(tmp_path):
    from leadsla.store import open_store

    return open_store(f"sqlite:///{tmp_path / 'store.db'}")


def action(i: int, channel: str, recipient: dict = REP) -> Message:
    return Message(
        "mql_to_sal",
        f"00Q00000000000{i}AAA",
        CLOCK_START,
        "warn_50",
        recipient["email"],
        channel,
        alert_payload(),
    )


def rows(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(outbox).order_by(outbox.c.outbox_id)).all()


def events(engine, name: str) -> list[tuple[dt.datetime, dict]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(audit.c.at, audit.c.detail).where(audit.c.event == name).order_by(audit.c.audit_id)
            )
        ]


def test_a_429_puts_the_row_back_for_exactly_retry_after_uncounted_while_others_go_on(
    tmp_path, slack_api
) -> None:
    engine = engine_at(tmp_path)
    with engine.begin() as conn:
        enqueue(conn, [action(1, "slack", REP), action(2, "slack", MANAGER)], T, CTX)
    slack_api.inject("429", method="chat.postMessage", count=1, retry_after=2)  # the first post only
    sim = SimClock()
    summary = deliver_due(engine, T, CTX, budget=BUDGET, monotonic=sim.monotonic, sleep=sim.sleep)

    assert summary["delivered"] == 2 and summary["rate_limited"] == 1 and summary["retry"] == 0
    first, second = rows(engine)
    # The other row went on at once; the limited one after Retry-After (a counted failure waits 5 s+).
    posted = [m["metadata"]["event_payload"]["idempotency_key"] for m in slack_api.messages()]
    assert posted == [second.idempotency_key, first.idempotency_key]
    assert 0 < sum(sim.sleeps) <= 2.1
    [(at, deferred)] = events(engine, "message_deferred")
    assert deferred["reason"] == "rate_limited" and deferred["attempt_counted"] is False
    assert dt.datetime.fromisoformat(deferred["retry_at"]) - at == dt.timedelta(seconds=2)
    assert events(engine, "message_failed") == []
    assert (first.status, first.attempts, second.attempts) == ("delivered", 1, 1)


def test_smtp_down_trips_the_breaker_rows_wait_uncounted_and_go_once_when_it_is_back(
    tmp_path, smtp_sink, slack_api
) -> None:
    engine = engine_at(tmp_path)
    with engine.begin() as conn:
        enqueue(conn, [action(i, "email") for i in range(5)] + [action(9, "slack")], T, CTX)
    smtp_sink.down()
    back = {}

    def bring_up(slept: float) -> None:  # the outage ends 12 simulated seconds into the try
        if slept >= 12 and not back:
            smtp_sink.up()
            back["after"] = slept

    sim = SimClock(bring_up)
    summary = deliver_due(engine, T, CTX, budget=BUDGET, monotonic=sim.monotonic, sleep=sim.sleep)

    assert summary["delivered"] == 6 and summary["retry"] == 0 and summary["failed"] == 0
    down = events(engine, "message_deferred")
    assert {d["reason"] for _, d in down} == {"channel_down"}
    # One probe per PROBE_INTERVAL while down, never every row: 0 s, 5 s, 10 s -> three.
    assert len(down) == 3
    gaps = [(b[0] - a[0]).total_seconds() for a, b in zip(down, down[1:], strict=False)]
    assert all(g >= PROBE_INTERVAL.total_seconds() for g in gaps)
    assert events(engine, "message_failed") == []
    assert all(r.status == "delivered" and r.attempts == 1 for r in rows(engine))  # no attempt burnt
    # Delivered promptly after recovery: at the first probe after the server came back.
    sent = [at for at, d in events(engine, "message_sent") if d["channel"] == "email"]
    assert len(sent) == 5 and max(sent) - down[-1][0] < PROBE_INTERVAL + dt.timedelta(seconds=3)
    # The Slack row did not wait for the e-mail outage, and no message went twice.
    slack_sent = [at for at, d in events(engine, "message_sent") if d["channel"] == "slack"]
    assert slack_sent[0] < down[1][0]
    keys = [str(m["X-LeadSLA-Key"]).strip() for m in smtp_sink.messages()]
    assert sorted(keys) == sorted(r.idempotency_key for r in rows(engine) if r.channel == "email")


def test_a_refused_slack_connection_is_the_channel_down_other_network_trouble_is_the_rows() -> None:
    refused = _unreachable("posting", urllib.error.URLError(ConnectionRefusedError(111, "refused")))
    assert isinstance(refused, Deferred) and refused.reason == "channel_down" and refused.sent_nothing
    reset = _unreachable("posting", urllib.error.URLError(ConnectionResetError(104, "reset")))
    assert not isinstance(reset, Deferred) and not reset.permanent


def test_a_backlog_drains_oldest_first_even_after_its_retry(tmp_path) -> None:
    engine = engine_at(tmp_path)
    with engine.begin() as conn:
        enqueue(conn, [action(1, "slack")], T, CTX)
        [old] = claim(conn, T, DEFAULT_LEASE, 10)
        mark_failed(conn, old, "HTTP 503", T + dt.timedelta(seconds=30), T, CTX)  # retry at T+30
        enqueue(conn, [action(2, "slack"), action(3, "slack")], T + dt.timedelta(seconds=10), CTX)
        taken = claim(conn, T + dt.timedelta(seconds=31), DEFAULT_LEASE, 10)
    assert [r.record_id for r in taken] == ["00Q000000000001AAA", "00Q000000000002AAA", "00Q000000000003AAA"]


def test_retry_after_zero_still_waits_a_second() -> None:
    # A server answering "Retry-After: 0" again and again must not have the row posted in a tight loop.
    from types import SimpleNamespace

    from leadsla.notify.slack import MIN_RETRY_AFTER_S, _retry_after_s

    assert _retry_after_s(SimpleNamespace(headers={"Retry-After": ["0"]})) == MIN_RETRY_AFTER_S
    assert _retry_after_s(SimpleNamespace(headers={"retry-after": "7"})) == 7.0


def test_a_deferral_after_the_lease_was_lost_changes_and_audits_nothing(tmp_path) -> None:
    from leadsla.notify.outbox import defer

    engine = engine_at(tmp_path)
    with engine.begin() as conn:
        enqueue(conn, [action(1, "slack")], T, CTX)
        [mine] = claim(conn, T, DEFAULT_LEASE, 10)
        # The lease lapsed and another worker claimed the row.
        conn.execute(outbox.update().values(claimed_until=T + 2 * DEFAULT_LEASE))
        assert (
            defer(
                conn,
                mine,
                T + dt.timedelta(seconds=1),
                T,
                CTX,
                reason="rate_limited",
                error="429",
                uncount=True,
            )
            is False
        )
    assert events(engine, "message_deferred") == []
    [row] = rows(engine)
    assert row.claimed_until == T + 2 * DEFAULT_LEASE and row.attempts == 1
