"""The delivery step the `sla_monitor` DAG calls: claim due outbox rows, send, mark, audit.

A failed send leaves the row pending with a later `not_before` (quick retries, then back-off)
and one clear log line; nothing is lost and nothing is sent twice by overlapping runs (leases).
What is not the row's fault does not count against it (`leadsla.notify.outcome.Deferred`):
Slack's 429 puts the row back for exactly Retry-After while other rows go on, and a channel
that refuses connections trips a per-try circuit breaker: that channel's rows are left alone
(not tried, attempts not counted) and one row probes it every PROBE_INTERVAL; when it answers,
its rows are due at once. A permanent failure (a revoked token, a refused recipient: no retry
can fix it) marks the row failed at once and, in the same transaction, queues data engineering's
notice on the other channel, once per cause and day (`leadsla.notify.failure`). Returns small
JSON counts for XCom. Never decides *what* is due: the monitor enqueues, this only delivers.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from leadsla.decisions.keys import MESSAGE_CHANNELS
from leadsla.decisions.phones import SMS, mask_phones_in, shown_recipient
from leadsla.notify.deadline import SendDeadline
from leadsla.notify.failure import Contacts, failure_notice
from leadsla.notify.outbox import (
    CRM_CHANNEL,
    DEFAULT_LEASE,
    LEASE_MARGIN,
    Claimed,
    backoff,
    cancel,
    claim,
    defer,
    hold,
    mark_delivered,
    mark_failed,
    next_due,
    planned_instant,
    release,
    renew,
)
from leadsla.notify.outcome import CHANNEL_DOWN, Deferred, Delivered, DeliveryFailed
from leadsla.notify.payloads import PayloadError
from leadsla.store.audit import AuditContext
from leadsla.store.connection import read_only
from leadsla.tuning import seconds_from_env

log = logging.getLogger(__name__)

#: Rows leased per claim; small, so a lease never has to cover a long queue of slow sends.
CLAIM_BATCH = 20
#: How long one delivery try keeps working (claiming rows as they fall due: quick retries, lapsed
#: leases) with a one-minute schedule. Below the interval, leaving room for the `evaluate` task
#: and one last send (at most a lease) before the next run. Tunable: LEADSLA_DELIVERY_BUDGET_S.
DEFAULT_BUDGET = dt.timedelta(seconds=45)
#: The delivery loop (the `sla_delivery` DAG): how long one try keeps delivering, waking at each
#: row's `not_before` (a warning planned for its checkpoint's instant) and looking for new rows
#: every LOOP_POLL meanwhile. Tunable: LEADSLA_DELIVERY_LOOP_S (the try then ends at the next
#: LOOP_END_SECOND of a minute, while sla_monitor's own deliver is at work across the gap).
DEFAULT_LOOP = dt.timedelta(minutes=10)
LOOP_POLL = dt.timedelta(seconds=1)
LOOP_END_SECOND = 30
#: While a channel's breaker is open, one row probes it this often (within the try's budget).
PROBE_INTERVAL = dt.timedelta(seconds=5)
#: Woken this long after a lapsed lease or a `not_before`: `claim` wants ``claimed_until < now``.
WAKE_SLACK_S = 0.05


def budget_from_env() -> dt.timedelta:
    """The delivery budget: LEADSLA_DELIVERY_BUDGET_S (seconds, 0-55) or DEFAULT_BUDGET.

    Raises:
        LeadSlaError: the variable is set but is not a number of seconds from 0 to 55.
    """
    return seconds_from_env(
        "LEADSLA_DELIVERY_BUDGET_S", DEFAULT_BUDGET, low=0, high=55, why=" (below the one-minute schedule)"
    )


def loop_budget_from_env(start: dt.datetime) -> dt.timedelta:
    """The delivery loop's budget from `start`: LEADSLA_DELIVERY_LOOP_S (seconds, 1-3600) or
    DEFAULT_LOOP, stretched to end at the next LOOP_END_SECOND of a minute: the loop's try then
    ends while sla_monitor's `deliver` (from about second 5 to 50 of each minute) covers the few
    seconds until the next loop try starts.

    Raises:
        LeadSlaError: the variable is set but is not a number of seconds from 1 to 3600.
    """
    seconds = seconds_from_env("LEADSLA_DELIVERY_LOOP_S", DEFAULT_LOOP, low=1, high=3600).total_seconds()
    end = start + dt.timedelta(seconds=seconds)
    aligned = end.replace(second=LOOP_END_SECOND, microsecond=0)
    if aligned < end:
        aligned += dt.timedelta(minutes=1)
    return aligned - start


def deliver_due(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    limit: int = 500,
    lease: dt.timedelta = DEFAULT_LEASE,
    batch: int = CLAIM_BATCH,
    budget: dt.timedelta = dt.timedelta(0),
    slack: Any = None,
    email: Any = None,
    sms: Any = None,
    contacts: Contacts | Callable[[], Contacts] | None = None,
    recheck: Callable[..., Any] | None = None,
    actions: Callable[[dt.datetime], Mapping[str, int]] | None = None,
    poll: dt.timedelta | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Deliver due outbox rows, and keep at it while rows fall due within `budget`.

    Rows due now are claimed in batches and sent, each under a lease renewed just before its
    send and a `SendDeadline` inside it (`leadsla.notify.deadline`). When nothing is due, the
    try waits for the next row to fall due (a quick retry's `not_before`, another worker's
    lapsed lease, the next probe of a channel that is down) if that is before ``now + budget``,
    and stops otherwise. Rows claimed but not
    yet sent when the budget ends are released. With the default budget of 0 it is one pass.

    Args:
        now: when this delivery attempt starts (in a task: the wall clock read just before the call;
            a lease is about real concurrency, so the run's logical time is the wrong clock
            here). Later claims use `now` plus the time spent so far (`monotonic`).
        budget: how long to keep claiming; the DAG passes `budget_from_env()`. A send started
            before the end may run on for at most a lease.
        slack, email, sms: senders to use (default: `SlackSender()` / `EmailSender()` /
            `SmsSender()` on the default connections, created only when a row of that channel is
            claimed); `sms` may also be a function making one (the task reads the policy's
            connection id only when a text is due).
        contacts: data engineering's Slack channel and e-mail, told of permanent failures on the
            other channel; or a function giving them, called at the first permanent failure
            (the task reads the configuration in force only then). None: nobody is told (the
            failure is still marked and logged).
        recheck: asked right before each send (`notify.recheck.Recheck`): a planned warning the
            latest CRM state no longer calls for is cancelled (``cancelled_by_touch``) or withdrawn
            (``cancelled_by_change``), one for a person at the rate limit held for the digest
            (``held_for_digest``). None: every row is sent as queued.
        actions: performs the due breach actions (channel ``crm``) at the given time, returning
            counts (`escalation.breach.perform_due` with its re-check, behind
            `tasks.monitor.deliver`); asked before each claim of messages, and the try wakes for
            an action's `not_before` too, so a breach planned ahead is reassigned and locked at
            its second. None: actions are left to sla_monitor's `escalate`.
        poll: with a budget, keep watching while nothing is due, looking for new rows this often
            (a warning planned or a breach queued by the monitor meanwhile), until the budget
            ends: the delivery loop (`LOOP_POLL`). None: stop once nothing falls due within it.
        monotonic, sleep: the clock and the wait (a simulation substitutes both together).

    Returns:
        Counts: claimed, delivered, reconciled (found already sent), retry (left queued),
        failed (permanent), double_marked (another worker had marked it first); lease_lost,
        released, lease_overrun, rate_limited, channel_down (rows put back uncounted),
        failure_alerts (data-engineering notices queued), cancelled_by_touch, cancelled_by_change
        and held_for_digest only when they happened.
    """
    started = monotonic()
    counts: Counter[str] = Counter()
    senders: dict[str, Any] = {"slack": slack, "email": email, "sms": sms}
    owned: list[Any] = []
    ends = now + budget

    def clock() -> dt.datetime:
        return now + dt.timedelta(seconds=monotonic() - started)

    def sender_for(channel: str) -> Any:
        given = senders.get(channel)
        if callable(given) and not hasattr(given, "deliver"):  # a factory: make it now
            senders[channel] = given()
            owned.append(senders[channel])
        elif given is None:
            if channel == "slack":
                from leadsla.notify.slack import SlackSender

                senders[channel] = SlackSender()
            elif channel == "sms":
                from leadsla.notify.sms import SmsSender

                senders[channel] = SmsSender()
            else:
                from leadsla.notify.email import EmailSender

                senders[channel] = EmailSender()
            owned.append(senders[channel])
        return senders[channel]

    warmed = False  # a loop makes its senders and reads its policy at its first wait
    down: dict[str, dt.datetime] = {}  # channel -> when to probe it again (open breaker)
    told = _Teller(contacts)

    def up_channels() -> set[str]:
        return {c for c in MESSAGE_CHANNELS if down.get(c) is None or down[c] <= clock()}

    def hand_back(rest: list[Claimed]) -> None:  # claimed, never tried: the attempt is taken back
        with engine.begin() as conn:
            counts["released"] += sum(release(conn, r) for r in rest)
        counts["claimed"] -= len(rest)

    try:
        while counts["claimed"] < limit:
            if budget and clock() >= ends:
                break
            channels = up_channels()
            if actions is not None:
                counts.update({f"actions_{k}": v for k, v in actions(clock()).items()})
            with engine.begin() as conn:
                rows = (
                    claim(conn, clock(), lease, min(batch, limit - counts["claimed"]), channels=channels)
                    if channels
                    else []
                )
                wake = None if rows else next_due(conn, clock(), channels=_waking(channels, actions))
            if not rows:
                probes = [t for c, t in down.items() if t > clock()]
                wake = min([t for t in (wake, *probes) if t is not None], default=None)
                if poll is not None and budget:
                    if not warmed:
                        warmed = _warm_up(sender_for, recheck)
                    wake = min(wake or ends, clock() + poll)
                if wake is None or wake >= ends:
                    break
                sleep(max((wake - clock()).total_seconds(), 0.0) + WAKE_SLACK_S)
                continue
            counts["claimed"] += len(rows)
            for i, row in enumerate(rows):
                if budget and i and clock() >= ends:  # out of budget: hand the rest back untried
                    hand_back(rows[i:])
                    break
                if row.channel not in up_channels():  # its channel went down earlier in this batch
                    hand_back([row])
                    continue
                if (
                    recheck is not None
                    and planned_instant(row.payload) is not None  # only warnings planned ahead
                    and _rechecked_away(
                        engine,
                        row,
                        recheck,
                        clock(),
                        context,
                        counts,
                        # the batch's later planned warnings: each meets this same hold decision
                        # (a row queued at reach goes as queued: the monitor's digest saw it)
                        untried=[
                            r.idempotency_key for r in rows[i + 1 :] if planned_instant(r.payload) is not None
                        ],
                    )
                ):
                    continue
                # Renew just before sending: the lease only has to outlast one send, and a row
                # another worker took meanwhile (after our lease lapsed) means: don't send.
                # The deadline starts before the renewal: whatever the renewal waits for (a row
                # lock, a slow commit) the lease it writes ends later, never earlier, than this.
                deadline = SendDeadline((lease - LEASE_MARGIN).total_seconds(), monotonic)
                with engine.begin() as conn:
                    mine = renew(conn, row, clock(), lease)
                if mine is None:
                    counts["lease_lost"] += 1
                    continue
                outcome = _deliver_one(
                    engine, mine, sender_for(row.channel), clock, deadline, context, counts, told
                )
                if isinstance(outcome, Deferred) and outcome.reason == CHANNEL_DOWN:
                    if row.channel not in down:
                        log.warning(
                            "%s is down (%s): its rows wait, probing every %s s",
                            row.channel,
                            outcome,
                            PROBE_INTERVAL.total_seconds(),
                        )
                    down[row.channel] = clock() + PROBE_INTERVAL
                elif down.pop(row.channel, None) is not None:  # it answered (even with an error): up
                    log.info("%s is back: its rows are due at once", row.channel)
            else:
                continue
            break
    finally:
        for sender in owned:
            sender.close()
    summary = {
        k: counts[k] for k in ("claimed", "delivered", "reconciled", "retry", "failed", "double_marked")
    }
    for rare in (
        "lease_lost",
        "released",
        "lease_overrun",
        "rate_limited",
        "channel_down",
        "failure_alerts",
        "cancelled_by_touch",
        "cancelled_by_change",
        "held_for_digest",
        *sorted(k for k in counts if k.startswith("actions_")),
    ):  # only when it happened
        if counts[rare]:
            summary[rare] = counts[rare]
    log.info("delivery: %s", summary)
    return summary


