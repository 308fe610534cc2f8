"""Incremental monitor drifting: a full reconcile found clocks the incremental runs had wrong.

`sla_monitor` evaluates only what can have changed (`leadsla.tasks.evaluation`) and every N runs,
on a policy change, and when too many records changed for one go, evaluates everything and
compares (`reconciles`, one row per reconcile).
A difference there was corrected by that run; it is still a finding, because it means a change
the incremental runs missed (a writer that does not stamp `landed_at`, a clock whose next change
was wrong), and alerts may have gone out late. Differences after a policy change are the change
itself, reported for information.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store import schema


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    """The reconciles of the last `reconcile_lookback_hours` (default 24) that found differences."""
    since = now - dt.timedelta(hours=int(settings.get("reconcile_lookback_hours", 24)))
    rc = schema.reconciles
    rows = conn.execute(
        sa.select(rc.c.reason, rc.c.clocks, rc.c.differences, rc.c.detail)
        .where(rc.c.evaluated_at > since, rc.c.evaluated_at <= now, rc.c.differences > 0)
        .order_by(rc.c.reconcile_id)
    ).all()
    drift = [r for r in rows if r.reason != "policy_changed"]
    policy_changes = [r for r in rows if r.reason == "policy_changed"]
    changed = sum(r.differences for r in policy_changes)
    findings = []
    if drift:
        findings.append(
            Finding(
                "incremental_drift",
                "warning",
                f"{len(drift)} full reconciles found {sum(r.differences for r in drift)} clocks the "
                "incremental monitor had wrong (corrected then; their alerts may have been late)",
                _records(drift),
                "Read the sla_monitor evaluate log at those reconciles (it names the clocks and columns); "
                "look for a store writer that does not set landed_at, then run the monitor with mode=full.",
            )
        )
    if policy_changes:
        findings.append(
            Finding(
                "policy_change_reevaluated",
                "info",
                f"a policy change re-evaluated {changed} clocks differently",
                _records(policy_changes),
                "Nothing to fix if the policy change was meant; the clocks now follow it.",
            )
        )
    return findings


def _records(rows: list[Any]) -> list[str]:
    return sorted({d["record_id"] for r in rows for d in (r.detail or {}).get("sample", [])})
