"""The re-check right before a planned warning or breach goes: is it still what the clock calls for?

A warning queued ahead of its checkpoint (payload `planned`, `notify.outbox.planned_instant`) was
decided on the CRM as it stood minutes earlier. Right before sending, delivery re-evaluates that
one record's clock at the checkpoint's instant on the store's latest rows (`store.mirror.load_frames` for the
record, `decisions.ahead.messages_at`: the engine and the monitor's own decision) and sends the
row only if the decision still names it (same key: same clock, checkpoint, person, channel).
Otherwise:

* the clock stopped by the instant because the lead was touched (a logged call, e-mail or
  meeting) or moved on (SQL, Recycled, ...): ``cancelled_by_touch``, with the touch's time;
* the clock is paused, gone, or changed so this message is no longer the one (reassigned: the
  recipient differs; re-tiered or re-based: the checkpoint falls later): ``cancelled_by_change``;
  the row is withdrawn, and the monitor decides again what the changed clock calls for (a
  recipient who still gets the same message gets it under the same key).

A warning the rate limit would fold into a digest at its instant (`decisions.digest` on the
person's queue with this row due and untouched: over `max_alerts`, with at least one other warning
to fold with it) is held once (`HOLD`) for the monitor's next run to digest, as a warning queued at
its checkpoint would have been digested by the run that queued it. A lone warning over the limit
goes at its second: a digest of one is never made, so holding it would only make it late.

A planned breach (its messages and its CRM action, `decisions.ahead.breach_at`) is re-decided
whole at its instant, each of its rows before it goes (a message before its send, the action
before `escalation.breach` performs it): the record's clock on the store's latest rows, the
repeat rung's count of the rep's breaches on the latest rows of every record that can count
(`rep_book`: the rep's breaches in the window and open clocks, evaluated at the instant), the
manager or queue the lead goes to. The verdict is the breach's, and `notify.outbox.cancel` ends
its other rows with it: a touch before the deadline -> ``cancelled_by_touch`` (nothing sent,
nothing reassigned, no lock); a pause, reassignment or re-tier -> ``cancelled_by_change``; the
same clock still breaching but calling for other rows (another manager or queue, the repeat rung
now firing or not, a message that would now reach leadership) -> ``cancelled_by_change``
(``breach_changed``): withdrawn whole, so the monitor decides the breach at reach. Once one of
its rows went out, the breach was acted on at its instant and the rest go as decided (as rows
queued at reach do), unless the clock did not breach after all. Breaches are never held for a
digest. Read-only: the caller writes the verdict through `notify.outbox`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from leadsla.decisions.ahead import (
    BREACH,
    BreachPlan,
    breach_at,
    evaluate_records,
    leadership,
    may_roll_up,
    messages_at,
    of_clock,
    tells_leadership,
)
from leadsla.decisions.digest import decide_digests
from leadsla.decisions.keys import utc_iso
from leadsla.decisions.ladder import BreachBook
from leadsla.decisions.recipients import Directory
from leadsla.engine import Evaluation
from leadsla.notify.outbox import WITHDRAWN, Claimed, planned_instant, queued_rows
from leadsla.policy import Policy
from leadsla.store.mirror import load_frames
from leadsla.store.schema import clocks as clocks_table
from leadsla.store.schema import outbox, records, users

TOUCH = "cancelled_by_touch"
CHANGE = "cancelled_by_change"
HELD = "held_for_digest"
#: How long a warning to someone at the rate limit waits for the monitor's digest: past the next
#: one-minute run.
HOLD = dt.timedelta(seconds=75)
_TOUCH_STATES = {"met", "met_late", "handed_on", "handed_on_late"}


@dataclass(frozen=True)
class Verdict:
    """What to do with a claimed row: send it (`event` None), end it (`TOUCH`, `CHANGE`) or hold
    it (`HELD`, until `until`); `detail` says why, for the audit."""

    event: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    until: dt.datetime | None = None


SEND = Verdict()
#: How long one planned breach's re-decision serves its other rows: they fall due together and are
#: re-checked one after another (a critical breach has ten or more), each ~0.1 s on its own. A
#: change landing within it can only concern a breach whose first row is already going out.
BREACH_REUSE = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class _BreachDecided:
    """A planned breach re-decided at its instant: the breach now called for (None: its SLA is gone),
    whether it tells leadership while its team's day may be systemic, and the clocks at the instant."""

    whole: BreachPlan | None
    may_roll_up: bool
    clocks: pd.DataFrame


