"""Permanent delivery failures are loud: a revoked Slack token, a scope the app lacks, a channel it is
not in, a recipient the mail server refuses or an address that is none fail the message at once (one
attempt, no retry loop), and data engineering hears of it on the OTHER channel, once per cause and
day, in the same delivery try. Real SlackHook/slack_sdk against the Slack stand-in (its error
answers injected), real SmtpHook against the SMTP sink (recipients refused at RCPT TO); the
outbox on both store backends.
"""

from __future__ import annotations

import datetime as dt
import logging
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from leadsla.decisions.plan import Message
from leadsla.notify.delivery import deliver_due
from leadsla.notify.failure import Contacts
from leadsla.notify.outbox import enqueue
from leadsla.store import open_store
from leadsla.store.audit import AuditContext
from leadsla.store.schema import audit, outbox
from tests.notify_fixtures import CLOCK_START, FALLBACK_CHANNEL, MANAGER, REP, alert_payload

pytest_plugins = ["tests.notify_fixtures"]  # the stand-in fixtures

T = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="deliver", try_number=1)
DATA_CHANNEL = "C0DATAENG01"
DATA_EMAIL = "data-engineering@example.com"
CONTACTS = Contacts(slack_channel=DATA_CHANNEL, email=DATA_EMAIL)


@pytest.fixture
def engine(store):
    """The outbox on each store backend."""
    return store


@pytest.fixture
def both(slack_api, smtp_sink):
    """Both stand-ins, with data engineering's channel in Slack."""
    slack_api.add_channel(DATA_CHANNEL, "data-engineering")
    return slack_api, smtp_sink


def person(who: dict) -> dict:
    return {"name": who["real_name"], "email": who["email"], "timezone": who["tz"]}


def queue(engine, channel: str, *recipients: str, checkpoint: str = "warn_50", at: dt.datetime = T):
    payloads = {REP["email"]: alert_payload(), MANAGER["email"]: alert_payload(recipient=person(MANAGER))}
    messages = [
        Message(
            "mql_to_sal",
            "00Q000000000001AAA",
            CLOCK_START,
            checkpoint,
            r,
            channel,
            payloads.get(r) or alert_payload(),
        )
        for r in recipients
    ]
    with engine.begin() as conn:
        return enqueue(conn, messages, at, CTX)


def rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                outbox.c.sla_id,
                outbox.c.channel,
                outbox.c.recipient,
                outbox.c.status,
                outbox.c.attempts,
                outbox.c.last_error,
                outbox.c.payload,
            ).order_by(outbox.c.outbox_id)
        ).all()


def alerts(engine) -> list:
    """Data engineering's failure notices in the outbox."""
    return [r for r in rows(engine) if r.sla_id == "delivery"]


def failed_audits(engine) -> list[dict]:
    with engine.connect() as conn:
        return [
            d
            for (d,) in conn.execute(
                sa.select(audit.c.detail).where(audit.c.event == "message_failed").order_by(audit.c.audit_id)
            )
        ]


@pytest.mark.parametrize("error", ["invalid_auth", "token_revoked", "account_inactive", "missing_scope"])
def test_a_broken_slack_token_fails_every_message_at_once_and_tells_data_engineering_by_email(
    engine, both, error
) -> None:
    slack_api, smtp_sink = both
    slack_api.inject("error", method=None, count=1000, error=error)  # every Slack call, as Slack does
    queue(engine, "slack", REP["email"], MANAGER["email"], FALLBACK_CHANNEL)
    summary = deliver_due(engine, T, CTX, contacts=CONTACTS)
    # Three alerts failed on their first attempt, never left for a retry; the notice went out.
    assert summary["failed"] == 3 and summary["retry"] == 0 and summary["failure_alerts"] == 1
    assert summary["delivered"] == 1  # the e-mail to data engineering, in the same try
    messages = [r for r in rows(engine) if r.sla_id != "delivery"]
    assert [(r.status, r.attempts) for r in messages] == [("failed", 1)] * 3
    assert all(error in r.last_error for r in messages)
    assert slack_api.messages() == []
    [mail] = smtp_sink.messages()
    assert mail["To"] == DATA_EMAIL and mail["Subject"] == f"[CRITICAL] Slack delivery failing: {error}"
    text = mail.get_body(("plain",)).get_content()
    assert "slack_api_default" in text or "scope" in text  # says what to fix
    assert "Every Slack message fails this way" in text
    causes = [d.get("cause") for d in failed_audits(engine)]
    assert causes == [f"slack:{error}"] * 3 and all(d["permanent"] for d in failed_audits(engine))


