"""Stale data: no successful CRM sync for longer than the threshold (sync_runs)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.store import schema


def check(conn: sa.Connection, now: dt.datetime, policy: Any, settings: dict[str, Any]) -> list[Finding]:
    runs = schema.sync_runs
    last = conn.execute(sa.select(runs.c.finished_at).where(runs.c.status == "success")
                        .order_by(runs.c.finished_at.desc()).limit(1)).scalar()
    minutes = int(settings.get("stale_sync_minutes", 30))
    if last is not None and now - last <= dt.timedelta(minutes=minutes):
        return []
    when = "never" if last is None else f"last at {last.isoformat(timespec='minutes')}"
    return [Finding("stale_data", "critical", f"no successful CRM sync for over {minutes} min ({when})", [],
                    "Open crm_sync in Airflow: check salesforce_default, the API allowance (report task) and "
                    "failed runs; SLA clocks are computed on stale data until it recovers.")]