class Recheck:
    """Re-checks planned warnings against the store (module docstring).

    Args:
        policy: the policy in force, or a function giving it (called at the first planned row, so
            a try that sends none never reads the configuration).
    """

    def __init__(self, policy: Policy | Callable[[], Policy]) -> None:
        self._policy = policy
        self._breaches: dict[tuple, tuple[float, _BreachDecided]] = {}

    def warm_up(self) -> None:
        """Read the policy now (a delivery loop does it while it waits for the first instant)."""
        self.policy()

    def policy(self) -> Policy:
        if not isinstance(self._policy, Policy):
            self._policy = self._policy()
        return self._policy

    def __call__(
        self, conn: sa.Connection, row: Claimed, at: dt.datetime, *, untried: Collection[str] = ()
    ) -> Verdict:
        """The verdict on `row` at `at` (the deliverer's clock), in the caller's transaction.

        `untried`: keys of the other rows the caller claimed with this one and has not tried yet
        (its batch): reached by nobody, so a digest may still fold them with this one.
        """
        instant = planned_instant(row.payload)
        if instant is None or row.record_id is None or row.sla_id is None or row.clock_start is None:
            return SEND  # queued at or after its checkpoint (or not a clock's message): as decided
        policy = self.policy()
        if row.checkpoint == BREACH:
            return self._breach(conn, row, instant, policy)
        frames = load_frames(conn, [row.record_id])
        evaluation = evaluate_records(frames, policy, instant)
        identity = (row.sla_id, row.record_id, row.clock_start)
        directory = Directory(policy, frames["users"], frames["queues"])
        keys = {
            m.key
            for m in messages_at(
                evaluation, frames["records"], directory, identity, row.checkpoint, instant, instance_url=""
            )
        }
        if row.idempotency_key in keys:
            return self._rate_limit(conn, row, at, policy, untried)
        return _why_not(evaluation.clocks, identity, instant)

    def _breach(self, conn: sa.Connection, row: Claimed, instant: dt.datetime, policy: Policy) -> Verdict:
        """The verdict on a planned breach's row: the whole breach re-decided at its instant."""
        identity = (row.sla_id, row.record_id, row.clock_start)
        decided = self._decided(conn, identity, instant, policy)
        if not decided.whole:
            return _why_not(decided.clocks, identity, instant)
        standing = _breach_rows(conn, row)
        if "delivered" in standing.values():
            return SEND  # acted on at its instant: the rest goes as decided, as rows queued at reach do
        planned, keys = set(standing), decided.whole.keys
        if row.idempotency_key in keys and keys == planned and not decided.may_roll_up:
            return SEND
        detail: dict[str, Any] = {
            "checkpoint_at": utc_iso(instant),
            "reason": "breach_changed",
            "state": "breached",
            "now_called_for": sorted(keys - planned),
            "no_longer_called_for": sorted(planned - keys),
        }
        if decided.may_roll_up:
            detail["may_roll_up"] = True
        return Verdict(CHANGE, detail)

    def _decided(
        self,
        conn: sa.Connection,
        identity: tuple[str, str, dt.datetime],
        instant: dt.datetime,
        policy: Policy,
    ) -> _BreachDecided:
        """The breach re-decided at `instant` on the store's latest rows, or the decision taken for
        another of its rows less than `BREACH_REUSE` ago (its rows fall due together)."""
        key = (*identity, instant)
        seen = self._breaches.get(key)
        if seen is not None and time.monotonic() - seen[0] < BREACH_REUSE.total_seconds():
            return seen[1]
        sla_id, record_id, _ = identity
        frames = load_frames(conn, [record_id])
        evaluation = evaluate_records(frames, policy, instant)
        directory = Directory(policy, frames["users"], frames["queues"])
        sla = next((s for s in policy.slas if s.id == sla_id), None)
        whole, rolls = None, False
        if sla is not None:
            book = None
            if sla.laddered and sla.ladder.repeat is not None:
                book = rep_book(conn, policy, evaluation, identity, instant, sla.ladder.repeat.within_days)
            whole = breach_at(
                evaluation, frames["records"], directory, identity, instant, book=book, instance_url=""
            )
            if whole and tells_leadership(whole.messages, leadership(policy)):
                team = _team_at(evaluation, identity)
                rolls = may_roll_up(
                    team_day(conn, policy, evaluation, identity, instant, team), policy, team, instant
                )
        decided = _BreachDecided(whole, rolls, evaluation.clocks)
        self._breaches = {k: v for k, v in self._breaches.items() if time.monotonic() - v[0] < 60}
        self._breaches[key] = (time.monotonic(), decided)
        return decided

    def _rate_limit(
        self, conn: sa.Connection, row: Claimed, at: dt.datetime, policy: Policy, untried: Collection[str]
    ) -> Verdict:
        """Hold the warning once when the digest decision at `at` folds it (module docstring)."""
        limit = policy.rate_limit
        held_before = conn.execute(
            sa.select(outbox.c.last_error).where(outbox.c.outbox_id == row.outbox_id)
        ).scalar()
        if held_before == HELD:
            return SEND
        unsent = {row.idempotency_key, *untried}
        queue = [
            # This row as the monitor will see it once held (due, untouched), and the caller's
            # other claimed rows as they are: reached by nobody yet.
            replace(q, attempts=0, leased=False) if q.key in unsent else q
            for q in queued_rows(
                conn, at, window_minutes=limit.window_minutes, person=(row.recipient, row.channel)
            )
        ]
        digests = decide_digests(queue, at, max_alerts=limit.max_alerts, window_minutes=limit.window_minutes)
        folded = next((d for d in digests if any(r.key == row.idempotency_key for r in d.replaces)), None)
        if folded is None:
            return SEND
        in_window = sum(1 for q in queue if q.key != row.idempotency_key and not q.untouched)
        detail = {"reason": HELD, "messages_in_window": in_window, "digest_of": len(folded.replaces)}
        return Verdict(HELD, detail, until=at + HOLD)


