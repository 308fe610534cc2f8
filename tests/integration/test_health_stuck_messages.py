"""The stuck-message health check measures a row's wait from when it FIRST fell due, on both store
backends: a row retried again and again (each retry moves `not_before` on) is still reported once it
has waited past `outbox_queued_minutes`; a message held for working hours counts from the end of
the hold, not from when it was queued; breach actions that keep failing are reported too."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.decisions.plan import Message, Notice
from leadsla.health import delivery
from leadsla.notify.outbox import backoff, claim, enqueue, mark_failed, queue_notices
from leadsla.policy import load_policy
from leadsla.store import schema
from leadsla.store.audit import AuditContext
from tests.notify_fixtures import CLOCK_START, alert_payload

NOW = dt.datetime(2026, 3, 9, 18, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="deliver", try_number=1)
SETTINGS = {"outbox_queued_minutes": 30}


def message(checkpoint: str, recipient: str, not_before: dt.datetime | None = None) -> Message:
    return Message(
        "mql_to_sal",
        "00Q000000000001AAA",
        CLOCK_START,
        checkpoint,
        recipient,
        "slack",
        alert_payload(),
        not_before=not_before,
    )


def fail_whenever_due(store, since: dt.datetime, until: dt.datetime) -> None:
    """Each minute from `since`, claim every due row and fail it (transient): `not_before` moves on."""
    at = since
    while at < until:
        with store.begin() as conn:
            for row in claim(conn, at, dt.timedelta(seconds=25), 50):
                retry = at + backoff(row.attempts, row.idempotency_key)
                mark_failed(conn, row, "Slack unreachable", retry, at, CTX)
        at += dt.timedelta(minutes=1)


def ids_by_key(store) -> dict[str, int]:
    with store.connect() as conn:
        return dict(conn.execute(sa.select(schema.outbox.c.idempotency_key, schema.outbox.c.outbox_id)).all())


def test_a_row_retried_again_and_again_is_reported_by_its_first_due_time(store) -> None:
    queued_at = NOW - dt.timedelta(hours=2)
    with store.begin() as conn:
        [retried] = enqueue(conn, [message("warn_50", "rita.rep@example.com")], queued_at, CTX)
        # Held for working hours until 10 minutes ago: waiting 10 minutes, not 2 hours.
        [held] = enqueue(
            conn,
            [message("warn_80", "max.manager@example.com", NOW - dt.timedelta(minutes=10))],
            queued_at,
            CTX,
        )
    fail_whenever_due(store, queued_at, NOW - dt.timedelta(minutes=11))  # the retried row only
    with store.begin() as conn:
        notice = Notice(
            "crm_sync",
            "budget",
            NOW - dt.timedelta(minutes=45),
            "over",
            (("slack", "C0DATA"),),
            "over budget",
            "warning",
        )
        [old_notice] = queue_notices(conn, [notice], NOW - dt.timedelta(minutes=45), CTX)
        fresh = Notice("crm_sync", "budget", NOW, "over", (("slack", "C0DATA"),), "over budget", "warning")
        [new_notice] = queue_notices(conn, [fresh], NOW - dt.timedelta(minutes=5), CTX)
        # A breach action the CRM has refused for an hour (its not_before moved on each time).
        conn.execute(
            schema.outbox.insert().values(
                idempotency_key="b" * 64,
                sla_id="mql_to_sal",
                record_id="00Q000000000002AAA",
                clock_start=CLOCK_START,
                checkpoint="breach",
                recipient="005MGR",
                channel="crm",
                payload={},
                status="pending",
                attempts=9,
                created_at=NOW - dt.timedelta(hours=1),
                not_before=NOW + dt.timedelta(minutes=5),
                last_error="CrmError: UNABLE_TO_LOCK_ROW",
            )
        )
    ids = ids_by_key(store)
    with store.connect() as conn:
        row = conn.execute(
            sa.select(schema.outbox.c.not_before, schema.outbox.c.attempts).where(
                schema.outbox.c.idempotency_key == retried
            )
        ).one()
        assert row.attempts > 5 and row.not_before > NOW - dt.timedelta(minutes=30)  # looks fresh
        [finding] = [
            f for f in delivery.check(conn, NOW, load_policy(), SETTINGS) if f.check == "notifications_queued"
        ]
    assert finding.record_ids == [str(ids[retried]), str(ids["b" * 64]), str(ids[old_notice])]
    assert str(ids[held]) not in finding.record_ids and str(ids[new_notice]) not in finding.record_ids
    assert finding.summary.startswith("2 alerts and 1 breach action due over 30 min ago")


def test_nothing_waiting_past_the_limit_reports_nothing(store) -> None:
    with store.begin() as conn:
        enqueue(conn, [message("warn_50", "rita.rep@example.com")], NOW - dt.timedelta(minutes=29), CTX)
        # Queued long ago but held until later today: not due yet.
        enqueue(
            conn,
            [message("warn_80", "rita.rep@example.com", NOW + dt.timedelta(hours=1))],
            NOW - dt.timedelta(hours=5),
            CTX,
        )
    with store.connect() as conn:
        assert [
            f for f in delivery.check(conn, NOW, load_policy(), SETTINGS) if f.check == "notifications_queued"
        ] == []
