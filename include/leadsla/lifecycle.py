"""The record lifecycle as data: each object's statuses in order, and what each one means.

Declared once in include/config/lifecycle.yaml (`$LEADSLA_LIFECYCLE_PATH` names another file).
The policy's start/stop/pause rules, the data-quality checks, the field mapping's status_map, the
reports' funnel and the sandbox's picklists read it or are checked against it, so no status or
rejection reason is spelled by hand in a second place. Loading is all-or-nothing and names the
key, the value and what was expected. Pure: no store, no Airflow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from leadsla.errors import LeadSlaError
from leadsla.paths import config_dir
from leadsla.yaml_file import read_yaml_file, shown_key

DEFAULT_LIFECYCLE_PATH = config_dir() / "lifecycle.yaml"
STAGES = ("open", "paused", "closed")
FUNNEL = ("MQL", "SAL", "SQL", "Opportunity", "rejected")
#: How many signed-off rejection reasons a lifecycle with rejecting statuses declares: few enough
#: that reps pick one honestly, enough to say why. The seeds' 5 to 7 people choose from, plus the
#: recycling rule's "No Response" (docs/decisions/2026-12-06-recycling.md).
MIN_REASONS, MAX_REASONS = 5, 8

Stage = Literal["open", "paused", "closed"]


class LifecycleError(LeadSlaError):
    """The lifecycle file is missing or invalid; nothing from it was applied."""


@dataclass(frozen=True)
class Status:
    """One status of an object's lifecycle field."""

    name: str
    stage: Stage
    worked: bool = False
    reason_required: bool = False
    funnel: str | None = None


@dataclass(frozen=True)
class ObjectLifecycle:
    """One object's statuses (in funnel order) on its lifecycle field, and its rejection reasons."""

    object: str
    field: str
    statuses: tuple[Status, ...]
    reason_field: str | None = None
    rejection_reasons: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.statuses]

    def status(self, name: str) -> Status | None:
        return next((s for s in self.statuses if s.name == name), None)

    def in_stage(self, stage: Stage) -> list[str]:
        return [s.name for s in self.statuses if s.stage == stage]

    @property
    def paused(self) -> list[str]:
        return self.in_stage("paused")

    @property
    def requiring_reason(self) -> list[str]:
        return [s.name for s in self.statuses if s.reason_required]

    @property
    def worked(self) -> list[str]:
        return [s.name for s in self.statuses if s.worked]

    def funnel_stages(self) -> dict[str, str]:
        """status -> the funnel stage the reports count it in (statuses with none left out)."""
        return {s.name: s.funnel for s in self.statuses if s.funnel}


@dataclass(frozen=True)
class Lifecycle:
    """Every object's lifecycle, from one file."""

    version: int
    objects: dict[str, ObjectLifecycle]
    source: str

    def of(self, object_type: str) -> ObjectLifecycle | None:
        return self.objects.get(object_type)

    def lead(self) -> ObjectLifecycle:
        found = self.of("Lead")
        if found is None:
            raise LifecycleError(f"{self.source}: objects.Lead: missing: the Lead lifecycle is required")
        return found


def active_lifecycle_path() -> Path:
    """$LEADSLA_LIFECYCLE_PATH, else the shipped include/config/lifecycle.yaml."""
    return Path(os.environ.get("LEADSLA_LIFECYCLE_PATH") or DEFAULT_LIFECYCLE_PATH)


def load_lifecycle(path: str | Path | None = None) -> Lifecycle:
    """Read and validate a lifecycle file (default: `active_lifecycle_path()`).

    Raises:
        LifecycleError: the file is missing, not YAML, or invalid (every problem named at once).
    """
    file = Path(path) if path is not None else active_lifecycle_path()
    return lifecycle_from_dict(read_yaml_file(file, LifecycleError, "the lifecycle"), str(file))


def lifecycle_from_dict(raw: Any, source: str = "lifecycle") -> Lifecycle:
    """Validate a parsed lifecycle (see include/config/lifecycle.yaml for the shape).

    Raises:
        LifecycleError: naming every bad key with its value and what was expected.
    """
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise LifecycleError(f"{source}: invalid lifecycle: (top level): {raw!r}: expected a mapping")
    unknown = set(raw) - {"version", "objects"}
    if unknown:
        problems.append(f"{sorted(map(shown_key, unknown))[0]}: unknown key: remove it or check its spelling")
    version = raw.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        problems.append(f"version: {version!r}: expected a whole number")
    objects_raw = raw.get("objects")
    objects: dict[str, ObjectLifecycle] = {}
    if not isinstance(objects_raw, dict) or not objects_raw:
        problems.append(f"objects: {objects_raw!r}: expected a mapping of object name -> lifecycle")
    else:
        for name, spec in objects_raw.items():
            found = _object(shown_key(name), spec, problems)
            if found is not None:
                objects[str(name)] = found
    if problems:
        raise LifecycleError(f"{source}: invalid lifecycle: " + "; ".join(problems))
    return Lifecycle(version=int(version), objects=objects, source=source)


