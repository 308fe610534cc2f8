"""lead_routing's entry points: route what needs an owner, then alert on what still has none.

Both decide at the run's time (`dag_run.run_after`) with the configuration in force
(`tasks.configuration.in_force`), and audit under the task run. `route` writes owners only in
`routing.mode: route` (watch mode and watch teams: reports, no writes); `alert_unowned` only queues
messages (sla_monitor's deliver task sends them within the minute).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.configuration import alert_context
from leadsla.crm.protocol import CrmClient
from leadsla.crm.salesforce import SalesforceClient, conn_id_from_env
from leadsla.ownership.route import misrouted_notices, route_leads
from leadsla.ownership.unowned import alert_unowned
from leadsla.store import open_store
from leadsla.store.audit import AuditContext
from leadsla.tasks.configuration import in_force
from leadsla.tasks.context import audit_context, run_time


def run_routing(
    engine: sa.Engine, now: dt.datetime, context: AuditContext, *, client: CrmClient | None = None
) -> dict[str, Any]:
    """Route (mode route) and report mis-routed leads of watched teams, at `now`."""
    configuration = in_force(engine, context, now=now).configuration
    policy = configuration.policy
    if policy.routing is None:
        return {"routing": "off (no routing: section in the policy)"}
    if policy.routing.mode == "route" and client is None:
        client = SalesforceClient(conn_id_from_env())
    routed = route_leads(engine, now, context, client=client, mapping=configuration.mapping, policy=policy)
    return {**routed, **misrouted_notices(engine, now, context, policy=policy)}


def run_unowned(engine: sa.Engine, now: dt.datetime, context: AuditContext) -> dict[str, Any]:
    """Queue the due alerts for leads nobody working owns, at `now`."""
    configuration = in_force(engine, context, now=now).configuration
    triage = alert_context(configuration.policy, configuration.reports)
    return alert_unowned(engine, now, context, policy=configuration.policy, triage=triage)


def route(context: Mapping[str, Any]) -> dict[str, Any]:
    """The `route` task."""
    engine = open_store()
    try:
        return run_routing(engine, run_time(context), audit_context(context))
    finally:
        engine.dispose()


def unowned(context: Mapping[str, Any]) -> dict[str, Any]:
    """The `alert_unowned` task."""
    engine = open_store()
    try:
        return run_unowned(engine, run_time(context), audit_context(context))
    finally:
        engine.dispose()
