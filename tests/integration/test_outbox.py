"""The outbox on both store backends: keys, enqueue once with audit, leases, marks, back-off."""

from __future__ import annotations

import datetime as dt
import threading
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from leadsla.decisions.keys import idempotency_key
from leadsla.decisions.plan import Message
from leadsla.notify.outbox import backoff, claim, enqueue, mark_delivered, mark_failed
from leadsla.notify.payloads import PayloadError
from leadsla.store.audit import AuditContext
from leadsla.store.schema import audit, handled_checkpoints, outbox
from tests.notify_fixtures import CLOCK_START, alert_payload

T = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(
    dag_id="sla_monitor", run_id="scheduled__2026-03-09T16:00:00+00:00", task_id="deliver", try_number=1
)


def action(
    recipient: str = "rita.rep@example.com", channel: str = "slack", checkpoint: str = "warn_50", **kw
) -> Message:
    return Message(
        "mql_to_sal",
        "00Q000000000001AAA",
        CLOCK_START,
        checkpoint,
        recipient,
        channel,
        kw.pop("payload", alert_payload()),
        **kw,
    )


def audit_events(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                audit.c.event,
                audit.c.dag_id,
                audit.c.run_id,
                audit.c.task_id,
                audit.c.try_number,
                audit.c.detail,
            ).order_by(audit.c.audit_id)
        ).all()


def test_key_is_stable_across_timezones_and_recipient_case() -> None:
    ny = CLOCK_START.astimezone(ZoneInfo("America/New_York"))
    a = idempotency_key("mql_to_sal", "00Q1", CLOCK_START, "warn_50", "Rita.Rep@Example.com", "slack")
    b = idempotency_key("mql_to_sal", "00Q1", ny, "warn_50", " rita.rep@example.com ", "Slack")
    assert a == b and len(a) == 64
    assert a != idempotency_key("mql_to_sal", "00Q1", CLOCK_START, "warn_50", "rita.rep@example.com", "email")
    assert a != idempotency_key("mql_to_sal", "00Q1", CLOCK_START, "warn_80", "rita.rep@example.com", "slack")
    assert a != idempotency_key(
        "mql_to_sal",
        "00Q1",
        CLOCK_START + dt.timedelta(microseconds=1),
        "warn_50",
        "rita.rep@example.com",
        "slack",
    )
    with pytest.raises(ValueError, match="naive"):
        idempotency_key("s", "r", dt.datetime(2026, 1, 1), "c", "x", "slack")
    with pytest.raises(ValueError, match="channel"):
        idempotency_key("s", "r", CLOCK_START, "c", "x", "pigeon")


def test_enqueue_is_idempotent_and_audited(store: sa.Engine) -> None:
    with store.begin() as conn:
        keys = enqueue(conn, [action(), action(channel="email")], T, CTX)
    with store.begin() as conn:
        again = enqueue(conn, [action(), action(recipient="max.manager@example.com")], T, CTX)
    assert len(keys) == 2 and len(again) == 1
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar() == 3
    events = audit_events(store)
    assert [e[0] for e in events] == ["message_queued"] * 3
    assert events[0][1:5] == ("sla_monitor", CTX.run_id, "deliver", 1)
    assert {e[5]["idempotency_key"] for e in events} == set(keys) | set(again)


def test_enqueue_in_one_call_is_as_one_at_a_time(store: sa.Engine) -> None:
    """A repeated key within a call goes in once (its first payload); a stored key is left as it
    is unless withdrawn, which is queued again with the new contents; every row's checkpoint is
    handled, and only the rows that went in are audited, in the call's order."""
    other = alert_payload(lead={**alert_payload()["lead"], "name": "Second"})
    with store.begin() as conn:
        [kept, withdrawn] = enqueue(conn, [action(), action(checkpoint="warn_80")], T, CTX)
        conn.execute(outbox.update().where(outbox.c.idempotency_key == withdrawn).values(status="withdrawn"))
    later = T + dt.timedelta(minutes=1)
    with store.begin() as conn:
        went = enqueue(
            conn,
            [
                action(channel="email"),
                action(payload=other),  # stored and pending: left as it is
                action(checkpoint="warn_80", payload=other),  # withdrawn: queued again, new contents
                action(channel="email", payload=other),  # repeats the first of this call
                action(checkpoint="breach", channel="email"),
            ],
            later,
            CTX,
        )
    email = action(channel="email").key
    assert went == [email, withdrawn, action(checkpoint="breach", channel="email").key]
    with store.connect() as conn:
        rows = {
            r.idempotency_key: r
            for r in conn.execute(
                sa.select(outbox.c.idempotency_key, outbox.c.status, outbox.c.payload, outbox.c.created_at)
            )
        }
        handled = conn.execute(
            sa.select(handled_checkpoints.c.checkpoint, handled_checkpoints.c.handled_at)
        ).all()
    assert len(rows) == 4 and {r.status for r in rows.values()} == {"pending"}
    assert (
        rows[kept].payload["lead"]["name"] == alert_payload()["lead"]["name"] and rows[kept].created_at == T
    )
    assert rows[withdrawn].payload["lead"]["name"] == "Second" and rows[withdrawn].created_at == later
    assert rows[email].payload["lead"]["name"] == alert_payload()["lead"]["name"]
    assert sorted(handled) == [("breach", later), ("warn_50", T), ("warn_80", T)]
    queued = [e[5]["idempotency_key"] for e in audit_events(store) if e[0] == "message_queued"]
    assert queued == [kept, withdrawn, *went]


