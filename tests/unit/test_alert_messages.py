"""Alert payload validation and rendering helpers (no servers)."""

from __future__ import annotations

import datetime as dt

import pytest

from leadsla.notify.alert import alert_email_message as email_message
from leadsla.notify.alert import alert_slack_message as slack_message
from leadsla.notify.formatting import local_time, slack_escape, words_duration
from leadsla.notify.payloads import AlertPayload, PayloadError
from tests.notify_fixtures import alert_payload


def test_payload_errors_name_every_bad_field_and_where() -> None:
    bad = alert_payload(
        deadline="2026-03-09T18:00:00",
        instance_url="javascript:alert(1)",
        lead={"id": "00Q<script>", "name": "x"},
    )
    with pytest.raises(PayloadError) as info:
        AlertPayload.parse(bad, where="outbox row 7")
    message = str(info.value)
    assert "outbox row 7" in message
    for field in ("deadline", "instance_url", "lead.id"):
        assert field in message


def test_escape_and_durations_and_local_time() -> None:
    assert slack_escape("<!channel> & <https://x|y>") == "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
    assert [words_duration(s) for s in (7200, 5400, 2700, 60, 0)] == [
        "2 hours",
        "1 hour 30 minutes",
        "45 minutes",
        "1 minute",
        "0 minutes",
    ]
    instant = dt.datetime(2026, 3, 8, 7, 30, tzinfo=dt.UTC)  # the day New York springs forward
    assert local_time(instant, "America/New_York") == "Sun 8 Mar 2026, 03:30 EDT"
    assert local_time(instant, "Asia/Kolkata") == "Sun 8 Mar 2026, 13:00 IST"


def test_overdue_warning_says_overdue_and_generalises_the_seed_sentence() -> None:
    p = AlertPayload.parse(alert_payload(elapsed_seconds=3 * 3600 + 1800, remaining_seconds=1800))
    assert email_message(p).text.startswith(
        "Alert: High-Intent Lead Ada Lovelace assigned 3 hours 30 minutes ago. 30 minutes remain to meet "
        "the SLA."
    )
    late = AlertPayload.parse(alert_payload("breach"))
    fields = str(slack_message(late, "k")["blocks"])
    assert "*Overdue*" in fields and "Overdue by 5 min" in fields


def test_a_catch_up_breach_says_how_late_it_comes_and_an_on_time_one_does_not() -> None:
    # Breach due Mon 18:05 UTC; the monitor was down and decides it Wednesday 10:05 UTC.
    caught_up = AlertPayload.parse(alert_payload("breach", evaluated_at="2026-03-11T10:05:00Z"))
    mail = email_message(caught_up)
    assert "This escalation comes 40 hours after the breach" in mail.text
    assert "This escalation comes 40 hours after the breach" in mail.html
    assert "sent 40 hours late (catching up)" in str(slack_message(caught_up, "k")["blocks"])
    on_time = AlertPayload.parse(alert_payload("breach", evaluated_at="2026-03-09T18:05:30Z"))
    assert "after the breach" not in email_message(on_time).text
    assert "catching up" not in str(slack_message(on_time, "k")["blocks"])
