"""The policy's `routing:` section: who owns a new or returned lead, and when nobody does.

Declared in the SLA policy and versioned with it; validated on load (all-or-nothing, with the
rest of the policy). What it says:

- `mode`: ``route`` (the lead_routing DAG assigns) or ``watch`` (another tool assigns; unowned and
  mis-routed leads are reported the same way); `watch_teams` leaves single teams to their tool.
- which leads need an owner: in one of `statuses`, owned by an `intake_queues` queue or nobody;
- `suppression`: a customer's (or open opportunity's) account keeps its leads with the account
  owner; a duplicate of an open lead goes to that lead's owner;
- `territories`: lead fields -> a policy team; at most one matches any lead (overlaps are errors);
- `score`: a score field picks a tier of reps (by CRM role or user) for hot leads;
- `reps`: each rep's weight in the round robin, and absences the CRM does not know;
- `unowned`: how soon, how often and whom to tell about a watched lead nobody (working) owns.

Pure: no store, no CRM. The policy checks the references to its other sections (teams, roles,
lifecycle statuses); `leadsla.configuration` checks the field names against the CRM mapping.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ROUTE, WATCH = "route", "watch"
#: The channels an unowned-lead alert can go to.
UNOWNED_CHANNELS = frozenset({"slack", "email"})
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """Seconds of a duration such as ``5m``, ``1h``, ``2d``."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r}: expected a duration such as 90s, 5m, 1h or 2d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _folded(values: list[str]) -> set[str]:
    return {str(v).strip().casefold() for v in values}


def matches(when: Mapping[str, list[str]], fields: Mapping[str, Any]) -> bool:
    """Whether a lead's fields (API name -> value) meet every condition (case-insensitive)."""
    for name, values in when.items():
        value = fields.get(name)
        if value is None or str(value).strip().casefold() not in _folded(values):
            return False
    return True


class Territory(_Rule):
    """Leads whose fields meet `when` belong to `team` (a policy team id)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    team: str
    when: dict[str, list[str]] = Field(default_factory=dict)
    default: bool = False

    def overlaps(self, other: Territory) -> bool:
        """Whether one lead could meet both: every field both constrain shares a value."""
        shared = set(self.when) & set(other.when)
        return all(_folded(self.when[name]) & _folded(other.when[name]) for name in shared)


class ScoreTier(_Rule):
    """Leads scoring at least `min` (below `max`, if given) go to these reps of the team."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    min: float
    max: float | None = None
    roles: list[str] = Field(default_factory=list)  # CRM role names (UserRole.Name)
    users: list[str] = Field(default_factory=list)  # CRM user ids or e-mails

    def holds(self, score: float | None) -> bool:
        return score is not None and score >= self.min and (self.max is None or score < self.max)


class Score(_Rule):
    field: str  # the Lead field holding the score (synced, crm_fields.yaml)
    tiers: list[ScoreTier] = Field(default_factory=list)


class Absence(_Rule):
    """A rep away on these days (inclusive), whatever the CRM's out-of-office flag says."""

    user: str
    from_: dt.date = Field(alias="from")
    to: dt.date

    def covers(self, day: dt.date) -> bool:
        return self.from_ <= day <= self.to


class Reps(_Rule):
    default_capacity: float = Field(default=1.0, gt=0)
    capacity: dict[str, float] = Field(default_factory=dict)
    absences: list[Absence] = Field(default_factory=list)

    def weight(self, user_id: str, email: str | None) -> float:
        """The rep's weight in the round robin (0: takes no leads); keyed by user id or e-mail."""
        for key, weight in self.capacity.items():
            if _names(key, user_id, email):
                return weight
        return self.default_capacity

    def away(self, user_id: str, email: str | None, day: dt.date) -> bool:
        """Whether an absence the policy lists covers `day` for this rep."""
        return any(a.covers(day) and _names(a.user, user_id, email) for a in self.absences)

    def named(self) -> set[str]:
        """Every user the section names (ids or e-mails), to check they exist in the CRM."""
        return set(self.capacity) | {a.user for a in self.absences}


def _names(key: str, user_id: str, email: str | None) -> bool:
    """Whether a policy key (a CRM user id, exact; or an e-mail, any case) names this user."""
    key = key.strip()
    return key == user_id or (bool(email) and key.casefold() == str(email).strip().casefold())


class Suppression(_Rule):
    account_owner: bool = True
    duplicate_lead: bool = True


