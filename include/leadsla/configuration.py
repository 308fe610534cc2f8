"""Every configuration file checked together: lifecycle, SLA policy, quality, field mapping, reports.

Each file validates itself on load; this module checks what only the files together can say: a
status, rejection reason, field or SLA named in one file and missing from another is one problem
naming both places. `check_files` loads the files and returns every problem at once (nothing
half-applies); `org_problems` compares them with the org's describe() (fields and picklists).
`leadsla config check` runs both, crm_sync's daily mapping check runs the org part, and the
entry points refuse to start on a configuration with problems. Never writes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadsla.crm.mapping import CrmMapping, ObjectMapping, check_against_org
from leadsla.crm.mapping import load as load_mapping
from leadsla.crm.picklists import Picklists, picklist_drift
from leadsla.errors import LeadSlaError
from leadsla.lifecycle import Lifecycle, load_lifecycle
from leadsla.policy import Policy, Sla, TouchRule, load_policy
from leadsla.quality.rules import QualityRules
from leadsla.quality.rules import load as load_quality_rules
from leadsla.reports.config import ReportConfig, load_report_config


class ConfigurationError(LeadSlaError):
    """The configuration files disagree (or one is invalid); the message lists every problem."""


@dataclass(frozen=True)
class Configuration:
    """The whole configuration, loaded and checked together."""

    lifecycle: Lifecycle
    policy: Policy
    mapping: CrmMapping
    quality: QualityRules
    reports: ReportConfig


@dataclass
class ConfigCheck:
    """What `check_files` found: the configuration when every file loaded, and every problem."""

    configuration: Configuration | None
    problems: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.configuration is not None and not self.problems

    def raise_for_problems(self) -> Configuration:
        """The configuration, or ConfigurationError listing every problem."""
        if not self.ok:
            raise ConfigurationError(
                f"the configuration has {len(self.problems)} problem(s): " + "; ".join(self.problems)
            )
        assert self.configuration is not None
        return self.configuration


def check_files(
    *,
    policy: str | Path | None = None,
    lifecycle: str | Path | None = None,
    mapping: str | Path | None = None,
    quality: str | Path | None = None,
    reports: str | Path | None = None,
) -> ConfigCheck:
    """Load every file (defaults: the active ones) and check them against each other."""
    problems: list[str] = []

    def attempt(loader: Callable[[], Any]) -> Any:
        try:
            return loader()
        except LeadSlaError as exc:
            problems.append(str(exc))
            return None

    lc = attempt(lambda: load_lifecycle(lifecycle))
    pol = attempt(lambda: load_policy(policy)) if lc is not None else None
    crm = attempt(lambda: load_mapping(mapping))
    rules = attempt(lambda: load_quality_rules(quality, lifecycle=lc)) if lc is not None else None
    rep = attempt(lambda: load_report_config(reports))
    files = [
        str(x.source) if hasattr(x, "source") else str(getattr(x, "path", ""))
        for x in (lc, pol, crm)
        if x is not None
    ]
    if None in (lc, pol, crm, rules, rep):
        return ConfigCheck(None, problems, files)
    configuration = Configuration(lc, pol, crm, rules, rep)
    if pol.lifecycle_model.source != lc.source:
        problems.append(
            f"{pol.source}: names the lifecycle {pol.lifecycle_model.source}, but the active lifecycle is "
            f"{lc.source}: point both at one file"
        )
    problems += cross_problems(configuration)
    return ConfigCheck(configuration, problems, files)


def cross_problems(cfg: Configuration) -> list[str]:
    """What the files say about each other (each file already validated itself)."""
    return (
        _status_map_problems(cfg.lifecycle, cfg.mapping)
        + _lifecycle_field_problems(cfg.lifecycle, cfg.mapping)
        + _policy_field_problems(cfg.policy, cfg.mapping)
        + _report_problems(cfg.reports, cfg.policy, cfg.mapping)
    )


def org_problems(
    cfg: Configuration,
    describe_fields: Callable[[str], set[str]],
    describe_picklists: Callable[[str], Picklists],
) -> list[str]:
    """The configuration against the org: every mapped field exists, picklists match the lifecycle."""
    problems: list[str] = []
    try:
        check_against_org(cfg.mapping, describe_fields)
    except LeadSlaError as exc:
        problems.append(str(exc))
    return problems + picklist_drift(cfg.lifecycle, cfg.mapping, describe_picklists)


# --- the cross-file rules -----------------------------------------------------------------------


def _status_map_problems(lifecycle: Lifecycle, mapping: CrmMapping) -> list[str]:
    problems = []
    for name, values in mapping.status_map.items():
        lc = lifecycle.of(name)
        if lc is None:
            problems.append(
                f"{mapping.path}: status_map.{name}: {lifecycle.source} declares no {name} lifecycle "
                "to map to"
            )
            continue
        for org_value, status in values.items():
            if status not in lc.names:
                problems.append(
                    f"{mapping.path}: status_map.{name}.{org_value}: {status!r} is not a {name} status in "
                    f"{lifecycle.source} (expected one of {', '.join(lc.names)})"
                )
    return problems


def _fields_of(mapping: CrmMapping, object_name: str) -> set[str]:
    obj = mapping.objects.get(object_name)
    return set(obj.fields) if obj is not None else set()


def _history_of(mapping: CrmMapping, object_name: str) -> ObjectMapping | None:
    return next((o for o in mapping.objects.values() if o.parent == object_name), None)


def _lifecycle_field_problems(lifecycle: Lifecycle, mapping: CrmMapping) -> list[str]:
    problems = []
    for name, lc in lifecycle.objects.items():
        if name not in mapping.objects:
            problems.append(f"{lifecycle.source}: objects.{name}: {mapping.path} does not sync {name}")
            continue
        for what, fld in (("field", lc.field), ("reason_field", lc.reason_field)):
            if fld and fld not in _fields_of(mapping, name):
                problems.append(
                    f"{lifecycle.source}: objects.{name}.{what}: {fld!r} is not read by {mapping.path} "
                    f"(objects.{name}.fields)"
                )
    return problems


def _rule_fields(sla: Sla) -> list[tuple[str, str]]:
    """(where in the SLA, CRM field) for every record field a rule reads."""
    found = [("start", sla.start.field)]
    found += [(f"stop[{j}]", r.field) for j, r in enumerate(sla.stop) if r.field]
    found += [(f"pause[{j}]", r.field) for j, r in enumerate(sla.pause)]
    return found


def _policy_field_problems(policy: Policy, mapping: CrmMapping) -> list[str]:
    """Every field a rule reads is synced, with its history (a pause or stop that never sees its
    field change can never fire); a touch rule's options need the activity fields they read."""
    problems = []
    where_p, where_m = policy.source, mapping.path
    for i, sla in enumerate(policy.slas):
        fields = _fields_of(mapping, sla.object)
        history = _history_of(mapping, sla.object)
        tracked = set((history.filter or {}).get("Field", [])) if history is not None else set()
        for where, fld in _rule_fields(sla):
            if fld not in fields:
                problems.append(
                    f"{where_p}: slas[{i}].{where}: reads {sla.object}.{fld}, which {where_m} does not sync "
                    f"(objects.{sla.object}.fields)"
                )
            if history is None:
                problems.append(f"{where_p}: slas[{i}].{where}: {where_m} syncs no history of {sla.object}")
            elif history.filter.get("Field") is not None and fld not in tracked:
                problems.append(
                    f"{where_p}: slas[{i}].{where}: {sla.object}.{fld} changes are not synced: add it to "
                    f"{where_m} objects.{history.name}.filter.Field"
                )
        for j, stop in enumerate(sla.stop):
            if stop.touch_rule is not None:
                problems += _touch_problems(stop.touch_rule, f"{where_p}: slas[{i}].stop[{j}]", mapping)
    return problems


