"""Breach actions: to whom a breached lead moves, and how long it stays locked.

For each breached clock whose SLA reassigns or locks (policy `breach`), the first reassignment
rule that names an existing owner wins (``owner_manager``: the owner's active manager;
``team_manager``: the manager of the owner's team, else of the SLA's; ``queue:<name>``: that
queue). The lock runs `lock_hours` from the moment the lead is actually reassigned (so a manager
gets the whole time to decide, however late a catch-up escalation comes), in real hours or the
new owner's business hours: the escalation computes its end when it writes it
(`leadsla.escalation.breach`). Pure: no store, no CRM, no wall clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from leadsla.decisions.cells import cell_instant, cell_text
from leadsla.decisions.plan import BreachAction
from leadsla.decisions.recipients import Directory


def reassignment_target(
    directory: Directory,
    rules: Iterable[str],
    owner_id: str | None,
    team: str | None,
    sla_team: str | None = None,
) -> tuple[str, str] | None:
    """The first reassignment rule that names an existing owner: (rule, user or queue id)."""
    for rule in rules:
        if rule == "owner_manager":
            manager = directory.manager_of(owner_id)
            row = directory.users.get(str(manager)) if manager else None
            if row is not None and bool(row.get("is_active", True)):
                return rule, str(manager)
        elif rule == "team_manager":
            manager = directory.team_manager(team, sla_team)
            if manager:
                return rule, manager
        elif rule.startswith("queue:") and rule.split(":", 1)[1] in directory.queues:
            return rule, directory.queues[rule.split(":", 1)[1]]
    return None


def decide_breach_actions(breaches: Iterable[Mapping[str, Any]], directory: Directory) -> list[BreachAction]:
    """The breach action of each breached clock (a clock row) whose policy reassigns or locks."""
    actions: list[BreachAction] = []
    for clock in breaches:
        sla = directory.policy.sla(clock["sla_id"])
        if clock["object_type"] != "Lead" or not (sla.breach.reassign or sla.breach.lock_hours):
            continue
        owner_id, team = cell_text(clock["owner_id"]), cell_text(clock["team"])
        target = reassignment_target(directory, sla.breach.reassign, owner_id, team, sla.team)
        to_owner = target[1] if target else owner_id
        actions.append(
            BreachAction(
                sla_id=str(clock["sla_id"]),
                record_id=str(clock["record_id"]),
                clock_start=cell_instant(clock["clock_start"]),
                object_type=str(clock["object_type"]),
                from_owner=owner_id,
                to_owner=to_owner,
                rule=target[0] if target else None,
                lock_hours=float(sla.breach.lock_hours),
                lock_time=sla.breach.lock_time,
                lock_calendar=_owner_calendar(directory, to_owner, team),
                breached_at=cell_instant(clock["breached_at"]),
                tier=str(clock["tier"]),
            )
        )
    return actions


def _owner_calendar(directory: Directory, owner_id: str | None, fallback_team: str | None) -> str:
    """The calendar of the new owner's team (a queue or unknown user: the old owner's team's)."""
    row = directory.users.get(str(owner_id)) if owner_id else None
    team = cell_text(row.get("team")) if row is not None else fallback_team
    return directory.policy.team_calendar(team)