def _waking(channels: set[str], actions: Any) -> set[str]:
    """The channels whose next due row wakes the try: its messages', and ``crm`` when it performs
    breach actions."""
    return channels | {CRM_CHANNEL} if actions is not None else channels


def _warm_up(sender_for: Callable[[str], Any], recheck: Any) -> bool:
    """Make the Slack and e-mail senders (clients and connections) and read the re-check's policy
    while the loop waits, so the first row at its instant pays for none of it. A failure here is
    only logged: the send that needs it fails and is retried as usual."""
    for name, thing in (("slack", None), ("email", None), ("recheck", recheck)):
        if name == "recheck" and thing is None:
            continue
        try:
            thing = thing if thing is not None else sender_for(name)
            if hasattr(thing, "warm_up"):
                thing.warm_up()
        except Exception:
            log.exception("the delivery loop could not prepare %s ahead of its first row", name)
    return True


def _rechecked_away(
    engine: sa.Engine,
    row: Claimed,
    recheck: Callable[..., Any],
    at: dt.datetime,
    context: AuditContext,
    counts: Counter[str],
    *,
    untried: Sequence[str] = (),
) -> bool:
    """Ask `recheck` about `row` and write its verdict; True when the row is not to be sent now.
    `untried`: the keys of this batch's planned rows not tried yet (the rate limit may fold them
    with it).

    The re-check (the engine on the record's rows) reads on a read-only connection: inside the
    write transaction it held SQLite's write lock for its whole evaluation, and a busy minute's
    re-checks kept every other writer waiting past its busy timeout. The verdict is written in its
    own short transaction, conditional on the lease still being ours.
    """
    with read_only(engine) as conn:
        verdict = recheck(conn, row, at, untried=untried)
    if verdict.event is None:
        return False
    with engine.begin() as conn:
        if verdict.until is not None:
            done = hold(conn, row, verdict.until, at, context, detail=verdict.detail)
        else:
            done = cancel(conn, row, at, context, event=verdict.event, detail=verdict.detail)
    if done:
        counts[verdict.event] += 1
        log.info(
            "outbox %s (%s checkpoint of %s): %s %s",
            row.outbox_id,
            row.checkpoint,
            row.record_id,
            verdict.event,
            dict(verdict.detail),
        )
    else:
        counts["lease_lost"] += 1
    return True


