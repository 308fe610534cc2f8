"""Text messages through the outbox: Airflow's Apprise provider (the `apprise_sms` connection) and
Apprise's SMSEagle plugin against the SMS gateway stand-in, on both store backends.

Exactly once under a retry (a 5xx before sending is retried and texts once; a lease another worker
holds is not texted again), a permanent refusal fails at once and is told on e-mail, a gateway
that refuses connections leaves its rows waiting uncounted, a missing connection fails loudly; and
the number is never written in full: not in a log line (ours or Apprise's), an audit entry, a
last_error or data engineering's notice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest
import sqlalchemy as sa

from leadsla.decisions.plan import Message
from leadsla.notify.delivery import deliver_due
from leadsla.notify.failure import Contacts
from leadsla.notify.outbox import enqueue
from leadsla.store.audit import AuditContext
from leadsla.store.schema import audit, outbox
from tests.notify_fixtures import CLOCK_START, alert_payload, apprise_connection

pytest_plugins = ["tests.notify_fixtures"]

T = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="deliver", try_number=1)
DATA_EMAIL = "data-engineering@example.com"
CONTACTS = Contacts(slack_channel=None, email=DATA_EMAIL)
PHONE = "+15551234567"
#: Any run of the number's digits longer than the masked tail: none may appear anywhere we write.
LEAKS = ("5551234567", "555123", "1234567", "+1 555")


@pytest.fixture
def engine(store):
    return store


def queue(engine, *phones: str, checkpoint: str = "breach") -> list[str]:
    messages = [
        Message(
            "sales_touch", "00Q000000000001AAA", CLOCK_START, checkpoint, p, "sms", alert_payload("breach")
        )
        for p in phones
    ]
    with engine.begin() as conn:
        return enqueue(conn, messages, T, CTX)


def rows(engine, channel: str = "sms") -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(outbox).where(outbox.c.channel == channel).order_by(outbox.c.outbox_id)
        ).all()


def audits(engine) -> list[tuple[str, dict]]:
    with engine.connect() as conn:
        return [
            (e, d)
            for e, d in conn.execute(sa.select(audit.c.event, audit.c.detail).order_by(audit.c.audit_id))
        ]


def assert_never_in_full(engine, caplog) -> None:
    """The number appears in the outbox row that texts it and nowhere else we write."""
    written = json.dumps([d for _, d in audits(engine)]) + caplog.text
    written += json.dumps([(r.last_error, r.payload) for r in rows(engine, "email")])
    written += json.dumps([r.last_error for r in rows(engine)])
    for leak in LEAKS:
        assert leak not in written, leak
    assert "***567" in written  # it is shown, masked


def test_a_text_goes_once_through_a_retry_and_is_audited_masked(engine, sms_gateway, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    sms_gateway.inject("500")  # the gateway fails before sending
    [key] = queue(engine, PHONE)
    first = deliver_due(engine, T, CTX, contacts=CONTACTS)
    assert first["retry"] == 1 and first["delivered"] == 0 and sms_gateway.messages() == []
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("pending", 1) and row.not_before > T  # backed off
    # Another run while the retry waits texts nothing; the retry texts once.
    assert deliver_due(engine, T + dt.timedelta(seconds=1), CTX)["claimed"] == 0
    later = deliver_due(engine, T + dt.timedelta(minutes=2), CTX, contacts=CONTACTS)
    assert later["delivered"] == 1
    assert deliver_due(engine, T + dt.timedelta(minutes=5), CTX)["claimed"] == 0  # and never again
    [text] = sms_gateway.messages()
    assert text["to"] == PHONE and text["message"].endswith(f"ref {key[:6]}")
    assert text["highpriority"] == 1  # what cannot wait goes first at the gateway
    assert len(text["message"]) <= 160 and "Ada Lovelace" in text["message"]
    [row] = rows(engine)
    assert (row.status, row.attempts, row.external_id) == ("delivered", 2, f"sms:{key[:12]}")
    events = [
        (e, d.get("recipient"), d.get("attempt")) for e, d in audits(engine) if d.get("channel") == "sms"
    ]
    assert events == [
        ("message_queued", "***567", None),
        ("message_failed", "***567", 1),
        ("message_sent", "***567", 2),
    ]
    assert_never_in_full(engine, caplog)


def test_a_held_lease_is_not_texted_twice(engine, sms_gateway) -> None:
    """Two deliverers at once: the second finds the row leased and texts nothing."""
    queue(engine, PHONE)
    from leadsla.notify.outbox import claim

    with engine.begin() as conn:
        [held] = claim(conn, T, dt.timedelta(seconds=25), 10)
    assert deliver_due(engine, T + dt.timedelta(seconds=1), CTX)["claimed"] == 0
    assert sms_gateway.messages() == [] and held.channel == "sms"


def test_a_refused_number_fails_at_once_and_data_engineering_hears_by_email(
    engine, sms_gateway, smtp_sink, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    sms_gateway.reject_number(PHONE)
    queue(engine, PHONE)
    summary = deliver_due(engine, T, CTX, contacts=CONTACTS)
    assert summary["failed"] == 1 and summary["retry"] == 0 and summary["failure_alerts"] == 1
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("failed", 1) and "refused the text to ***567" in row.last_error
    assert sms_gateway.requests == 1  # one attempt, no retry loop
    failed = [d for e, d in audits(engine) if e == "message_failed"]
    assert [(d["cause"], d["permanent"]) for d in failed] == [("sms:rejected:***567", True)]
    [mail] = smtp_sink.messages()
    assert (
        mail["To"] == DATA_EMAIL and mail["Subject"] == "[CRITICAL] SMS delivery failing: rejected for ***567"
    )
    body = mail.get_body(("plain",)).get_content()
    assert "MobilePhone" in body and "to ***567" in body
    for leak in LEAKS:
        assert leak not in body and leak not in mail["Subject"]
    assert_never_in_full(engine, caplog)


@pytest.mark.parametrize(
    ("setup", "cause"),
    [
        ("wrong_token", "sms:auth"),
        ("no_connection", "sms:no_connection"),
        ("two_urls", "sms:bad_connection"),
        ("not_a_number", "sms:malformed_recipient:***567"),
    ],
)
def test_a_configuration_fault_fails_at_once_naming_its_cause(
    engine, sms_gateway, smtp_sink, monkeypatch, setup, cause
) -> None:
    phone = PHONE
    if setup == "wrong_token":
        monkeypatch.setenv("AIRFLOW_CONN_APPRISE_SMS", apprise_connection(sms_gateway.apprise_url("nope")))
    elif setup == "no_connection":
        monkeypatch.delenv("AIRFLOW_CONN_APPRISE_SMS")
    elif setup == "two_urls":
        two = {"conn_type": "apprise", "extra": {"config": [{"path": sms_gateway.apprise_url()}] * 2}}
        monkeypatch.setenv("AIRFLOW_CONN_APPRISE_SMS", json.dumps(two))
    else:
        phone = "555 1234 567"  # no country code: never guessed
    queue(engine, phone)
    summary = deliver_due(engine, T, CTX, contacts=CONTACTS)
    assert summary["failed"] == 1 and summary["failure_alerts"] == 1
    [row] = rows(engine)
    assert (row.status, row.attempts) == ("failed", 1)
    assert [d["cause"] for e, d in audits(engine) if e == "message_failed"] == [cause]
    assert sms_gateway.messages() == []
    assert "SMS delivery failing" in smtp_sink.messages()[0]["Subject"]


def test_a_gateway_that_refuses_connections_leaves_its_texts_waiting_uncounted(engine, sms_gateway) -> None:
    queue(engine, PHONE, "+15557654321")
    sms_gateway.stop()  # nothing listens on its port any more
    summary = deliver_due(engine, T, CTX, contacts=CONTACTS)
    assert summary["delivered"] == 0 and summary["failed"] == 0 and summary.get("channel_down") == 1
    # The breaker left the second row alone (not tried); the first was put back uncounted.
    assert [(r.status, r.attempts) for r in rows(engine)] == [("pending", 0), ("pending", 0)]
    deferred = [d for e, d in audits(engine) if e == "message_deferred"]
    assert [(d["reason"], d["recipient"]) for d in deferred] == [("channel_down", "***567")]
