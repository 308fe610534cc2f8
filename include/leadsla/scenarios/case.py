"""What a scenario is, how one is run, and how its expectations are checked.

A `Scenario` is a name, a title in RevOps words and a function that, given a policy, tells the
story (`story.Story`) and says what the policy promises for it: a `Case` with the story's frames,
the instants it is looked at (`moments`; the last is `now`) and the expectations, a function
that checks a `Run` (the engine's evaluations at those instants, and the monitor's decisions)
against the promises. A policy that lacks what a scenario needs raises `terms.NotApplicable`.

Pure: no Airflow, no store, no network; every instant comes from the scenario (no wall clock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from leadsla import engine
from leadsla.decisions import monitor
from leadsla.decisions.keys import normalise_recipient
from leadsla.decisions.plan import CheckpointId, Message, Plan, QueueState
from leadsla.decisions.recipients import Directory
from leadsla.engine import Evaluation
from leadsla.policy import Policy
from leadsla.scenarios.story import Frames

#: Record links in the scenarios' messages.
INSTANCE_URL = "https://scenarios.example.my.salesforce.com"

Status = Literal["pass", "fail", "n/a"]


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario's verdict against one policy: pass, fail or n/a, and why."""

    name: str
    title: str
    status: Status
    detail: str


class Checks:
    """Expectations met and missed, in order; a scenario's notes say what it saw when it passes."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.notes: list[str] = []

    def equal(self, what: str, got: Any, expected: Any, show: Callable[[Any], str] = str) -> bool:
        """`got` should equal `expected` (missing values equal each other)."""
        same = (_missing(got) and _missing(expected)) or (
            not _missing(got) and not _missing(expected) and got == expected
        )
        if not same:
            self.failures.append(f"{what}: expected {show(expected)}, got {show(got)}")
        return same

    def same(self, what: str, got: set[tuple[str, str]], expected: set[tuple[str, str]]) -> bool:
        """`got` should hold exactly the (channel, address) pairs in `expected`."""
        missing, extra = sorted(expected - got), sorted(got - expected)
        if missing or extra:
            parts = [f"missing {', '.join(f'{c} {a}' for c, a in missing)}"] if missing else []
            parts += [f"unexpected {', '.join(f'{c} {a}' for c, a in extra)}"] if extra else []
            self.failures.append(f"{what}: {'; '.join(parts)}")
        return not (missing or extra)

    def that(self, what: str, ok: bool, got: str) -> bool:
        """A claim `what` should hold; `got` says what was seen instead."""
        if not ok:
            self.failures.append(f"{what}: got {got}")
        return ok

    def note(self, text: str) -> None:
        self.notes.append(text)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Case:
    """A scenario's story under one policy and what the policy promises for it."""

    frames: Frames
    moments: tuple[dt.datetime, ...]  # when the story is looked at, in order; the last is `now`
    expect: Callable[[Run, Checks], None]

    @property
    def now(self) -> dt.datetime:
        return self.moments[-1]


@dataclass(frozen=True)
class Scenario:
    """A named scenario: its title in RevOps words and how it builds its `Case` from a policy."""

    name: str
    title: str
    build: Callable[[Policy], Case] = field(repr=False)


def scenario(name: str, title: str) -> Callable[[Callable[[Policy], Case]], Scenario]:
    """Declare a scenario: the decorated function builds its case from a policy."""

    def wrap(build: Callable[[Policy], Case]) -> Scenario:
        return Scenario(name, title, build)

    return wrap


class Run:
    """A case run through the engine (`leadsla.engine.evaluate`) and the monitor's decision step
    (`leadsla.decisions.monitor.decide`), at the instants the case asks about."""

    def __init__(self, policy: Policy, case: Case) -> None:
        self.policy = policy
        self.case = case
        self._evaluations: dict[tuple, Evaluation] = {}

    def evaluation(self, at: dt.datetime | None = None, since: dt.datetime | None = None) -> Evaluation:
        """The engine's answer at `at` (default: the case's `now`)."""
        at = at or self.case.now
        key = (at, since)
        if key not in self._evaluations:
            self._evaluations[key] = engine.evaluate(
                **self.case.frames.engine_inputs(), policy=self.policy, now=at, since=since
            )
        return self._evaluations[key]

    def clocks(self, record_id: str, sla_id: str, at: dt.datetime | None = None) -> pd.DataFrame:
        """A record's clocks of one SLA at `at`, oldest first."""
        c = self.evaluation(at).clocks
        rows = c[(c["record_id"] == record_id) & (c["sla_id"] == sla_id)]
        return rows.sort_values("clock_start").reset_index(drop=True)

    def clock(self, record_id: str, sla_id: str, at: dt.datetime | None = None) -> pd.Series | None:
        """The record's one clock of the SLA (None when there is none; the last when several)."""
        rows = self.clocks(record_id, sla_id, at)
        return None if rows.empty else rows.iloc[-1]

    def checkpoints(
        self, record_id: str, sla_id: str, at: dt.datetime | None = None, since: dt.datetime | None = None
    ) -> pd.DataFrame:
        cps = self.evaluation(at, since).checkpoints
        return cps[(cps["record_id"] == record_id) & (cps["sla_id"] == sla_id)].sort_values("offset_seconds")

    def decide(self, at: dt.datetime | None = None, handled: Iterable[CheckpointId] = ()) -> Plan:
        """What the monitor decides at `at` (default: `now`), its outbox having handled `handled`.

        As `leadsla.tasks.monitor.run_monitor` does: every reached checkpoint of an open clock is
        a candidate (no `since`); the outbox's handled checkpoints say which were acted on.
        """
        at = at or self.case.now
        frames = self.case.frames
        return monitor.decide(
            self.evaluation(at),
            frames.records,
            Directory(self.policy, frames.users, frames.queues),
            QueueState(handled=frozenset(handled)),
            now=at,
            instance_url=INSTANCE_URL,
        )


def handled_by(plan: Plan) -> set[CheckpointId]:
    """The checkpoints a plan acted on or passed over, as a later run's outbox knows them."""
    return {(r.sla_id, r.record_id, r.clock_start, r.checkpoint) for r in [*plan.due, *plan.superseded]}


def messages_about(plan: Plan, record_id: str, sla_id: str, checkpoint: str | None = None) -> list[Message]:
    return [
        m
        for m in plan.messages
        if m.record_id == record_id
        and m.sla_id == sla_id
        and (checkpoint is None or m.checkpoint == checkpoint)
    ]


def destinations(messages: Iterable[Message]) -> set[tuple[str, str]]:
    """(channel, address) of messages, as the oracle (`terms.told`) spells them."""
    return {(m.channel, normalise_recipient(m.recipient)) for m in messages}
