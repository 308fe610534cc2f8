"""E-mail delivery with the real SmtpHook against the aiosmtpd sink: the seed's wording, HTML
autoescaping, high-priority breach headers, Message-ID from the key, SMTP outages and the
documented crash window."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from leadsla.decisions.plan import Message
from leadsla.notify.delivery import deliver_due
from leadsla.notify.email import EmailSender, message_id
from leadsla.notify.outbox import claim, enqueue
from leadsla.store import open_store
from leadsla.store.audit import AuditContext
from leadsla.store.schema import audit, outbox
from tests.notify_fixtures import CLOCK_START, alert_payload, smtp_connection

pytest_plugins = ["tests.notify_fixtures"]  # the stand-in fixtures

T = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="deliver_alerts", try_number=1)
VPS = ["vp.sales@example.com", "vp.marketing@example.com", "vp.revops@example.com"]


@pytest.fixture
def engine(tmp_path):
    eng = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield eng
    eng.dispose()


def queue(engine, items, checkpoint="warn_50"):
    actions = [
        Message("mql_to_sal", "00Q000000000001AAA", CLOCK_START, checkpoint, rcpt, "email", payload)
        for rcpt, payload in items
    ]
    with engine.begin() as conn:
        return enqueue(conn, actions, T, CTX)


def parts(msg):
    return (msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content())


def test_warning_uses_the_seed_wording_in_text_and_html(engine, smtp_sink) -> None:
    [key] = queue(engine, [("rita.rep@example.com", alert_payload())])
    assert deliver_due(engine, T, CTX)["delivered"] == 1
    [msg] = smtp_sink.messages()
    text, html = parts(msg)
    seed = "Alert: High-Intent Lead Ada Lovelace assigned 2 hours ago. 2 hours remain to meet the SLA."
    assert text.startswith(seed) and seed in html
    assert msg["To"] == "rita.rep@example.com" and msg["Message-ID"] == message_id(
        key, "sla-monitor@leadsla.example"
    )
    assert "Mon 9 Mar 2026, 14:00 EDT" in text and "America/New_York" in text
    assert "https://acme.my.salesforce.com/lightning/r/Lead/00Q000000000001AAA/view" in html
    assert msg["X-Priority"] is None and msg["Importance"] is None
    with engine.connect() as conn:
        assert conn.execute(sa.select(outbox.c.external_id)).scalar() == msg["Message-ID"]


def test_breach_to_the_vps_is_high_priority_with_team_and_utc_times(engine, smtp_sink) -> None:
    queue(
        engine,
        [
            (vp, alert_payload("breach", recipient={"name": vp, "email": vp, "timezone": "Europe/Berlin"}))
            for vp in VPS
        ],
        checkpoint="breach",
    )
    assert deliver_due(engine, T, CTX)["delivered"] == 3
    msgs = smtp_sink.messages()
    assert sorted(m["To"] for m in msgs) == sorted(VPS)
    assert len({m["Message-ID"] for m in msgs}) == 3
    for msg in msgs:
        assert msg["X-Priority"].startswith("1") and msg["Importance"] == "high"
        text, html = parts(msg)
        assert "Ada Lovelace" in msg["Subject"] and "Rita Rep" in msg["Subject"]
        # 18:00 UTC breach, shown in the team's zone (New York) and UTC.
        assert (
            "Breached at:       Mon 9 Mar 2026, 14:00 EDT (America/New_York) / 2026-03-09 18:00 UTC" in text
        )
        assert "14:00 EDT" in html and "2026-03-09 18:00 UTC" in html and "Rita Rep" in html


def test_html_autoescapes_a_lead_named_script(engine, smtp_sink) -> None:
    evil = '<script>alert("x")</script>'
    queue(
        engine,
        [
            (
                "rita.rep@example.com",
                alert_payload(
                    name=evil, lead={"id": "00Q000000000001AAA", "name": evil, "company": "<b>Bold</b> & Co"}
                ),
            )
        ],
    )
    deliver_due(engine, T, CTX)
    [msg] = smtp_sink.messages()
    text, html = parts(msg)
    assert "<script>" not in html and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "<b>Bold</b>" not in html and "&lt;b&gt;Bold&lt;/b&gt; &amp; Co" in html
    assert evil in text  # plain text is not HTML: shown as written
    assert "\n" not in msg["Subject"]


def test_smtp_down_keeps_the_mail_queued_and_delivers_later(engine, smtp_sink) -> None:
    queue(engine, [("rita.rep@example.com", alert_payload())])
    smtp_sink.down()
    summary = deliver_due(engine, T, CTX)
    # An outage is not the row's fault: no failed attempt, no back-off (the breaker, not the row).
    assert summary["channel_down"] == 1 and summary["retry"] == 0 and summary["delivered"] == 0
    with engine.connect() as conn:
        status, error, not_before, attempts = conn.execute(
            sa.select(outbox.c.status, outbox.c.last_error, outbox.c.not_before, outbox.c.attempts)
        ).one()
    assert status == "pending" and "SMTP unreachable" in error and not_before == T and attempts == 0
    smtp_sink.up()
    assert deliver_due(engine, T + dt.timedelta(seconds=1), CTX)["delivered"] == 1  # due at once
    assert len(smtp_sink.messages()) == 1


def test_dropped_session_is_reopened_within_the_run(engine, smtp_sink) -> None:
    manager = {"name": "Max Manager", "email": "max.manager@example.com", "timezone": "Europe/London"}
    queue(
        engine,
        [
            ("rita.rep@example.com", alert_payload()),
            ("max.manager@example.com", alert_payload(recipient=manager)),
        ],
    )
    smtp_sink.disconnect(2)  # two drops: the first row's first two sends
    summary = deliver_due(engine, T, CTX)
    assert summary["delivered"] == 2 and summary["retry"] == 0  # reopened and sent again, no minute lost
    assert sorted(m["To"] for m in smtp_sink.messages()) == [
        "max.manager@example.com",
        "rita.rep@example.com",
    ]


def test_a_session_dropped_every_time_leaves_the_row_for_the_next_run(engine, smtp_sink) -> None:
    queue(engine, [("rita.rep@example.com", alert_payload())])
    smtp_sink.disconnect(5)  # every one of the five sends in this run
    assert deliver_due(engine, T, CTX)["retry"] == 1
    assert smtp_sink.messages() == []
    assert deliver_due(engine, T + dt.timedelta(minutes=5), CTX)["delivered"] == 1
    assert len(smtp_sink.messages()) == 1


def test_crash_window_resends_with_the_same_message_id(engine, smtp_sink) -> None:
    """Documented limit: SMTP accepted, worker died before marking -> one resend, same Message-ID."""
    queue(engine, [("rita.rep@example.com", alert_payload())])
    with engine.begin() as conn:
        [row] = claim(conn, T, dt.timedelta(minutes=5), 10)
    sender = EmailSender()
    first = sender.deliver(row, T)  # accepted by the sink; the mark never happens
    sender.close()
    assert deliver_due(engine, T + dt.timedelta(minutes=6), CTX)["delivered"] == 1
    msgs = smtp_sink.messages()
    assert len(msgs) == 2 and {m["Message-ID"] for m in msgs} == {first.external_id}


def test_lost_250_reply_is_the_same_window(engine, smtp_sink) -> None:
    queue(engine, [("rita.rep@example.com", alert_payload())])
    smtp_sink.disconnect_after_accept(1)
    assert deliver_due(engine, T, CTX)["delivered"] == 1  # resent on a fresh session, same Message-ID
    assert deliver_due(engine, T + dt.timedelta(minutes=5), CTX)["claimed"] == 0
    msgs = smtp_sink.messages()
    assert len(msgs) == 2 and len({m["Message-ID"] for m in msgs}) == 1


def test_a_server_that_refuses_our_login_is_a_failed_attempt_not_an_outage(
    engine, smtp_sink, monkeypatch
) -> None:
    # Reached but refused (here: credentials configured, the server offers no AUTH): a fault of the
    # configuration that must show up as failed attempts, never hide behind the breaker forever.
    conn = json.loads(smtp_connection(smtp_sink.port))
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({**conn, "login": "alerts", "password": "s3cret"})
    )
    queue(engine, [("rita.rep@example.com", alert_payload())])
    summary = deliver_due(engine, T, CTX)
    assert summary["retry"] == 1 and summary.get("channel_down", 0) == 0 and summary["delivered"] == 0
    with engine.connect() as conn_:
        status, error, attempts = conn_.execute(
            sa.select(outbox.c.status, outbox.c.last_error, outbox.c.attempts)
        ).one()
        failed = conn_.execute(
            sa.select(sa.func.count()).select_from(audit).where(audit.c.event == "message_failed")
        ).scalar()
    assert status == "pending" and attempts == 1 and failed == 1
    assert "could not be opened" in error and "s3cret" not in error
    assert smtp_sink.messages() == []


def test_only_an_unreachable_server_is_an_outage() -> None:
    import smtplib
    import ssl

    from leadsla.notify.email import _permanent_refusal, _unreachable

    assert _unreachable(ConnectionRefusedError(111, "refused")) and _unreachable(TimeoutError())
    assert _unreachable(smtplib.SMTPServerDisconnected("gone")) and _unreachable(
        smtplib.SMTPConnectError(421, b"busy")
    )
    assert not _unreachable(ssl.SSLCertVerificationError("self-signed certificate"))
    bad_login = smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials")
    assert not _unreachable(bad_login) and _permanent_refusal(bad_login)
    assert not _unreachable(ValueError("SMTP connection is not found."))
