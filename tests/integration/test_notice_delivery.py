"""Operational notices (data-quality incidents, health digests) delivered by the real SlackHook and
SmtpHook to the Slack stand-in and the SMTP sink: Block Kit and escaped text, HTML and plain
text, priority headers, exactly once across reruns. SQLite store."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from leadsla.decisions.plan import Notice
from leadsla.notify.delivery import deliver_due
from leadsla.notify.outbox import queue_notices
from leadsla.notify.payloads import PayloadError, parse_payload
from leadsla.notify.render import render_email, render_slack
from leadsla.store import open_store
from leadsla.store.audit import AuditContext
from leadsla.store.schema import outbox

pytest_plugins = ["tests.notify_fixtures"]

T = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_health", run_id="manual__1", task_id="check", try_number=1)
DATA_CHANNEL = "C0DATAENG01"
HOSTILE = "Lead <!channel> named <https://evil.example|click> & <script>alert(1)</script>"


@pytest.fixture
def engine(tmp_path):
    eng = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield eng
    eng.dispose()


def queue_notice(engine, recipients, severity="critical", at=T):
    notice = Notice(
        source="data_quality",
        subject="leads",
        opened_at=T,
        checkpoint="incident",
        recipients=tuple(recipients),
        title="Data-quality incident: leads",
        severity=severity,
        lines=("12 of 40 leads rows quarantined (30%); threshold 5%.", HOSTILE),
    )
    with engine.begin() as conn:
        return queue_notices(conn, [notice], at, CTX)


def test_notice_goes_to_a_slack_channel_once_with_escaped_blocks(engine, slack_api) -> None:
    slack_api.add_channel(DATA_CHANNEL, "data-eng")
    assert len(queue_notice(engine, [("slack", DATA_CHANNEL)])) == 1
    assert deliver_due(engine, T, CTX)["delivered"] == 1
    assert (
        queue_notice(engine, [("slack", DATA_CHANNEL)], at=T + dt.timedelta(minutes=1)) == []
    )  # rerun: no-op
    assert deliver_due(engine, T + dt.timedelta(minutes=1), CTX)["claimed"] == 0
    [msg] = slack_api.messages(DATA_CHANNEL)
    blocks = str(msg["blocks"])
    assert "CRITICAL: Data-quality incident: leads" in blocks
    assert "30%" in blocks and "&lt;!channel&gt;" in blocks and "&lt;https://evil.example|click&gt;" in blocks
    assert "<!channel>" not in blocks + msg["text"] and "<https://evil" not in blocks + msg["text"]
    assert msg["metadata"]["event_type"] == "leadsla_alert"
    with engine.connect() as conn:
        assert conn.execute(sa.select(outbox.c.status)).scalars().all() == ["delivered"]


def test_notice_email_has_escaped_html_a_text_part_and_priority(engine, smtp_sink) -> None:
    queue_notice(engine, [("email", "RevOps@Example.com")])
    assert deliver_due(engine, T, CTX)["delivered"] == 1
    [mail] = smtp_sink.messages()
    assert mail["To"] == "revops@example.com"
    assert mail["Subject"] == "[CRITICAL] Data-quality incident: leads"
    assert mail["X-Priority"].startswith("1") and mail["Importance"] == "high"
    html = mail.get_body(preferencelist=("html",)).get_content()
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "- 12 of 40 leads rows quarantined (30%); threshold 5%." in text
    assert HOSTILE in text  # plain text keeps the data as it is


def test_info_notice_is_not_high_priority_and_a_bad_notice_names_its_fields() -> None:
    p = parse_payload(
        {
            "kind": "notice",
            "title": "SLA health: 1 findings",
            "severity": "info",
            "lines": ["ok"],
            "source": "sla_health",
            "subject": "digest",
        }
    )
    assert not render_email(p).high_priority and render_email(p).subject == "SLA health: 1 findings"
    assert render_slack(p, "k")["metadata"]["event_payload"] == {"idempotency_key": "k"}
    with pytest.raises(PayloadError) as info:
        parse_payload(
            {"kind": "notice", "title": "", "severity": "loud", "source": "x"}, where="outbox row 9"
        )
    assert "outbox row 9" in str(info.value) and "severity" in str(info.value) and "title" in str(info.value)


def test_many_long_lines_fit_slack_limits() -> None:
    p = parse_payload(
        {
            "kind": "notice",
            "title": "t",
            "severity": "warning",
            "source": "sla_health",
            "lines": [f"finding {i} " + "x" * 400 for i in range(300)],
        }
    )
    message = render_slack(p, "k")
    assert len(message["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"] if b["type"] == "section")
    assert "more lines" in message["blocks"][-2]["text"]["text"]