def _breach_rows(conn: sa.Connection, row: Claimed) -> dict[str, str]:
    """The planned breach's rows as the outbox holds them (key -> status), withdrawn ones left out."""
    found = conn.execute(
        sa.select(outbox.c.idempotency_key, outbox.c.status).where(
            outbox.c.sla_id == row.sla_id,
            outbox.c.record_id == row.record_id,
            outbox.c.clock_start == row.clock_start,
            outbox.c.checkpoint == BREACH,
            outbox.c.status != WITHDRAWN,
        )
    ).all()
    return {k: s for k, s in found}


def rep_book(
    conn: sa.Connection,
    policy: Policy,
    evaluation: Evaluation,
    identity: tuple[str, str, dt.datetime],
    instant: dt.datetime,
    within_days: int,
) -> BreachBook | None:
    """The rep's breaches as of `instant`, for the repeat rung's count (`decisions.ladder`), as the
    monitor's decision at the instant would count them: the rep's breaches within the window as
    the store's clocks hold them (the monitor's incremental runs read them so too), and the clocks
    that can still change evaluated at `instant` on the store's latest rows: the record's own
    (`evaluation`), the rep's open ones (running, paused: a breach since the monitor's last run, or
    a touch that makes a projected one never happen) and the open clocks on records the CRM now
    gives the rep (a reassignment the monitor has not evaluated yet). The rep is the clock's
    accountable owner at the instant. None when the clock has no rep.
    """
    record_id = identity[1]
    c = evaluation.clocks
    same = c[of_clock(c, identity)]
    if same.empty:
        return None
    rep = same["accountable_owner_id"].iloc[0]
    rep = rep if pd.notna(rep) else same["owner_id"].iloc[0]
    if pd.isna(rep):
        return None
    rep = str(rep)
    k = clocks_table.c
    current, open_ = k.stale_since.is_(None), k.state.in_(["running", "paused"])
    columns = ["sla_id", "record_id", "clock_start", "owner_id", "accountable_owner_id", "breached_at"]
    since = instant - dt.timedelta(days=within_days)
    breaches = conn.execute(
        sa.select(*(k[n] for n in columns)).where(
            current, sa.or_(k.owner_id == rep, k.accountable_owner_id == rep), k.breached_at > since
        )
    ).all()
    stored = pd.DataFrame([tuple(r) for r in breaches], columns=columns)
    changing = sa.union(
        sa.select(k.record_id).where(current, open_, k.owner_id == rep),
        sa.select(k.record_id).where(
            current, open_, k.record_id.in_(sa.select(records.c.record_id).where(records.c.owner_id == rep))
        ),
    )
    ids = {str(r) for r in conn.execute(changing).scalars()} - {record_id}
    now = evaluate_records(load_frames(conn, ids), policy, instant).clocks if ids else c.iloc[:0]
    fresh = pd.concat([f for f in (c, now) if not f.empty], ignore_index=True) if not now.empty else c
    kept = stored[~stored["record_id"].isin(set(fresh["record_id"]))]
    return BreachBook.of(pd.concat([f for f in (kept, fresh[columns]) if not f.empty], ignore_index=True))


