"""An alert (a clock's warning or breach) rendered for Slack (Block Kit) and e-mail.

Every piece of lead or person text is escaped (Slack) or autoescaped (HTML); times are shown in
the recipient's IANA timezone. Renders only: never sends, reads the clock or the store.
"""

from __future__ import annotations

from typing import Any

from leadsla.decisions.context import describe
from leadsla.notify.formatting import (
    LATE_AFTER,
    EmailContent,
    local_time,
    mrkdwn,
    one_line,
    short_duration,
    slack_escape,
    slack_post,
    templates,
    utc_time,
    words_duration,
)
from leadsla.notify.payloads import AlertPayload


def triage(p: AlertPayload) -> list[tuple[str, str]]:
    """Score, deal value, source, campaign and the rep's open clocks, "not set" where missing
    (plain text: each renderer escapes it; a row from before context says source and load only)."""
    return describe(
        p.context.model_dump() if p.context is not None else None,
        source=p.lead.source,
        open_clocks=p.open_clocks,
        object_type=p.lead.object_type,
    )


def _title(p: AlertPayload) -> str:
    if p.kind == "breach":
        return f"SLA breached: {p.sla_name}"
    label = p.checkpoint_label or f"{short_duration(p.remaining_seconds)} left"
    return f"SLA warning: {p.sla_name} ({label})"


def alert_slack_message(payload: AlertPayload, key: str) -> dict[str, Any]:
    """The `chat.postMessage` arguments (text, blocks, metadata) for one alert.

    Every piece of lead or person text goes through `slack_escape`; the only link is ours,
    built from a validated instance URL and record id.
    """
    p = payload
    tz = p.recipient.timezone
    e = slack_escape
    if p.overdue:
        remaining = f"*Overdue by {short_duration(p.remaining_seconds)}*"
    else:
        remaining = f"{short_duration(p.remaining_seconds)} (deadline {e(local_time(p.deadline, tz))})"
    lead_line = f"*{e(p.lead.name)}*" + (f" at {e(p.lead.company)}" if p.lead.company else "")
    # At most 10 fields (Slack's limit): the lead's name is in the line above once context fills them.
    context_fields = [f"*{label}*\n{e(text)}" for label, text in triage(p) if label != "Rep's open clocks"]
    fields = [
        *([f"*Lead*\n{e(p.lead.name)}"] if p.context is None else []),
        f"*Company*\n{e(p.lead.company) or '-'}",
        f"*Tier*\n{e(p.lead.tier) or '-'}",
        *context_fields,
        f"*Business time elapsed*\n{short_duration(p.elapsed_seconds)} of {short_duration(p.target_seconds)}"
        f" (as of {e(local_time(p.as_of, tz))})",
        f"*{'Overdue' if p.overdue else 'Remaining'}*\n{remaining}",
        f"*Owner*\n{e(p.owner.name)}",
        f"*Owner's open clocks*\n{p.open_clocks}",
    ]
    when = p.breached_at if (p.kind == "breach" and p.breached_at) else p.due_at
    late = p.evaluated_at is not None and p.evaluated_at - p.due_at >= LATE_AFTER
    late_words = words_duration(int((p.as_of - p.due_at).total_seconds()))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": e(_title(p))[:150], "emoji": True}},
        {"type": "section", "text": mrkdwn(f"{lead_line} needs attention.")},
        {"type": "section", "fields": [mrkdwn(f) for f in fields]},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open in Salesforce"},
                    "url": p.record_url,
                    "action_id": "open_record",
                }
            ],
        },
        {
            "type": "context",
            "elements": [
                mrkdwn(
                    f"<{p.record_url}|Record {e(p.lead.id)}> · "
                    f"{'Breached' if p.kind == 'breach' else 'Checkpoint reached'} at "
                    f"{e(local_time(when, tz))} · "
                    f"times in {e(tz)}"
                    + (f" · to you as {e(p.roles_text)}" if p.roles else "")
                    + (f" · because it is {e(p.ladder.why)}" if p.ladder and p.ladder.why else "")
                    + (f" · sent {late_words} late (catching up)" if late else "")
                )
            ],
        },
    ]
    text = f"{e(_title(p))}: {e(p.lead.name)} ({remaining.replace('*', '')})"
    return slack_post(text, blocks, key)


def alert_email_message(payload: AlertPayload) -> EmailContent:
    """Subject, HTML and plain-text bodies for one alert, from include/templates/email/."""
    p = payload
    tz = p.recipient.timezone
    team_tz = p.team.timezone if p.team else tz
    tier = one_line(p.lead.tier) or "Qualified"
    values = {
        "p": p,
        "tier": tier,
        "lead_name": one_line(p.lead.name),
        "elapsed_words": words_duration(p.elapsed_seconds),
        "remaining_words": words_duration(p.remaining_seconds),
        "as_of_local": local_time(p.as_of, tz),
        "checkpoint_local": local_time(p.due_at, tz),
        "late": p.evaluated_at is not None and p.evaluated_at - p.due_at >= LATE_AFTER,
        # A catch-up (after downtime, or a backlog at first start) says how late it comes.
        "late_words": words_duration(int((p.as_of - p.due_at).total_seconds())),
        "roles_text": p.roles_text,
        # Why the ladder told this person (the director: "the rep's 3rd breach ... in 30 days").
        "ladder_why": p.ladder.why if p.ladder else None,
        "overdue": p.overdue,
        "deadline_local": local_time(p.deadline, tz),
        "timezone": tz,
        "record_url": p.record_url,
        "breached_local": local_time(p.breached_at or p.deadline, team_tz),
        "breached_utc": utc_time(p.breached_at or p.deadline),
        "team_timezone": team_tz,
        "team_name": p.team.name if p.team else None,
        # Score, deal value, source, campaign ("not set" where missing); open clocks have their row.
        "triage": [(label, text) for label, text in triage(p) if label != "Rep's open clocks"],
    }
    if p.kind == "breach":
        subject = (
            f"[HIGH PRIORITY] SLA breached: {tier} lead {values['lead_name']} ({one_line(p.owner.name)})"
        )
    else:
        left = (
            f"overdue by {values['remaining_words']}" if p.overdue else f"{values['remaining_words']} remain"
        )
        subject = f"SLA warning: {tier} lead {values['lead_name']} - {left}"
    env = templates()
    return EmailContent(
        subject=one_line(subject)[:250],
        html=env.get_template(f"email/{p.kind}.html").render(values),
        text=env.get_template(f"email/{p.kind}.txt").render(values),
        high_priority=p.kind == "breach",
    )
