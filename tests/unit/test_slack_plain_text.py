"""Slack text from lead fields is plain text: no mention, no link (bare or <...>), no *bold*,
_italic_, ~strike~ or `code` - in every message kind (alert, digest, notice) - and Slack unfurls
nothing and auto-links nothing (`verbatim` on every mrkdwn object)."""

from __future__ import annotations

import html
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leadsla.notify.alert import alert_slack_message
from leadsla.notify.digest import digest_slack_message
from leadsla.notify.formatting import ZERO_WIDTH_JOINER, slack_escape
from leadsla.notify.notice import notice_slack_message
from leadsla.notify.payloads import AlertPayload, DigestPayload, NoticePayload
from tests.notify_fixtures import alert_payload

HOSTILE = "*VIP* _urgent_ ~old~ `x` <!channel> <https://evil.example|click> https://evil.example & > quote"
#: mrkdwn's spans, as Slack reads them: a marker opens after a boundary (start, space, punctuation)
#: and before text, and closes after text and before a boundary.
_SPAN = re.compile(r"(?:^|(?<=[\s(\[{'\"]))([*_~`])(?=\S)(?:(?!\1).)*?(?<=\S)\1(?=$|[\s.,!?;:)\]}'\"])", re.M)


def spans(text: str) -> list[str]:
    """Formatting spans Slack would render in `text`, whether it takes a zero-width joiner for a
    letter or for a space (the joiner on both sides of a marker must defeat both readings)."""
    return [m.group(0) for m in _SPAN.finditer(text)] + [
        m.group(0) for m in _SPAN.finditer(text.replace(ZERO_WIDTH_JOINER, " "))
    ]


def text_objects(node: Any) -> list[dict]:
    """Every Block Kit text object in a message's blocks."""
    if isinstance(node, dict):
        found = [node] if node.get("type") in ("mrkdwn", "plain_text") else []
        return found + [obj for value in node.values() for obj in text_objects(value)]
    if isinstance(node, list):
        return [obj for value in node for obj in text_objects(value)]
    return []


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("*_~`<>&!@#:/. \nab1")) | st.characters(), max_size=40))
def test_escaped_lead_text_forms_no_span_no_tag_and_reads_as_typed(text) -> None:
    shown = slack_escape(text)
    assert "<" not in shown and ">" not in shown
    assert not spans(shown)
    # Nothing is lost: a reader (or a copy) sees the text as typed, joiners aside.
    assert html.unescape(shown.replace(ZERO_WIDTH_JOINER, "")) == text.replace(ZERO_WIDTH_JOINER, "")


def _check(message: dict, hostile_in: int) -> None:
    assert message["unfurl_links"] is False and message["unfurl_media"] is False
    objects = text_objects(message["blocks"])
    mrkdwn_objects = [o for o in objects if o["type"] == "mrkdwn"]
    assert mrkdwn_objects and all(o.get("verbatim") is True for o in mrkdwn_objects)
    seen = 0
    for obj in objects:
        for span in spans(obj["text"]):
            assert "VIP" not in span and "urgent" not in span and "old" not in span, span
        assert "<!channel>" not in obj["text"] and "<https://evil" not in obj["text"]
        seen += slack_escape(HOSTILE) in obj["text"]
    assert seen >= hostile_in
    assert not spans(message["text"]) or all("VIP" not in s for s in spans(message["text"]))
    assert "<!channel>" not in message["text"]


def test_an_alert_shows_every_lead_field_as_plain_text() -> None:
    payload = AlertPayload.parse(
        alert_payload(
            "breach",
            name=HOSTILE,
            lead={
                "id": "00Q000000000001AAA",
                "object_type": "Lead",
                "name": HOSTILE,
                "company": HOSTILE,
                "source": HOSTILE,
                "tier": HOSTILE,
            },
            owner={"id": "005000000000001AAA", "name": HOSTILE, "email": "rita.rep@example.com"},
        )
    )
    message = alert_slack_message(payload, "k")
    _check(message, hostile_in=5)  # name (twice), company, source, tier, owner
    # Our own formatting still works: the field labels are bold.
    assert "*Company*" in str(message["blocks"])


def test_a_digest_and_a_notice_show_lead_text_as_plain_text() -> None:
    item = {
        "lead": {"id": "00Q000000000001AAA", "object_type": "Lead", "name": HOSTILE, "company": HOSTILE},
        "sla_name": "MQL to SAL",
        "remaining_seconds": 600,
        "deadline": "2026-03-09T18:00:00Z",
        "owner": "Rita Rep",
        "record_url": "https://acme.my.salesforce.com/00Q000000000001AAA",
    }
    digest = DigestPayload.parse(
        {
            "kind": "digest",
            "recipient": alert_payload()["recipient"],
            "window_minutes": 10,
            "max_alerts": 5,
            "items": [item, item],
            "replaces": ["a", "b"],
        }
    )
    _check(digest_slack_message(digest, "k"), hostile_in=1)
    notice = NoticePayload.parse(
        {
            "kind": "notice",
            "title": "Unowned leads",
            "severity": "warning",
            "lines": [HOSTILE, f"lead {HOSTILE} waits"],
            "source": "lead_routing",
            "subject": HOSTILE,
            "intro": HOSTILE,
        }
    )
    _check(notice_slack_message(notice, "k"), hostile_in=2)