def _deliver_one(
    engine: sa.Engine,
    row: Claimed,
    sender: Any,
    clock,
    deadline: SendDeadline,
    context: AuditContext,
    counts: Counter[str],
    told: _Teller,
) -> DeliveryFailed | None:
    """Send one row and record the outcome; returns the failure (None when delivered)."""
    try:
        result: Delivered = sender.deliver(row, clock(), deadline)
    except Deferred as exc:
        at = clock()
        retry_at = None if exc.reason == CHANNEL_DOWN else at + dt.timedelta(seconds=exc.retry_after_s)
        log.info(
            "outbox %s (%s to %s): %s, back in the queue%s (not counted as a failed attempt)",
            row.outbox_id,
            row.channel,
            shown_recipient(row.channel, row.recipient),
            exc.reason,
            f" until {retry_at.isoformat()}" if retry_at else "",
        )
        with engine.begin() as conn:
            defer(
                conn, row, retry_at, at, context, reason=exc.reason, error=str(exc), uncount=exc.sent_nothing
            )
        counts[exc.reason] += 1
        return exc
    except DeliveryFailed as exc:
        cause = (exc.cause or f"{row.channel}:unclassified") if exc.permanent else None
        _failed(engine, row, str(exc), cause, clock(), context, counts, told)
        return exc
    except PayloadError as exc:
        _failed(engine, row, str(exc), f"{row.channel}:payload", clock(), context, counts, told)
        return DeliveryFailed(str(exc), permanent=True)
    except Exception as exc:  # a bug or an unforeseen client error: keep the row, say so loudly
        log.exception("outbox %s: unexpected error delivering by %s", row.outbox_id, row.channel)
        error = f"unexpected {type(exc).__name__}: {exc}"
        error = mask_phones_in(error) if row.channel == SMS else error  # a number in a client's error
        _failed(engine, row, error, None, clock(), context, counts, told)
        return DeliveryFailed(str(exc))
    else:
        at = clock()
        detail = dict(result.detail)
        if at > row.claimed_until:  # the bound in leadsla.notify.deadline failed: say so, never hide it
            counts["lease_overrun"] += 1
            detail["lease_overrun"] = True
            log.error(
                "outbox %s: the send ended %s after its lease; another worker may have sent it too",
                row.outbox_id,
                at - row.claimed_until,
            )
        with engine.begin() as conn:
            first = mark_delivered(conn, row, result.external_id, at, context, detail=detail)
        counts["delivered"] += 1
        counts["reconciled"] += bool(result.detail.get("reconciled"))
        counts["double_marked"] += not first
        return None


