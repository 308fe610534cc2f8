"""Every health check run, its findings stored, and the ONE RevOps digest (Slack + e-mail) it calls for.

The digest is a notice keyed on the run's time, so a retried task queues it once (the entry point,
`leadsla.tasks.health`, has the outbox write it). Findings go to `health_findings` for the
reports and the War Room. Never changes CRM data, clocks or the policy.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.decisions.plan import Notice
from leadsla.health import (
    audit_chain,
    calendars,
    config_drift,
    delivery,
    escalation,
    freshness,
    leakage,
    phones,
    reconcile,
    rejection,
    round_robin,
    streaming,
    timers,
    unowned,
)
from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store import schema

CHECKS = (
    timers,
    delivery,
    calendars,
    freshness,
    rejection,
    round_robin,
    unowned,
    leakage,
    escalation,
    config_drift,
    audit_chain,
    phones,
    streaming,
    reconcile,
)


SEVERITIES = ["info", "warning", "critical"]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def digest_line(finding: Finding) -> str:
    """``[critical] what is wrong (3 records affected). Fix: ...``; a system-wide finding (no
    records, e.g. stale data) names no count."""
    affected = f" ({_count(len(finding.record_ids), 'record')} affected)" if finding.record_ids else ""
    fix = f" Fix: {finding.how_to_fix}" if finding.how_to_fix else ""
    return f"[{finding.severity}] {finding.summary}{affected}.{fix}"


def digest_title(findings: list[Finding]) -> str:
    """The digest's title: the finding itself when there is one, else the count by severity."""
    if len(findings) == 1:
        return f"SLA health: {findings[0].summary}"
    by_severity = [
        _count(sum(f.severity == s for f in findings), s)
        for s in reversed(SEVERITIES)
        if any(f.severity == s for f in findings)
    ]
    return f"SLA health: {_count(len(findings), 'problem')} ({', '.join(by_severity)})"


def run_checks(
    conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]
) -> list[Finding]:
    """Every check's findings (a check that raises becomes a critical finding, the others still run)."""
    findings: list[Finding] = []
    for module in CHECKS:
        try:
            findings.extend(module.check(conn, now, policy, settings))
        except Exception as exc:  # a broken check must not hide the others' findings
            findings.append(
                Finding(
                    module.__name__.rsplit(".", 1)[-1],
                    "critical",
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    [],
                    "Read the sla_health task log; fix the check or the data it tripped on.",
                )
            )
    return findings


def store_findings(
    conn: sa.Connection, findings: list[Finding], now: dt.datetime, run_id: str | None
) -> None:
    """The run's findings into `health_findings` (the reports and the War Room read them)."""
    if not findings:
        return
    conn.execute(
        schema.health_findings.insert(),
        [
            {
                "run_at": now,
                "check_name": f.check,
                "severity": f.severity,
                "summary": f.summary,
                "record_ids": f.record_ids,
                "how_to_fix": f.how_to_fix,
                "run_id": run_id,
            }
            for f in findings
        ],
    )


def digest_notice(findings: list[Finding], now: dt.datetime, settings: dict[str, Any]) -> Notice | None:
    """The run's ONE RevOps digest (Slack + e-mail), keyed on the run's time; None when all is well."""
    if not findings:
        return None
    recipients = (
        ("slack", settings.get("revops_slack_channel", "C0REVOPS001")),
        ("email", settings.get("revops_email", "revops@example.com")),
    )
    return Notice(
        source="sla_health",
        subject="digest",
        opened_at=now,
        checkpoint="health_digest",
        recipients=recipients,
        title=digest_title(findings),
        severity=max((f.severity for f in findings), key=SEVERITIES.index),
        lines=tuple(digest_line(f) for f in findings),
        intro=f"The SLA health check of {now.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC found "
        f"{_count(len(findings), 'problem')}; each line says how to fix it.",
    )


def summary(findings: list[Finding]) -> dict[str, Any]:
    """Small JSON for XCom: how many findings, from which checks, how many critical."""
    return {
        "findings": len(findings),
        "checks": sorted({f.check for f in findings}),
        "critical": sum(f.severity == "critical" for f in findings),
    }
