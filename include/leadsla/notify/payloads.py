"""What a message says, as data: the outbox payload schemas, validated on the way in and out.

Every outbox row's ``payload`` is one of these kinds, told apart by its ``kind`` field:
``warning`` and ``breach`` (`AlertPayload`, a clock's checkpoint), ``notice`` (`NoticePayload`,
about the system itself: a data-quality incident, a health digest, the API budget, a capacity
alert, a kept lock) and ``digest`` (`DigestPayload`, one person's warnings beyond the rate limit).
Lead text is data: these models hold it verbatim and the renderers escape it. This module only
validates: it never renders, sends, reads the clock or the store.

Alert payload (JSON in ``outbox.payload``)::

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
      "context": {"score": "87", "amount": 25000.0,   # for triage (decisions.context); optional,
                  "amount_basis": "estimate",         # data only: never part of the key
                  "campaign": "Spring Webinar"},
      "instance_url": "https://acme.my.salesforce.com",
      "ladder": {"rule": "repeat", "why": "the rep's 3rd breach ..."}   # breaches; optional
    }
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from leadsla.errors import LeadSlaError

_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
_OBJECT_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")
_INSTANCE_URL = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d+)?/?$")


class PayloadError(LeadSlaError):
    """An outbox payload does not follow the schema in `leadsla.notify.payloads`."""


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA timezone (e.g. 'America/New_York')") from None
    return name


class PayloadModel(BaseModel):
    """A frozen part of a payload; unknown keys are ignored (older rows stay readable)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Payload(PayloadModel):
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


class LeadInfo(PayloadModel):
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


class Person(PayloadModel):
    id: str | None = None
    name: str
    email: str | None = None


class Recipient(PayloadModel):
    name: str
    email: str | None = None
    timezone: str
    slack_fallback_channel: str | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)


class Team(PayloadModel):
    name: str
    timezone: str

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)


class LadderStep(PayloadModel):
    """Which escalation-ladder rule sent a breach message (`leadsla.decisions.ladder`) and why."""

    rule: str = Field(min_length=1)  # flat, breach, repeat, critical (comma-joined when several)
    why: str | None = None  # e.g. "the rep's 3rd breach across all SLAs in 30 days"


class AlertContext(PayloadModel):
    """What a manager triages by (`leadsla.decisions.context`): None where the CRM holds nothing."""

    score: str | None = Field(None, max_length=200)
    amount: float | None = Field(None, allow_inf_nan=False)
    #: ``amount``: the Opportunity's Amount; ``estimate``: the reports' expected deal value.
    amount_basis: Literal["amount", "estimate"] | None = None
    campaign: str | None = Field(None, max_length=200)


class AlertPayload(Payload):
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
    #: The ladder rule that sent this breach message (None: a warning, or a row from before).
    ladder: LadderStep | None = None
    #: Score, deal value and campaign for triage (None: a row queued before alerts carried them).
    context: AlertContext | None = None
    #: Queued ahead of its checkpoint by the monitor's planning (`decisions.ahead`): due at
    #: `due_at`, and re-checked against the store right before it goes (`notify.recheck`).
    planned: bool = False

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


class RecordLink(PayloadModel):
    """The CRM record a notice is about, for a one-click link to it."""

    object_type: str
    id: str
    instance_url: str

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

    @field_validator("instance_url")
    @classmethod
    def _instance(cls, v: str) -> str:
        if not _INSTANCE_URL.match(v):
            raise ValueError(f"{v!r} is not an instance URL like https://acme.my.salesforce.com")
        return v.rstrip("/")

    @property
    def url(self) -> str:
        """The record in Salesforce Lightning."""
        return f"{self.instance_url}/lightning/r/{self.object_type}/{self.id}/view"


class NoticePayload(Payload):
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
    #: The record the notice is about, linked from the message (Slack button, e-mail link).
    record: RecordLink | None = None

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


class DigestItem(PayloadModel):
    lead: LeadInfo
    sla_name: str
    remaining_seconds: int
    deadline: AwareDatetime
    owner: str
    record_url: str
    #: The alert's triage context and the rep's open clocks (None: a row from before).
    context: AlertContext | None = None
    open_clocks: int | None = Field(None, ge=0)


class DigestPayload(Payload):
    """The schema of a digest's ``outbox.payload``: the warnings it replaces, summarised."""

    label: ClassVar[str] = "digest"

    kind: Literal["digest"]
    recipient: Recipient
    window_minutes: int = Field(ge=1)
    max_alerts: int = Field(ge=1)
    items: list[DigestItem] = Field(min_length=2)
    replaces: list[str] = Field(min_length=2)

    @property
    def fallback_channel(self) -> str | None:
        return self.recipient.slack_fallback_channel

    @property
    def high_priority(self) -> bool:
        return False  # warnings only; breaches are never digested


#: Each payload kind and its schema.
KINDS: dict[str, type[Payload]] = {
    "warning": AlertPayload,
    "breach": AlertPayload,
    "notice": NoticePayload,
    "digest": DigestPayload,
}


def parse_payload(data: Any, *, where: str = "payload") -> AlertPayload | NoticePayload | DigestPayload:
    """Validate any outbox payload by its `kind` (`KINDS`; a missing or unknown kind is read as an
    alert, whose schema then names the problem).

    Raises:
        PayloadError: the payload does not follow its kind's schema.
    """
    kind = data.get("kind") if isinstance(data, dict) else getattr(data, "kind", None)
    return KINDS.get(kind, AlertPayload).parse(data, where=where)
