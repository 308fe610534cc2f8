"""A notice (about the system itself, not a lead's clock) rendered for Slack and e-mail.

Every line may quote lead or CRM text, so all of it is escaped like lead text (Slack) or
autoescaped (HTML, include/templates/email/notice.*). Renders only: never sends, reads the clock
or the store.
"""

from __future__ import annotations

from typing import Any

from leadsla.notify.formatting import EmailContent, mrkdwn, one_line, slack_escape, slack_post, templates
from leadsla.notify.payloads import NoticePayload

#: Slack allows 3,000 characters per section text and 50 blocks per message.
_SECTION_CHARS = 2900
_MAX_LINE_BLOCKS = 20
_SEVERITY_MARK = {"info": "Info", "warning": "Warning", "critical": "CRITICAL"}


def _line_sections(lines: list[str]) -> list[dict[str, Any]]:
    """Bulleted, escaped lines packed into as few sections as Slack's limits allow."""
    sections: list[dict[str, Any]] = []
    chunk = ""
    for line in lines:
        bullet = f"• {slack_escape(one_line(line))}"[:_SECTION_CHARS]
        if chunk and len(chunk) + 1 + len(bullet) > _SECTION_CHARS:
            sections.append({"type": "section", "text": mrkdwn(chunk)})
            chunk = ""
        chunk = f"{chunk}\n{bullet}" if chunk else bullet
    if chunk:
        sections.append({"type": "section", "text": mrkdwn(chunk)})
    if len(sections) > _MAX_LINE_BLOCKS:
        dropped = sum(s["text"]["text"].count("\n") + 1 for s in sections[_MAX_LINE_BLOCKS:])
        sections = sections[:_MAX_LINE_BLOCKS] + [
            {
                "type": "section",
                "text": mrkdwn(f"…and {dropped} more lines (see the task log)."),
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
        {"type": "section", "text": mrkdwn(about)},
        *_line_sections(p.lines),
        *(
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Open in Salesforce"},
                            "url": p.record.url,
                            "action_id": "open_record",
                        }
                    ],
                }
            ]
            if p.record
            else []
        ),
        {"type": "context", "elements": [mrkdwn("Sent by Lead SLA Monitor.")]},
    ]
    first = f" - {e(one_line(p.lines[0]))}" if p.lines else ""
    return slack_post(f"{e(one_line(title))}{first}"[:3000], blocks, key)


def notice_email_message(payload: NoticePayload) -> EmailContent:
    """Subject, HTML and plain text for a notice, from include/templates/email/notice.*."""
    p = payload
    values = {
        "p": p,
        "severity": _SEVERITY_MARK[p.severity],
        "lines": [one_line(line) for line in p.lines],
        "record_url": p.record.url if p.record else None,
    }
    prefix = "[CRITICAL] " if p.high_priority else ""
    env = templates()
    return EmailContent(
        subject=one_line(f"{prefix}{p.title}")[:250],
        html=env.get_template("email/notice.html").render(values),
        text=env.get_template("email/notice.txt").render(values),
        high_priority=p.high_priority,
    )
