"""Run every health check, store the findings, queue one RevOps digest (Slack + e-mail) per run.

The digest is a notice keyed on the run's time, so a retried task queues it once. Findings go to
`health_findings` for the reports and the War Room. Never changes CRM data, clocks or the policy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health import calendars, delivery, escalation, freshness, leakage, rejection, round_robin, timers
from leadsla.health.finding import Finding
from leadsla.store import schema

CHECKS = (timers, delivery, calendars, freshness, rejection, round_robin, leakage, escalation)


def run_checks(conn: sa.Connection, now: dt.datetime, policy: Any, settings: dict[str, Any]) -> list[Finding]:
    """Every check's findings (a check that raises becomes a critical finding, the others still run)."""
    findings: list[Finding] = []
    for module in CHECKS:
        try:
            findings.extend(module.check(conn, now, policy, settings))
        except Exception as exc:  # a broken check must not hide the others' findings
            findings.append(Finding(module.__name__.rsplit(".", 1)[-1], "critical",
                                    f"the check itself failed: {type(exc).__name__}: {exc}", [],
                                    "Read the sla_health task log; fix the check or the data it tripped on."))
    return findings


def run_health(engine: sa.Engine, now: dt.datetime, policy: Any, settings: dict[str, Any],
               run_id: str | None = None) -> dict[str, Any]:
    """Check, store, notify. Returns small JSON: counts by check and severity."""
    from leadsla.quality.notice import enqueue_notice

    with engine.connect() as conn:
        findings = run_checks(conn, now, policy, settings)
    with engine.begin() as conn:
        if findings:
            conn.execute(schema.health_findings.insert(), [
                {"run_at": now, "check_name": f.check, "severity": f.severity, "summary": f.summary,
                 "record_ids": f.record_ids, "how_to_fix": f.how_to_fix, "run_id": run_id} for f in findings])
            lines = [f"[{f.severity}] {f.summary} ({len(f.record_ids)} affected). Fix: {f.how_to_fix}" for f in findings]
            recipients = [("slack", settings.get("revops_slack_channel", "C0REVOPS001")),
                          ("email", settings.get("revops_email", "revops@example.com"))]
            enqueue_notice(conn, source="sla_health", subject="digest", opened_at=now, checkpoint="health_digest",
                           recipients=recipients, title=f"SLA health: {len(findings)} findings",
                           severity=max((f.severity for f in findings), key=["info", "warning", "critical"].index),
                           lines=lines, at=now)
    return {"findings": len(findings), "checks": sorted({f.check for f in findings}),
            "critical": sum(f.severity == "critical" for f in findings)}