def _team_at(evaluation: Evaluation, identity: tuple[str, str, dt.datetime]) -> str | None:
    c = evaluation.clocks
    team = c.loc[of_clock(c, identity), "team"]
    return None if team.empty or pd.isna(team.iloc[0]) else str(team.iloc[0])


def team_day(
    conn: sa.Connection,
    policy: Policy,
    evaluation: Evaluation,
    identity: tuple[str, str, dt.datetime],
    instant: dt.datetime,
    team: str | None,
) -> pd.DataFrame:
    """The clocks of `team`'s calendar day of `instant` as the store holds them (the monitor's last
    run), for `decisions.ahead.may_roll_up`: the team's clocks started that day, and those on
    records the CRM now gives a member of the team (a reassignment the monitor has not evaluated
    yet, counted in the team), the record's own clocks as `evaluation` has them at the instant."""
    if team is None:
        return evaluation.clocks.iloc[:0]
    zone = ZoneInfo(policy.calendar(policy.team_calendar(team)).timezone)
    day = instant.astimezone(zone).date()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    k = clocks_table.c
    members = sa.select(users.c.user_id).where(users.c.team == team)
    theirs = sa.or_(
        k.team == team, k.record_id.in_(sa.select(records.c.record_id).where(records.c.owner_id.in_(members)))
    )
    columns = ["sla_id", "record_id", "clock_start", "state", "deadline", "breached_at"]
    found = conn.execute(
        sa.select(*(k[c] for c in columns)).where(
            k.stale_since.is_(None),
            k.sla_id.in_(sorted(s.id for s in policy.slas)),
            k.clock_start >= start,
            k.clock_start < end,
            theirs,
        )
    ).all()
    stored = pd.DataFrame([tuple(r) for r in found], columns=columns).assign(team=team)
    stored = stored[stored["record_id"] != identity[1]]
    own = evaluation.clocks[evaluation.clocks["record_id"] == identity[1]][[*columns, "team"]]
    return pd.concat([stored, own], ignore_index=True) if not stored.empty else own


def _why_not(clocks, identity: tuple[str, str, dt.datetime], instant: dt.datetime) -> Verdict:
    """Why the clock no longer calls for the message at `instant`: a touch, or a change."""
    same = clocks[of_clock(clocks, identity)]
    detail: dict[str, Any] = {"checkpoint_at": utc_iso(instant)}
    if same.empty:
        return Verdict(CHANGE, {**detail, "reason": "clock_gone"})
    clock = same.iloc[0]
    state = str(clock["state"])
    detail.update(state=state, owner_id=None if pd.isna(clock["owner_id"]) else str(clock["owner_id"]))
    if state in _TOUCH_STATES and pd.notna(clock["stopped_at"]):
        touched = pd.Timestamp(clock["stopped_at"]).to_pydatetime()
        reason = "touched" if state.startswith("met") else "moved_on"
        return Verdict(TOUCH, {**detail, "reason": reason, "touched_at": utc_iso(touched)})
    reason = "paused" if state == "paused" else "changed"  # re-tiered, re-based or reassigned
    return Verdict(CHANGE, {**detail, "reason": reason})
