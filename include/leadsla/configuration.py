"""Every configuration file checked together: lifecycle, SLA policy, quality, field mapping, reports.

Each file validates itself on load; this module checks what only the files together can say: a
status, rejection reason, field or SLA named in one file and missing from another is one problem
naming both places. `check_files` loads the files and returns every problem at once, one line per
disagreement (nothing half-applies); `org_problems` compares them with the org's describe()
(fields and picklists). `leadsla config check` runs both, crm_sync's daily mapping check runs the
picklist part, and the entry points (`leadsla.tasks.configuration`) refuse to start on a
configuration with problems, or keep running on the last one accepted.

A configuration that passed is remembered in the store as a snapshot of the files' texts
(`config_snapshots`, written only here by `remember`), so a running deployment can go on with it
(`load_snapshot`) while a later edit is refused. Nothing else here writes anything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from leadsla.crm.mapping import CrmMapping, ObjectMapping, check_against_org
from leadsla.crm.mapping import active_path as active_mapping_path
from leadsla.crm.mapping import load as load_mapping
from leadsla.crm.picklists import Picklists, picklist_drift
from leadsla.decisions.context import ContextFields
from leadsla.decisions.plan import Notice
from leadsla.errors import LeadSlaError
from leadsla.lifecycle import Lifecycle, active_lifecycle_path, load_lifecycle
from leadsla.paths import config_dir
from leadsla.policy import Policy, Sla, TouchRule, active_policy_path, load_policy
from leadsla.quality.rules import QualityRules
from leadsla.quality.rules import load as load_quality_rules
from leadsla.reports.config import ReportConfig, Revenue, load_report_config
from leadsla.store import schema
from leadsla.store.audit import AuditContext

#: The configuration's files, in the order they load: role -> the file's name in a snapshot folder.
FILES = {
    "lifecycle": "lifecycle.yaml",
    "policy": "sla_policy.yaml",
    "mapping": "crm_fields.yaml",
    "quality": "quality.yaml",
    "reports": "reports.yaml",
}


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
        """The configuration, or ConfigurationError listing every problem (one line each)."""
        if not self.ok:
            raise ConfigurationError(problems_message(self.problems))
        assert self.configuration is not None
        return self.configuration


def alert_context(policy: Policy, reports: ReportConfig | None) -> ContextFields:
    """Where alerts find their triage context (`leadsla.decisions.context`): the routing score
    field (else ``Lead_Score__c``), the reports' campaign field and expected deal value (their
    defaults when no reports.yaml is at hand)."""
    score = policy.routing.score.field if policy.routing and policy.routing.score else "Lead_Score__c"
    if reports is None:
        return ContextFields(
            score_field=score,
            campaign_field=ReportConfig.model_fields["campaign_field"].default,
            deal_value=Revenue().deal_value,
        )
    return ContextFields(
        score_field=score, campaign_field=reports.campaign_field, deal_value=reports.revenue.deal_value
    )


def problems_message(problems: list[str]) -> str:
    """The problems as one message: how many, then one line per problem."""
    return f"the configuration has {len(problems)} problem(s):\n" + "\n".join(f"- {p}" for p in problems)


@dataclass(frozen=True)
class ConfigFiles:
    """The configuration's files as read now: each role's path and text (None: unreadable)."""

    paths: dict[str, str]
    texts: dict[str, str | None]

    @property
    def digest(self) -> str:
        """SHA-256 of the texts: the configuration's identity (a snapshot's, a refused version's)."""
        canonical = json.dumps([[role, self.texts.get(role)] for role in FILES], ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def active_paths(**given: str | Path | None) -> dict[str, Path]:
    """Each file's path: the one given, else the active one (the same rule every loader applies:
    $LEADSLA_LIFECYCLE_PATH, $LEADSLA_POLICY_PATH, $LEADSLA_CRM_MAPPING, include/config/)."""
    defaults = {
        "lifecycle": active_lifecycle_path,
        "policy": active_policy_path,
        "mapping": active_mapping_path,
        "quality": lambda: config_dir() / "quality.yaml",
        "reports": lambda: config_dir() / "reports.yaml",
    }
    unknown = set(given) - set(FILES)
    if unknown:
        raise TypeError(f"unknown configuration file role(s): {sorted(unknown)}")
    return {role: Path(given[role]) if given.get(role) else defaults[role]() for role in FILES}


def read_files(**given: str | Path | None) -> ConfigFiles:
    """The texts of the files `check_files` would check (see `active_paths`)."""
    paths = active_paths(**given)
    texts: dict[str, str | None] = {}
    for role, path in paths.items():
        try:
            texts[role] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            texts[role] = None  # the loader names the problem
    return ConfigFiles({role: str(path) for role, path in paths.items()}, texts)


def check_files(
    *,
    policy: str | Path | None = None,
    lifecycle: str | Path | None = None,
    mapping: str | Path | None = None,
    quality: str | Path | None = None,
    reports: str | Path | None = None,
) -> ConfigCheck:
    """Load every file (defaults: the active ones) and check them against each other."""
    paths = active_paths(
        policy=policy, lifecycle=lifecycle, mapping=mapping, quality=quality, reports=reports
    )
    return _check(paths, policy_names_lifecycle=True)


def _check(paths: Mapping[str, Path], *, policy_names_lifecycle: bool) -> ConfigCheck:
    problems: list[str] = []

    def attempt(loader: Callable[[], Any]) -> Any:
        try:
            return loader()
        except LeadSlaError as exc:
            problems.extend(each_problem(exc))
            return None

    lc = attempt(lambda: load_lifecycle(paths["lifecycle"]))
    # The policy is checked against this lifecycle, the one every other file is checked against.
    pol = attempt(lambda: load_policy(paths["policy"], lifecycle=lc)) if lc is not None else None
    crm = attempt(lambda: load_mapping(paths["mapping"]))
    rules = attempt(lambda: load_quality_rules(paths["quality"], lifecycle=lc)) if lc is not None else None
    rep = attempt(lambda: load_report_config(paths["reports"]))
    files = [str(paths[role]) for role in FILES]
    if policy_names_lifecycle and pol is not None and pol.lifecycle is not None:
        named = Path(pol.lifecycle)
        named = named if named.is_absolute() else paths["policy"].parent / named
        if named.resolve() != paths["lifecycle"].resolve():
            problems.append(
                f"{pol.source}: lifecycle: names {named}, but the active lifecycle is {lc.source}: point "
                "both at one file"
            )
    # What the files that did load say about each other: every disagreement at once, even when
    # another file is invalid.
    problems += _cross_problems(lc, pol, crm, rep)
    if None in (lc, pol, crm, rules, rep):
        return ConfigCheck(None, problems, files)
    return ConfigCheck(Configuration(lc, pol, crm, rules, rep), problems, files)


def each_problem(exc: LeadSlaError) -> list[str]:
    """One line per problem of a loader's error, each naming the file.

    The policy and lifecycle loaders join every problem of a file into one message
    (``FILE: invalid SLA policy: a; b``); a configuration check reports one line per disagreement.
    """
    message = str(exc)
    for marker in (": invalid SLA policy: ", ": invalid lifecycle: "):
        head, found, tail = message.partition(marker)
        if found:
            return [f"{head}: {part}" for part in tail.split("; ") if part]
    return [message]


def cross_problems(cfg: Configuration) -> list[str]:
    """What the files say about each other (each file already validated itself)."""
    return _cross_problems(cfg.lifecycle, cfg.policy, cfg.mapping, cfg.reports)


def _cross_problems(
    lifecycle: Lifecycle | None,
    policy: Policy | None,
    mapping: CrmMapping | None,
    reports: ReportConfig | None,
) -> list[str]:
    """Every cross-file rule whose files loaded."""
    problems: list[str] = []
    if lifecycle is not None and mapping is not None:
        problems += _status_map_problems(lifecycle, mapping) + _lifecycle_field_problems(lifecycle, mapping)
    if policy is not None and mapping is not None:
        problems += _policy_field_problems(policy, mapping)
    if reports is not None:
        problems += _report_problems(reports, policy, mapping)
    return problems


def org_problems(
    cfg: Configuration,
    describe_fields: Callable[[str], set[str]],
    describe_picklists: Callable[[str], Picklists],
) -> list[str]:
    """The configuration against the org: every mapped field exists (a stamp field the org lacks is
    a problem too, though the sync runs without it), picklists match the lifecycle."""
    problems: list[str] = []
    try:
        lacking = check_against_org(cfg.mapping, describe_fields)
    except LeadSlaError as exc:
        problems.append(str(exc))
        lacking = []
    problems += [
        f"{cfg.mapping.path}: the org has no field Lead.{api}: its SLA stamping stops (the sync and the "
        "other SLA fields go on)"
        for api in lacking
    ]
    return problems + picklist_drift(cfg.lifecycle, cfg.mapping, describe_picklists)


# --- the last good configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A configuration that passed the check when an entry point started, as stored."""

    snapshot_id: int
    digest: str
    files: ConfigFiles
    accepted_at: dt.datetime
    run_id: str | None = None


def latest_digest(conn: sa.Connection) -> str | None:
    """The digest of the configuration accepted last (None: none ever was)."""
    snaps = schema.config_snapshots
    return conn.execute(
        sa.select(snaps.c.digest).order_by(snaps.c.snapshot_id.desc()).limit(1)
    ).scalar_one_or_none()


def latest_snapshot(conn: sa.Connection) -> Snapshot | None:
    """The configuration accepted last, with its files' texts (None: none ever was)."""
    snaps = schema.config_snapshots
    row = conn.execute(sa.select(snaps).order_by(snaps.c.snapshot_id.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    stored = row["files"]
    files = ConfigFiles(
        {role: stored[role]["path"] for role in FILES}, {role: stored[role]["text"] for role in FILES}
    )
    return Snapshot(row["snapshot_id"], row["digest"], files, row["accepted_at"], row["run_id"])


def remember(conn: sa.Connection, files: ConfigFiles, *, at: dt.datetime, context: AuditContext) -> bool:
    """Store `files` as the last good configuration unless it already is; True when stored now.

    Call only with files that passed `check_files`. The same version accepted again after another
    one is stored again (the latest row is the one in force).
    """
    digest = files.digest
    if latest_digest(conn) == digest:
        return False
    conn.execute(
        schema.config_snapshots.insert().values(
            digest=digest,
            files={role: {"path": files.paths[role], "text": files.texts[role]} for role in FILES},
            accepted_at=at,
            dag_id=context.dag_id,
            run_id=context.run_id,
            task_id=context.task_id,
            try_number=context.try_number,
        )
    )
    return True


def load_snapshot(snapshot: Snapshot) -> Configuration:
    """The snapshot's configuration, loaded from its texts (written to a temporary folder under the
    files' usual names and loaded with explicit paths: the policy against the snapshot's lifecycle).

    Raises:
        ConfigurationError: the snapshot no longer loads (this code's validation changed since).
    """
    with tempfile.TemporaryDirectory(prefix=f"leadsla-config-{snapshot.digest[:12]}-") as folder:
        paths = {role: Path(folder) / name for role, name in FILES.items()}
        for role, path in paths.items():
            path.write_text(snapshot.files.texts[role] or "", encoding="utf-8")
        check = _check(paths, policy_names_lifecycle=False)
    if not check.ok:
        raise ConfigurationError(
            f"the last good configuration ({snapshot.digest[:12]}, accepted "
            f"{snapshot.accepted_at:%Y-%m-%d %H:%M} UTC) no longer loads: " + problems_message(check.problems)
        )
    assert check.configuration is not None
    return check.configuration


def refused_notice(files: ConfigFiles, problems: list[str], kept: Snapshot, channel: str) -> Notice:
    """Data engineering's notice that an edit of the configuration was refused, naming every problem.

    Keyed on the refused version's digest and the snapshot kept in force, so every task run that
    meets the same bad version plans the same notice and the outbox queues it once.
    """
    return Notice(
        source="configuration",
        subject=files.digest[:16],
        opened_at=kept.accepted_at,
        checkpoint="refused",
        recipients=(("slack", channel),),
        title=f"Configuration edit refused: {len(problems)} problem(s); running on the last good one",
        severity="critical",
        lines=tuple(problems),
        intro=(
            f"The configuration files were edited ({files.digest[:12]}) and no longer agree, so the edit "
            "was not applied: every pipeline keeps running on the last good configuration, accepted "
            f"{kept.accepted_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC ({kept.digest[:12]}), until they "
            "agree again. Fix each line below; `leadsla config check` lists what is left."
        ),
    )


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
    field change can never fire), and is not one sla_monitor stamps (a clock following our own
    stamps would loop); a touch rule's options need the activity fields they read."""
    problems = []
    where_p, where_m = policy.source, mapping.path
    stamped = {api: name for name, api in mapping.stamp_fields.items()}
    for i, sla in enumerate(policy.slas):
        for where, fld in _rule_fields(sla):
            if sla.object == "Lead" and fld in stamped:
                problems.append(
                    f"{where_p}: slas[{i}].{where}: reads Lead.{fld}, which sla_monitor stamps itself "
                    f"({where_m} sla_fields.{stamped[fld]}): a clock must never follow its own stamps"
                )
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
    problems += _escalation_field_problems(policy, mapping)
    if policy.routing is not None:
        problems += _routing_field_problems(policy, mapping)
    if policy.recycle is not None:
        problems += _recycle_field_problems(policy, mapping)
    return problems


#: What a breach action writes on a Lead (crm_fields.yaml sla_fields): the owner, the lock, and the
#: action id a retry after a crash recognises its own write by (`leadsla.escalation.own_writes`).
ESCALATION_STAMPS = ("owner", "sla_lock_until", "sla_action_id")


def _escalation_field_problems(policy: Policy, mapping: CrmMapping) -> list[str]:
    """A policy that reassigns or locks breached leads needs the fields escalation writes named."""
    escalating = [
        i
        for i, sla in enumerate(policy.slas)
        if sla.object == "Lead" and (sla.breach.reassign or sla.breach.lock_hours)
    ]
    if not escalating:
        return []
    return [
        f"{policy.source}: slas[{escalating[0]}].breach: writes {name!r} on the lead, which "
        f"{mapping.path} does not name (sla_fields)"
        for name in ESCALATION_STAMPS
        if name not in mapping.sla_fields
    ]


#: What routing reads and writes besides its rules' fields: (object, field, why).
_ROUTING_FIELDS = [
    ("Lead", "Company", "suppression and duplicates match on it"),
    ("Lead", "Email", "suppression and duplicates match on it"),
    ("Account", "Website", "suppression matches a lead's e-mail domain on it"),
    ("Opportunity", "AccountId", "an account with an open opportunity keeps its leads"),
]
#: The fields routing stamps beside the owner (crm_fields.yaml sla_fields).
ROUTING_STAMPS = ("owner", "routing_reason", "routing_rule", "routing_version")


def _routing_field_problems(policy: Policy, mapping: CrmMapping) -> list[str]:
    """Every field a routing rule reads is synced; the fields it stamps are named write-back fields."""
    routing = policy.routing
    assert routing is not None
    where_p, where_m = policy.source, mapping.path
    problems = [
        f"{where_p}: routing: reads Lead.{fld}, which {where_m} does not sync (objects.Lead.fields)"
        for fld in sorted(routing.lead_fields())
        if fld not in _fields_of(mapping, "Lead")
    ]
    problems += [
        f"{where_p}: routing: reads {obj}.{fld} ({why}), which {where_m} does not sync (objects.{obj}.fields)"
        for obj, fld, why in _ROUTING_FIELDS
        if fld not in _fields_of(mapping, obj)
    ]
    problems += [
        f"{where_p}: routing: stamps {name!r} with the owner, which {where_m} does not name (sla_fields)"
        for name in ROUTING_STAMPS
        if name not in mapping.sla_fields
    ]
    return problems


#: The fields lead_recycling stamps (crm_fields.yaml sla_fields): the attempts; Recycled with its
#: reason and re-engagement date; the re-entry (status, MQL date, the earlier SAL date cleared).
RECYCLE_STAMPS = ("contact_attempts", "status", "rejection_reason", "reengagement_date")
REENTRY_STAMPS = ("mql_date", "sal_date")


def _recycle_field_problems(policy: Policy, mapping: CrmMapping) -> list[str]:
    """What recycling writes is a named write-back field (the mapping checks those are synced back,
    so the write-back sends only what differs); the reply field is synced with its changes."""
    recycle = policy.recycle
    assert recycle is not None
    where_p, where_m = policy.source, mapping.path
    lead_fields = _fields_of(mapping, "Lead")
    stamps = [*RECYCLE_STAMPS, *(REENTRY_STAMPS if recycle.nurture.reenter else ())]
    problems = [
        f"{where_p}: recycle: stamps {name!r}, which {where_m} does not name (sla_fields)"
        for name in stamps
        if name not in mapping.sla_fields
    ]
    replied = recycle.replied_field
    if replied is not None:
        history = _history_of(mapping, "Lead")
        tracked = (history.filter or {}).get("Field") if history is not None else []
        if replied not in lead_fields:
            problems.append(
                f"{where_p}: recycle.replied_field: reads Lead.{replied}, which {where_m} does not sync "
                "(objects.Lead.fields)"
            )
        elif history is None or (tracked is not None and replied not in tracked):
            problems.append(
                f"{where_p}: recycle.replied_field: Lead.{replied} changes are not synced: add it to "
                f"{where_m} objects.{history.name if history else 'LeadHistory'}.filter.Field"
            )
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


def _report_problems(reports: ReportConfig, policy: Policy | None, mapping: CrmMapping | None) -> list[str]:
    problems = []
    if policy is not None and reports.sla_id not in [s.id for s in policy.slas]:
        problems.append(
            f"reports.yaml: sla_id: {reports.sla_id!r} is not an SLA of {policy.source} "
            f"({', '.join(s.id for s in policy.slas)})"
        )
    if mapping is not None and reports.campaign_field not in _fields_of(mapping, "Lead"):
        problems.append(
            f"reports.yaml: campaign_field: {reports.campaign_field!r} is not read by {mapping.path} "
            "(objects.Lead.fields)"
        )
    # A handoff's conversion (the quarterly what-if) is read from a Lead's Status, or from the
    # Opportunity field history the sync keeps.
    objects = {s.id: s.object for s in policy.slas} if policy is not None else {}
    for sla_id, conv in reports.conversions.items():
        obj, where = objects.get(sla_id), f"reports.yaml: conversions.{sla_id}.field: {conv.field!r}"
        if obj == "Lead" and conv.field != "Status":
            problems.append(f"{where}: a Lead handoff's conversion is read from Status (its funnel stages)")
        elif obj == "Opportunity" and mapping is not None:
            history = _history_of(mapping, obj)
            kept = history is not None and conv.field in ((history.filter or {}).get("Field") or [conv.field])
            if conv.field not in _fields_of(mapping, obj) or not kept:
                problems.append(
                    f"{where} is not in {mapping.path}'s synced {obj} field history "
                    f"(objects.{obj}.fields and the history's filter)"
                )
    return problems
