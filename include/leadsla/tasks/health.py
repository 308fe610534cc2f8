"""sla_health's entry point: run every check, store the findings, queue the RevOps digest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from leadsla.health.run import digest_notice, run_checks, store_findings, summary
from leadsla.notify.outbox import queue_notices
from leadsla.policy import Policy
from leadsla.store import open_store
from leadsla.store.audit import AuditContext
from leadsla.tasks.configuration import in_force
from leadsla.tasks.context import audit_context, run_time


def run_health(
    engine: sa.Engine, now: dt.datetime, policy: Policy, settings: dict[str, Any], context: AuditContext
) -> dict[str, Any]:
    """Check (read-only), then store the findings and queue the digest in one transaction."""
    with engine.connect() as conn:
        findings = run_checks(conn, now, policy, settings)
    with engine.begin() as conn:
        store_findings(conn, findings, now, context.run_id)
        notice = digest_notice(findings, now, settings)
        if notice is not None:
            queue_notices(conn, [notice], now, context)
    return summary(findings)


def check(context: Mapping[str, Any]) -> dict[str, Any]:
    """The `check` task: the configuration in force (the policy the monitor enforces, quality.yaml's
    `health`); the files' own problems, when they were refused, go to the `config_drift` check as
    `config_problems`."""
    engine = open_store()
    try:
        now, audit = run_time(context), audit_context(context)
        configured = in_force(engine, audit, now=now)
        settings = {**configured.configuration.quality.health, "config_problems": configured.problems}
        return run_health(engine, now, configured.configuration.policy, settings, audit)
    finally:
        engine.dispose()