#: What each touch option reads, per activity object: (option in use?, Task field, Event field).
_TOUCH_FIELDS: list[tuple[str, Callable[[TouchRule], bool], str | None, str | None]] = [
    ("types", lambda t: bool(t.types), "Type", "Type"),
    ("subtypes", lambda t: bool(t.subtypes or t.exclude_subtypes), "TaskSubtype", "EventSubtype"),
    ("exclude_automation", lambda t: t.exclude_automation, "CreatedById", "CreatedById"),
    ("completed_only", lambda t: t.completed_only, "Status", None),
    ("completed_only", lambda t: t.completed_only, "CompletedDateTime", None),
    ("by", lambda t: True, "OwnerId", "OwnerId"),
]


def _touch_problems(touch: TouchRule, where: str, mapping: CrmMapping) -> list[str]:
    problems = []
    for kind in touch.kinds:
        if kind not in mapping.objects:
            problems.append(f"{where}.touch.kinds: {kind!r}: {mapping.path} does not sync {kind}")
            continue
        fields = _fields_of(mapping, kind)
        for option, used, task_field, event_field in _TOUCH_FIELDS:
            needed = task_field if kind == "Task" else event_field
            if needed and used(touch) and needed not in fields:
                problems.append(
                    f"{where}.touch.{option}: reads {kind}.{needed}, which {mapping.path} does not sync "
                    f"(objects.{kind}.fields)"
                )
    return problems


def _report_problems(reports: ReportConfig, policy: Policy, mapping: CrmMapping) -> list[str]:
    problems = []
    if reports.sla_id not in [s.id for s in policy.slas]:
        problems.append(
            f"reports.yaml: sla_id: {reports.sla_id!r} is not an SLA of {policy.source} "
            f"({', '.join(s.id for s in policy.slas)})"
        )
    if reports.campaign_field not in _fields_of(mapping, "Lead"):
        problems.append(
            f"reports.yaml: campaign_field: {reports.campaign_field!r} is not read by {mapping.path} "
            "(objects.Lead.fields)"
        )
    return problems
