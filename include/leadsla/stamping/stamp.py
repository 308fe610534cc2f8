"""SLA fields stamped on the Leads: read the clocks and the CRM's copy, decide, write, audit.

`stamp_clocks` runs in sla_monitor's stamp task, after evaluate (the clocks at the run's time, so
a colour that turns at this minute is written at this minute) and escalate. It writes only what
differs from the store's copy of each record, 200 records per composite call through
`crm.writeback.stamp`, conditional on the sync's Lead watermark (one query finds the records
changed since; each is re-read and written only if its status and owner are still what the clock
was evaluated from, else the next run decides again). A value the org refuses
(FIELD_CUSTOM_VALIDATION_EXCEPTION, INVALID_FIELD and their kin) stops that field for that record's
clock, audited `stamp_rejected`, and the record's other fields are written; UNABLE_TO_LOCK_ROW is
retried by the write-back and, failing that, by the next run. Past its share of the daily API
budget only breaches and turns to red are written and data engineering is told once a day.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa

from leadsla.crm import budget
from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient
from leadsla.crm.writeback import WriteResult, stamp
from leadsla.decisions.stamping import BY_NAME, ClockId, StampPlan, plan_stamps
from leadsla.lifecycle import Lifecycle
from leadsla.notify.outbox import queue_notices
from leadsla.policy import Policy
from leadsla.stamping.fields import stampable
from leadsla.store import schema, watermarks
from leadsla.store.audit import AuditContext, record_many

log = logging.getLogger(__name__)

ACTOR = "sla_stamping"
#: Errors by which the org refuses a value (not the record): that field stops for that record.
REFUSED_VALUE = frozenset(
    {
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "INVALID_FIELD",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "STRING_TOO_LONG",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "JSON_PARSER_ERROR",
        "FIELD_INTEGRITY_EXCEPTION",
        "INVALID_CROSS_REFERENCE_KEY",
    }
)
#: Writes after refusals: a record's remaining fields are sent again, at most this many times.
_ROUNDS = 3
_CLOCK_COLUMNS = [
    "sla_id",
    "record_id",
    "clock_start",
    "state",
    "colour",
    "deadline",
    "stopped_at",
    "breached_at",
    "elapsed_seconds",
    "accountable_owner_id",
    "policy_version",
]


@dataclass(frozen=True)
class _Seen:
    """What the clock was evaluated from: the record's status and owner in the store's copy."""

    status: Any
    owner: Any


def touch_slas(policy: Policy) -> set[str]:
    """Lead SLAs whose clocks stop on touches only: their met is the first response."""
    return {
        sla.id
        for sla in policy.slas
        if sla.object == "Lead" and sla.stop and all(rule.touch_rule is not None for rule in sla.stop)
    }


def _lead_clocks(conn: sa.Connection) -> pd.DataFrame:
    """The Lead clocks, instants parsed in one vectorised pass (as `store.mirror` reads frames)."""
    c = schema.clocks
    instants = [k for k in _CLOCK_COLUMNS if isinstance(c.c[k].type, schema.UtcDateTime)]
    query = sa.select(
        *[sa.type_coerce(c.c[k], sa.String).label(k) if k in instants else c.c[k] for k in _CLOCK_COLUMNS]
    ).where(c.c.object_type == "Lead")
    frame = pd.DataFrame([tuple(r) for r in conn.execute(query)], columns=_CLOCK_COLUMNS)
    for k in instants:
        frame[k] = pd.to_datetime(frame[k], utc=True, format="ISO8601")
    return frame


def _crm_copies(
    conn: sa.Connection, mapping: CrmMapping, fields: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, _Seen]]:
    """Each Lead's stamp fields as the store holds them (the CRM's values as last synced or
    written), and its status and owner there.

    Only those keys are read out of the raw `fields` JSON, by the database (parsing every lead's
    whole record in Python was most of a run's time), each typed as its field holds it.
    """
    r = schema.records
    raw = r.c.fields
    typed = {"number": lambda e: e.as_float(), "boolean": lambda e: e.as_boolean()}
    columns = [
        typed.get(BY_NAME[name].kind, lambda e: e.as_string())(raw[mapping.stamp_fields[name]]).label(name)
        for name in fields
    ]
    query = sa.select(
        r.c.record_id,
        raw["Status"].as_string().label("status"),
        raw["OwnerId"].as_string().label("owner"),
        *columns,
    ).where(r.c.object_type == "Lead", r.c.is_deleted.is_(False))
    copies: dict[str, dict[str, Any]] = {}
    seen: dict[str, _Seen] = {}
    for row in conn.execute(query):
        copies[row[0]] = dict(zip(fields, row[3:], strict=True))
        seen[row[0]] = _Seen(row[1], row[2])
    return copies, seen


def _stopped(conn: sa.Connection) -> dict[str, dict[ClockId, set[str]]]:
    """Fields the org refused per record and clock (audit `stamp_rejected`)."""
    a = schema.audit
    out: dict[str, dict[ClockId, set[str]]] = {}
    rows = conn.execute(
        sa.select(a.c.record_id, a.c.sla_id, a.c.clock_start, a.c.detail).where(a.c.event == "stamp_rejected")
    )
    for rid, sla_id, start, detail in rows:
        out.setdefault(rid, {}).setdefault((sla_id, start), set()).add((detail or {}).get("field"))
    return out


def stamp_clocks(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient,
    mapping: CrmMapping,
    policy: Policy,
    channel: str,
    lifecycle: Lifecycle | None = None,
) -> dict[str, Any]:
    """Stamp every watched Lead's current clock where the CRM's copy differs (module docstring).

    Args:
        now: the run's time (audit entries and notices); decisions depend on the clocks only.
        channel: the data-engineering Slack channel (quality.yaml) for budget and field notices.

    Returns:
        Counts for XCom: records written, unchanged, held by the budget guard, left after a
        conflict, failed, refused (field values the org rejected), api_calls, fields written by
        name, and the unfit fields.
    """
    if not mapping.stamp_fields:
        return {"stamping": "off"}
    started = dt.datetime.now(dt.UTC)
    calls_before = client.usage().calls
    with engine.connect() as conn:
        clocks = _lead_clocks(conn)
    versions = [policy.version, *clocks["policy_version"].dropna().astype(str).unique()]
    usable = stampable(
        engine,
        context,
        client=client,
        mapping=mapping,
        texts=versions,
        channel=channel,
        lifecycle=lifecycle,
        now=now,
    )
    summary: dict[str, Any] = {"unfit": sorted(usable.unfit)}
    if not usable.fields:
        return {**summary, **_record_calls(engine, client, calls_before, started, 0, context)}
    with engine.connect() as conn:
        copies, seen = _crm_copies(conn, mapping, usable.fields)
        stopped = _stopped(conn)
        used = budget.calls_today(conn, started, group=budget.STAMPING_GROUP)
        as_of = watermarks.read(conn, "Lead") or _newest_copy(conn) or now
    guard = used >= mapping.stamp_budget
    plan = plan_stamps(
        clocks,
        copies,
        fields=usable.fields,
        touch_slas=touch_slas(policy),
        stopped=stopped,
        guard=guard,
        minutes_scale=usable.minutes_scale,
    )
    if guard:
        _tell_over_budget(engine, now, context, mapping, used, plan.held, channel)
    written = _write(engine, now, context, client, mapping, plan, seen, as_of)
    summary.update(
        records=len(plan.changes) + plan.unchanged + plan.held,
        unchanged=plan.unchanged,
        held=plan.held,
        over_budget=guard,
        fields=plan.fields_changed,
        **written,
    )
    summary.update(_record_calls(engine, client, calls_before, started, written["written"], context))
    log.info("SLA stamping at %s: %s", now.isoformat(), summary)
    return summary


def _newest_copy(conn: sa.Connection) -> dt.datetime | None:
    """Before the first Lead sync (no watermark): the newest modstamp the store holds."""
    r = schema.records
    return conn.execute(sa.select(sa.func.max(r.c.modified_at)).where(r.c.object_type == "Lead")).scalar()


def _record_calls(
    engine: sa.Engine,
    client: CrmClient,
    calls_before: int,
    started: dt.datetime,
    written: int,
    context: AuditContext,
) -> dict[str, int]:
    calls = client.usage().calls - calls_before
    if calls:
        with engine.begin() as conn:
            budget.record_stamping_calls(
                conn, started_at=started, calls=calls, written=written, run_id=context.run_id
            )
    return {"api_calls": calls}


def _tell_over_budget(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    mapping: CrmMapping,
    used: int,
    held: int,
    channel: str,
) -> None:
    notice = budget.stamping_budget_notice(
        used_today=used,
        allowance=mapping.stamp_budget,
        held=held,
        share=mapping.stamp_budget_share,
        daily_budget=mapping.daily_api_budget,
        now=dt.datetime.now(dt.UTC),
        channel=channel,
    )
    with engine.begin() as conn:
        queue_notices(conn, [notice], now, context)
    log.warning("SLA stamping over its API budget (%d calls today): only breaches and red written", used)


def _still_as_evaluated(seen: Mapping[str, _Seen]):
    """The re-decision after a conflict: write if the record's status and owner are still what
    the clock was evaluated from (the change since was ours or elsewhere), else leave it to the
    next run, which sees the change."""

    def decide(
        record_id: str, wanted: Mapping[str, Any], current: Mapping[str, Any]
    ) -> Mapping[str, Any] | None:
        was = seen.get(record_id)
        if was is not None and current.get("Status") == was.status and current.get("OwnerId") == was.owner:
            return dict(wanted)
        return None

    return decide


def _write(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    client: CrmClient,
    mapping: CrmMapping,
    plan: StampPlan,
    seen: Mapping[str, _Seen],
    as_of: dt.datetime,
) -> dict[str, int]:
    """Write the plan; a refused value stops that field for that record, the rest is sent again."""
    counts = {"written": 0, "left": 0, "failed": 0, "refused": 0}
    pending = {rid: dict(values) for rid, values in plan.changes.items()}
    decide = _still_as_evaluated(seen)
    for round_no in range(_ROUNDS):
        if not pending:
            break
        # A record's remaining fields go again at once: the first round's pre-check read them
        # moments ago, and If-Unmodified-Since guards the rest.
        result = stamp(
            client,
            engine,
            mapping,
            pending,
            as_of=as_of,
            context=context,
            decide=decide,
            actor=ACTOR,
            precheck=round_no == 0,
            precheck_since=True,
        )
        refused = _refused(result, mapping)
        counts["written"] += len(result.written)
        counts["left"] += len(result.left)
        counts["refused"] += sum(len(fields) for fields in refused.values())
        counts["failed"] += len([rid for rid in result.failed if rid not in refused])
        if refused:
            _audit_refusals(engine, now, context, plan, pending, refused, result)
        pending = {
            rid: rest
            for rid, names in refused.items()
            if (rest := {k: v for k, v in pending[rid].items() if k not in names})
        }
    if counts["failed"]:
        log.warning("SLA stamps not written this run (retried next run): %d records", counts["failed"])
    return counts


def _refused(result: WriteResult, mapping: CrmMapping) -> dict[str, set[str]]:
    """Per record the org refused a value of: the logical fields it named (every field sent when it
    named none)."""
    logical = {api: name for name, api in mapping.stamp_fields.items()}
    out: dict[str, set[str]] = {}
    for rid, errors in result.errors.items():
        if not {str(e.get("statusCode")) for e in errors} & REFUSED_VALUE:
            continue
        sent = {logical[api] for api in result.sent.get(rid, {}) if api in logical}
        named = {logical[f] for e in errors for f in e.get("fields") or [] if f in logical} & sent
        out[rid] = named or sent
    return out


def _audit_refusals(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    plan: StampPlan,
    pending: Mapping[str, Mapping[str, Any]],
    refused: Mapping[str, set[str]],
    result: WriteResult,
) -> None:
    """One `stamp_rejected` entry per record and field: the clock, the value and the org's reason."""
    entries = []
    for rid, names in refused.items():
        sla_id, clock_start = plan.clocks[rid]
        reason = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in result.errors[rid])
        for name in sorted(names):
            value = pending[rid].get(name)
            entries.append(
                {
                    "event": "stamp_rejected",
                    "at": now,
                    "object_type": "Lead",
                    "record_id": rid,
                    "sla_id": sla_id,
                    "clock_start": clock_start,
                    "actor": ACTOR,
                    "detail": {
                        "field": name,
                        "value": value.isoformat() if isinstance(value, dt.datetime) else value,
                        "reason": reason,
                    },
                }
            )
        log.warning("Lead %s: the org refused %s (%s): not stamped on this clock", rid, sorted(names), reason)
    with engine.begin() as conn:
        record_many(conn, entries, context=context)
