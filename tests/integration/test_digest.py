"""Per-recipient rate limit with digest: decided by `leadsla.decisions.digest` from the outbox's
state, applied by `leadsla.notify.outbox.apply` on both store backends, then delivered through the
Slack stand-in and the SMTP sink. The pure decision is tested without a store at the end."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.decisions.digest import decide_digests
from leadsla.decisions.keys import digest_key
from leadsla.decisions.plan import Message, Plan, Queued
from leadsla.notify import outbox as outbox_module
from leadsla.notify.delivery import deliver_due
from leadsla.notify.outbox import claim, enqueue
from leadsla.store.audit import AuditContext
from leadsla.store.schema import audit, outbox
from tests.notify_fixtures import CLOCK_START, REP, alert_payload

pytest_plugins = ["tests.notify_fixtures"]

T = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="evaluate", try_number=1)


def warnings_for(n: int, channel: str = "email", *, start: int = 0, kind: str = "warning") -> list[Message]:
    return [
        Message(
            "mql_to_sal",
            f"00Q{i:015d}",
            CLOCK_START,
            "warn_50" if kind == "warning" else "breach",
            REP["email"],
            channel,
            alert_payload(
                kind,
                name=f"Lead {i} <!here>",
                lead={
                    "id": f"00Q{i:015d}",
                    "name": f"Lead {i} <!here>",
                    "company": "Co & Sons",
                    "tier": "High-Intent",
                },
            ),
        )
        for i in range(start, start + n)
    ]


def roll_up(conn, now: dt.datetime, *, max_alerts: int, window_minutes: int, context) -> list[str]:
    """The monitor's digest step: decide from the outbox's state, then apply; the new digest keys."""
    state = outbox_module.queue_state(conn, now, window_minutes=window_minutes)
    digests = decide_digests(state.rows, now, max_alerts=max_alerts, window_minutes=window_minutes)
    before = {d.key for d in digests}
    assert outbox_module.apply(conn, Plan(digests=digests), now, context)["digests"] == len(before)
    return [d.key for d in digests]


def statuses(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
    return dict(rows)


def test_beyond_the_limit_one_digest_replaces_the_rest_and_a_rerun_adds_nothing(store) -> None:
    with store.begin() as conn:
        enqueue(conn, warnings_for(8) + warnings_for(2, start=100, kind="breach"), T, CTX)
        [key] = roll_up(conn, T, max_alerts=5, window_minutes=10, context=CTX)
    # 2 breaches count against the 5 but are never held: 3 warnings go alone, 5 into one digest.
    assert statuses(store) == {"pending": 2 + 3 + 1, "digested": 5}
    with store.connect() as conn:
        digested = (
            conn.execute(
                sa.select(outbox.c.idempotency_key)
                .where(outbox.c.status == "digested")
                .order_by(outbox.c.outbox_id)
            )
            .scalars()
            .all()
        )
        row = conn.execute(sa.select(outbox).where(outbox.c.idempotency_key == key)).one()
        events = conn.execute(
            sa.select(audit.c.event, audit.c.detail).where(
                audit.c.event.in_(["message_digested", "message_queued"]),
                audit.c.checkpoint.in_(["digest", "warn_50"]),
            )
        ).all()
    assert key == digest_key(REP["email"], "email", digested)
    assert (
        row.payload["kind"] == "digest"
        and row.payload["replaces"] == digested
        and len(row.payload["items"]) == 5
    )
    assert {d["digest_key"] for e, d in events if e == "message_digested"} == {key}
    assert sum(e == "message_digested" for e, _ in events) == 5
    with store.begin() as conn:  # the next run (or a retry) of the monitor
        assert roll_up(conn, T + dt.timedelta(minutes=1), max_alerts=5, window_minutes=10, context=CTX) == []
    assert statuses(store) == {"pending": 6, "digested": 5}


def test_breaches_claimed_rows_and_quiet_hours_are_never_digested(store) -> None:
    later = T + dt.timedelta(hours=10)
    quiet = [
        Message(
            a.sla_id,
            a.record_id,
            a.clock_start,
            a.checkpoint,
            a.recipient,
            a.channel,
            a.payload,
            not_before=later,
        )
        for a in warnings_for(3, start=50)
    ]
    with store.begin() as conn:
        enqueue(conn, warnings_for(6, kind="breach", start=10) + warnings_for(3) + quiet, T, CTX)
        claimed = claim(conn, T, dt.timedelta(seconds=60), 1)  # one warning is being sent right now
    assert claimed and claimed[0].payload["kind"] == "breach"  # claims go oldest first: a breach
    with store.begin() as conn:
        roll_up(conn, T, max_alerts=5, window_minutes=10, context=CTX)
    with store.connect() as conn:
        kinds = conn.execute(sa.select(outbox.c.payload, outbox.c.status)).all()
    assert all(p["kind"] != "breach" for p, s in kinds if s == "digested")
    assert sum(s == "digested" for _, s in kinds) == 3  # only the three due warnings
    assert sum(p.get("kind") == "warning" and s == "pending" for p, s in kinds) == 3  # quiet-hour ones wait


def test_within_the_limit_or_one_over_nothing_changes(store) -> None:
    with store.begin() as conn:
        enqueue(conn, warnings_for(6), T, CTX)
        assert roll_up(conn, T, max_alerts=5, window_minutes=10, context=CTX) == []  # one extra goes alone
    assert statuses(store) == {"pending": 6}


def test_delivered_messages_in_the_window_count_and_older_ones_do_not(store) -> None:
    with store.begin() as conn:
        enqueue(conn, warnings_for(5), T, CTX)
        rows = claim(conn, T, dt.timedelta(seconds=60), 10)
        conn.execute(
            outbox.update()
            .where(outbox.c.outbox_id.in_([r.outbox_id for r in rows]))
            .values(status="delivered", delivered_at=T, claimed_until=None)
        )
    soon, late = T + dt.timedelta(minutes=5), T + dt.timedelta(minutes=30)
    with store.begin() as conn:
        enqueue(conn, warnings_for(2, start=20), soon, CTX)
        assert len(roll_up(conn, soon, max_alerts=5, window_minutes=10, context=CTX)) == 1
        enqueue(conn, warnings_for(2, start=40), late, CTX)
        assert roll_up(conn, late, max_alerts=5, window_minutes=10, context=CTX) == []


def test_digest_is_delivered_once_by_slack_and_email_escaped(tmp_path, slack_api, smtp_sink) -> None:
    from leadsla.store import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.begin() as conn:
        enqueue(conn, warnings_for(7, "slack") + warnings_for(7, "email"), T, CTX)
        assert len(roll_up(conn, T, max_alerts=3, window_minutes=10, context=CTX)) == 2
    # With a budget, as the DAG runs it: the stand-in's 1 message/s/channel puts the fourth DM back
    # for its Retry-After (1 s) and the same try sends it then.
    summary = deliver_due(engine, T, CTX, budget=dt.timedelta(seconds=10))
    assert summary["delivered"] == 2 * (3 + 1) and summary["failed"] == summary["retry"] == 0
    assert deliver_due(engine, T + dt.timedelta(minutes=2), CTX)["claimed"] == 0
    slack_msgs = slack_api.messages()
    assert len(slack_msgs) == 4
    [digest] = [m for m in slack_msgs if m["text"].startswith("SLA digest")]
    body = str(digest["blocks"])
    assert "4 more warnings" in digest["text"] and "Lead 6 &lt;!here&gt;" in body and "<!here>" not in body
    assert "Co &amp; Sons" in body and "/lightning/r/Lead/00Q000000000000006/view" in body
    mails = smtp_sink.messages()
    assert len(mails) == 4
    [mail] = [m for m in mails if m["Subject"] == "SLA digest: 4 more warnings"]
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "Lead 3 &lt;!here&gt;" in html and "Co &amp; Sons" in html and mail["X-Priority"] is None
    assert "Lead 6 <!here> at Co & Sons" in mail.get_body(preferencelist=("plain",)).get_content()
    engine.dispose()


# --- the decision alone: no store ------------------------------------------------------------


def queued(
    i: int,
    *,
    kind: str = "warning",
    status: str = "pending",
    attempts: int = 0,
    leased: bool = False,
    not_before: dt.datetime = T,
    recipient: str = "rita.rep@example.com",
) -> Queued:
    payload = alert_payload(kind, lead={"id": f"00Q{i:015d}", "name": f"Lead {i}"})
    return Queued(
        key=f"k{i:03d}",
        recipient=recipient,
        channel="email",
        status=status,
        attempts=attempts,
        leased=leased,
        not_before=not_before,
        created_at=T,
        payload=payload,
        sla_id="mql_to_sal",
        record_id=f"00Q{i:015d}",
        clock_start=CLOCK_START,
        checkpoint="warn_50",
        seq=i,
    )


def test_the_decision_keeps_the_oldest_within_the_allowance_and_digests_the_rest() -> None:
    rows = [queued(i) for i in range(8)] + [queued(100 + i, kind="breach") for i in range(2)]
    [digest] = decide_digests(rows, T, max_alerts=5, window_minutes=10)
    assert [r.key for r in digest.replaces] == [f"k{i:03d}" for i in range(3, 8)]  # 2 breaches + 3 oldest go
    assert digest.key == digest_key("rita.rep@example.com", "email", [f"k{i:03d}" for i in range(3, 8)])
    assert (
        digest.payload["replaces"] == [r.key for r in digest.replaces] and len(digest.payload["items"]) == 5
    )


def test_the_decision_never_digests_what_may_be_on_its_way_or_not_due() -> None:
    later = T + dt.timedelta(hours=1)
    rows = (
        [queued(i, kind="breach") for i in range(6)]
        + [queued(10, attempts=1), queued(11, leased=True), queued(12, not_before=later)]
        + [queued(20 + i) for i in range(2)]
    )
    [digest] = decide_digests(rows, T, max_alerts=5, window_minutes=10)
    assert [r.key for r in digest.replaces] == ["k020", "k021"]
    assert decide_digests(rows[:-1], T, max_alerts=5, window_minutes=10) == []  # one extra goes alone
    delivered = [queued(30 + i, status="delivered") for i in range(5)]
    assert len(decide_digests(delivered + [queued(40), queued(41)], T, max_alerts=5, window_minutes=10)) == 1
    other = [queued(50 + i, recipient="max@example.com") for i in range(2)]
    assert decide_digests(delivered + other, T, max_alerts=5, window_minutes=10) == []  # per person
