"""The CRM field mapping (include/config/crm_fields.yaml): load, validate, check against describe().

A mapping is read once, validated whole, and either accepted or refused with one error naming the
file, the key, the value and what was expected; it never half-applies. `check_against_org`
compares it with the org's describe() and names every missing field. This module never calls a
CRM itself: the describe results are passed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadsla.crm.protocol import MappingError
from leadsla.decisions.stamping import BY_NAME as STAMP_FIELDS
from leadsla.paths import config_dir
from leadsla.yaml_file import read_yaml_file, shown_key

DEFAULT_PATH = config_dir() / "crm_fields.yaml"
#: The share of sync.daily_api_budget SLA stamping may spend when `stamping.budget_share` is absent.
DEFAULT_STAMP_BUDGET_SHARE = 0.10

#: Store tables the sync may write, with the columns each row must have and the column that
#: receives the object's own name (records.object_type, activities.kind).
TABLES: dict[str, dict[str, Any]] = {
    "records": {"key": ("record_id",), "required": ("record_id",), "name_column": "object_type"},
    "field_history": {
        "key": ("history_id",),
        "required": ("history_id", "record_id", "field", "changed_at"),
        "name_column": None,
    },
    "activities": {"key": ("activity_id",), "required": ("activity_id", "created_at"), "name_column": "kind"},
    "users": {"key": ("user_id",), "required": ("user_id",), "name_column": None},
    "queues": {"key": ("queue_id",), "required": ("queue_id", "name"), "name_column": None},
}
#: Columns the sync fills itself; the mapping may not target them.
_RESERVED = {"fields", "synced_at", "object_type", "kind"}
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")
_OBJECT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ObjectMapping:
    """How one sObject is read (SOQL fields, filter, modstamp) and where it lands (table, columns)."""

    name: str
    table: str
    modstamp: str
    fields: dict[str, str | None]  # SOQL field -> store column (None: raw JSON only)
    filter: dict[str, list[str]] = field(default_factory=dict)
    parent: str | None = None  # field_history.object_type for history objects

    @property
    def soql_fields(self) -> list[str]:
        return list(self.fields)

    @property
    def has_is_deleted(self) -> bool:
        return "IsDeleted" in self.fields


@dataclass(frozen=True)
class Group:
    name: str
    every_minutes: int
    objects: list[str]


@dataclass(frozen=True)
class StreamingSettings:
    """`sync.streaming`: hear CRM changes as Change Data Capture events (`crm.streaming`).

    With a healthy stream the minute runs skip their queries and the watermark query runs only as
    a safety net every `safety_net_minutes`; the stream is unhealthy when no keep-alive came for
    `keepalive_seconds` plus `stale_after_seconds`, and crm_sync polls every minute again.
    """

    enabled: bool = False
    safety_net_minutes: int = 15
    keepalive_seconds: int = 30
    stale_after_seconds: int = 60


@dataclass(frozen=True)
class CrmMapping:
    """The whole validated mapping file."""

    path: str
    digest: str  # sha256 of the canonical content: the describe check is cached against it
    overlap_minutes: int
    daily_api_budget: int
    describe_check_hours: int
    groups: dict[str, Group]
    objects: dict[str, ObjectMapping]
    status_map: dict[str, dict[str, str]]
    sla_fields: dict[str, str]
    stamp_budget_share: float = DEFAULT_STAMP_BUDGET_SHARE
    streaming: StreamingSettings = StreamingSettings()

    @property
    def stamp_fields(self) -> dict[str, str]:
        """The SLA fields sla_monitor stamps (`leadsla.decisions.stamping`) that this mapping names:
        logical name -> Lead API name. A stamp field left out of sla_fields is not stamped."""
        return {name: api for name, api in self.sla_fields.items() if name in STAMP_FIELDS}

    @property
    def stamp_budget(self) -> int:
        """API calls a UTC day SLA stamping may spend: its share of the daily budget."""
        return int(self.daily_api_budget * self.stamp_budget_share)

    def status_map_for(self, obj: ObjectMapping) -> dict[str, str] | None:
        """The picklist mapping for an object's statuses; a history object uses its parent's."""
        return self.status_map.get(obj.name) or (self.status_map.get(obj.parent) if obj.parent else None)

    def group_of(self, object_name: str) -> Group:
        for group in self.groups.values():
            if object_name in group.objects:
                return group
        raise KeyError(object_name)


def _fail(path: str, key: str, value: Any, expected: str) -> MappingError:
    return MappingError(f"{path}: {key}: got {value!r}, expected {expected}")


def _text_keys(tree: Any) -> Any:
    """`tree` with every mapping key as text (the digest's JSON sorts keys: 1 and "a" do not sort)."""
    if isinstance(tree, Mapping):
        return {str(k): _text_keys(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_text_keys(v) for v in tree]
    return tree


def _positive_int(path: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(path, key, value, "a whole number above 0")
    return value


def _mapping(path: str, key: str, value: Any) -> Mapping:
    if not isinstance(value, Mapping) or not value:
        raise _fail(path, key, value, "a non-empty mapping")
    return value


def active_path() -> Path:
    """The mapping this deployment syncs with: $LEADSLA_CRM_MAPPING, else include/config/crm_fields.yaml."""
    return Path(os.environ.get("LEADSLA_CRM_MAPPING") or DEFAULT_PATH)


def load(path: str | Path | None = None) -> CrmMapping:
    """Read and validate the mapping file (default: `active_path()`).

    Raises:
        MappingError: the file is missing, not YAML, or a key holds a value it must not.
    """
    file = Path(path) if path else active_path()
    return parse(read_yaml_file(file, MappingError, "the CRM field mapping"), str(file))


def parse(raw: Any, path: str = "<mapping>") -> CrmMapping:
    """Validate an already-parsed mapping document (see `load`)."""
    from leadsla.store import schema

    top = _mapping(path, "(top level)", raw)
    unknown = set(top) - {"version", "sync", "groups", "objects", "status_map", "sla_fields", "stamping"}
    if unknown:
        first = sorted(unknown, key=str)[0]
        raise _fail(
            path,
            shown_key(first),
            top[first],
            "no such key (known: version, sync, groups, objects, status_map, sla_fields, stamping)",
        )
    if top.get("version") != 1:
        raise _fail(path, "version", top.get("version"), "1")
    sync = _mapping(path, "sync", top.get("sync"))
    overlap = _positive_int(path, "sync.overlap_minutes", sync.get("overlap_minutes"))
    budget = _positive_int(path, "sync.daily_api_budget", sync.get("daily_api_budget"))
    check_hours = _positive_int(path, "sync.describe_check_hours", sync.get("describe_check_hours"))
    streaming = _streaming(path, sync.get("streaming"))

    objects: dict[str, ObjectMapping] = {}
    for name, spec in _mapping(path, "objects", top.get("objects")).items():
        objects[name] = _parse_object(path, name, spec, schema)

    groups: dict[str, Group] = {}
    seen: dict[str, str] = {}
    for gname, spec in _mapping(path, "groups", top.get("groups")).items():
        gname = shown_key(gname)
        spec = _mapping(path, f"groups.{gname}", spec)
        every = _positive_int(path, f"groups.{gname}.every_minutes", spec.get("every_minutes"))
        members = spec.get("objects")
        if not isinstance(members, list) or not members:
            raise _fail(path, f"groups.{gname}.objects", members, "a non-empty list of object names")
        for obj in members:
            if not isinstance(obj, str) or obj not in objects:
                raise _fail(
                    path,
                    f"groups.{gname}.objects",
                    obj,
                    f"an object defined under objects ({', '.join(objects)})",
                )
            if obj in seen:
                raise _fail(
                    path,
                    f"groups.{gname}.objects",
                    obj,
                    f"each object in one group only (already in {seen[obj]})",
                )
            seen[obj] = gname
        groups[gname] = Group(gname, every, list(members))
    ungrouped = [o for o in objects if o not in seen]
    if ungrouped:
        raise _fail(path, "groups", ungrouped[0], "every object under objects to be listed in a group")

    status_map: dict[str, dict[str, str]] = {}
    listed = top.get("status_map") or {}
    if not isinstance(listed, Mapping):
        raise _fail(path, "status_map", listed, "a mapping of object -> CRM status -> stage")
    for obj, values in listed.items():
        if not isinstance(obj, str) or obj not in objects:
            raise _fail(path, f"status_map.{shown_key(obj)}", obj, "an object defined under objects")
        values = _mapping(path, f"status_map.{obj}", values)
        for k, v in values.items():
            if not isinstance(k, str) or not isinstance(v, str) or not v.strip():
                raise _fail(path, f"status_map.{obj}.{shown_key(k)}", v, "a stage name (text)")
        status_map[obj] = dict(values)

    sla_fields = dict(_mapping(path, "sla_fields", top.get("sla_fields")))
    lead = objects.get("Lead")
    for logical, api in sla_fields.items():
        if not isinstance(api, str) or lead is None or api not in lead.fields:
            raise _fail(
                path, f"sla_fields.{shown_key(logical)}", api, "a Lead field listed under objects.Lead.fields"
            )
    share = _stamp_budget_share(path, top.get("stamping"))

    canonical = json.dumps(_text_keys(raw), sort_keys=True, default=str).encode()
    return CrmMapping(
        path=path,
        digest=hashlib.sha256(canonical).hexdigest(),
        overlap_minutes=overlap,
        daily_api_budget=budget,
        describe_check_hours=check_hours,
        groups=groups,
        objects=objects,
        status_map=status_map,
        sla_fields=sla_fields,
        stamp_budget_share=share,
        streaming=streaming,
    )


def _streaming(path: str, section: Any) -> StreamingSettings:
    """`sync.streaming` (absent: off)."""
    if section is None:
        return StreamingSettings()
    known = {"enabled", "safety_net_minutes", "keepalive_seconds", "stale_after_seconds"}
    if not isinstance(section, Mapping) or set(section) - known:
        raise _fail(path, "sync.streaming", section, f"a mapping with {', '.join(sorted(known))}")
    enabled = section.get("enabled", False)
    if not isinstance(enabled, bool):
        raise _fail(path, "sync.streaming.enabled", enabled, "true or false")
    defaults = StreamingSettings()
    numbers = {
        k: _positive_int(path, f"sync.streaming.{k}", section.get(k, getattr(defaults, k)))
        for k in known - {"enabled"}
    }
    return StreamingSettings(enabled=enabled, **numbers)


def _stamp_budget_share(path: str, section: Any) -> float:
    """`stamping.budget_share`: the share of the daily API budget SLA stamping may spend."""
    if section is None:
        return DEFAULT_STAMP_BUDGET_SHARE
    if not isinstance(section, Mapping) or set(section) - {"budget_share"}:
        raise _fail(path, "stamping", section, "a mapping with budget_share (e.g. {budget_share: 0.10})")
    share = section.get("budget_share", DEFAULT_STAMP_BUDGET_SHARE)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise _fail(
            path, "stamping.budget_share", share, "a share of the daily API budget above 0, at most 1"
        )
    return float(share)


def _parse_object(path: str, name: str, spec: Any, schema: Any) -> ObjectMapping:
    where = f"objects.{name}"
    if not _OBJECT_RE.match(str(name)):
        raise _fail(path, where, name, "an sObject API name (letters, digits, underscores)")
    spec = _mapping(path, where, spec)
    unknown = set(spec) - {"table", "modstamp", "fields", "filter", "parent"}
    if unknown:
        key = sorted(unknown, key=str)[0]
        raise _fail(
            path,
            f"{where}.{shown_key(key)}",
            spec[key],
            "no such key (known: table, modstamp, fields, filter, parent)",
        )
    table = spec.get("table")
    if not isinstance(table, str) or table not in TABLES:
        raise _fail(path, f"{where}.table", table, f"one of {', '.join(TABLES)}")
    columns = set(schema.metadata.tables[table].columns.keys()) - _RESERVED
    fields = _mapping(path, f"{where}.fields", spec.get("fields"))
    for soql, column in fields.items():
        if not isinstance(soql, str) or not _FIELD_RE.match(soql):
            raise _fail(path, f"{where}.fields", soql, "a field API name such as Status or Owner.Email")
        if column is not None and (not isinstance(column, str) or column not in columns):
            raise _fail(
                path,
                f"{where}.fields.{soql}",
                column,
                f"null or a column of {table}: {', '.join(sorted(columns))}",
            )
    targets = [c for c in fields.values() if c]
    dupes = {c for c in targets if targets.count(c) > 1}
    if dupes:
        raise _fail(path, f"{where}.fields", sorted(dupes)[0], "each store column mapped from one field only")
    missing = [c for c in TABLES[table]["required"] if c not in targets]
    if missing:
        raise _fail(path, f"{where}.fields", None, f"a field mapped to {table}.{missing[0]}")
    modstamp = spec.get("modstamp")
    if not isinstance(modstamp, str) or modstamp not in fields:
        raise _fail(
            path,
            f"{where}.modstamp",
            modstamp,
            "a datetime field listed under fields (SystemModstamp or CreatedDate)",
        )
    filt = spec.get("filter") or {}
    if not isinstance(filt, Mapping):
        raise _fail(path, f"{where}.filter", filt, "a mapping of field -> list of values")
    for fname, values in filt.items():
        if not isinstance(fname, str) or not _OBJECT_RE.match(fname):
            raise _fail(path, f"{where}.filter", fname, "a field API name")
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise _fail(path, f"{where}.filter.{fname}", values, "a non-empty list of text values")
    parent = spec.get("parent")
    if table == "field_history" and not isinstance(parent, str):
        raise _fail(
            path, f"{where}.parent", parent, "the parent object's name (e.g. Lead) for a history object"
        )
    return ObjectMapping(
        name=name,
        table=table,
        modstamp=modstamp,
        fields=dict(fields),
        filter={k: list(v) for k, v in filt.items()},
        parent=parent,
    )


def optional_fields(mapping: CrmMapping) -> set[str]:
    """Lead fields the org may lack: the stamp fields only the raw JSON keeps (mapped to null).

    Without one, its stamping stops and the sync reads the Lead without it; every other mapped
    field must exist.
    """
    lead = mapping.objects.get("Lead")
    if lead is None:
        return set()
    return {api for api in mapping.stamp_fields.values() if api in lead.fields and lead.fields[api] is None}


def check_against_org(mapping: CrmMapping, describe_fields: Callable[[str], set[str]]) -> list[str]:
    """Check every mapped and filtered field exists in the org (one describe per object).

    Relationship paths (UserRole.Name) are checked on their first hop's Id field (UserRoleId).

    Returns:
        The optional Lead fields (`optional_fields`) the org lacks: the sync leaves them out and
        their stamping stops.

    Raises:
        MappingError: naming each missing object.field, one error for all of them.
    """
    missing: list[str] = []
    optional = optional_fields(mapping)
    lacking: list[str] = []
    for obj in mapping.objects.values():
        available = {f.lower() for f in describe_fields(obj.name)}
        for name in list(obj.fields) + list(obj.filter):
            probe = name.split(".")[0] + "Id" if "." in name else name
            if probe.lower() in available:
                continue
            if obj.name == "Lead" and name in optional:
                lacking.append(name)
            else:
                missing.append(f"{obj.name}.{name}")
    if missing:
        raise MappingError(
            f"{mapping.path}: the org has no field {', '.join(missing)}: fix the mapping or create "
            "the field in Salesforce (mapped fields must exist before the sync can run)"
        )
    return lacking