def test_a_channel_the_app_is_not_in_fails_its_messages_and_no_others(engine, both) -> None:
    slack_api, smtp_sink = both
    slack_api.inject("error", count=10, error="not_in_channel", channel=FALLBACK_CHANNEL)
    queue(engine, "slack", FALLBACK_CHANNEL, REP["email"])
    queue(engine, "slack", FALLBACK_CHANNEL, checkpoint="warn_80")
    summary = deliver_due(engine, T, CTX, contacts=CONTACTS, budget=dt.timedelta(seconds=5))
    assert summary["failed"] == 2 and summary["failure_alerts"] == 1
    by_recipient = sorted((r.recipient, r.status) for r in rows(engine) if r.sla_id != "delivery")
    assert by_recipient == [
        (FALLBACK_CHANNEL, "failed"),
        (FALLBACK_CHANNEL, "failed"),
        (REP["email"], "delivered"),
    ]
    [mail] = smtp_sink.messages()  # one notice for the channel, however many of its messages fail
    assert "not_in_channel" in mail["Subject"] and FALLBACK_CHANNEL in mail["Subject"]
    assert "invite it" in mail.get_body(("plain",)).get_content()


def test_the_same_cause_is_told_once_a_day(engine, both) -> None:
    slack_api, smtp_sink = both
    slack_api.inject("error", method=None, count=1000, error="token_revoked")
    queue(engine, "slack", REP["email"])
    deliver_due(engine, T, CTX, contacts=CONTACTS)
    queue(engine, "slack", MANAGER["email"], checkpoint="warn_80", at=T + dt.timedelta(hours=3))
    later = deliver_due(engine, T + dt.timedelta(hours=3), CTX, contacts=CONTACTS)
    assert later["failed"] == 1 and later.get("failure_alerts", 0) == 0
    assert len(smtp_sink.messages()) == 1
    tomorrow = T + dt.timedelta(days=1)
    queue(engine, "slack", REP["email"], checkpoint="breach", at=tomorrow)
    assert deliver_due(engine, tomorrow, CTX, contacts=CONTACTS)["failure_alerts"] == 1  # still broken
    assert len(smtp_sink.messages()) == 2


def test_a_recipient_the_mail_server_refuses_fails_at_once_and_tells_data_engineering_on_slack(
    engine, both
) -> None:
    slack_api, smtp_sink = both
    smtp_sink.reject(REP["email"], 550)
    queue(engine, "email", REP["email"], MANAGER["email"])
    summary = deliver_due(engine, T, CTX, contacts=CONTACTS)
    assert summary["failed"] == 1 and summary["retry"] == 0 and summary["failure_alerts"] == 1
    mail_rows = {r.recipient: (r.status, r.attempts) for r in rows(engine) if r.channel == "email"}
    assert mail_rows == {REP["email"]: ("failed", 1), MANAGER["email"]: ("delivered", 1)}
    assert [m["To"] for m in smtp_sink.messages()] == [MANAGER["email"]]
    [notice] = slack_api.messages(DATA_CHANNEL)
    assert f"E-mail delivery failing: 550 for {REP['email']}" in notice["text"]
    assert failed_audits(engine)[0]["cause"] == f"email:550:{REP['email']}"


