"""The SLA policy as code: load and validate include/config/sla_policy.yaml into typed objects.

The policy names calendars, teams (each on a calendar, with a manager), contacts for roles (VPs),
and SLAs: what starts, stops and pauses a clock, tiers matched in explicit priority order with a
required default, each tier's target, the checkpoints (percent of target, "2h elapsed",
"target + 1m") with recipients by role and channels, and the breach actions.

Loading is all-or-nothing: every problem is reported with the file, the key path (e.g.
``slas[0].tiers[2].target.duration``), the bad value and what was expected, and nothing is
returned unless the whole file is valid. This module never touches the store, Airflow or the
network; the engine decides what a policy means for a clock.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from leadsla.access import Access
from leadsla.calendar import BusinessCalendar, CalendarError, format_duration, is_timezone, parse_duration
from leadsla.errors import LeadSlaError
from leadsla.lifecycle import (
    Lifecycle,
    LifecycleError,
    ObjectLifecycle,
    active_lifecycle_path,
    load_lifecycle,
)
from leadsla.paths import config_dir
from leadsla.recycling import Recycle
from leadsla.routing import Routing
from leadsla.yaml_file import read_yaml_file, shown_key

#: The shipped policy.
DEFAULT_POLICY_PATH = config_dir() / "sla_policy.yaml"
#: Roles the engine and the alerts resolve from the data (owner, their manager, the manager's
#: manager - the director - and the team's manager).
DATA_ROLES = frozenset({"owner", "owner_manager", "owner_director", "team_manager"})
#: Fields of `records` a tier may match on.
TIER_FIELDS = frozenset({"lead_type", "lead_source", "account_tier", "country", "status"})
#: A target's calendar may be this instead of a calendar name: the owner's team's calendar.
OWNER_CALENDAR = "owner"
#: The calendar used for targets in calendar (real) time.
REAL_TIME_CALENDAR = "24x7"

_SLUG = r"^[a-z][a-z0-9_]*$"
_CHECKPOINT_RE = re.compile(
    r"^\s*(?:(?P<pct>\d+(?:\.\d+)?)\s*%|(?P<elapsed>[\dhmsd "
    r"]+?)\s+elapsed|target(?:\s*(?P<sign>[+-])\s*(?P<delta>[\dhmsd ]+))?)\s*$"
)


class PolicyError(LeadSlaError):
    """The policy file is missing, unreadable or invalid; nothing from it was applied."""


def _duration(value: Any) -> str:
    parse_duration(value)  # raises CalendarError (a ValueError-free message) -> wrapped below
    return str(value)


def _checked_duration(value: Any) -> str:
    try:
        return _duration(value)
    except CalendarError:
        raise ValueError("expected a duration such as 4h, 5m, 1h30m, 3d") from None


Duration = Annotated[str | int, AfterValidator(_checked_duration)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: A team's `manager` may be this instead of a CRM user id: the manager most of the team's active
#: members report to (User.ManagerId), as the CRM says at the time of the message.
CRM_MANAGER = "crm"


class Team(_Model):
    calendar: str
    #: The team's name(s) as the CRM spells it (User.Department / role), e.g. "SDR EMEA".
    crm_names: list[str] = []
    #: The team manager (role ``team_manager``): a CRM user id, or ``crm`` (see `CRM_MANAGER`).
    manager: str | None = None
    queue: str | None = None  # the team's CRM queue name
    slack_channel: str | None = None


class Contact(_Model):
    """How to reach a role the data cannot resolve (VPs): an email and/or a Slack target."""

    email: str | None = None
    slack: str | None = None
    user_id: str | None = None
    #: Where the person lives (their quiet hours, their breach digest's morning hour); default the
    #: quiet hours' `default_timezone`.
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and not is_timezone(value):
            raise ValueError("expected an IANA timezone name (e.g. America/New_York)")
        return value


class QuietHours(_Model):
    """Non-critical messages wait outside these local hours of the recipient (users.timezone)."""

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    default_timezone: str = "America/New_York"

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_timezone(value):
            raise ValueError("expected an IANA timezone name (e.g. America/New_York)")
        return value


class Sms(_Model):
    """Text messages (`leadsla.notify.sms`) for what cannot wait: a breach whose `channels` list
    ``sms`` is texted to each recipient with a mobile number (the CRM user's MobilePhone) when the
    tier is critical (at once, day or night) or, with `off_hours_breaches`, when the recipient is off
    work at the breach (their Slack and e-mail wait for the morning; the text does not)."""

    #: The Airflow connection (type ``apprise``) whose config holds the SMS gateway's Apprise URL.
    #: Only its id lives here; the URL and its token live in the connection. A missing connection
    #: fails each text at delivery, loudly (data engineering is told on the other channels).
    connection: str = Field(default="apprise_sms", pattern=r"^[A-Za-z0-9_.\-]{1,250}$")
    off_hours_breaches: bool = True


class RateLimit(_Model):
    """Per-recipient alarm-fatigue limit: beyond `max_alerts` messages to one person (per channel)
    within `window_minutes`, further warnings go as one digest. Breaches are never held back."""

    max_alerts: int = Field(default=5, ge=1)
    window_minutes: int = Field(default=10, ge=1)


class Systemic(_Model):
    """A team-wide breach: more than `share` of a team's clocks started today (the team's calendar
    day) breached -> one capacity alert to `notify` instead of one VP e-mail per breach."""

    share: float = Field(default=0.6, gt=0, le=1)
    min_clocks: int = Field(default=3, ge=1)  # a day with fewer clocks is never "systemic"
    notify: list[str] = Field(default_factory=lambda: ["vp_sales", "vp_marketing", "vp_revops"])


class StartRule(_Model):
    """A clock starts when `field` changes to `becomes`, or (set: true) gets any value."""

    field: str
    becomes: str | None = None
    set: bool | None = None

    def describe(self) -> str:
        return f"{self.field} becomes {self.becomes}" if self.becomes is not None else f"{self.field} is set"


#: Task subtypes that are never a touch: mass e-mails and sales-engagement sequence steps are sent
#: by automation, whoever owns them ("compliance theatre" if they stopped the clock).
AUTOMATED_SUBTYPES = ("ListEmail", "Cadence")


class TouchRule(_Model):
    """What counts as working the record (a touch): an activity on it, by whom, of which kind.

    The default is the seeds' "a real first touch by the owner": any completed Task or Event by
    the clock's owner, except mass and sequence e-mails and anything an automation user created.
    """

    #: owner: the clock's owner at the activity's time; owner_team: anyone in that owner's team.
    by: Literal["owner", "owner_team", "anyone"] = "owner"
    kinds: list[Literal["Task", "Event"]] = Field(default_factory=lambda: ["Task", "Event"], min_length=1)
    #: Activity Type values that count (Call, Email, Meeting...); none listed: any type.
    types: list[str] | None = None
    #: TaskSubtype / EventSubtype values that count; none listed: any subtype.
    subtypes: list[str] | None = None
    #: Subtypes that never count, whoever logged them.
    exclude_subtypes: list[str] = Field(default_factory=lambda: list(AUTOMATED_SUBTYPES))
    #: Activities created by the policy's `automation_user_ids` never count.
    exclude_automation: bool = True
    #: A Task counts once it is Completed (at its completion time); an open to-do is not a touch.
    completed_only: bool = True

    def describe(self) -> str:
        what = "/".join(self.types) if self.types else "activity"
        return f"{what} by {self.by.replace('_', ' ')}"


class StopRule(_Model):
    """One way a clock stops (is met): a touch, a field entering a set, or a field being set.

    `activity_by: owner|anyone` is the short form of `touch: {by: owner|anyone}` (the default touch).
    """

    touch: TouchRule | None = None
    activity_by: Literal["owner", "anyone"] | None = None
    field: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    set: bool | None = None

    @property
    def touch_rule(self) -> TouchRule | None:
        """The touch this rule stops on (the short form expanded), or None for a field rule."""
        if self.touch is not None:
            return self.touch
        return TouchRule(by=self.activity_by) if self.activity_by is not None else None

    def describe(self) -> str:
        if self.touch_rule is not None:
            return self.touch_rule.describe()
        if self.in_ is not None:
            return f"{self.field} in {', '.join(self.in_)}"
        return f"{self.field} is set"


class PauseRule(_Model):
    """The clock is paused while `field`'s value is in `in`."""

    field: str
    in_: list[str] = Field(alias="in", min_length=1)


