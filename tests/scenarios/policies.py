"""The shipped policies the scenarios run against, and a way to write a deliberately wrong one."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import yaml

from leadsla.paths import config_dir
from leadsla.policy import Policy, load_policy, policy_from_dict
from leadsla.scenarios.case import ScenarioResult
from leadsla.scenarios.run import run_scenarios

#: Both shipped policies: the active tiered one and the flat "4 business hours" alternative.
SHIPPED = {"tiered": config_dir() / "sla_policy.yaml", "flat": config_dir() / "sla_policy.flat.yaml"}


def shipped(name: str) -> Policy:
    return load_policy(SHIPPED[name])


def edited(name: str, edit: Callable[[dict], None]) -> dict:
    """A shipped policy's YAML document, changed by `edit` (a copy)."""
    data = copy.deepcopy(yaml.safe_load(SHIPPED[name].read_text()))
    edit(data)
    return data


def edited_policy(name: str, edit: Callable[[dict], None]) -> Policy:
    return policy_from_dict(edited(name, edit), f"{name} (edited)")


def write_policy(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sales_touch(data: dict) -> dict:
    return next(sla for sla in data["slas"] if sla["id"] == "sales_touch")


def counts_any_activity_by_anyone(data: dict) -> None:
    """The wrong stop rule: any activity by anyone, automated or open, stops the clock."""
    sales_touch(data)["stop"] = [{"touch": {"by": "anyone", "exclude_subtypes": [], "completed_only": False}}]


def result(policy: Policy, name: str) -> ScenarioResult:
    (found,) = run_scenarios(policy, [name])
    return found
