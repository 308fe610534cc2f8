"""Recycling decisions: each lead's attempts since it entered SAL, which leads were worked without an
answer long enough to recycle, and which recycled leads are due back.

Pure: the caller (`leadsla.disposition`) reads the candidates from the store (leads in the SLA's
watched status, recycled leads, their history and activities, the users) and writes what this
returns. The rules are the policy's `recycle:` section (`leadsla.recycling`):

- **Entered**: the last time the lead's status became the SLA's watched value (SAL), or its creation
  in it; a lead whose entry the history does not show gets no count (it has no known start).
- **Attempts**: the SLA's touch rule (`clock.touch_events`, the very rule that meets its clock) at or
  after the entry: by the owner at that moment, of the types it names, never a mass or sequence
  e-mail, never an automation user's activity, a Task once completed.
- **A response** since the entry holds a lead back: the reply field is true now or became true; a
  meeting (an Event on the lead, or a Task of a meeting type) not logged by an automation user. A
  status change starts the count afresh: leaving the status and coming back (a trip to nurture:
  the lead said "later") is a new entry, and only the attempts after it count.
- **Due**: at least `attempts` attempts and no response, from the opening of the `business_days`-th
  business day after the first attempt's day on the owner's team calendar (D = 5: a first call on
  Monday, due the next Monday at opening). A lead is recommended once per entry (the notice's key)
  or, in `mode: auto`, recycled with a re-engagement date `nurture.after_days` after today.
- **Due back**: a lead in the recycle status whose re-engagement date has come (the owner's team
  calendar's date), unless the date is older than its latest recycling (a stale date from an
  earlier cycle), when the policy names a status to re-enter.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from leadsla.calendar import BusinessCalendar, to_epoch_seconds
from leadsla.clock import (
    CREATED_FIELD,
    OWNER_FIELD,
    Actors,
    Columns,
    RecordIndex,
    Timeline,
    start_events,
    touch_events,
)
from leadsla.decisions.cells import cell_text
from leadsla.decisions.plan import Notice
from leadsla.decisions.recipients import Directory
from leadsla.policy import Policy, PolicyError, recycle_touch
from leadsla.recycling import Recycle

#: The notices' source and checkpoint (their key: source, lead, entry, checkpoint, recipient, channel).
SOURCE, RECOMMEND_CHECKPOINT = "recycling", "recommend"
#: The audit events: a recommendation queued, a lead recycled, a recycled lead back in the funnel.
RECOMMENDED_EVENT, RECYCLED_EVENT, REENGAGED_EVENT = "recycle_recommended", "lead_recycled", "lead_reengaged"
#: The longest run of closed days a calendar may have between two business days (a safety stop).
_MAX_CLOSED_DAYS = 60


@dataclass(frozen=True)
class Fields:
    """The CRM fields (API names) the decisions read back: the stamped attempts, the re-engagement
    date (crm_fields.yaml sla_fields contact_attempts, reengagement_date)."""

    attempts: str = "Contact_Attempts__c"
    reengagement_date: str = "Re_Engagement_Date__c"


@dataclass(frozen=True)
class Outreach:
    """A lead in the watched status: its attempts since it entered, and what holds it back."""

    record_id: str
    name: str | None
    owner_id: str | None
    team: str | None
    entered: dt.datetime
    attempts: int
    first_attempt: dt.datetime | None
    last_attempt: dt.datetime | None
    #: replied | meeting | None (no response since it entered)
    response: str | None
    #: When it may be recycled (enough attempts, no response): the opening of the D-th business day.
    due_at: dt.datetime | None = None


@dataclass(frozen=True)
class Recycling:
    """Recycle a lead now (`mode: auto`): the status, reason and re-engagement date to write."""

    outreach: Outreach
    status: str
    reason: str
    reengage_on: dt.date

    @property
    def record_id(self) -> str:
        return self.outreach.record_id


@dataclass(frozen=True)
class Reentry:
    """A recycled lead due back: it re-enters `status` (MQL) on its re-engagement date."""

    record_id: str
    owner_id: str | None
    status: str
    due_on: dt.date
    recycled_at: dt.datetime | None
    #: The re-entered status is the funnel's MQL stage (its MQL date is stamped).
    mql: bool


@dataclass
class RecyclePlan:
    """What one recycling run wants written."""

    #: record id -> attempts to stamp (only where the lead's stamped number differs).
    attempts: dict[str, int] = field(default_factory=dict)
    #: Leads in the watched status, counted (for the summary and the tests).
    counted: int = 0
    #: Leads that may be recycled now.
    due: list[Outreach] = field(default_factory=list)
    #: record id -> the response that holds back a lead with enough attempts.
    held: dict[str, str] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)
    recycles: list[Recycling] = field(default_factory=list)
    reentries: list[Reentry] = field(default_factory=list)


def business_days_after(calendar: BusinessCalendar, at: dt.datetime, days: int) -> dt.datetime:
    """The opening of the `days`-th business day after `at`'s local day on `calendar` (a day with
    hours that is no holiday); `at` itself for 0 days.

    Raises:
        PolicyError: the calendar has no business day within `_MAX_CLOSED_DAYS` days.
    """
    if days <= 0:
        return at
    zone = ZoneInfo(calendar.timezone)
    day, found, closed = at.astimezone(zone).date(), 0, 0
    while found < days:
        day += dt.timedelta(days=1)
        if calendar.hours[day.weekday()] and calendar.holiday_name(day) is None:
            found, closed = found + 1, 0
        else:
            closed += 1
            if closed > _MAX_CLOSED_DAYS:
                raise PolicyError(f"calendar {calendar.name!r}: no business day in {closed} days after {day}")
    opening = calendar.hours[day.weekday()][0][0]
    local = dt.datetime(day.year, day.month, day.day, tzinfo=zone) + dt.timedelta(seconds=int(opening))
    return local.astimezone(dt.UTC)


def local_date(calendar: BusinessCalendar, at: dt.datetime) -> dt.date:
    return at.astimezone(ZoneInfo(calendar.timezone)).date()


def _actors(policy: Policy, users: pd.DataFrame) -> Actors:
    """The automation users and each user's team, as the engine gives the SLA's touch rule."""
    latest = users.drop_duplicates("user_id", keep="last")
    return Actors(
        frozenset(policy.automation_user_ids),
        {
            str(u): policy.team_key(t if isinstance(t, str) else None)
            for u, t in zip(latest["user_id"], latest["team"], strict=True)
        },
    )


def _date(value: object) -> dt.date | None:
    """A CRM date value (YYYY-MM-DD text, a date, or a datetime's date), None when missing or bad."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = cell_text(value)
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def _number(value: object) -> int | None:
    text = cell_text(value)
    try:
        return None if text is None else int(float(text))
    except ValueError:
        return None


class _Book:
    """The candidates' timeline and per-record arrays, built once per run."""

    def __init__(
        self,
        policy: Policy,
        rule: Recycle,
        records: pd.DataFrame,
        field_history: pd.DataFrame,
        activities: pd.DataFrame,
        users: pd.DataFrame,
        now: dt.datetime,
    ) -> None:
        self.policy, self.rule, self.now = policy, rule, now
        self.sla = policy.sla(rule.sla)
        self.now_s = to_epoch_seconds(now, "now")
        fields = [OWNER_FIELD, self.sla.start.field, CREATED_FIELD]
        fields += [rule.replied_field] if rule.replied_field else []
        index = RecordIndex.build(Columns(records, "records"), "Lead")
        self.tl = Timeline.build(
            index,
            "Lead",
            Columns(field_history, "field_history"),
            Columns(activities, "activities"),
            self.now_s,
            fields,
        )
        self.actors = _actors(policy, users)
        self.team_of = {str(u): cell_text(t) for u, t in zip(users["user_id"], users["team"], strict=True)}
        self.n = len(index.ids)
        self.ids = index.ids.to_numpy(dtype=object)
        self.status = index.field_value(self.sla.start.field)
        self.owner = index.field_value(OWNER_FIELD)
        self.name = index.column("name")
        self._calendars: dict[str, BusinessCalendar] = {}
        self._due: dict[tuple[str, dt.date], dt.datetime] = {}

    def calendar(self, owner_id: str | None) -> BusinessCalendar:
        """The owner's team calendar (each owner looked up once per run)."""
        key = str(owner_id)
        if key not in self._calendars:
            self._calendars[key] = self.policy.calendar(self.policy.team_calendar(self.team_of.get(key)))
        return self._calendars[key]

    def due_at(self, owner_id: str | None, first: dt.datetime) -> dt.datetime:
        """When a lead whose first attempt was at `first` may be recycled (one answer per calendar
        and local day: it depends on nothing else)."""
        if self.rule.business_days <= 0:
            return first
        calendar = self.calendar(owner_id)
        key = (calendar.name, local_date(calendar, first))
        if key not in self._due:
            self._due[key] = business_days_after(calendar, first, self.rule.business_days)
        return self._due[key]

    def entered(self) -> np.ndarray:
        """Epoch second each record last entered the watched status (-1: unknown or never)."""
        code, t = start_events(self.sla, self.tl)
        entered = np.full(self.n, -1, np.int64)
        keep = t <= self.now_s
        np.maximum.at(entered, code[keep], t[keep])
        return entered

    def attempts(self, entered: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(count, first second, last second) of the touches at or after each record's entry."""
        touch = recycle_touch(self.policy)
        assert touch is not None  # the policy refuses a recycle rule whose SLA has no touch rule
        events = touch_events(touch, self.tl, self.actors)
        rec, sec = events.record, events.seconds
        ok = (entered[rec] >= 0) & (sec >= entered[rec])
        rec, sec = rec[ok], sec[ok]
        first = np.full(self.n, np.iinfo(np.int64).max, np.int64)
        last = np.full(self.n, -1, np.int64)
        np.minimum.at(first, rec, sec)
        np.maximum.at(last, rec, sec)
        return np.bincount(rec, minlength=self.n), first, last

    def responses(self, entered: np.ndarray) -> np.ndarray:
        """Per record, the response since its entry: replied, meeting, or None. (A status change
        needs no test here: leaving the watched status and coming back is a new entry.)"""
        out = np.full(self.n, None, dtype=object)
        tl, act = self.tl, self.tl.act_columns
        if act is not None and len(tl.act_code):

            def column(name: str) -> np.ndarray:
                return (
                    act.get(name)[tl.act_rows] if act.has(name) else np.full(len(tl.act_code), None, object)
                )

            kind, kind_type = column("kind"), column("type")
            meeting = (kind == "Event") | pd.Series(kind_type, dtype=object).isin(
                self.rule.meeting_types
            ).to_numpy()
            if self.actors.automation:
                meeting &= (
                    ~pd.Series(column("created_by"), dtype=object)
                    .isin(sorted(self.actors.automation))
                    .to_numpy()
                )
            code_a = tl.act_code
            meeting &= (entered[code_a] >= 0) & (tl.act_t >= entered[code_a])
            out[code_a[meeting]] = "meeting"
        field = self.rule.replied_field
        if field:
            code, t, _, new = self.tl.history.values(field)
            became = (new == "true") & (entered[code] >= 0) & (t >= entered[code])
            out[code[became]] = "replied"
            out[self.tl.index.field_value(field) == "true"] = "replied"
        return out

    def recycled_at(self) -> dict[int, int]:
        """Record code -> the last second it entered the recycle status (from its history)."""
        code, t, _, new = self.tl.history.values(self.sla.start.field)
        hit = new == self.rule.status
        latest: dict[int, int] = {}
        for c, s in zip(code[hit].tolist(), t[hit].tolist(), strict=True):
            latest[c] = max(latest.get(c, s), s)
        return latest


def decide(
    records: pd.DataFrame,
    field_history: pd.DataFrame,
    activities: pd.DataFrame,
    users: pd.DataFrame,
    policy: Policy,
    now: dt.datetime,
    *,
    directory: Directory,
    instance_url: str,
    fields: Fields | None = None,
) -> RecyclePlan:
    """Attempts, recycling and re-entries at `now` (module docstring).

    Args:
        records, field_history, activities, users: store-shaped frames (the engine's) of the
            candidates: Leads in the SLA's watched status or the recycle status.
        directory: resolves the recommendation's roles to people.
        instance_url: the CRM's base URL for the record link.
        fields: the stamped fields' API names.

    Returns:
        The plan; empty when the policy has no `recycle:` section.
    """
    rule, fields = policy.recycle, fields or Fields()
    plan = RecyclePlan()
    if rule is None or not len(records):
        return plan
    book = _Book(policy, rule, records, field_history, activities, users, now)
    entered = book.entered()
    watched = (book.status == book.sla.start.becomes) & (entered >= 0)
    count, first, last = book.attempts(entered)
    response = book.responses(entered)
    stamped = book.tl.index.column(fields.attempts)
    for i in np.flatnonzero(watched).tolist():
        current, n = _number(stamped[i]), int(count[i])
        if current != n and not (current is None and n == 0):
            plan.attempts[str(book.ids[i])] = n
    plan.counted = int(watched.sum())
    for i in np.flatnonzero(watched & (count >= rule.attempts)).tolist():
        outreach = _outreach(book, i, entered, count, first, last, response)
        if outreach.response is not None:
            plan.held[outreach.record_id] = outreach.response
        elif outreach.due_at is not None and outreach.due_at <= now:
            plan.due.append(outreach)
    if rule.automatic:
        plan.recycles = [
            Recycling(
                o,
                rule.status,
                rule.reason,
                local_date(book.calendar(o.owner_id), now) + dt.timedelta(days=rule.nurture.after_days),
            )
            for o in plan.due
        ]
    else:
        plan.notices = [_recommendation(book, o, directory, instance_url) for o in plan.due]
        plan.notices = [n for n in plan.notices if n.recipients]
    plan.reentries = _reentries(book, fields)
    return plan


def _instant(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC)


def _outreach(
    book: _Book,
    i: int,
    entered: np.ndarray,
    count: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    response: np.ndarray,
) -> Outreach:
    owner = cell_text(book.owner[i])
    first_at = _instant(first[i]) if count[i] else None
    return Outreach(
        record_id=str(book.ids[i]),
        name=cell_text(book.name[i]),
        owner_id=owner,
        team=book.team_of.get(str(owner)),
        entered=_instant(entered[i]),
        attempts=int(count[i]),
        first_attempt=first_at,
        last_attempt=_instant(last[i]) if count[i] else None,
        response=response[i],
        due_at=book.due_at(owner, first_at) if first_at else None,
    )


def _recipients(book: _Book, o: Outreach, directory: Directory) -> tuple[tuple[str, str], ...]:
    """(channel, address) of each role the rule notifies, for this lead's owner, each once."""
    found: list[tuple[str, str]] = []
    for role in book.rule.notify:
        for person in directory.resolve(role, o.owner_id, o.team, book.sla.team):
            for channel in book.rule.channels:
                address = person.address(channel)
                if address and (channel, address) not in found:
                    found.append((channel, address))
    return tuple(found)


def _recommendation(book: _Book, o: Outreach, directory: Directory, instance_url: str) -> Notice:
    """The owner and their manager are told once per entry (key: lead, entry, recipient, channel)."""
    rule, policy = book.rule, book.policy
    calendar = book.calendar(o.owner_id)
    zone = ZoneInfo(calendar.timezone)

    def local(at: dt.datetime | None) -> str:
        return at.astimezone(zone).strftime("%a %d %b %H:%M") if at else "-"

    name = o.name or o.record_id
    back = (
        f"; it comes back as {rule.nurture.reenter} on its re-engagement date" if rule.nurture.reenter else ""
    )
    return Notice(
        source=SOURCE,
        subject=o.record_id,
        opened_at=o.entered,
        checkpoint=RECOMMEND_CHECKPOINT,
        recipients=_recipients(book, o, directory),
        title=f"Recycle {name}? {o.attempts} attempts, no response",
        severity="info",
        intro=f"Lead SLA Monitor recommends recycling {name}: worked, never answered.",
        lines=(
            f"{o.attempts} attempts since {book.sla.start.becomes} on {local(o.entered)}: the first on "
            f"{local(o.first_attempt)}, the last on {local(o.last_attempt)} ({calendar.timezone}).",
            "No reply, no meeting and no status change since.",
            f"If you agree, set Status {rule.status} with the reason {rule.reason}{back} "
            f"(re-engagement in {rule.nurture.after_days} days).",
            f"Rule: {rule.describe()} (policy {policy.version}).",
        ),
        audit_event=RECOMMENDED_EVENT,
        actor=SOURCE,
        record=("Lead", o.record_id),
        instance_url=instance_url,
        audit_detail={
            "record_id": o.record_id,
            "owner": o.owner_id,
            "attempts": o.attempts,
            "entered": o.entered.isoformat(),
            "first_attempt": o.first_attempt.isoformat() if o.first_attempt else None,
            "due_at": o.due_at.isoformat() if o.due_at else None,
            "policy_version": policy.version,
        },
    )


def _reentries(book: _Book, fields: Fields) -> list[Reentry]:
    """Recycled leads whose re-engagement date has come, when the policy names a status to re-enter."""
    rule = book.rule
    status = rule.nurture.reenter
    if status is None:
        return []
    lifecycle = book.policy.lifecycle_model.lead()
    mql = (found := lifecycle.status(status)) is not None and found.funnel == "MQL"
    dates = book.tl.index.column(fields.reengagement_date)
    recycled = book.recycled_at()
    out = []
    for i in np.flatnonzero(book.status == rule.status).tolist():
        due_on = _date(dates[i])
        owner = cell_text(book.owner[i])
        calendar = book.calendar(owner)
        if due_on is None or due_on > local_date(calendar, book.now):
            continue
        at = recycled.get(i)
        recycled_at = _instant(at) if at is not None else None
        if recycled_at is not None and due_on < local_date(calendar, recycled_at):
            continue  # a date left from an earlier cycle: this recycling set none
        out.append(Reentry(str(book.ids[i]), owner, status, due_on, recycled_at, mql))
    return out


def counts(plan: RecyclePlan) -> Mapping[str, int]:
    """The plan in numbers, for the task's summary."""
    held: dict[str, int] = {}
    for why in plan.held.values():
        held[why] = held.get(why, 0) + 1
    return {
        "counted": plan.counted,
        "attempts_changed": len(plan.attempts),
        "due": len(plan.due),
        "recommended": len(plan.notices),
        "reentries_due": len(plan.reentries),
        **{f"held_{why.replace(' ', '_')}": n for why, n in sorted(held.items())},
    }