def _object(name: str, spec: Any, problems: list[str]) -> ObjectLifecycle | None:
    where = f"objects.{name}"
    if not isinstance(spec, dict):
        problems.append(f"{where}: {spec!r}: expected a mapping with field and statuses")
        return None
    unknown = set(spec) - {"field", "statuses", "reason_field", "rejection_reasons"}
    for key in sorted(map(shown_key, unknown)):
        problems.append(f"{where}.{key}: unknown key: remove it or check its spelling")
    field = spec.get("field")
    if not isinstance(field, str) or not field:
        problems.append(f"{where}.field: {field!r}: expected the CRM field that holds the status")
    listed = spec.get("statuses") or []
    statuses = [
        _status(f"{where}.statuses[{i}]", s, problems)
        for i, s in enumerate(listed if isinstance(listed, list) else [])
    ]
    statuses = [s for s in statuses if s is not None]
    if not statuses:
        problems.append(f"{where}.statuses: {spec.get('statuses')!r}: expected a list of statuses")
    seen: set[str] = set()
    for status in statuses:
        if status.name in seen:
            problems.append(f"{where}.statuses: {status.name!r}: listed twice")
        seen.add(status.name)
    reasons = spec.get("rejection_reasons") or []
    if not isinstance(reasons, list) or not all(isinstance(r, str) and r.strip() for r in reasons):
        problems.append(f"{where}.rejection_reasons: {reasons!r}: expected a list of reasons")
        reasons = []
    if len(set(reasons)) != len(reasons):
        problems.append(f"{where}.rejection_reasons: {reasons!r}: a reason is listed twice")
    needs_reason = [s.name for s in statuses if s.reason_required]
    if needs_reason and not MIN_REASONS <= len(reasons) <= MAX_REASONS:
        problems.append(
            f"{where}.rejection_reasons: {reasons!r}: expected {MIN_REASONS} to {MAX_REASONS} signed-off "
            f"reasons (statuses {', '.join(needs_reason)} require one)"
        )
    reason_field = spec.get("reason_field")
    if reason_field is not None and not isinstance(reason_field, str):
        problems.append(
            f"{where}.reason_field: {reason_field!r}: expected the CRM field that holds the reason"
        )
        reason_field = None
    if needs_reason and not reason_field:
        problems.append(f"{where}.reason_field: missing: statuses {', '.join(needs_reason)} require a reason")
    if not isinstance(field, str) or not field or not statuses:
        return None
    return ObjectLifecycle(name, field, tuple(statuses), reason_field, tuple(reasons))


def _status(where: str, spec: Any, problems: list[str]) -> Status | None:
    if not isinstance(spec, dict):
        problems.append(f"{where}: {spec!r}: expected {{name: ..., stage: open|paused|closed}}")
        return None
    unknown = set(spec) - {"name", "stage", "worked", "reason_required", "funnel"}
    for key in sorted(map(shown_key, unknown)):
        problems.append(f"{where}.{key}: unknown key: remove it or check its spelling")
    name, stage, funnel = spec.get("name"), spec.get("stage"), spec.get("funnel")
    ok = True
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}.name: {name!r}: expected the status as the lifecycle names it")
        ok = False
    if not isinstance(stage, str) or stage not in STAGES:
        problems.append(f"{where}.stage: {stage!r}: expected one of {', '.join(STAGES)}")
        ok = False
    if funnel is not None and (not isinstance(funnel, str) or funnel not in FUNNEL):
        problems.append(f"{where}.funnel: {funnel!r}: expected one of {', '.join(FUNNEL)}")
        ok = False
    for flag in ("worked", "reason_required"):
        if not isinstance(spec.get(flag, False), bool):
            problems.append(f"{where}.{flag}: {spec.get(flag)!r}: expected true or false")
            ok = False
    if not ok:
        return None
    return Status(
        name=name,
        stage=stage,
        worked=spec.get("worked", False),
        reason_required=spec.get("reason_required", False),
        funnel=funnel,
    )
