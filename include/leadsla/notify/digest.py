"""A digest (one person's warnings beyond the rate limit, gathered) rendered for Slack and e-mail.

Which warnings a digest replaces is decided in `leadsla.decisions.digest`; this module renders
the payload. Lead text is escaped (Slack) or autoescaped (HTML). Renders only.
"""

from __future__ import annotations

from typing import Any

from leadsla.decisions.context import describe, triage_text
from leadsla.notify.formatting import (
    EmailContent,
    local_time,
    mrkdwn,
    one_line,
    short_duration,
    slack_escape,
    slack_post,
    templates,
)
from leadsla.notify.payloads import DigestItem, DigestPayload


def _triage(item: DigestItem) -> str:
    """``score 87 · deal value ... · rep's open clocks 5`` (plain text; "" for a row from before)."""
    if item.context is None:
        return ""
    return triage_text(
        describe(
            item.context.model_dump(),
            source=item.lead.source,
            open_clocks=item.open_clocks,
            object_type=item.lead.object_type,
        )
    )


def digest_slack_message(payload: DigestPayload, key: str) -> dict[str, Any]:
    """`chat.postMessage` arguments: one line per lead (escaped), each with our record link."""
    p = payload
    e = slack_escape
    tz = p.recipient.timezone
    lines = [
        f"• <{i.record_url}|{e(one_line(i.lead.name))}>"
        + (f" at {e(one_line(i.lead.company))}" if i.lead.company else "")
        + f" ({e(one_line(i.lead.tier)) or '-'}, {e(i.sla_name)}): "
        + f"{short_duration(i.remaining_seconds)} left, deadline {e(local_time(i.deadline, tz))}"
        + (f"\n    {e(_triage(i))}" if i.context is not None else "")
        for i in p.items
    ]
    title = f"SLA digest: {len(p.items)} more warnings"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {
            "type": "section",
            "text": mrkdwn(
                f"You have had {p.max_alerts} alerts in {p.window_minutes} minutes; "
                "these are gathered here instead of one message each."
            ),
        },
    ]
    chunk = ""
    for line in lines:
        if chunk and len(chunk) + len(line) + 1 > 2900:
            blocks.append({"type": "section", "text": mrkdwn(chunk)})
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line[:2900]
    blocks.append({"type": "section", "text": mrkdwn(chunk)})
    blocks.append({"type": "context", "elements": [mrkdwn(f"times in {e(tz)}")]})
    return slack_post(title, blocks[:50], key)


def digest_email_message(payload: DigestPayload) -> EmailContent:
    """Subject, HTML (autoescaped) and text from include/templates/email/digest.*."""
    p = payload
    tz = p.recipient.timezone
    items = [
        {
            "name": one_line(i.lead.name),
            "company": one_line(i.lead.company),
            "tier": one_line(i.lead.tier),
            "sla_name": i.sla_name,
            "remaining": short_duration(i.remaining_seconds),
            "deadline": local_time(i.deadline, tz),
            "owner": one_line(i.owner),
            "url": i.record_url,
            "triage": _triage(i),
        }
        for i in p.items
    ]
    values = {"p": p, "items": items, "timezone": tz}
    env = templates()
    return EmailContent(
        subject=f"SLA digest: {len(items)} more warnings",
        html=env.get_template("email/digest.html").render(values),
        text=env.get_template("email/digest.txt").render(values),
        high_priority=False,
    )
