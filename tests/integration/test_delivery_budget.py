"""One delivery try keeps working inside its minute (quick retries, lapsed leases), and a send
never outlives its lease: Slack posts and SMTP sends are not started (or are cut) past the send's
deadline, budget leftovers are handed back untried, and an overrun is reported, never hidden.

Waiting is simulated (a clock whose `sleep` jumps ahead), so these tests take seconds.
"""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest
import sqlalchemy as sa

from leadsla.decisions.plan import Message
from leadsla.errors import LeadSlaError
from leadsla.notify.deadline import SendDeadline
from leadsla.notify.delivery import DEFAULT_BUDGET, budget_from_env, deliver_due
from leadsla.notify.email import _Watchdog
from leadsla.notify.outbox import DEFAULT_LEASE, LEASE_MARGIN, claim, enqueue
from leadsla.notify.outcome import Deferred, Delivered, DeliveryFailed
from leadsla.notify.slack import SlackSender
from leadsla.store import open_store
from leadsla.store.audit import AuditContext
from leadsla.store.schema import audit, outbox
from tests.notify_fixtures import CLOCK_START, REP, SimClock, alert_payload

pytest_plugins = ["tests.notify_fixtures"]

T = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="deliver", try_number=1)
BUDGET = dt.timedelta(seconds=40)


@pytest.fixture
def engine(tmp_path):
    eng = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield eng
    eng.dispose()


def queue(engine, n: int = 1, channel: str = "slack") -> None:
    actions = [
        Message(
            "mql_to_sal",
            f"00Q00000000000{i}AAA",
            CLOCK_START,
            "warn_50",
            REP["email"],
            channel,
            alert_payload(),
        )
        for i in range(n)
    ]
    with engine.begin() as conn:
        enqueue(conn, actions, T, CTX)


def rows(engine):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(outbox.c.status, outbox.c.attempts, outbox.c.claimed_until).order_by(outbox.c.outbox_id)
        ).all()


def events(engine, name: str) -> list[dict]:
    with engine.connect() as conn:
        return [
            d
            for (d,) in conn.execute(
                sa.select(audit.c.detail).where(audit.c.event == name).order_by(audit.c.audit_id)
            )
        ]


def test_a_failed_send_is_retried_within_the_same_try(engine, slack_api) -> None:
    # Enough 503s to fail all five post attempts of the first try, none left for the second.
    slack_api.inject("503", method="chat.postMessage", count=5)
    queue(engine)
    sim = SimClock()
    summary = deliver_due(engine, T, CTX, budget=BUDGET, monotonic=sim.monotonic, sleep=sim.sleep)
    assert summary["delivered"] == 1 and summary["retry"] == 1
    assert len(slack_api.messages()) == 1
    assert [e["attempt"] for e in events(engine, "message_failed")] == [1]
    assert 5 <= sum(sim.sleeps) <= 6  # waited for the 5 s quick retry (plus key spread), no longer


def test_without_a_budget_it_is_one_pass_and_the_retry_waits(engine, slack_api) -> None:
    slack_api.inject("503", method="chat.postMessage", count=5)
    queue(engine)
    sim = SimClock()
    assert deliver_due(engine, T, CTX, monotonic=sim.monotonic, sleep=sim.sleep)["retry"] == 1
    assert sim.sleeps == [] and slack_api.messages() == []


def test_a_killed_deliverers_rows_are_taken_once_its_lease_lapses_within_the_try(engine, slack_api) -> None:
    queue(engine)
    with engine.begin() as conn:
        [row] = claim(conn, T, DEFAULT_LEASE, 10)
    SlackSender().deliver(row)  # sent, then the worker dies before marking
    sim = SimClock()
    started = sim.monotonic()
    summary = deliver_due(engine, T, CTX, budget=BUDGET, monotonic=sim.monotonic, sleep=sim.sleep)
    assert summary["delivered"] == 1 and summary["reconciled"] == 1  # found in history, not re-posted
    assert len(slack_api.messages()) == 1
    # Taken only once the lease lapsed (simulated waits plus the real seconds a busy machine adds),
    # and without waiting much past it.
    assert sim.monotonic() - started >= DEFAULT_LEASE.total_seconds()
    assert sum(sim.sleeps) <= DEFAULT_LEASE.total_seconds() + 1


def test_nothing_due_within_the_budget_ends_the_try(engine, slack_api) -> None:
    queue(engine)
    with engine.begin() as conn:
        claim(conn, T, dt.timedelta(minutes=5), 10)  # held well past the budget
    sim = SimClock()
    assert (
        deliver_due(engine, T, CTX, budget=BUDGET, monotonic=sim.monotonic, sleep=sim.sleep)["claimed"] == 0
    )
    assert sim.sleeps == []


