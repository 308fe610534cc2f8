"""What an alert says: the outbox payload schema and the Slack Block Kit and e-mail renderings.

The monitor puts an `AlertPayload` (as JSON) in each outbox row; the senders render it here.
Lead text is data: it is escaped for Slack mrkdwn (&, <, >) and autoescaped by Jinja for HTML,
so a lead named ``<!channel>`` pings nobody. Times are shown in the recipient's (or team's) IANA
timezone, never as bare UTC. This module renders; it never sends, reads the clock or the store.

Payload schema (JSON in ``outbox.payload``)::

    {
      "kind": "warning" | "breach",
      "sla_name": "MQL to SAL",                 # the SLA's label
      "checkpoint_label": "2 h left",           # optional, shown in the title
      "lead": {"id": "00Q...", "object_type": "Lead", "name": "...", "company": "...",
               "source": "Web", "tier": "High-Intent"},
      "owner": {"id": "005...", "name": "Rep Name", "email": "rep@example.com"},
      "recipient": {"name": "...", "email": "...", "timezone": "America/New_York",
                    "slack_fallback_channel": "C0123456789"},   # channel ID, optional
      "roles": ["owner", "team_manager"],       # the roles this one message covers
      "team": {"name": "SDR East", "timezone": "America/New_York"},   # optional
      "target_seconds": 14400, "elapsed_seconds": 7200,   # business time as of evaluated_at
      "remaining_seconds": 7200,                # negative when overdue
      "evaluated_at": "2026-03-09T16:00:10Z",   # the run that decided it (optional)
      "deadline": "2026-03-09T18:00:00Z", "due_at": "2026-03-09T16:00:00Z",
      "breached_at": null,                      # set for breaches
      "open_clocks": 3,                         # the owner's open clocks when evaluated
      "instance_url": "https://acme.my.salesforce.com"
    }
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from leadsla.errors import LeadSlaError
from leadsla.paths import templates_dir

TEMPLATES_DIR = templates_dir()
#: Slack message metadata event type carrying the idempotency key (reconciliation looks for it).
METADATA_EVENT_TYPE = "leadsla_alert"

_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
_OBJECT_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_INSTANCE_URL = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d+)?/?$")


class PayloadError(LeadSlaError):
    """An outbox payload does not follow the schema in `leadsla.notify.messages`."""


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA timezone (e.g. 'America/New_York')") from None
    return name


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Payload(_Model):
    """An outbox payload: validated on the way in and out, with errors naming every bad field."""

    #: How errors name this kind of payload ("alert payload of ... is invalid").
    label: ClassVar[str] = "payload"

    @classmethod
    def parse(cls, data: Any, *, where: str = "payload") -> Self:
        """Validate a payload dict (an instance passes as it is).

        Raises:
            PayloadError: naming each bad field and why, and `where` the payload came from.
        """
        if isinstance(data, cls):
            return data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
            )
            raise PayloadError(f"{cls.label} payload of {where} is invalid: {problems}") from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class LeadInfo(_Model):
    id: str
    object_type: str = "Lead"
    name: str
    company: str | None = None
    source: str | None = None
    tier: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _RECORD_ID.match(v):
            raise ValueError(f"{v!r} is not a 15/18-character Salesforce id")
        return v

    @field_validator("object_type")
    @classmethod
    def _object_type(cls, v: str) -> str:
        if not _OBJECT_TYPE.match(v):
            raise ValueError(f"{v!r} is not an object type name")
        return v


class Person(_Model):
    id: str | None = None
    name: str
    email: str | None = None


class Recipient(_Model):
    name: str
    email: str | None = None
    timezone: str
    slack_fallback_channel: str | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)


class Team(_Model):
    name: str
    timezone: str

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)


class AlertPayload(_Payload):
    """The schema of ``outbox.payload`` (see the module docstring for an example)."""

    label: ClassVar[str] = "alert"

    kind: Literal["warning", "breach"]
    sla_name: str
    checkpoint_label: str | None = None
    lead: LeadInfo
    owner: Person
    recipient: Recipient
    #: The policy roles this one message covers (owner, owner_manager, ...): one person, one message.
    roles: list[str] = Field(default_factory=list)
    team: Team | None = None
    target_seconds: int = Field(ge=0)
    elapsed_seconds: int = Field(ge=0)
    remaining_seconds: int
    deadline: AwareDatetime
    due_at: AwareDatetime
    #: When elapsed/remaining were measured (the monitor run's time); None: at `due_at`.
    evaluated_at: AwareDatetime | None = None
    breached_at: AwareDatetime | None = None
    open_clocks: int = Field(ge=0)
    instance_url: str

    @field_validator("instance_url")
    @classmethod
    def _instance(cls, v: str) -> str:
        if not _INSTANCE_URL.match(v):
            raise ValueError(f"{v!r} is not an instance URL like https://acme.my.salesforce.com")
        return v.rstrip("/")

    @property
    def record_url(self) -> str:
        """The record in Salesforce Lightning."""
        return f"{self.instance_url}/lightning/r/{self.lead.object_type}/{self.lead.id}/view"

    @property
    def overdue(self) -> bool:
        return self.remaining_seconds < 0

    @property
    def as_of(self) -> dt.datetime:
        """The instant `elapsed_seconds` and `remaining_seconds` describe."""
        return self.evaluated_at or self.due_at

    @property
    def roles_text(self) -> str:
        """``owner and team manager``: the roles this message covers, for a person to read."""
        names = [r.split(":", 1)[-1] if r.startswith("queue:") else r.replace("_", " ") for r in self.roles]
        names = [n.replace("vp ", "VP ") for n in names]
        if len(names) <= 1:
            return "".join(names)
        return ", ".join(names[:-1]) + f" and {names[-1]}"

    @property
    def fallback_channel(self) -> str | None:
        """Where a Slack DM goes when the person has no Slack account."""
        return self.recipient.slack_fallback_channel

    @property
    def high_priority(self) -> bool:
        return self.kind == "breach"


def parse_payload(data: Any, *, where: str = "payload") -> Any:
    """Validate any outbox payload by its `kind`: an `AlertPayload` (warning, breach), or a
    `leadsla.notify.notice.NoticePayload` (notice), a `leadsla.notify.digest.DigestPayload` (digest).

    Raises:
        PayloadError: the payload does not follow its kind's schema.
    """
    kind = data.get("kind") if isinstance(data, dict) else getattr(data, "kind", None)
    if kind == "notice":
        from leadsla.notify.notice import NoticePayload

        return NoticePayload.parse(data, where=where)
    if kind == "digest":
        from leadsla.notify.digest import DigestPayload

        return DigestPayload.parse(data, where=where)
    return AlertPayload.parse(data, where=where)


def render_slack(payload: Any, key: str) -> dict[str, Any]:
    """`chat.postMessage` arguments for any parsed payload (see `parse_payload`)."""
    if payload.kind == "notice":
        from leadsla.notify.notice import notice_slack_message

        return notice_slack_message(payload, key)
    if payload.kind == "digest":
        from leadsla.notify.digest import digest_slack_message

        return digest_slack_message(payload, key)
    return slack_message(payload, key)


def render_email(payload: Any) -> EmailContent:
    """Subject and bodies for any parsed payload (see `parse_payload`)."""
    if payload.kind == "notice":
        from leadsla.notify.notice import notice_email_message

        return notice_email_message(payload)
    if payload.kind == "digest":
        from leadsla.notify.digest import digest_email_message

        return digest_email_message(payload)
    return email_message(payload)


# --- formatting -------------------------------------------------------------------------------


def slack_escape(text: str | None) -> str:
    """Escape text for Slack (mrkdwn and plain_text): only &, < and > are control characters.

    With them escaped, ``<!channel>``, ``<@U123>`` and ``<https://x|y>`` show as literal text.
    """
    if text is None:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def one_line(text: str | None) -> str:
    """Collapse line breaks (e-mail subjects and headers must not contain any)."""
    return " ".join((text or "").split())


def short_duration(seconds: int) -> str:
    """``2 h 05 min`` / ``45 min`` (absolute value; the caller says whether it is overdue)."""
    minutes = abs(int(seconds)) // 60
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def words_duration(seconds: int) -> str:
    """``2 hours``, ``1 hour 30 minutes``, ``45 minutes`` (absolute value)."""
    minutes = abs(int(seconds)) // 60
    hours, minutes = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes or not hours:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)


def local_time(instant: dt.datetime, timezone: str) -> str:
    """``Mon 9 Mar 2026, 14:00 EDT`` in the given IANA zone."""
    local = instant.astimezone(ZoneInfo(timezone))
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} {local.tzname()}"


def utc_time(instant: dt.datetime) -> str:
    return f"{instant.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


#: A message decided this long after its checkpoint says so (catch-up after downtime).
LATE_AFTER = dt.timedelta(minutes=5)


def _title(p: AlertPayload) -> str:
    if p.kind == "breach":
        return f"SLA breached: {p.sla_name}"
    label = p.checkpoint_label or f"{short_duration(p.remaining_seconds)} left"
    return f"SLA warning: {p.sla_name} ({label})"


# --- Slack ------------------------------------------------------------------------------------


def slack_message(payload: AlertPayload, key: str) -> dict[str, Any]:
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
    fields = [
        f"*Lead*\n{e(p.lead.name)}",
        f"*Company*\n{e(p.lead.company) or '-'}",
        f"*Source*\n{e(p.lead.source) or '-'}",
        f"*Tier*\n{e(p.lead.tier) or '-'}",
        f"*Business time elapsed*\n{short_duration(p.elapsed_seconds)} of {short_duration(p.target_seconds)}"
        f" (as of {e(local_time(p.as_of, tz))})",
        f"*{'Overdue' if p.overdue else 'Remaining'}*\n{remaining}",
        f"*Owner*\n{e(p.owner.name)}",
        f"*Owner's open clocks*\n{p.open_clocks}",
    ]
    when = p.breached_at if (p.kind == "breach" and p.breached_at) else p.due_at
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": e(_title(p))[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{lead_line} needs attention."}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
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
                {
                    "type": "mrkdwn",
                    "text": f"<{p.record_url}|Record {p.lead.id}> · "
                    f"{'Breached' if p.kind == 'breach' else 'Checkpoint reached'} at "
                    f"{e(local_time(when, tz))} · "
                    f"times in {e(tz)}" + (f" · to you as {e(p.roles_text)}" if p.roles else ""),
                }
            ],
        },
    ]
    text = f"{e(_title(p))}: {e(p.lead.name)} ({remaining.replace('*', '')})"
    return {
        "text": text,
        "blocks": blocks,
        "metadata": {"event_type": METADATA_EVENT_TYPE, "event_payload": {"idempotency_key": key}},
        "unfurl_links": False,
        "unfurl_media": False,
    }


# --- e-mail -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailContent:
    subject: str
    html: str
    text: str
    high_priority: bool


@lru_cache(maxsize=1)
def _jinja():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        # HTML templates escape every variable; the .txt twins are plain text and need none.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def email_message(payload: AlertPayload) -> EmailContent:
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
        "roles_text": p.roles_text,
        "overdue": p.overdue,
        "deadline_local": local_time(p.deadline, tz),
        "timezone": tz,
        "record_url": p.record_url,
        "breached_local": local_time(p.breached_at or p.deadline, team_tz),
        "breached_utc": utc_time(p.breached_at or p.deadline),
        "team_timezone": team_tz,
        "team_name": p.team.name if p.team else None,
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
    env = _jinja()
    return EmailContent(
        subject=one_line(subject)[:250],
        html=env.get_template(f"email/{p.kind}.html").render(values),
        text=env.get_template(f"email/{p.kind}.txt").render(values),
        high_priority=p.kind == "breach",
    )