def test_a_temporary_refusal_is_retried_and_tells_nobody(engine, both) -> None:
    slack_api, smtp_sink = both
    smtp_sink.reject(REP["email"], 450)
    queue(engine, "email", REP["email"])
    summary = deliver_due(engine, T, CTX, contacts=CONTACTS)
    assert summary["retry"] == 1 and summary["failed"] == 0 and "failure_alerts" not in summary
    assert rows(engine)[0].status == "pending" and slack_api.messages() == []
    smtp_sink.accept(REP["email"])
    assert deliver_due(engine, T + dt.timedelta(minutes=1), CTX, contacts=CONTACTS)["delivered"] == 1


@pytest.mark.parametrize("address", ["rita.rep.example.com", "rita rep@example.com", "a@b@example.com"])
def test_an_address_that_is_none_fails_at_once(engine, both, address) -> None:
    slack_api, smtp_sink = both
    queue(engine, "email", address)
    summary = deliver_due(engine, T, CTX, contacts=CONTACTS)
    assert summary["failed"] == 1 and summary["failure_alerts"] == 1
    assert rows(engine)[0].attempts == 1 and "is not an e-mail address" in rows(engine)[0].last_error
    assert smtp_sink.messages() == []
    [notice] = slack_api.messages(DATA_CHANNEL)
    # as Slack shows it: the zero-width joiners that keep `_` from turning into italics are invisible
    assert "malformed_recipient" in notice["text"].replace("\u200d", "")


def test_both_channels_broken_tell_each_other_once_and_stop(engine, both) -> None:
    """Slack's token revoked AND data engineering's mailbox refused: each failure is told on the
    other channel, whose failure is told back once; nothing loops."""
    slack_api, smtp_sink = both
    slack_api.inject("error", method=None, count=1000, error="token_revoked")
    smtp_sink.reject(DATA_EMAIL, 550)
    queue(engine, "slack", REP["email"])
    summary = deliver_due(engine, T, CTX, contacts=CONTACTS, budget=dt.timedelta(seconds=5))
    table = [(r.sla_id, r.channel, r.status) for r in rows(engine)]
    assert table == [
        ("mql_to_sal", "slack", "failed"),  # the alert: token revoked
        ("delivery", "email", "failed"),  # its notice by e-mail: mailbox refused
        ("delivery", "slack", "failed"),  # that failure's notice on Slack: token revoked (told already)
    ]
    assert summary["failed"] == 3 and summary["failure_alerts"] == 2


def test_without_contacts_the_failure_is_marked_and_logged(engine, both, caplog) -> None:
    slack_api, _ = both
    slack_api.inject("error", method=None, count=10, error="invalid_auth")
    queue(engine, "slack", REP["email"])
    with caplog.at_level(logging.ERROR, logger="leadsla.notify.delivery"):
        summary = deliver_due(engine, T, CTX, contacts=Contacts(slack_channel=DATA_CHANNEL, email=None))
    assert summary["failed"] == 1 and "failure_alerts" not in summary
    assert rows(engine)[0].status == "failed"
    assert "nobody can be told" in caplog.text


def test_the_deliver_task_tells_the_contacts_of_the_configuration_in_force(
    tmp_path, both, monkeypatch
) -> None:
    from leadsla.tasks import monitor

    slack_api, smtp_sink = both
    slack_api.inject("error", method=None, count=10, error="token_revoked")
    url = f"sqlite:///{tmp_path / 'task.db'}"
    monkeypatch.setenv("LEADSLA_STORE_URL", url)
    monkeypatch.setenv("LEADSLA_DELIVERY_BUDGET_S", "0")
    engine = open_store(url)
    try:
        queue(engine, "slack", REP["email"], at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        ti = SimpleNamespace(dag_id="sla_monitor", run_id="scheduled__1", task_id="deliver", try_number=1)
        summary = monitor.deliver({"ti": ti})
        assert summary["failed"] == 1 and summary["failure_alerts"] == 1
        [mail] = smtp_sink.messages()
        assert mail["To"] == DATA_EMAIL  # the shipped quality.yaml's incident.email
    finally:
        engine.dispose()
