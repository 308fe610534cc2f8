"""Checkpoint messages: an evaluation's reached checkpoints -> the messages to queue.

Of a clock's reached checkpoints not yet handled, only the latest is sent; the earlier ones are
`superseded` (audited, not sent): a catch-up after downtime sends the breach, not stale
warnings. One message per person and channel, whichever roles name that person, with the roles
it covers. A message due while its recipient is off work waits for the next opening
(`not_before`), except breaches of critical tiers. Who a breach tells is the SLA's escalation
ladder (`decisions.ladder`; each message carries the rule that asked for it). A text (``sms``)
goes only when it cannot wait (`text_now`), at once; someone without a number gets it by e-mail
(else Slack) at once. Pure: no store, no Airflow, no wall clock; every time comes from the caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from leadsla.decisions.cells import cell_instant, cell_text
from leadsla.decisions.context import ContextFields, converted_leads, record_context
from leadsla.decisions.keys import normalise_recipient
from leadsla.decisions.ladder import Ask, BreachBook, asks
from leadsla.decisions.phones import SMS
from leadsla.decisions.plan import CheckpointId, CheckpointReached, Message
from leadsla.decisions.recipients import Directory, Person, next_opening
from leadsla.policy import Policy


@dataclass
class CheckpointDecisions:
    """What the reached checkpoints call for: messages, checkpoints acted on or passed over, and
    the clocks whose breach is due now (for the breach actions)."""

    messages: list[Message] = field(default_factory=list)
    due: list[CheckpointReached] = field(default_factory=list)
    superseded: list[CheckpointReached] = field(default_factory=list)
    breaches: list[dict[str, Any]] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    #: People a text was due for who have no mobile number (`where: name (user id)`).
    no_phone: list[str] = field(default_factory=list)


#: The placeholder address of a CRM user with no usable MobilePhone, while destinations are gathered.
NO_PHONE = "no-phone:"


def text_now(policy: Policy, *, breach: bool, critical: bool, off_work: bool) -> bool:
    """Whether a destination on the ``sms`` channel is texted (at once) or left out.

    SMS is for what cannot wait: a critical tier's breach, day or night; and, with the policy's
    `sms.off_hours_breaches`, any breach reaching someone off work (quiet hours or their team's
    closed calendar: their Slack and e-mail wait for the morning, the text does not). A breach
    during working hours that is not critical is read on Slack and e-mail: no text.
    """
    if not breach or policy.sms is None:
        return False
    return critical or (off_work and policy.sms.off_hours_breaches)


def _reached(row: Mapping[str, Any]) -> CheckpointReached:
    return CheckpointReached(
        sla_id=str(row["sla_id"]),
        record_id=str(row["record_id"]),
        clock_start=cell_instant(row["clock_start"]),
        checkpoint=str(row["checkpoint"]),
        policy_version=str(row["policy_version"]),
        reached_at=cell_instant(row["reached_at"]),
        offset_seconds=int(row["offset_seconds"]),
    )


def _checkpoint_def(policy: Policy, sla_id: str, checkpoint: str):
    sla = policy.sla(sla_id)
    return sla, next(cp for cp in sla.all_checkpoints() if cp.id == checkpoint)


def decide_checkpoints(
    clocks: pd.DataFrame,
    checkpoints: pd.DataFrame,
    records: pd.DataFrame,
    directory: Directory,
    *,
    now: dt.datetime,
    handled: Iterable[CheckpointId],
    instance_url: str,
    context: ContextFields | None = None,
    book: BreachBook | None = None,
) -> CheckpointDecisions:
    """Decide the messages for every reached, not yet handled checkpoint of every open clock.

    Args:
        clocks, checkpoints: `leadsla.engine.Evaluation` frames at `now` (the payload's elapsed and
            remaining business time are the clock's `elapsed_seconds` at `now`).
        records: the store's records (record_id, name, company, lead_source; raw `fields` for
            the triage context, `decisions.context`).
        handled: checkpoints already queued or recorded as superseded (from the outbox/audit).
        now: the run's time; a message not held by quiet hours has `not_before = now`.
        context: where the score and campaign live and the expected deal value (default: the
            usual fields, no estimate).
        book: every clock's breach by rep, for the ladder's repeat rung (default: built from
            `clocks`, which must then hold every clock; a decision on a few records' clocks, such
            as a breach planned ahead, passes the book of the rep's clocks).

    Returns:
        The decisions. Running the same inputs again gives the same messages (keys included).
    """
    out = CheckpointDecisions()
    reached = checkpoints[checkpoints["status"].isin(["due", "superseded"])]
    if reached.empty:
        return out
    handled_by_clock: dict[tuple, set[str]] = {}
    for sla_id, record_id, clock_start, checkpoint in handled:
        handled_by_clock.setdefault((sla_id, record_id, cell_instant(clock_start)), set()).add(checkpoint)
    # A clock whose reached checkpoints are all handled decides nothing (`_catch_up`): left out
    # before grouping, since most reached checkpoints of a steady run are long handled.
    ids = list(zip(reached["sla_id"], reached["record_id"], reached["clock_start"], strict=True))
    fresh = {
        i
        for i, checkpoint in zip(ids, reached["checkpoint"], strict=True)
        if checkpoint not in handled_by_clock.get((i[0], i[1], cell_instant(i[2])), ())
    }
    reached = reached[[i in fresh for i in ids]]
    if reached.empty:
        return out
    # Only the clocks and records of reached checkpoints become dicts: the whole records frame
    # (raw CRM fields included) is tens of thousands of rows, a handful of which are reached.
    ids = set(reached["record_id"])
    clock_by_id = {
        (r["sla_id"], r["record_id"], cell_instant(r["clock_start"])): r
        for r in clocks[clocks["record_id"].isin(ids)].to_dict("records")
    }
    record_by_id = {
        str(r["record_id"]): r for r in records[records["record_id"].isin(ids)].to_dict("records")
    }
    open_clocks = clocks[clocks["state"].isin(["running", "paused", "breached"])].groupby("owner_id").size()
    context = context or ContextFields()
    opportunities = [i for i, r in record_by_id.items() if r.get("object_type") == "Opportunity"]
    origin = converted_leads(records, opportunities)
    for (sla_id, record_id, clock_start), group in reached.groupby(
        ["sla_id", "record_id", "clock_start"], sort=True
    ):
        identity = (sla_id, record_id, cell_instant(clock_start))
        due, superseded = _catch_up(group, handled_by_clock.get(identity, set()))
        out.superseded.extend(_reached(r) for r in superseded)
        if due is None:
            continue
        out.due.append(_reached(due))
        clock = clock_by_id[identity]
        if due["checkpoint"] == "breach":
            out.breaches.append(clock)
        record = record_by_id.get(str(record_id), {})
        owner_load = int(open_clocks.get(clock["owner_id"], 0))
        if book is None and due["checkpoint"] == "breach" and directory.policy.sla(sla_id).laddered:
            book = BreachBook.of(clocks)
        triage = record_context(record, context, lead=origin.get(str(record_id)))
        found = checkpoint_messages(
            directory, clock, due, record, owner_load, now, instance_url, out, book, triage
        )
        out.messages.extend(found)
    return out


def _catch_up(group: pd.DataFrame, done: set[str]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """`catch_up` on one clock's reached checkpoints as a frame."""
    return catch_up(group.sort_values("offset_seconds").to_dict("records"), done)


def catch_up(
    rows: list[dict[str, Any]], done: set[str]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Of one clock's reached checkpoints (`rows`, in offset order), the one to act on now and the
    ones passed over.

    Only the latest not yet handled is due; earlier ones are superseded. If a later checkpoint
    was already handled (an old run replayed after a newer one), the newer decision stands and
    nothing is due.
    """
    fresh = [r for r in rows if r["checkpoint"] not in done]
    if not fresh:
        return None, []
    latest = fresh[-1]
    later_handled = any(
        r["checkpoint"] in done and r["offset_seconds"] > latest["offset_seconds"] for r in rows
    ) or bool(done - {r["checkpoint"] for r in rows})  # handled but not reached here: newer
    if later_handled:
        return None, fresh
    return latest, fresh[:-1]


def _destinations(
    directory: Directory,
    wanted: list[Ask],
    owner_id: str | None,
    team: str | None,
    sla_team: str | None,
    where: str,
    out: CheckpointDecisions,
) -> dict[tuple[str, str], tuple[Person, list[str], list[Ask]]]:
    """(channel, address) -> (person, the roles naming them, the asks) for a checkpoint's asks.

    One message per destination, however many roles (or ladder rules) name it: a rep who is also
    the team manager gets one DM and one e-mail, and the payload and audit say which roles and
    rules it covers. The key is derived from the destination (not the role), so it is stable. A
    role resolving to nobody is noted in `out.unresolved`.
    """
    found: dict[tuple[str, str], tuple[Person, list[str], list[Ask]]] = {}
    for ask in wanted:
        people = directory.resolve(ask.role, owner_id, team, sla_team)
        if not people:
            out.unresolved.append(f"{where}: {ask.role}")
        for person in people:
            for channel in ask.channels:
                address = person.address(channel)
                if not address and channel == SMS and person.user_id:
                    # a CRM user without a number (see checkpoint_messages)
                    address = f"{NO_PHONE}{person.user_id}"
                if not address:
                    continue
                _, roles, why = found.setdefault((channel, normalise_recipient(address)), (person, [], []))
                if ask.role not in roles:
                    roles.append(ask.role)
                if ask.rule is not None and all(a.rule != ask.rule for a in why):
                    why.append(ask)
    return found


def _ladder(rules: list[Ask]) -> dict[str, str] | None:
    """The payload's `ladder`: the rule(s) that asked for this message and why, for the audit."""
    if not rules:
        return None
    return {
        "rule": ",".join(a.rule for a in rules if a.rule),
        "why": "; ".join(a.why for a in rules if a.why) or None,
    }


def checkpoint_messages(
    directory: Directory,
    clock: Mapping[str, Any],
    cp: Mapping[str, Any],
    record: Mapping[str, Any],
    open_clocks: int,
    now: dt.datetime,
    instance_url: str,
    out: CheckpointDecisions,
    book: BreachBook | None = None,
    triage: dict[str, Any] | None = None,
) -> list[Message]:
    """The messages of one clock's due checkpoint, one per destination, held for working hours."""
    policy = directory.policy
    sla, cp_def = _checkpoint_def(policy, clock["sla_id"], cp["checkpoint"])
    where = f"{clock['sla_id']}/{clock['record_id']}/{cp['checkpoint']}"
    owner_id, team = cell_text(clock["owner_id"]), cell_text(clock["team"])
    breach = cp["checkpoint"] == "breach"
    critical = bool(clock["critical"])
    messages: list[Message] = []
    wanted = asks(sla, cp_def, clock, book)
    destinations = _destinations(directory, wanted, owner_id, team, sla.team, where, out)
    now_for: set[tuple[str, str]] = set()  # destinations that go at once (a text's fallback)
    for (channel, address), (person, roles, rules) in list(destinations.items()):
        if channel != SMS:
            continue
        del destinations[(channel, address)]
        if not text_now(
            policy, breach=breach, critical=critical, off_work=next_opening(policy, person, now) > now
        ):
            continue
        if not address.startswith(NO_PHONE):
            destinations[(channel, address)] = (person, roles, rules)
            now_for.add((channel, address))
            continue
        # No number: the text goes by the next channel, at once; the health digest lists the person.
        out.no_phone.append(f"{where}: {person.name} ({person.user_id})")
        fallback = next(
            ((c, normalise_recipient(a)) for c in ("email", "slack") if (a := person.address(c))), None
        )
        if fallback is not None:
            _, covered, why = destinations.setdefault(fallback, (person, [], []))
            covered.extend(r for r in roles if r not in covered)
            why.extend(a for a in rules if all(b.rule != a.rule for b in why))
            now_for.add(fallback)
    for (channel, address), (person, roles, rules) in destinations.items():
        urgent = (breach and critical) or (channel, address) in now_for
        not_before = now if urgent else max(now, next_opening(policy, person, now))
        payload = _alert_payload(
            directory, sla.name, clock, cp, record, person, roles, open_clocks, now, instance_url
        )
        if (ladder := _ladder(rules)) is not None:
            payload["ladder"] = ladder
        if triage is not None:
            payload["context"] = dict(triage)
        messages.append(
            Message(
                sla_id=str(clock["sla_id"]),
                record_id=str(clock["record_id"]),
                clock_start=cell_instant(clock["clock_start"]),
                checkpoint=str(cp["checkpoint"]),
                recipient=address,
                channel=channel,
                payload=payload,
                not_before=not_before,
            )
        )
    return messages


def _alert_payload(
    directory: Directory,
    sla_name: str,
    clock: Mapping[str, Any],
    cp: Mapping[str, Any],
    record: Mapping[str, Any],
    person: Person,
    roles: list[str],
    open_clocks: int,
    now: dt.datetime,
    instance_url: str,
) -> dict[str, Any]:
    """What the alert says (`leadsla.notify.payloads.AlertPayload`), as of this evaluation."""
    owner_id, team = cell_text(clock["owner_id"]), cell_text(clock["team"])
    owner = directory.user(owner_id, "owner")
    kind = "breach" if cp["checkpoint"] == "breach" else "warning"
    reached_at = cell_instant(cp["reached_at"])
    deadline = cell_instant(clock["deadline"]) if cell_text(clock["deadline"]) else reached_at
    # The clock's business time at `now` (never less than the checkpoint's own offset: a reached
    # checkpoint's elapsed time cannot have run backwards).
    elapsed = max(int(clock["elapsed_seconds"]), int(cp["offset_seconds"]))
    return {
        "kind": kind,
        "sla_name": sla_name,
        "checkpoint_label": None if kind == "breach" else f"{cp['checkpoint']} checkpoint",
        "lead": {
            "id": str(clock["record_id"]),
            "object_type": clock["object_type"],
            "name": cell_text(record.get("name")) or str(clock["record_id"]),
            "company": cell_text(record.get("company")),
            "source": cell_text(record.get("lead_source")),
            "tier": str(clock["tier"]),
        },
        "owner": {
            "id": owner_id,
            "name": owner.name if owner else (owner_id or "unassigned"),
            "email": owner.email if owner else None,
        },
        "recipient": {
            "name": person.name,
            "email": person.email,
            "timezone": person.timezone,
            "slack_fallback_channel": person.fallback_channel,
        },
        "roles": roles,
        "team": {"name": team or "unassigned", "timezone": directory.team_timezone(team)},
        # The situation as of this evaluation (`now`, the run's time), not as of the checkpoint:
        # a breach caught up four days late says "overdue by 4 days", not "by 1 min".
        "target_seconds": int(clock["target_seconds"]),
        "elapsed_seconds": elapsed,
        "remaining_seconds": int(clock["target_seconds"]) - elapsed,
        "evaluated_at": now.isoformat(),
        "deadline": deadline.isoformat(),
        "due_at": reached_at.isoformat(),
        "breached_at": deadline.isoformat() if kind == "breach" else None,
        "open_clocks": open_clocks,
        "instance_url": instance_url,
    }