class Unowned(_Rule):
    """Alert on a watched lead owned by a queue, an inactive user or nobody."""

    after: str = "2m"
    repeat: str = "1h"
    notify: list[str] = Field(default_factory=lambda: ["team_manager"])
    channels: list[str] = Field(default_factory=lambda: ["slack", "email"])

    @field_validator("after", "repeat")
    @classmethod
    def _parses(cls, value: str) -> str:
        duration_seconds(value)
        return value

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - UNOWNED_CHANNELS)
        if unknown or not value:
            raise ValueError(f"{value!r}: expected one or more of {sorted(UNOWNED_CHANNELS)}")
        return value

    @property
    def after_seconds(self) -> int:
        return duration_seconds(self.after)

    @property
    def repeat_seconds(self) -> int:
        return duration_seconds(self.repeat)


class Routing(_Rule):
    mode: Literal["route", "watch"] = ROUTE
    watch_teams: list[str] = Field(default_factory=list)
    intake_queues: list[str] = Field(default_factory=list)
    statuses: list[str] = Field(default_factory=lambda: ["New", "MQL"])
    suppression: Suppression = Field(default_factory=Suppression)
    territories: list[Territory] = Field(default_factory=list)
    score: Score | None = None
    reps: Reps = Field(default_factory=Reps)
    needs_answer_now: dict[str, list[str]] = Field(default_factory=dict)
    fair_window_days: int = Field(default=7, ge=1)
    unowned: Unowned = Field(default_factory=Unowned)

    @model_validator(mode="after")
    def _territories_agree(self) -> Routing:
        problems = territory_problems(self.territories)
        if self.score is not None:
            ids = [t.id for t in self.score.tiers]
            if len(set(ids)) != len(ids):
                problems.append(f"score.tiers: {ids!r}: tier ids must be unique")
            for k, tier in enumerate(self.score.tiers):
                if tier.max is not None and tier.max <= tier.min:
                    problems.append(
                        f"score.tiers[{k}] ({tier.id}): max {tier.max} must exceed min {tier.min}"
                    )
                if not tier.roles and not tier.users:
                    problems.append(f"score.tiers[{k}] ({tier.id}): name the reps by roles: or users:")
        for name, weight in self.reps.capacity.items():
            if weight < 0:
                problems.append(f"reps.capacity.{name}: {weight}: a weight cannot be negative")
        for k, absence in enumerate(self.reps.absences):
            if absence.to < absence.from_:
                problems.append(f"reps.absences[{k}] ({absence.user}): ends {absence.to} before it starts")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def territory(self, fields: Mapping[str, Any]) -> Territory | None:
        """The one territory a lead's fields fall in (a named one before the default), or None."""
        for territory in self.territories:
            if not territory.default and matches(territory.when, fields):
                return territory
        return next((t for t in self.territories if t.default), None)

    def routes(self, team: str | None) -> bool:
        """Whether Lead SLA Monitor assigns this team's leads (else it only watches them)."""
        return self.mode == ROUTE and team not in self.watch_teams

    def needs_now(self, fields: Mapping[str, Any]) -> bool:
        return bool(self.needs_answer_now) and matches(self.needs_answer_now, fields)

    def lead_fields(self) -> set[str]:
        """Every Lead field a rule reads (API names)."""
        names = {name for t in self.territories for name in t.when} | set(self.needs_answer_now)
        return names | ({self.score.field} if self.score else set())


def territory_problems(territories: list[Territory]) -> list[str]:
    """Unique ids, one default at most (without conditions), and no two that one lead could meet."""
    problems: list[str] = []
    ids = [t.id for t in territories]
    if len(set(ids)) != len(ids):
        problems.append(f"territories: {ids!r}: territory ids must be unique")
    defaults = [t.id for t in territories if t.default]
    if len(defaults) > 1:
        problems.append(f"territories: {defaults!r}: at most one default territory")
    for t in territories:
        if t.default and t.when:
            problems.append(f"territories ({t.id}): a default territory has no when:")
        if not t.default and not t.when:
            problems.append(f"territories ({t.id}): needs a when: condition (or default: true)")
    named = [t for t in territories if not t.default]
    for i, first in enumerate(named):
        for second in named[i + 1 :]:
            if first.overlaps(second):
                problems.append(
                    f"territories ({first.id}, {second.id}): a lead could match both "
                    f"({first.when} / {second.when}): make their conditions exclusive"
                )
    return problems
