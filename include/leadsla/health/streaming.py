"""CRM changes polled instead of streamed: the change stream's listener reports `polling` (streaming
off, the handshake refused, the org unreachable) or has not answered for a while (the triggerer
down). crm_sync then queries every minute: changes are seen up to a minute late and an idle org
costs queries. Reads `crm_stream_status` only; silent when no listener ever reported (streaming
never set up) and while it streams.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.notify.formatting import short_duration
from leadsla.policy import Policy
from leadsla.store import stream

HOW_TO_FIX = (
    "Check that Airflow's triggerer runs (the crm_sync asset watcher lives there), the "
    "salesforce_default login, the org's Change Data Capture selection (Lead, Opportunity, Task, "
    "Event, User) and crm_fields.yaml sync.streaming; crm_sync polls every minute meanwhile."
)


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    status = stream.status(conn)
    if status is None:
        return []
    silent_after = dt.timedelta(minutes=int(settings.get("stream_silent_minutes", 5)))
    since = f"{status.since.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
    if status.mode == stream.POLLING:
        lasted = short_duration(int((now - status.since).total_seconds()))
        summary = (
            f"CRM changes are polled every minute, not streamed, since {since} ({lasted}): "
            f"{status.reason or 'no reason given'}"
        )
        return [Finding("crm_streaming", "warning", summary, [], HOW_TO_FIX)]
    if status.heartbeat_at is None or now - status.heartbeat_at > silent_after:
        heard = (
            f"{status.heartbeat_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" if status.heartbeat_at else "never"
        )
        summary = f"the CRM change stream has not answered since {heard}: crm_sync polls every minute"
        return [Finding("crm_streaming", "warning", summary, [], HOW_TO_FIX)]
    return []
