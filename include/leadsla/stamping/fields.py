"""Which SLA fields can be stamped now: mapped, present in the org, writable, able to hold the values.

The org's answer comes from the mapping's describe() check (`crm.sync.ensure_mapping_checked`,
which crm_sync runs daily and stores with the stamp fields' types); the first stamp run after a
mapping change checks it itself when crm_sync has not yet. Each field that cannot be stamped is
one notice to the data-engineering channel naming the field and its type, queued once per
mapping version and problem (audit `stamp_field_stopped`); the other fields go on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from leadsla.crm.mapping import CrmMapping
from leadsla.crm.protocol import CrmClient
from leadsla.crm.sync import ensure_mapping_checked, stamp_field_types
from leadsla.decisions.plan import Notice
from leadsla.decisions.stamping import BY_NAME, unfit_reason
from leadsla.lifecycle import Lifecycle
from leadsla.notify.outbox import queue_notices
from leadsla.store.audit import AuditContext

log = logging.getLogger(__name__)

#: Decimal places kept for the business minutes when the org does not say.
DEFAULT_MINUTES_SCALE = 2


@dataclass(frozen=True)
class StampableFields:
    """The fields a stamp run writes, and what the org's describe() said about the rest."""

    fields: list[str]  # logical names, in `decisions.stamping.STAMP_FIELDS` order
    minutes_scale: int = DEFAULT_MINUTES_SCALE
    unfit: dict[str, str] = field(default_factory=dict)  # logical name -> why it is not stamped


def stampable(
    engine: sa.Engine,
    context: AuditContext,
    *,
    client: CrmClient,
    mapping: CrmMapping,
    texts: Sequence[str],
    channel: str,
    lifecycle: Lifecycle | None = None,
    now: dt.datetime | None = None,
) -> StampableFields:
    """The stamp fields fit to write; a notice for each one that is not (once per mapping version).

    Args:
        texts: the words a text field must hold besides the fixed ones (the policy versions).
        channel: the data-engineering Slack channel (quality.yaml) for the notices.
        now: for the notices' queue time; the check itself is bookkeeping on the wall clock.

    Raises:
        MappingError: a mapped field that is not a stamp field is missing in the org (the sync
            fails on it too).
    """
    mapped = mapping.stamp_fields
    if not mapped:
        return StampableFields([])
    with engine.connect() as conn:
        checked = stamp_field_types(conn, mapping)
    if checked is None:  # crm_sync has not checked this mapping yet
        ensure_mapping_checked(client, engine, mapping, dt.datetime.now(dt.UTC), lifecycle=lifecycle)
        with engine.connect() as conn:
            checked = stamp_field_types(conn, mapping) or {}
    described = checked.get("fields") or {}
    versions = tuple(t for t in texts if t)
    unfit: dict[str, str] = {}
    for name, api in mapped.items():
        reason = unfit_reason(
            BY_NAME[name], api, described.get(api), versions if name == "sla_policy_version" else ()
        )
        if reason:
            unfit[name] = reason
    if unfit:
        since = dt.datetime.fromisoformat(checked.get("since") or dt.datetime.now(dt.UTC).isoformat())
        notices = [
            _unfit_notice(name, mapped[name], reason, since, channel) for name, reason in unfit.items()
        ]
        with engine.begin() as conn:
            if queue_notices(conn, notices, now or dt.datetime.now(dt.UTC), context):
                log.warning("SLA fields not stamped: %s", "; ".join(unfit.values()))
    minutes = described.get(mapped.get("time_to_first_touch", ""))
    scale = int(minutes["scale"]) if minutes and minutes.get("precision") else DEFAULT_MINUTES_SCALE
    order = [f for f in BY_NAME if f in mapped and f not in unfit]
    return StampableFields(order, scale, unfit)


def _unfit_notice(name: str, api: str, reason: str, since: dt.datetime, channel: str) -> Notice:
    """One field that cannot be stamped: what is wrong, that its stamping stopped, how to fix it."""
    problem = hashlib.sha256(reason.encode()).hexdigest()[:12]
    return Notice(
        source="sla_stamping",
        subject=f"Lead.{api}",
        opened_at=since,
        checkpoint=f"unfit_field:{problem}",
        recipients=(("slack", channel),),
        title=f"SLA field Lead.{api} is not stamped",
        severity="warning",
        lines=(
            reason + ".",
            f"Stamping of {name} stopped; the other SLA fields are still stamped.",
            f"Fix the field in Salesforce, or its line in crm_fields.yaml sla_fields ({name}: {api}).",
        ),
        audit_event="stamp_field_stopped",
        actor="sla_stamping",
        audit_detail={"field": name, "api_field": api, "reason": reason},
    )