class _Teller:
    """Who hears of permanent failures in one delivery try: the contacts, resolved at most once."""

    def __init__(self, contacts: Contacts | Callable[[], Contacts] | None) -> None:
        self._source = contacts
        self._resolved: Contacts | None = contacts if isinstance(contacts, Contacts) else None
        self._tried = isinstance(contacts, Contacts) or contacts is None

    def contacts(self) -> Contacts | None:
        if not self._tried:
            self._tried = True
            try:
                self._resolved = self._source()  # type: ignore[misc]
            except Exception:  # the failure is still marked; only the alert cannot be addressed
                log.exception("the data-engineering contacts could not be read: nobody is told")
        return self._resolved

    def notices(self, row: Claimed, error: str, cause: str, at: dt.datetime) -> list:
        """Data engineering's notice of this permanent failure (none when nobody can be told)."""
        contacts = self.contacts()
        notice = (
            failure_notice(
                cause=cause,
                channel=row.channel,
                error=error,
                recipient=row.recipient,
                outbox_id=row.outbox_id,
                kind=row.payload.get("kind"),
                at=at,
                contacts=contacts,
            )
            if contacts is not None
            else None
        )
        if notice is None:
            log.error(
                "outbox %s: %s failed for good (%s) and nobody can be told: quality.yaml incident names "
                "no data-engineering contact on another channel",
                row.outbox_id,
                row.channel,
                cause,
            )
            return []
        return [notice]


def _failed(
    engine: sa.Engine,
    row: Claimed,
    error: str,
    cause: str | None,
    at: dt.datetime,
    context: AuditContext,
    counts: Counter[str],
    told: _Teller,
) -> None:
    """Record a failed attempt: back off (transient, `cause` None) or fail for good and tell."""
    permanent = cause is not None
    retry_at = None if permanent else at + backoff(row.attempts, row.idempotency_key)
    if permanent:
        log.error(
            "outbox %s (%s to %s): failed for good (%s): %s",
            row.outbox_id,
            row.channel,
            shown_recipient(row.channel, row.recipient),
            cause,
            error,
        )
    else:
        log.warning(
            "outbox %s (%s to %s): attempt %s failed, stays queued until %s: %s",
            row.outbox_id,
            row.channel,
            shown_recipient(row.channel, row.recipient),
            row.attempts,
            retry_at.isoformat(),
            error,
        )
    notices = told.notices(row, error, cause, at) if permanent else []
    with engine.begin() as conn:
        new = mark_failed(conn, row, error, retry_at, at, context, cause=cause, notices=notices)
    counts["failed" if permanent else "retry"] += 1
    counts["failure_alerts"] += len(new)
