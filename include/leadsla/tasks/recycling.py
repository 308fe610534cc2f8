"""lead_recycling's entry point: count attempts, recycle (or recommend it), bring recycled leads back.

Decides at the run's time (`dag_run.run_after`) with the configuration in force
(`tasks.configuration.in_force`), and audits under the task run. CRM writes go through the
write-back only (`leadsla.disposition.recycle`); recommendations only reach the outbox
(sla_monitor's deliver task sends them within the minute).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.crm.protocol import CrmClient
from leadsla.crm.salesforce import SalesforceClient, conn_id_from_env, instance_url
from leadsla.disposition.recycle import recycle_leads
from leadsla.store import open_store
from leadsla.store.audit import AuditContext
from leadsla.tasks.configuration import in_force
from leadsla.tasks.context import audit_context, run_time


def run_recycling(
    engine: sa.Engine,
    now: dt.datetime,
    context: AuditContext,
    *,
    client: CrmClient | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Attempts, recycling and re-entries at `now`.

    Args:
        client: the CRM (default: the Salesforce connection, made only when the policy recycles).
        url: the CRM's base URL for record links (default: `crm.salesforce.instance_url()`).
    """
    configuration = in_force(engine, context, now=now).configuration
    policy = configuration.policy
    if policy.recycle is None:
        return {"recycling": "off (no recycle: section in the policy)"}
    return recycle_leads(
        engine,
        now,
        context,
        client=client or SalesforceClient(conn_id_from_env()),
        mapping=configuration.mapping,
        policy=policy,
        instance_url=url or instance_url(),
    )


def recycle(context: Mapping[str, Any]) -> dict[str, Any]:
    """The `recycle` task."""
    engine = open_store()
    try:
        return run_recycling(engine, run_time(context), audit_context(context))
    finally:
        engine.dispose()
