"""Operational notices (a data-quality incident, a health digest): their payload and renderings.

A notice is about the system itself, not about a lead's clock; `leadsla.quality.notice` queues
it with payload ``{"kind": "notice", "title", "severity", "lines", "source", "subject"}``. This
module validates that payload and renders it for Slack (Block Kit plus an escaped text
fallback) and e-mail (``include/templates/email/notice.{html,txt}``, HTML autoescaped). Every
line may quote lead or CRM text, so all of it is escaped like lead text. Renders only: never
sends, never reads the clock or the store.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from leadsla.notify.messages import (
    METADATA_EVENT_TYPE,
    EmailContent,
    _jinja,
    _Payload,
    one_line,
    slack_escape,
)

#: Slack allows 3,000 characters per section text and 50 blocks per message.
_SECTION_CHARS = 2900
_MAX_LINE_BLOCKS = 20
_SEVERITY_MARK = {"info": "Info", "warning": "Warning", "critical": "CRITICAL"}


class NoticePayload(_Payload):
    """The schema of a notice's ``outbox.payload``."""

    label: ClassVar[str] = "notice"

    kind: Literal["notice"]
    title: str = Field(min_length=1)
    severity: Literal["info", "warning", "critical"]
    lines: list[str] = Field(default_factory=list)
    source: str = Field(min_length=1)
    subject: str = ""
    #: The sentence under the title saying what this notice is (default "Notice from <source> about
    #: <subject>").
    intro: str | None = None

    @field_validator("lines")
    @classmethod
    def _lines(cls, v: list[str]) -> list[str]:
        return [str(line) for line in v]

    @property
    def fallback_channel(self) -> str | None:
        return None  # a notice names its channel or mailbox as the recipient itself

    @property
    def high_priority(self) -> bool:
        return self.severity == "critical"


def _line_sections(lines: list[str]) -> list[dict[str, Any]]:
    """Bulleted, escaped lines packed into as few sections as Slack's limits allow."""
    sections: list[dict[str, Any]] = []
    chunk = ""
    for line in lines:
        bullet = f"• {slack_escape(one_line(line))}"[:_SECTION_CHARS]
        if chunk and len(chunk) + 1 + len(bullet) > _SECTION_CHARS:
            sections.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
            chunk = ""
        chunk = f"{chunk}\n{bullet}" if chunk else bullet
    if chunk:
        sections.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    if len(sections) > _MAX_LINE_BLOCKS:
        dropped = sum(s["text"]["text"].count("\n") + 1 for s in sections[_MAX_LINE_BLOCKS:])
        sections = sections[:_MAX_LINE_BLOCKS] + [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"…and {dropped} more lines (see the task log)."},
            }
        ]
    return sections


def notice_slack_message(payload: NoticePayload, key: str) -> dict[str, Any]:
    """`chat.postMessage` arguments for a notice; every piece of text is escaped."""
    p = payload
    e = slack_escape
    title = f"{_SEVERITY_MARK[p.severity]}: {p.title}"
    about = (
        f"*{e(_SEVERITY_MARK[p.severity])}*: {e(one_line(p.intro))}"
        if p.intro
        else (
            f"*{e(_SEVERITY_MARK[p.severity])}* notice from `{e(p.source)}`"
            + (f" about `{e(p.subject)}`" if p.subject else "")
        )
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": e(one_line(title))[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": about}},
        *_line_sections(p.lines),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Sent by Lead SLA Monitor."}]},
    ]
    first = f" - {e(one_line(p.lines[0]))}" if p.lines else ""
    return {
        "text": f"{e(one_line(title))}{first}"[:3000],
        "blocks": blocks,
        "metadata": {"event_type": METADATA_EVENT_TYPE, "event_payload": {"idempotency_key": key}},
        "unfurl_links": False,
        "unfurl_media": False,
    }


def notice_email_message(payload: NoticePayload) -> EmailContent:
    """Subject, HTML and plain text for a notice, from include/templates/email/notice.*."""
    p = payload
    values = {"p": p, "severity": _SEVERITY_MARK[p.severity], "lines": [one_line(line) for line in p.lines]}
    prefix = "[CRITICAL] " if p.high_priority else ""
    env = _jinja()
    return EmailContent(
        subject=one_line(f"{prefix}{p.title}")[:250],
        html=env.get_template("email/notice.html").render(values),
        text=env.get_template("email/notice.txt").render(values),
        high_priority=p.high_priority,
    )