class Target(_Model):
    duration: Duration
    time: Literal["business", "calendar"] = "business"
    calendar: str = OWNER_CALENDAR
    #: When the clock starts outside the calendar's hours, this duration applies instead.
    outside_hours_duration: Duration | None = None

    @property
    def seconds(self) -> int:
        return parse_duration(self.duration)

    @property
    def outside_hours_seconds(self) -> int | None:
        return None if self.outside_hours_duration is None else parse_duration(self.outside_hours_duration)

    def describe(self) -> str:
        days = self.time == "calendar"
        text = f"{format_duration(self.seconds, days=days)} {self.time}"
        if self.time == "business":
            text += f" ({'owner calendar' if self.calendar == OWNER_CALENDAR else self.calendar})"
        if self.outside_hours_duration is not None:
            text += f"; {format_duration(self.outside_hours_seconds, days=days)} if started outside hours"
        return text


class Tier(_Model):
    id: str = Field(pattern=_SLUG)
    when: dict[str, list[str]] | None = None  # record field -> accepted values; all must match
    default: bool = False
    target: Target
    critical: bool = False  # breaches go at once, even in quiet hours

    @field_validator("when")
    @classmethod
    def _fields_known(cls, value: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
        for key in value or {}:
            if key not in TIER_FIELDS:
                raise ValueError(
                    f"unknown record field {key!r}: expected one of {', '.join(sorted(TIER_FIELDS))}"
                )
        return value


Channel = Literal["slack", "email", "sms"]
#: A checkpoint at a share of the target is at most this share (ten times the target).
MAX_CHECKPOINT_PERCENT = 1000


def _checkpoint_at(value: str) -> str:
    """A checkpoint's `at` ("50%", "2h elapsed", "target + 1m"), checked."""
    m = _CHECKPOINT_RE.match(value)
    if not m:
        raise ValueError(
            'expected "N%", "<duration> elapsed", "target", "target + <duration>" or "target - <duration>"'
        )
    if m.group("pct") is not None and float(m.group("pct")) > MAX_CHECKPOINT_PERCENT:
        raise ValueError(f"expected at most {MAX_CHECKPOINT_PERCENT}% of the target")
    for part in (m.group("elapsed"), m.group("delta")):
        if part is not None:
            try:
                parse_duration(part.strip())
            except CalendarError:
                raise ValueError(f"{part.strip()!r} is not a duration such as 2h or 1m") from None
    return value


class Checkpoint(_Model):
    id: str = Field(pattern=_SLUG)
    at: str
    notify: list[str] = Field(min_length=1)
    channels: list[Channel] = Field(default_factory=lambda: ["slack"], min_length=1)
    priority: Literal["normal", "high"] = "normal"

    @field_validator("at")
    @classmethod
    def _offset_parses(cls, value: str) -> str:
        return _checkpoint_at(value)

    def offset(self) -> tuple[str, float]:
        """("percent", p) | ("elapsed", seconds) | ("target", signed seconds)."""
        m = _CHECKPOINT_RE.match(self.at)
        if m.group("pct") is not None:
            return "percent", float(m.group("pct"))
        if m.group("elapsed") is not None:
            return "elapsed", float(parse_duration(m.group("elapsed").strip()))
        delta = parse_duration(m.group("delta").strip()) if m.group("delta") else 0
        return "target", float(-delta if m.group("sign") == "-" else delta)

    def offset_seconds(self, target_seconds: int) -> int:
        kind, value = self.offset()
        if kind == "percent":
            return int(round(target_seconds * value / 100))
        if kind == "elapsed":
            return int(value)
        return max(0, int(target_seconds + value))


class Breach(_Model):
    """What happens when the clock passes its target: a checkpoint with consequences."""

    at: str = "target + 1m"
    reassign: list[str] = Field(default_factory=list)  # tried in order: owner_manager, queue:<name>
    #: The lead is locked from round-robin for this long from the moment it is reassigned (so the
    #: manager has the whole time to decide), in real hours or the new owner's business hours.
    lock_hours: float = Field(default=0, ge=0, le=24 * 366, allow_inf_nan=False)
    lock_time: Literal["calendar", "business"] = "calendar"
    notify: list[str] = Field(default_factory=list)
    channels: list[Channel] = Field(default_factory=lambda: ["email"], min_length=1)
    priority: Literal["normal", "high"] = "high"

    @field_validator("at")
    @classmethod
    def _at_parses(cls, value: str) -> str:
        return _checkpoint_at(value)

    @field_validator("reassign")
    @classmethod
    def _reassign_targets(cls, value: list[str]) -> list[str]:
        for item in value:
            if item not in ("owner_manager", "team_manager") and not item.startswith("queue:"):
                raise ValueError(f"{item!r}: expected owner_manager, team_manager or queue:<name>")
        return value

    def as_checkpoint(self) -> Checkpoint:
        return Checkpoint(
            id="breach",
            at=self.at,
            notify=self.notify or ["owner"],
            channels=self.channels,
            priority=self.priority,
        )


#: `ladder: flat` (or no `ladder`): the seed-000 behaviour, every breach tells `breach.notify` at once.
FLAT = "flat"
#: The rules of the escalation ladder, as the audit (`ladder_rule`) and the messages name them.
LADDER_RULES = ("flat", "breach", "repeat", "critical", "systemic", "digest")


class RepeatRung(_Model):
    """A rep's `breach`-th breach within `within_days` days, and each further `breach`-th (the 3rd,
    6th, 9th ...), tells `notify`
    (default: the director, the owner's manager's manager in the CRM). `across: all_slas` counts the
    rep's breaches of every SLA (a repeat offender is a person, whatever the handoff); `this_sla`
    only this SLA's."""

    breach: int = Field(default=3, ge=1, le=1000)
    within_days: int = Field(default=30, ge=1, le=366)
    across: Literal["all_slas", "this_sla"] = "all_slas"
    notify: list[str] = Field(default_factory=lambda: ["owner_director"], min_length=1)
    channels: list[Channel] | None = Field(default=None, min_length=1)  # default: the breach's


class DigestRung(_Model):
    """Leadership (`notify`: contacts) gets ONE message a day listing the day's breaches, at `hour`
    in each person's timezone (the contact's `timezone`, else `timezone` here, else the quiet
    hours' default), never one message per breach."""

    notify: list[str] = Field(min_length=1)
    hour: int = Field(default=8, ge=0, le=23)
    timezone: str | None = None
    channels: list[Channel] = Field(default_factory=lambda: ["email"], min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and not is_timezone(value):
            raise ValueError("expected an IANA timezone name (e.g. America/New_York)")
        return value


class CriticalRung(_Model):
    """A critical tier's breach still tells `notify` at once (default: the digest's people)."""

    notify: list[str] | None = Field(default=None, min_length=1)
    channels: list[Channel] | None = Field(default=None, min_length=1)  # default: the breach's


class Ladder(_Model):
    """Who hears of a breach, rung by rung (`decisions.ladder`): `breach.notify` at once (owner and
    manager), the director at a rep's repeated breach (`repeat`), leadership in a daily `digest`
    except a critical tier's breach (`critical`, at once); a team whose day is mostly breaches
    still gives leadership its capacity alert (policy `systemic`). `ladder: flat` is the seed-000
    rule: every breach tells everyone in `breach.notify` at once."""

    mode: Literal["flat", "ladder"] = "ladder"
    repeat: RepeatRung | None = None
    digest: DigestRung | None = None
    critical: CriticalRung | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat_word(cls, value: Any) -> Any:
        if value == FLAT:
            return {"mode": FLAT}
        if isinstance(value, str):
            raise ValueError("expected flat, or a mapping of rungs {repeat: ..., digest: ..., critical: ...}")
        return value

    @property
    def flat(self) -> bool:
        return self.mode == FLAT

    def critical_notify(self) -> list[str]:
        """Who hears of a critical tier's breach at once, beside `breach.notify`."""
        if self.critical is not None and self.critical.notify:
            return self.critical.notify
        return self.digest.notify if self.digest is not None else []


class Sla(_Model):
    id: str = Field(pattern=_SLUG)
    name: str
    handoff: str
    object: Literal["Lead", "Opportunity"]
    enabled: bool = True
    team: str | None = None  # the team accountable (for the matrix); owners' teams drive calendars
    start: StartRule
    #: Ways the clock is met. Besides these, a clock started by a field becoming a value ends when
    #: the record leaves that value for one that is not a pause (SAL -> SQL, Recycled...): it is
    #: `handed_on`, never left running.
    stop: list[StopRule] = Field(default_factory=list)
    pause: list[PauseRule] = Field(default_factory=list)
    #: How a clock that ended by leaving the watched state counts in compliance: as met (the seeds:
    #: a lead worked out of SAL was worked), or apart from met and violated (excluded).
    left_counts_as: Literal["met", "excluded"] = "met"
    tiers: list[Tier] = Field(min_length=1)
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    breach: Breach
    #: Who hears of a breach beyond `breach.notify` (`Ladder`); absent or `flat`: nobody else.
    ladder: Ladder | None = None

    @property
    def laddered(self) -> bool:
        """True when the escalation ladder decides who hears of a breach (not the flat rule)."""
        return self.ladder is not None and not self.ladder.flat

    def pause_values(self, field: str) -> list[str]:
        """The values of `field` that pause this SLA's clocks."""
        return [v for rule in self.pause if rule.field == field for v in rule.in_]

    def all_checkpoints(self) -> list[Checkpoint]:
        """The checkpoints then the breach, in the order they are declared (engine sorts by offset)."""
        return [*self.checkpoints, self.breach.as_checkpoint()]


class Policy(_Model):
    version: str = Field(min_length=1)
    #: The lifecycle file the rules are checked against (relative to this file; default: the
    #: active lifecycle, include/config/lifecycle.yaml or $LEADSLA_LIFECYCLE_PATH).
    lifecycle: str | None = None
    effective_from: dt.datetime
    description: str | None = None
    default_calendar: str
    calendars: dict[str, dict[str, Any]] = Field(min_length=1)
    teams: dict[str, Team] = Field(default_factory=dict)
    contacts: dict[str, Contact] = Field(default_factory=dict)
    quiet_hours: QuietHours | None = None
    #: Text messages (`Sms`); absent: no SLA may list the ``sms`` channel.
    sms: Sms | None = None
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    systemic: Systemic = Field(default_factory=Systemic)
    # CRM users whose owner changes are automated (integration user, assignment rules): while a
    # breach lock holds, their reassignments are put back.
    automation_user_ids: list[str] = Field(default_factory=list)
    slas: list[Sla] = Field(min_length=1)
    #: Lead routing and unowned-lead alerts (`leadsla.routing`); absent: no routing, no alerts.
    routing: Routing | None = None
    #: Attempt counting and recycling (`leadsla.recycling`); absent: neither.
    recycle: Recycle | None = None
    #: Who may open the War Room and which teams' leads each sees (`leadsla.access`); absent: the
    #: defaults (Airflow's Admin role sees every team, others their CRM user's teams).
    access: Access = Field(default_factory=Access)
    _calendars: dict[str, BusinessCalendar] = PrivateAttr(default_factory=dict)
    _lifecycle: Lifecycle | None = PrivateAttr(default=None)
    source: str | None = Field(default=None, exclude=True)

    @field_validator("effective_from")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("expected a timezone-aware timestamp, e.g. 2026-01-01T00:00:00Z")
        return value.astimezone(dt.UTC)

    # -- lookups the engine and CLI use --

    def calendar(self, name: str) -> BusinessCalendar:
        """The named calendar ("24x7" is real time)."""
        if name == REAL_TIME_CALENDAR:
            return self._calendars.setdefault(REAL_TIME_CALENDAR, BusinessCalendar.always_open())
        try:
            return self._calendars[name]
        except KeyError:
            known = ", ".join(self.calendar_names)
            raise PolicyError(f"unknown calendar {name!r}: the policy defines {known}") from None

    @property
    def lifecycle_model(self) -> Lifecycle:
        """The lifecycle the policy's rules were checked against."""
        if self._lifecycle is None:
            raise PolicyError(f"{self.source or 'policy'}: no lifecycle loaded")
        return self._lifecycle

    @property
    def calendar_names(self) -> list[str]:
        return sorted(n for n in self._calendars if n != REAL_TIME_CALENDAR)

    def sla(self, sla_id: str) -> Sla:
        for sla in self.slas:
            if sla.id == sla_id:
                return sla
        raise PolicyError(f"unknown SLA {sla_id!r}: the policy defines {', '.join(s.id for s in self.slas)}")

    def team_key(self, team: str | None) -> str | None:
        """The policy's id for a team as the CRM or the policy names it (case-insensitive), or None."""
        if team is None:
            return None
        if team in self.teams:
            return team
        wanted = team.strip().casefold()
        return next(
            (
                key
                for key, t in self.teams.items()
                if key.casefold() == wanted or any(n.strip().casefold() == wanted for n in t.crm_names)
            ),
            None,
        )

    def team(self, team: str | None) -> Team | None:
        """The policy's team for a CRM or policy team name, or None when the policy has no such team."""
        key = self.team_key(team)
        return None if key is None else self.teams[key]

    def team_calendar(self, team: str | None) -> str:
        """The calendar of a team; the policy's default calendar for no or an unknown team."""
        found = self.team(team)
        return found.calendar if found is not None else self.default_calendar


# --- loading ---------------------------------------------------------------------------------------


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = "in" if part == "in_" else shown_key(part)
            out += f".{part}" if out else part
    return out or "(top level)"


def _value_at(data: Any, loc: Iterable[Any]) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _explain(source: str, data: Any, exc: ValidationError) -> PolicyError:
    lines = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
        loc = [p for p in loc if p not in ("str", "int")]
        if err["type"] == "missing":
            lines.append(f"{_path(loc)}: missing: this key is required")
            continue
        value = _value_at(data, loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key: remove it or check its spelling"
        lines.append(f"{_path(loc)}: {value!r}: {msg}")
    unique = list(dict.fromkeys(lines))
    return PolicyError(f"{source}: invalid SLA policy: " + "; ".join(unique))


def _cross_check(policy: Policy) -> list[str]:
    """References between sections: calendars, teams, roles, tier order, unique ids."""
    problems: list[str] = []
    cal_names = set(policy._calendars)
    if policy.default_calendar not in cal_names:
        problems.append(
            f"default_calendar: {policy.default_calendar!r}: expected one of the calendars "
            f"({', '.join(sorted(cal_names))})"
        )
    crm_names: dict[str, str] = {}
    for name, team in policy.teams.items():
        for crm_name in team.crm_names:
            other = crm_names.setdefault(crm_name.strip().casefold(), name)
            if other != name:
                problems.append(f"teams.{name}.crm_names: {crm_name!r}: already names team {other!r}")
        if team.calendar not in cal_names:
            problems.append(
                f"teams.{name}.calendar: {team.calendar!r}: expected one of the calendars "
                f"({', '.join(sorted(cal_names))})"
            )
    roles = DATA_ROLES | set(policy.contacts)
    seen_sla: set[str] = set()
    for i, sla in enumerate(policy.slas):
        where = f"slas[{i}]"
        if sla.id in seen_sla:
            problems.append(f"{where}.id: {sla.id!r}: SLA ids must be unique")
        seen_sla.add(sla.id)
        if sla.team is not None and sla.team not in policy.teams:
            problems.append(
                f"{where}.team: {sla.team!r}: expected one of the teams ({', '.join(sorted(policy.teams))})"
            )
        if (sla.start.becomes is None) == (sla.start.set is None):
            problems.append(
                f"{where}.start: {sla.start.model_dump(exclude_none=True)!r}: expected exactly one of "
                "becomes or set: true"
            )
        for j, stop in enumerate(sla.stop):
            kinds = [
                stop.touch is not None,
                stop.activity_by is not None,
                stop.in_ is not None,
                bool(stop.set),
            ]
            if sum(kinds) != 1 or ((stop.in_ is not None or stop.set) and not stop.field):
                problems.append(
                    f"{where}.stop[{j}]: {stop.model_dump(exclude_none=True, by_alias=True)!r}: expected "
                    "one of {touch: {...}}, {activity_by: owner}, {field: F, in: [...]} or "
                    "{field: F, set: true}"
                )
        if not sla.stop and sla.start.becomes is None:
            problems.append(
                f"{where}.stop: []: a clock started by a field being set needs a stop rule (only a clock "
                "started by a field becoming a value ends by leaving it)"
            )
        defaults = [k for k, tier in enumerate(sla.tiers) if tier.default]
        if len(defaults) != 1 or defaults[0] != len(sla.tiers) - 1:
            problems.append(
                f"{where}.tiers: {[t.id for t in sla.tiers]!r}: expected exactly one tier with default: "
                "true, listed last (tiers match in order)"
            )
        seen_tier: set[str] = set()
        for k, tier in enumerate(sla.tiers):
            if tier.id in seen_tier:
                problems.append(f"{where}.tiers[{k}].id: {tier.id!r}: tier ids must be unique within an SLA")
            seen_tier.add(tier.id)
            if not tier.default and not tier.when:
                problems.append(f"{where}.tiers[{k}].when: None: a non-default tier needs a when: condition")
            cal = tier.target.calendar
            if cal != OWNER_CALENDAR and cal not in cal_names:
                problems.append(
                    f"{where}.tiers[{k}].target.calendar: {cal!r}: expected owner or one of the calendars "
                    f"({', '.join(sorted(cal_names))})"
                )
            if tier.target.seconds <= 0:
                problems.append(
                    f"{where}.tiers[{k}].target.duration: {tier.target.duration!r}: expected a positive "
                    "duration"
                )
        ids = [c.id for c in sla.checkpoints]
        if len(set(ids)) != len(ids) or "breach" in ids:
            problems.append(
                f"{where}.checkpoints: {ids!r}: checkpoint ids must be unique and not 'breach' (the "
                "breach is its own section)"
            )
        for k, cp in enumerate(sla.all_checkpoints()):
            path = f"{where}.checkpoints[{k}]" if k < len(sla.checkpoints) else f"{where}.breach"
            problems += _sms_problems(policy, cp, path, breach=k == len(sla.checkpoints))
            for r, who in enumerate(cp.notify):
                if not (who in roles or who.startswith("queue:") or who.startswith("channel:")):
                    problems.append(
                        f"{path}.notify[{r}]: {who!r}: expected a role ({', '.join(sorted(roles))}), "
                        "queue:<name> or channel:<name>"
                    )
                elif who.startswith("queue:") and not any(t.queue == who[6:] for t in policy.teams.values()):
                    problems.append(
                        f"{path}.notify[{r}]: {who!r}: no team's queue is named {who[6:]!r}: name it in "
                        "teams.<team>.queue (its Slack channel is told)"
                    )
                elif who == "team_manager":
                    problems += _team_manager_problems(policy, sla, f"{path}.notify[{r}]")
        for r, who in enumerate(sla.breach.reassign):
            if who == "team_manager":
                problems += _team_manager_problems(policy, sla, f"{where}.breach.reassign[{r}]")
        if sla.ladder is not None:
            problems += _ladder_problems(policy, sla, where, roles)
    if policy.routing is not None:
        problems += _routing_problems(policy, policy.routing, roles)
    if policy.recycle is not None:
        problems += _recycle_problems(policy, policy.recycle, roles)
    return problems


def _ladder_problems(policy: Policy, sla: Sla, where: str, roles: set[str]) -> list[str]:
    """A ladder's rungs name known roles; the digest's people are contacts not told of each breach."""
    ladder = sla.ladder
    path = f"{where}.ladder"
    if ladder.flat:
        extra = [k for k in ("repeat", "digest", "critical") if getattr(ladder, k) is not None]
        return [f"{path}.{k}: a flat ladder has no rungs: remove it, or drop mode: flat" for k in extra]
    problems: list[str] = []
    rungs = (("repeat", ladder.repeat), ("critical", ladder.critical))
    for name, rung in rungs:
        for r, who in enumerate((rung.notify or []) if rung is not None else []):
            at = f"{path}.{name}.notify[{r}]"
            if not (who in roles or who.startswith("channel:")):
                problems.append(
                    f"{at}: {who!r}: expected a role ({', '.join(sorted(roles))}) or channel:<name>"
                )
            elif who == "team_manager":
                problems += _team_manager_problems(policy, sla, at)
    if ladder.digest is not None:
        for r, who in enumerate(ladder.digest.notify):
            at = f"{path}.digest.notify[{r}]"
            if who not in policy.contacts:
                known = ", ".join(sorted(policy.contacts)) or "none defined"
                problems.append(
                    f"{at}: {who!r}: a digest goes to people the policy names: expected a contact ({known})"
                )
            elif who in sla.breach.notify:
                problems.append(
                    f"{at}: {who!r}: also in {where}.breach.notify, so told of every breach at once: remove "
                    "it from one of them (or use ladder: flat)"
                )
    elif ladder.critical is not None and not ladder.critical.notify:
        problems.append(f"{path}.critical.notify: missing: there is no digest whose people it defaults to")
    return problems


def _sms_problems(policy: Policy, cp: Checkpoint, path: str, *, breach: bool) -> list[str]:
    """``sms`` is for what cannot wait: a breach only, and only with the policy's `sms` section."""
    if "sms" not in cp.channels:
        return []
    at = f"{path}.channels[{cp.channels.index('sms')}]"
    if not breach:
        return [
            f"{at}: 'sms': a warning can wait: list sms on the breach (texted for a critical tier, or to "
            "someone off work)"
        ]
    if policy.sms is None:
        return [
            f"{at}: 'sms': the policy has no sms: section naming the Apprise connection (sms: {{connection: "
            "apprise_sms}})"
        ]
    return []


def recycle_touch(policy: Policy) -> TouchRule | None:
    """The touch rule the recycle section's SLA counts attempts with (its first touch stop rule)."""
    if policy.recycle is None:
        return None
    sla = next((s for s in policy.slas if s.id == policy.recycle.sla), None)
    return next((r.touch_rule for r in sla.stop if r.touch_rule is not None), None) if sla else None


def _recycle_problems(policy: Policy, recycle: Recycle, roles: set[str]) -> list[str]:
    """The recycle section names a Lead SLA started by a status, with a touch rule, and known roles."""
    problems: list[str] = []
    sla = next((s for s in policy.slas if s.id == recycle.sla), None)
    if sla is None:
        return [
            f"recycle.sla: {recycle.sla!r}: expected one of the SLAs ({', '.join(s.id for s in policy.slas)})"
        ]
    if sla.object != "Lead" or sla.start.becomes is None:
        problems.append(
            f"recycle.sla: {recycle.sla!r}: expected a Lead SLA started by a status (start: {{field: "
            "Status, becomes: SAL}): attempts count from the lead entering it"
        )
    if recycle_touch(policy) is None:
        problems.append(
            f"recycle.sla: {recycle.sla!r}: the SLA has no touch stop rule, so nothing says what an "
            "attempt is (stop: [{touch: {by: owner, types: [Call, Email, Meeting]}}])"
        )
    for r, who in enumerate(recycle.notify):
        path = f"recycle.notify[{r}]"
        if not (who in roles or who.startswith("channel:")):
            problems.append(
                f"{path}: {who!r}: expected a role ({', '.join(sorted(roles))}) or channel:<name>"
            )
        elif who == "team_manager":
            problems += _team_manager_problems(policy, sla, path)
    return problems


def _routing_problems(policy: Policy, routing: Routing, roles: set[str]) -> list[str]:
    """The routing section's teams and roles are the policy's own."""
    problems: list[str] = []
    known = ", ".join(sorted(policy.teams))
    for k, territory in enumerate(routing.territories):
        if territory.team not in policy.teams:
            problems.append(
                f"routing.territories[{k}] ({territory.id}).team: {territory.team!r}: expected one of "
                f"the teams ({known})"
            )
    for k, team in enumerate(routing.watch_teams):
        if team not in policy.teams:
            problems.append(f"routing.watch_teams[{k}]: {team!r}: expected one of the teams ({known})")
    for r, who in enumerate(routing.unowned.notify):
        path = f"routing.unowned.notify[{r}]"
        if not (who in roles or who.startswith("channel:")) or who in ("owner", "owner_manager"):
            problems.append(
                f"{path}: {who!r}: an unowned lead has no working owner: expected team_manager, a contact "
                f"({', '.join(sorted(policy.contacts))}) or channel:<name>"
            )
        elif who == "team_manager":
            problems += [
                f"{path}: 'team_manager': territory {t.id!r}'s team {t.team!r} names no manager "
                "(teams.<team>.manager: a CRM user id, or crm)"
                for t in routing.territories
                if t.team in policy.teams and not policy.teams[t.team].manager
            ]
    return problems


def _team_manager_problems(policy: Policy, sla: Sla, path: str) -> list[str]:
    """`team_manager` resolves to the manager of the clock owner's team, else of the SLA's team:
    so the SLA's team must name one (a user id or `crm`)."""
    team = policy.teams.get(sla.team) if sla.team else None
    if team is not None and team.manager:
        return []
    return [
        f"{path}: 'team_manager': SLA {sla.id!r} cannot resolve this role: "
        + (f"teams.{sla.team}.manager is not set" if team is not None else f"slas[{sla.id}].team is not set")
        + " (set it to the manager's CRM user id, or to crm: whom most of the team reports to)"
    ]


def _lifecycle_problems(policy: Policy, lifecycle: Lifecycle) -> list[str]:
    """Every status a rule names must be one the lifecycle declares for the SLA's object, and a
    status that pauses a clock must be a paused one there."""
    problems: list[str] = []
    where_lc = lifecycle.source
    for i, sla in enumerate(policy.slas):
        lc = lifecycle.of(sla.object)
        if lc is None:
            continue
        where = f"slas[{i}]"

        def unknown(path: str, value: str, lc=lc) -> str:
            return (
                f"{path}: {value!r}: not a {lc.object} {lc.field} in {where_lc} "
                f"(expected one of {', '.join(lc.names)})"
            )

        if (
            sla.start.field == lc.field
            and sla.start.becomes is not None
            and sla.start.becomes not in lc.names
        ):
            problems.append(unknown(f"{where}.start.becomes", sla.start.becomes))
        for j, stop in enumerate(sla.stop):
            if stop.field == lc.field:
                problems += [unknown(f"{where}.stop[{j}].in", v) for v in stop.in_ or [] if v not in lc.names]
        for j, rule in enumerate(sla.pause):
            if rule.field != lc.field:
                continue
            for value in rule.in_:
                if value not in lc.names:
                    problems.append(unknown(f"{where}.pause[{j}].in", value))
                elif value not in lc.paused:
                    problems.append(
                        f"{where}.pause[{j}].in: {value!r}: a pause status must have stage: paused in "
                        f"{where_lc} (it is {lc.status(value).stage})"
                    )
        for k, tier in enumerate(sla.tiers):
            for value in (tier.when or {}).get("status", []):
                if value not in lc.names:
                    problems.append(unknown(f"{where}.tiers[{k}].when.status", value))
    leads = lifecycle.of("Lead")
    if policy.recycle is not None and leads is not None:
        problems += _recycle_lifecycle_problems(policy, policy.recycle, leads, where_lc)
    if policy.routing is not None and leads is not None:
        problems += [
            f"routing.statuses: {value!r}: not a Lead {leads.field} in {where_lc} "
            f"(expected one of {', '.join(leads.names)})"
            for value in policy.routing.statuses
            if value not in leads.names
        ]
    return problems


def _recycle_lifecycle_problems(
    policy: Policy, recycle: Recycle, leads: ObjectLifecycle, where_lc: str
) -> list[str]:
    """Recycling writes the lifecycle's status field: a closed status with a signed-off reason, and
    a re-entry into an open status."""
    problems: list[str] = []
    status = leads.status(recycle.status)
    if status is None:
        problems.append(
            f"recycle.status: {recycle.status!r}: not a Lead {leads.field} in {where_lc} "
            f"(expected one of {', '.join(leads.names)})"
        )
    elif status.stage != "closed" or status.worked:
        problems.append(
            f"recycle.status: {recycle.status!r}: a recycled lead leaves the funnel unworked: expected a "
            f"status with stage: closed that is not worked in {where_lc} (it is {status.stage}"
            + (", worked)" if status.worked else ")")
        )
    if recycle.reason not in leads.rejection_reasons:
        problems.append(
            f"recycle.reason: {recycle.reason!r}: not a signed-off rejection reason in {where_lc} "
            f"(expected one of {', '.join(leads.rejection_reasons)})"
        )
    reenter = recycle.nurture.reenter
    if reenter is not None:
        found = leads.status(reenter)
        if found is None or found.stage != "open":
            problems.append(
                f"recycle.nurture.reenter: {reenter!r}: expected an open Lead {leads.field} in {where_lc} "
                f"({', '.join(leads.in_stage('open'))})"
            )
    sla = next((s for s in policy.slas if s.id == recycle.sla), None)
    if sla is not None and sla.object == "Lead" and sla.start.field != leads.field:
        problems.append(
            f"recycle.sla: {recycle.sla!r}: starts on {sla.start.field}, not the lifecycle's {leads.field} "
            f"({where_lc}): recycling moves the lead out of the status the SLA watches"
        )
    return problems


def seed000(data: dict[str, Any]) -> dict[str, Any]:
    """A policy document with every SLA's escalation ladder replaced by the seed-000 rule: the
    people the ladder's digest and critical rungs name go back into `breach.notify`, told of every
    breach at once (`ladder: flat`). What the ladder is measured against (bench/ladder.py)."""
    out = {**data, "slas": []}
    for sla in data.get("slas") or []:
        sla = dict(sla)
        ladder = sla.get("ladder")
        if isinstance(ladder, dict):
            breach = dict(sla.get("breach") or {})
            notify = list(breach.get("notify") or [])
            for rung in ("digest", "critical"):
                notify += [r for r in (ladder.get(rung) or {}).get("notify") or [] if r not in notify]
            sla["breach"] = {**breach, "notify": notify}
        sla["ladder"] = FLAT
        out["slas"].append(sla)
    return out


def policy_from_dict(
    data: Any, source: str = "<policy>", *, lifecycle: Lifecycle | None = None, base_dir: Path | None = None
) -> Policy:
    """Validate a parsed policy document, against its lifecycle.

    Args:
        lifecycle: the lifecycle to check against (default: the file the policy's `lifecycle` key
            names, relative to `base_dir`, else the active lifecycle).

    Raises:
        PolicyError: every problem, each with key path, bad value and expectation.
    """
    if not isinstance(data, dict):
        raise PolicyError(
            f"{source}: invalid SLA policy: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        policy = Policy.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise _explain(source, data, exc) from None
    problems = []
    for name, spec in policy.calendars.items():
        try:
            policy._calendars[name] = BusinessCalendar.from_dict(spec, name)
        except CalendarError as exc:
            problems.append(f"calendars.{name}: {exc}")
    if REAL_TIME_CALENDAR in policy.calendars:
        problems.append(f"calendars.{REAL_TIME_CALENDAR}: the name is reserved for real (calendar) time")
    if lifecycle is None:
        try:
            lifecycle = load_lifecycle(_lifecycle_path(policy.lifecycle, base_dir))
        except LifecycleError as exc:
            problems.append(f"lifecycle: {policy.lifecycle!r}: {exc}")
    policy._lifecycle = lifecycle
    if not problems:
        problems = _cross_check(policy) + _lifecycle_problems(policy, lifecycle)
    if problems:
        raise PolicyError(f"{source}: invalid SLA policy: " + "; ".join(problems))
    return policy


def _lifecycle_path(name: str | None, base_dir: Path | None) -> Path:
    if name is None:
        return active_lifecycle_path()
    path = Path(name)
    return path if path.is_absolute() or base_dir is None else base_dir / path


def active_policy_path() -> Path:
    """The policy this deployment enforces: $LEADSLA_POLICY_PATH, else the shipped file.

    Every pipeline (monitor, escalation, health, reports) and the CLI read the policy through
    this one rule, so no part judges by a different policy than the monitor enforces.
    """
    return Path(os.environ.get("LEADSLA_POLICY_PATH") or DEFAULT_POLICY_PATH)


def load_policy(path: str | Path | None = None, *, lifecycle: Lifecycle | None = None) -> Policy:
    """Load and validate a policy YAML file (default: the active policy, `active_policy_path()`).

    Args:
        lifecycle: the lifecycle to check the rules against (default: the file the policy's
            `lifecycle` key names, else the active one). `leadsla.configuration` passes the one it
            loaded, so a policy and its lifecycle are always checked as one set (a stored snapshot's
            policy against the snapshot's lifecycle).

    Raises:
        PolicyError: the file is missing, not YAML, or invalid; the message names the file.
    """
    path = Path(path) if path is not None else active_policy_path()
    data = read_yaml_file(path, PolicyError, "the SLA policy")
    return policy_from_dict(data, str(path), lifecycle=lifecycle, base_dir=path.parent)


def policy_for(policies: Iterable[Policy], at: dt.datetime) -> Policy:
    """The policy version in force at `at`: the latest effective_from <= at (else the earliest)."""
    ordered = sorted(policies, key=lambda p: p.effective_from)
    chosen = ordered[0]
    for p in ordered:
        if p.effective_from <= at:
            chosen = p
    return chosen