def test_the_audit_says_which_roles_one_message_covers(store: sa.Engine) -> None:
    payload = {**alert_payload(), "roles": ["owner", "team_manager"]}
    with store.begin() as conn:
        enqueue(conn, [action(payload=payload), action(channel="email")], T, CTX)
    details = [e[5] for e in audit_events(store)]
    assert details[0]["roles"] == ["owner", "team_manager"]
    assert "roles" not in details[1]  # a payload that names no roles claims none


def test_enqueue_refuses_a_bad_payload_and_writes_nothing(store: sa.Engine) -> None:
    bad = alert_payload(recipient={"name": "X", "timezone": "Mars/Olympus"})
    with pytest.raises(PayloadError, match=r"recipient\.timezone.*Mars/Olympus"):
        with store.begin() as conn:
            enqueue(conn, [action(), action(channel="email", payload=bad)], T, CTX)
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar() == 0
    assert audit_events(store) == []


def test_claim_leases_and_respects_not_before(store: sa.Engine) -> None:
    with store.begin() as conn:
        enqueue(conn, [action(), action(channel="email", not_before=T + dt.timedelta(hours=1))], T, CTX)
    lease = dt.timedelta(minutes=5)
    with store.begin() as conn:
        first = claim(conn, T, lease, 10)
    assert [r.channel for r in first] == ["slack"] and first[0].attempts == 1
    assert not first[0].attempted_before
    with store.begin() as conn:
        assert claim(conn, T + dt.timedelta(minutes=4), lease, 10) == []  # still leased; email not due
    with store.begin() as conn:
        later = claim(conn, T + dt.timedelta(hours=1, seconds=1), lease, 10)
    # The slack lease expired (never marked): it comes back, now as a second attempt.
    assert sorted((r.channel, r.attempts) for r in later) == [("email", 1), ("slack", 2)]
    assert next(r for r in later if r.channel == "slack").attempted_before


def test_mark_delivered_and_failed_with_backoff(store: sa.Engine) -> None:
    with store.begin() as conn:
        enqueue(conn, [action(), action(channel="email")], T, CTX)
    with store.begin() as conn:
        slack_row, email_row = sorted(claim(conn, T, dt.timedelta(minutes=5), 10), key=lambda r: r.channel)[
            ::-1
        ]
    retry_at = T + backoff(email_row.attempts, email_row.idempotency_key)
    with store.begin() as conn:
        assert mark_delivered(conn, slack_row, "1700000000.000100", T, CTX)
        mark_failed(conn, email_row, "SMTP unreachable: ConnectionRefusedError", retry_at, T, CTX)
    with store.begin() as conn:
        assert not mark_delivered(conn, slack_row, "1700000000.000100", T, CTX)  # a second mark is visible
        assert claim(conn, retry_at - dt.timedelta(seconds=1), dt.timedelta(minutes=5), 10) == []
        again = claim(conn, retry_at, dt.timedelta(minutes=5), 10)
    assert [(r.channel, r.attempts) for r in again] == [("email", 2)]
    with store.begin() as conn:
        mark_failed(conn, again[0], "550 no such user", None, retry_at, CTX)
    with store.connect() as conn:
        rows = dict(conn.execute(sa.select(outbox.c.channel, outbox.c.status)).all())
    assert rows == {"slack": "delivered", "email": "failed"}
    events = [(e[0], e[5].get("permanent"), e[5].get("already_marked")) for e in audit_events(store)]
    assert events[2:] == [
        ("message_sent", None, None),
        ("message_failed", False, None),
        ("message_sent", None, True),
        ("message_failed", True, None),
    ]


def test_backoff_retries_within_the_try_then_next_run_then_doubles_up_to_the_cap_and_is_deterministic() -> (
    None
):
    waits = [backoff(n, "ffff").total_seconds() for n in range(1, 14)]
    # 5 s and 15 s (inside the same delivery try), 30 s (the next run) three times, then doubling
    assert waits[:8] == [5.5, 16.5, 33.0, 33.0, 33.0, 66.0, 132.0, 264.0]
    assert waits[-1] == 1980.0  # 30 min cap + 10 % spread
    assert backoff(3, "abcd") == backoff(3, "abcd")


def test_two_workers_claiming_at_once_never_share_a_row(store: sa.Engine) -> None:
    with store.begin() as conn:
        enqueue(conn, [action(checkpoint=f"cp{i}") for i in range(60)], T, CTX)
    got: list[list[int]] = [[], [], [], []]
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        barrier.wait()
        while True:
            with store.begin() as conn:
                rows = claim(conn, T, dt.timedelta(minutes=5), 7)
            if not rows:
                return
            got[i].extend(r.outbox_id for r in rows)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [oid for ids in got for oid in ids]
    assert len(every) == 60 and len(set(every)) == 60
