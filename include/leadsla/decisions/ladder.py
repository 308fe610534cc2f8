"""The escalation ladder: who hears of a breach, rung by rung, instead of every VP for every breach.

An SLA's `ladder` (policy) decides, at each breach:

1. ``breach``: `breach.notify` (the owner and their manager) at once, as always;
2. ``repeat``: the rep's Nth breach (default the 3rd) within the window (default 30 days), and
   each further Nth (the 6th, the 9th ...), also tells the director (`owner_director`, the
   manager's manager in the CRM, or a contact). The count is of the clocks' breaches
   (`breached_at`: breached, met late or handed on late) of which the rep is the accountable
   owner (the owner when the target ran out, so a reassignment to the manager leaves the breach
   on the rep), across all SLAs by default (a repeat offender is a person, whatever the handoff)
   or this SLA's only (`across: this_sla`); ranked by breach instant, so a catch-up run counts
   as of each breach, not as of the run;
3. ``systemic``: a team whose day is mostly breaches gives leadership one capacity alert
   (`decisions.capacity`, policy `systemic`), as before;
4. ``digest``: leadership gets ONE message a day at its morning hour listing the breaches since
   the last one (`decide_breach_digests`), never one message per breach ...
5. ``critical``: ... except a critical tier's breach, which still tells them at once.

`ladder: flat` (or none) is the seed-000 rule: every breach tells everyone in `breach.notify` at
once (rule ``flat``). Every message says which rule sent it (`Ask.rule`: the payload's `ladder`,
the audit's `ladder_rule`). Pure: no store, no wall clock; every time comes from the caller.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from leadsla.decisions.cells import cell_instant, cell_text
from leadsla.decisions.context import ContextFields, converted_leads, describe, record_context, triage_text
from leadsla.decisions.plan import CheckpointId, Notice
from leadsla.decisions.recipients import Directory, next_opening
from leadsla.policy import Checkpoint, Policy, Sla

#: The outbox `sla_id` (notice source) of leadership's daily breach digests.
DIGEST_SOURCE = "breach_digest"
#: A digest after downtime covers the breaches since the last one sent, at most this far back.
DIGEST_CATCH_UP = dt.timedelta(days=7)
#: Lines listed in one digest; the rest are counted ("and N more").
DIGEST_MAX_LINES = 200


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class Ask:
    """A role to tell about a checkpoint, on which channels, and the ladder rule that asks it
    (None for a warning checkpoint; ``why`` is the sentence the message and the audit carry)."""

    role: str
    channels: tuple[str, ...]
    rule: str | None = None
    why: str | None = None


#: The clock columns a `BreachBook` reads (`rep_of` and the entry).
BOOK_COLUMNS = ("breached_at", "sla_id", "record_id", "clock_start", "accountable_owner_id", "owner_id")


def rep_of(clock: Mapping[str, Any]) -> str | None:
    """The rep a clock's breach counts against (the repeat rung's): its accountable owner, else its owner."""
    return cell_text(clock.get("accountable_owner_id")) or cell_text(clock.get("owner_id"))


def of_reps(clocks: pd.DataFrame, reps: Collection[str]) -> pd.Series:
    """The clocks whose rep (`rep_of`) may be one of `reps`: named by either column (more is
    harmless: the book files each by its `rep_of`)."""
    wanted = list(reps)
    found = clocks["owner_id"].isin(wanted) if "owner_id" in clocks else pd.Series(False, index=clocks.index)
    if "accountable_owner_id" in clocks:
        found |= clocks["accountable_owner_id"].isin(wanted)
    return found


@dataclass
class BreachBook:
    """Every clock's breach by rep, in breach order: the repeat rung's count."""

    by_rep: dict[str, list[tuple[dt.datetime, str, str, dt.datetime]]] = field(default_factory=dict)

    @classmethod
    def of(cls, clocks: pd.DataFrame, reps: Collection[str] | None = None) -> BreachBook:
        """The book of `clocks`' breaches; with `reps`, of those reps' only (a rep's entries are
        whole: a plan asks the rank of a few reps' clocks, a store has thousands of breaches)."""
        if clocks.empty or "breached_at" not in clocks:
            return cls()
        breached = clocks["breached_at"].notna()
        if reps is not None:
            breached &= of_reps(clocks, reps)
        # Only the columns the book reads become dicts (a clock row has thirty).
        read = [c for c in BOOK_COLUMNS if c in clocks]
        return cls.of_rows(clocks.loc[breached, read].to_dict("records"))

    @classmethod
    def of_rows(cls, clocks: Iterable[Mapping[str, Any]]) -> BreachBook:
        """`of` over clock rows already read as dicts (those without a breach are left out)."""
        book = cls()
        for row in clocks:
            if "breached_at" not in row or pd.isna(row["breached_at"]):
                continue
            rep = rep_of(row)
            if rep is None:
                continue
            entry = (
                cell_instant(row["breached_at"]),
                str(row["sla_id"]),
                str(row["record_id"]),
                cell_instant(row["clock_start"]),
            )
            book.by_rep.setdefault(rep, []).append(entry)
        for entries in book.by_rep.values():
            entries.sort()
        return book

    def rank(self, clock: Mapping[str, Any], *, within_days: int, sla_only: bool) -> int:
        """This clock's breach is the rep's how-manyth within `within_days` days up to and
        including it: breaches in (breached_at - window, breached_at], ties in (sla, record,
        start) order. 0 when the clock has no breach or no rep."""
        rep = rep_of(clock)
        breached_at = cell_instant(clock["breached_at"]) if cell_text(clock.get("breached_at")) else None
        if rep is None or breached_at is None:
            return 0
        me = (breached_at, str(clock["sla_id"]), str(clock["record_id"]), cell_instant(clock["clock_start"]))
        entries = self.by_rep.get(rep, [])
        upto = entries[: bisect_right(entries, me)]
        since = breached_at - dt.timedelta(days=within_days)
        return sum(1 for e in upto if e[0] > since and (not sla_only or e[1] == me[1]))


def asks(sla: Sla, cp: Checkpoint, clock: Mapping[str, Any], book: BreachBook | None = None) -> list[Ask]:
    """Who a clock's due checkpoint tells (module docstring): the checkpoint's `notify` for a
    warning; for a breach, the ladder's rungs that fire (`book`: every clock's breach by rep)."""
    channels = tuple(cp.channels)
    if cp.id != "breach":
        return [Ask(role, channels) for role in cp.notify]
    if not sla.laddered:
        return [Ask(role, channels, "flat") for role in cp.notify]
    ladder = sla.ladder
    found = [Ask(role, channels, "breach", None) for role in cp.notify]
    if bool(clock.get("critical")) and ladder.critical_notify():
        rung = ladder.critical
        chans = tuple(rung.channels) if rung is not None and rung.channels else channels
        why = f"a breach of the critical tier {clock['tier']}, told to leadership at once"
        found += [Ask(role, chans, "critical", why) for role in ladder.critical_notify()]
    repeat = ladder.repeat
    if repeat is not None and book is not None:
        n = book.rank(clock, within_days=repeat.within_days, sla_only=repeat.across == "this_sla")
        if n >= repeat.breach and n % repeat.breach == 0:
            what = "of this SLA" if repeat.across == "this_sla" else "across all SLAs"
            why = f"the rep's {_ordinal(n)} breach {what} in {repeat.within_days} days"
            chans = tuple(repeat.channels) if repeat.channels else channels
            found += [Ask(role, chans, "repeat", why) for role in repeat.notify]
    return found


# --- leadership's daily digest -------------------------------------------------------------------


@dataclass(frozen=True)
class DigestGroup:
    """One contact's daily digest setting: at `hour` in `timezone`, on `channels`, of `slas`."""

    role: str
    hour: int
    timezone: str
    channels: tuple[str, ...]
    slas: tuple[str, ...]


def digest_groups(policy: Policy) -> list[DigestGroup]:
    """Each (contact, hour, timezone, channels) the laddered SLAs' digests name, with its SLAs."""
    groups: dict[tuple[str, int, str, tuple[str, ...]], list[str]] = {}
    qh_zone = policy.quiet_hours.default_timezone if policy.quiet_hours else None
    for sla in policy.slas:
        if not sla.enabled or not sla.laddered or sla.ladder.digest is None:
            continue
        rung = sla.ladder.digest
        for role in rung.notify:
            contact = policy.contacts.get(role)
            zone = (
                (contact.timezone if contact else None)
                or rung.timezone
                or qh_zone
                or policy.calendar(policy.default_calendar).timezone
            )
            groups.setdefault((role, rung.hour, zone, tuple(rung.channels)), []).append(sla.id)
    return [
        DigestGroup(role=k[0], hour=k[1], timezone=k[2], channels=k[3], slas=tuple(v))
        for k, v in sorted(groups.items())
    ]


def morning_at_or_before(now: dt.datetime, hour: int, timezone: str) -> dt.datetime:
    """The latest local `hour`:00 in `timezone` at or before `now` (aware UTC). A local hour that
    does not exist that day (a spring-forward gap) is the instant the clocks jump to."""
    zone = ZoneInfo(timezone)
    day = now.astimezone(zone).date()
    for back in (0, 1, 2):
        at = _local(day - dt.timedelta(days=back), hour, zone)
        if at <= now:
            return at
    raise AssertionError("unreachable: a local hour recurs within two days")


def _local(day: dt.date, hour: int, zone: ZoneInfo) -> dt.datetime:
    """`hour`:00 of a local day as aware UTC: in a spring-forward gap, the instant the clocks jump
    (the hour read with the offset before the change); an autumn hour that occurs twice, its first."""
    return dt.datetime.combine(day, dt.time(hour), tzinfo=zone).astimezone(dt.UTC)


def _previous_morning(end: dt.datetime, hour: int, timezone: str) -> dt.datetime:
    zone = ZoneInfo(timezone)
    return _local(end.astimezone(zone).date() - dt.timedelta(days=1), hour, zone)


def decide_breach_digests(
    clocks: pd.DataFrame,
    records: pd.DataFrame,
    directory: Directory,
    now: dt.datetime,
    handled: Iterable[CheckpointId] = (),
    context: ContextFields | None = None,
) -> list[Notice]:
    """Leadership's daily breach digests due at `now`: for each digest person, at the latest
    morning hour (their timezone) at or before `now` not yet sent (once the quiet hours let it go),
    one notice listing the non-critical breaches of their SLAs since the previous one sent (a
    catch-up after downtime covers every day since, at most `DIGEST_CATCH_UP`), else since the
    previous morning. No breach, no message. Each line carries the breach's triage context
    (`decisions.context`: score, deal value, source, campaign, the rep's open clocks now).

    Keyed (source, role, morning, ...): queued once per person and morning, whatever reruns.
    """
    policy = directory.policy
    sent: dict[str, list[dt.datetime]] = {}
    for sla_id, _record, start, checkpoint in handled:
        if sla_id == DIGEST_SOURCE and start is not None:
            sent.setdefault(str(checkpoint), []).append(cell_instant(start))
    breached = clocks[clocks["breached_at"].notna()] if not clocks.empty else clocks
    notices: list[Notice] = []
    for group in digest_groups(policy):
        checkpoint = f"digest:{group.role}"
        end = morning_at_or_before(now, group.hour, group.timezone)
        if end in sent.get(checkpoint, []):
            continue
        people = directory.resolve(group.role, None, None)
        if not people:
            continue
        person = people[0]
        if next_opening(policy, person, end) > now:
            continue  # the morning hour falls in the person's quiet hours: it waits for them
        earlier = [s for s in sent.get(checkpoint, []) if end - DIGEST_CATCH_UP <= s < end]
        start = max(earlier) if earlier else _previous_morning(end, group.hour, group.timezone)
        items = _breaches(breached, policy, group.slas, start, end)
        if items.empty:
            continue
        recipients = tuple(
            (channel, address) for channel in group.channels if (address := person.address(channel))
        )
        if not recipients:
            continue
        notices.append(
            _digest_notice(
                group, person.name, items, records, directory, start, end, recipients, clocks, context
            )
        )
    return notices


def _breaches(
    breached: pd.DataFrame, policy: Policy, slas: Sequence[str], start: dt.datetime, end: dt.datetime
) -> pd.DataFrame:
    """The non-critical breaches of `slas` in [start, end), in breach order."""
    if breached.empty:
        return breached
    at = pd.to_datetime(breached["breached_at"], utc=True)
    mine = breached[
        breached["sla_id"].isin(list(slas))
        & (at >= pd.Timestamp(start))
        & (at < pd.Timestamp(end))
        & ~breached["critical"].eq(True)
    ]
    return mine.assign(_at=pd.to_datetime(mine["breached_at"], utc=True)).sort_values(
        ["_at", "sla_id", "record_id"]
    )


def _digest_notice(
    group: DigestGroup,
    name: str,
    items: pd.DataFrame,
    records: pd.DataFrame,
    directory: Directory,
    start: dt.datetime,
    end: dt.datetime,
    recipients: tuple[tuple[str, str], ...],
    clocks: pd.DataFrame,
    context: ContextFields | None = None,
) -> Notice:
    policy = directory.policy
    zone = ZoneInfo(group.timezone)
    listed = items.head(DIGEST_MAX_LINES)
    ids = set(listed["record_id"])
    by_id = {str(r["record_id"]): r for r in records[records["record_id"].isin(ids)].to_dict("records")}
    origin = converted_leads(records, [i for i, r in by_id.items() if r.get("object_type") == "Opportunity"])
    load = clocks[clocks["state"].isin(["running", "paused", "breached"])].groupby("owner_id").size()
    lines = []
    for row in listed.to_dict("records"):
        record = by_id.get(str(row["record_id"]), {})
        owner = directory.user(rep_of(row), "owner")
        owner_name = owner.name if owner else (rep_of(row) or "unassigned")
        lead = cell_text(record.get("name")) or str(row["record_id"])
        company = cell_text(record.get("company"))
        triage = describe(
            record_context(record, context or ContextFields(), lead=origin.get(str(row["record_id"]))),
            source=cell_text(record.get("lead_source")),
            open_clocks=int(load.get(rep_of(row), 0)),
            object_type=str(row.get("object_type") or "Lead"),
        )
        lines.append(
            f"{row['_at'].tz_convert(zone).strftime('%a %H:%M')} {policy.sla(str(row['sla_id'])).name}: "
            f"{lead}{f' ({company})' if company else ''}, tier {row['tier']}, "
            f"owner {owner_name}, team {cell_text(row['team']) or '-'} - {triage_text(triage)}"
        )
    if len(items) > DIGEST_MAX_LINES:
        lines.append(f"... and {len(items) - DIGEST_MAX_LINES} more (the War Room lists every breach).")
    local_start = start.astimezone(zone).strftime("%a %d %b %H:%M")
    local_end = end.astimezone(zone).strftime("%a %d %b %H:%M")
    return Notice(
        source=DIGEST_SOURCE,
        subject=group.role,
        opened_at=end,
        checkpoint=f"digest:{group.role}",
        recipients=recipients,
        title=f"Breach digest: {len(items)} SLA breach{'es' if len(items) != 1 else ''} "
        f"to {end.astimezone(zone):%a %d %b}",
        severity="warning",
        lines=tuple(lines),
        intro=(
            f"{name}: the breaches from {local_start} to {local_end} ({group.timezone}), once a day instead "
            "of one message each. Critical tiers' breaches were sent at once; owners and managers got "
            "every breach, directors their reps' repeated ones."
        ),
        actor="sla_monitor",
        audit_detail={
            "kind": "notice",
            "ladder_rule": "digest",
            "role": group.role,
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "breaches": len(items),
            "slas": list(group.slas),
        },
    )
