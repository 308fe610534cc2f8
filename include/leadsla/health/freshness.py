"""Stale data: no successful CRM sync for longer than the threshold (sync_runs).

Before the first success the wait is measured from when syncing could first have succeeded: the
first crm_sync run's start or the store's creation, whichever is earlier. A fresh deployment
whose first sync is still running is therefore not critical; one that has gone the threshold
without any success is. Reads only; never judges by the wall clock (`now` is the run's time).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.notify.formatting import short_duration
from leadsla.policy import Policy
from leadsla.store import schema

HOW_TO_FIX = (
    "Open crm_sync in Airflow: check salesforce_default, the API allowance (report task) and "
    "failed runs; SLA clocks are computed on stale data until it recovers."
)


def _waiting_since(conn: sa.Connection) -> dt.datetime | None:
    """When syncing could first have succeeded: the first sync run's start or the store's creation."""
    first_run = conn.execute(sa.select(sa.func.min(schema.sync_runs.c.started_at))).scalar()
    created = conn.execute(sa.select(sa.func.min(schema.schema_meta.c.upgraded_at))).scalar()
    found = [t for t in (first_run, created) if t is not None]
    return min(found) if found else None


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    runs = schema.sync_runs
    last = conn.execute(
        sa.select(runs.c.finished_at)
        .where(runs.c.status == "success")
        .order_by(runs.c.finished_at.desc())
        .limit(1)
    ).scalar()
    limit = dt.timedelta(minutes=int(settings.get("stale_sync_minutes", 30)))
    if last is not None:
        if now - last <= limit:
            return []
        summary = (
            f"no successful CRM sync for {short_duration(int((now - last).total_seconds()))} "
            f"(last success {last.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC; the limit is "
            f"{short_duration(int(limit.total_seconds()))})"
        )
    else:
        since = _waiting_since(conn)
        if since is None or now - since <= limit:  # just deployed: the first sync has time to finish
            return []
        summary = (
            f"no CRM sync has succeeded yet, {short_duration(int((now - since).total_seconds()))} "
            f"after syncing began ({since.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC; the limit is "
            f"{short_duration(int(limit.total_seconds()))})"
        )
    return [Finding("stale_data", "critical", summary, [], HOW_TO_FIX)]
