"""Configuration drift: the org's picklists no longer match the lifecycle, or the files disagree.

Two failure modes, each one finding per problem (one digest line each, with how to fix it):

- picklist drift, from crm_sync's latest describe() check (`crm_mapping_checks.drift`): an org
  Status or StageName value that is neither a lifecycle status nor mapped to one, a lifecycle
  status or rejection reason the org lacks. A warning: the sync goes on, but records in such a
  status are judged by rules that do not name it.
- the configuration files' own problems (`settings["config_problems"]`, put there by the entry
  point, `leadsla.tasks.health`, which checked the files when it started): critical, since every
  pipeline is running on the last good configuration and the edit is not in force.

Reads only; never checks the files itself (the configuration check sits above this layer).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store import schema

DRIFT_FIX = (
    "Make the org and include/config/lifecycle.yaml agree: declare the value in the lifecycle, map "
    "it in crm_fields.yaml status_map, or deactivate it in Salesforce; `leadsla config check --org` "
    "lists what is left."
)
FILES_FIX = (
    "Fix the file named; `leadsla config check` lists every problem. Until the files agree, every "
    "pipeline runs on the last good configuration and the edit is not in force."
)


def latest_drift(conn: sa.Connection) -> tuple[dt.datetime, list[str]] | None:
    """When the org's picklists were last compared with the lifecycle, and what disagreed (None:
    never compared)."""
    checks = schema.crm_mapping_checks
    row = conn.execute(
        sa.select(checks.c.checked_at, checks.c.drift)
        .where(checks.c.drift.is_not(None))
        .order_by(checks.c.checked_at.desc())
        .limit(1)
    ).first()
    return None if row is None else (row.checked_at, list(row.drift or []))


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    findings = [
        Finding("config_rejected", "critical", f"configuration refused: {problem}", [], FILES_FIX)
        for problem in settings.get("config_problems") or []
    ]
    drift = latest_drift(conn)
    if drift is not None:
        checked_at, problems = drift
        findings += [
            Finding(
                "config_drift",
                "warning",
                f"picklist drift (crm_sync's check of {checked_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC): "
                f"{problem}",
                [],
                DRIFT_FIX,
            )
            for problem in problems
        ]
    return findings