class SlowSender:
    """Takes `seconds` of simulated time per send (records the deadline it was given)."""

    def __init__(self, sim: SimClock, seconds: float) -> None:
        self.sim, self.seconds, self.deadlines = sim, seconds, []

    def deliver(self, row, at, deadline):
        self.deadlines.append(deadline.remaining())
        self.sim.skipped += self.seconds
        return Delivered(f"ts-{row.outbox_id}", {})

    def close(self) -> None:
        pass


def test_rows_claimed_but_not_sent_when_the_budget_ends_are_handed_back_untried(engine) -> None:
    queue(engine, 3)
    sim = SimClock()
    sender = SlowSender(sim, 21)
    summary = deliver_due(
        engine, T, CTX, budget=BUDGET, slack=sender, monotonic=sim.monotonic, sleep=sim.sleep
    )
    assert summary["delivered"] == 2 and summary["released"] == 1 and summary["claimed"] == 2
    assert [(r.status, r.attempts, r.claimed_until) for r in rows(engine)][2] == ("pending", 0, None)
    # every send was given its lease minus the margin, from the renewal just before it
    assert all(abs(d - (DEFAULT_LEASE - LEASE_MARGIN).total_seconds()) < 1 for d in sender.deadlines)


def test_a_send_that_outlives_its_lease_is_reported_not_hidden(engine) -> None:
    queue(engine)
    sim = SimClock()
    summary = deliver_due(
        engine,
        T,
        CTX,
        slack=SlowSender(sim, DEFAULT_LEASE.total_seconds() + 1),
        monotonic=sim.monotonic,
        sleep=sim.sleep,
    )
    assert summary["delivered"] == 1 and summary["lease_overrun"] == 1
    assert events(engine, "message_sent")[0]["lease_overrun"] is True


def test_slack_post_is_not_started_without_room_before_the_deadline(engine, slack_api) -> None:
    queue(engine)
    with engine.begin() as conn:
        [row] = claim(conn, T, DEFAULT_LEASE, 10)
    sender = SlackSender()
    with pytest.raises(DeliveryFailed, match="lease nearly over") as err:
        sender.deliver(row, T, SendDeadline(2 * sender.request_s - 0.5))
    assert not err.value.permanent and slack_api.messages() == []


def test_slack_never_waits_out_a_retry_after_itself(engine, slack_api) -> None:
    # Two 429s queued: an SDK rate-limit retry would sleep 30 s and then consume the second.
    slack_api.inject("429", method="chat.postMessage", count=2, retry_after=30)
    queue(engine)
    with engine.begin() as conn:
        [row] = claim(conn, T, DEFAULT_LEASE, 10)
    with pytest.raises(Deferred) as err:
        SlackSender().deliver(row, T, SendDeadline((DEFAULT_LEASE - LEASE_MARGIN).total_seconds()))
    assert err.value.reason == "rate_limited" and err.value.retry_after_s == 30 and err.value.sent_nothing
    assert not err.value.permanent and "Retry-After 30" in str(err.value)
    assert slack_api.stats()["fault_429"] == 1 and slack_api.messages() == []


def test_slack_request_timeout_is_capped_below_the_lease(slack_api) -> None:
    sender = SlackSender()
    assert 2 * sender.request_s <= (DEFAULT_LEASE - LEASE_MARGIN).total_seconds()


def test_email_send_is_not_started_at_the_deadline(engine, smtp_sink) -> None:
    from leadsla.notify.email import EmailSender

    queue(engine, channel="email")
    with engine.begin() as conn:
        [row] = claim(conn, T, DEFAULT_LEASE, 10)
    with pytest.raises(DeliveryFailed, match="lease nearly over"):
        EmailSender().deliver(row, T, SendDeadline(0.5))
    assert smtp_sink.messages() == []


def test_the_smtp_watchdog_shuts_the_socket_at_the_deadline() -> None:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)

    class Client:
        sock = ours

    started = time.monotonic()
    dog = _Watchdog(0.2, Client())
    assert ours.recv(10) == b""  # the blocked read ends when the watchdog shuts the socket
    assert 0.15 < time.monotonic() - started < 2 and dog.fired.is_set()
    ours.close()
    theirs.close()


def test_budget_from_env(monkeypatch) -> None:
    monkeypatch.delenv("LEADSLA_DELIVERY_BUDGET_S", raising=False)
    assert budget_from_env() == DEFAULT_BUDGET == dt.timedelta(seconds=45)
    monkeypatch.setenv("LEADSLA_DELIVERY_BUDGET_S", "25")
    assert budget_from_env() == dt.timedelta(seconds=25)
    monkeypatch.setenv("LEADSLA_DELIVERY_BUDGET_S", "90")
    with pytest.raises(LeadSlaError, match="LEADSLA_DELIVERY_BUDGET_S"):
        budget_from_env()
