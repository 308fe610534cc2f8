"""The re-check right before a planned warning goes: is it still what the clock calls for?

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

A person already at the rate limit when the warning falls due is held for the monitor's digest
once (`HOLD`), as a warning queued at its checkpoint would have been digested by the run that
queued it. Read-only: the caller writes the verdict through `notify.outbox`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa

from leadsla.decisions.ahead import evaluate_records, messages_at
from leadsla.decisions.keys import utc_iso
from leadsla.decisions.recipients import Directory
from leadsla.notify.outbox import Claimed, planned_instant
from leadsla.policy import Policy
from leadsla.store.mirror import load_frames
from leadsla.store.schema import outbox

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


class Recheck:
    """Re-checks planned warnings against the store (module docstring).

    Args:
        policy: the policy in force, or a function giving it (called at the first planned row, so
            a try that sends none never reads the configuration).
    """

    def __init__(self, policy: Policy | Callable[[], Policy]) -> None:
        self._policy = policy

    def warm_up(self) -> None:
        """Read the policy now (a delivery loop does it while it waits for the first instant)."""
        self.policy()

    def policy(self) -> Policy:
        if not isinstance(self._policy, Policy):
            self._policy = self._policy()
        return self._policy

    def __call__(self, conn: sa.Connection, row: Claimed, at: dt.datetime) -> Verdict:
        """The verdict on `row` at `at` (the deliverer's clock), in the caller's transaction."""
        instant = planned_instant(row.payload)
        if instant is None or row.record_id is None or row.sla_id is None or row.clock_start is None:
            return SEND  # queued at or after its checkpoint (or not a clock's message): as decided
        policy = self.policy()
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
            return self._rate_limit(conn, row, at, policy)
        return _why_not(evaluation.clocks, identity, instant)

    def _rate_limit(self, conn: sa.Connection, row: Claimed, at: dt.datetime, policy: Policy) -> Verdict:
        """Hold the warning once when its person already had (or has due) `max_alerts` messages."""
        limit = policy.rate_limit
        held_before = conn.execute(
            sa.select(outbox.c.last_error).where(outbox.c.outbox_id == row.outbox_id)
        ).scalar()
        if held_before == HELD:
            return SEND
        since = at - dt.timedelta(minutes=limit.window_minutes)
        mine = sa.and_(outbox.c.recipient == row.recipient, outbox.c.channel == row.channel)
        committed = conn.execute(
            sa.select(sa.func.count())
            .select_from(outbox)
            .where(
                mine,
                outbox.c.outbox_id != row.outbox_id,
                sa.or_(
                    sa.and_(outbox.c.status == "delivered", outbox.c.delivered_at > since),
                    sa.and_(outbox.c.status == "pending", outbox.c.not_before <= at),
                ),
            )
        ).scalar()
        if committed < limit.max_alerts:
            return SEND
        return Verdict(HELD, {"reason": HELD, "messages_in_window": committed}, until=at + HOLD)


def _why_not(clocks, identity: tuple[str, str, dt.datetime], instant: dt.datetime) -> Verdict:
    """Why the clock no longer calls for the message at `instant`: a touch, or a change."""
    sla_id, record_id, clock_start = identity
    same = clocks[
        (clocks["sla_id"] == sla_id)
        & (clocks["record_id"] == record_id)
        & (pd.to_datetime(clocks["clock_start"], utc=True) == clock_start)
    ]
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
