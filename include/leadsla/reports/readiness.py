"""Whether the CRM mirror is complete for a report's period, judged from the store's `sync_runs`.

A period's figures are final only once every CRM object group (crm_fields.yaml `groups`) has had a
successful sync that *started* after the period ended: a sync sees every change committed before
it starts, so nothing of the period can still be on its way. A period reported to date (the run's
time cut to the minute) needs syncs started no earlier than `TO_DATE_TOLERANCE` before that cut,
since the mirror always lags the CRM by a sync cycle.

The DAGs refuse to e-mail an incomplete report (`MirrorNotSynced`, retried by Airflow); the CLI
builds it anyway and prints the gap as a warning. Reads only; never reads the wall clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from leadsla.errors import LeadSlaError
from leadsla.reports.period import Period
from leadsla.store import schema

#: How far the mirror may lag a period reported to date: the CRM sync runs every minute, and its
#: slower groups every 15 minutes, so a 5-minute lag for the lead groups is normal, not a gap.
TO_DATE_TOLERANCE = dt.timedelta(minutes=5)


class MirrorNotSynced(LeadSlaError):
    """The CRM mirror has no successful sync past the period's end yet: the report must wait.

    Retryable: the report DAGs let Airflow retry the task until the sync lands.
    """


def needed_until(period: Period) -> dt.datetime:
    """The instant every CRM object group's last successful sync must have started at or after."""
    return period.end - TO_DATE_TOLERANCE if period.partial else period.end


def synced_until(conn: sa.Connection, groups: Iterable[str]) -> dt.datetime | None:
    """The start of the oldest of each group's latest successful sync: everything the CRM had
    committed before then is in the mirror. None when a group never synced successfully.
    """
    runs = schema.sync_runs
    latest = []
    for group in sorted(set(groups)):
        started = conn.execute(sa.select(runs.c.started_at)
                               .where(runs.c.group_name == group, runs.c.status == "success")
                               .order_by(runs.c.started_at.desc()).limit(1)).scalar()
        if started is None:
            return None
        latest.append(started)
    return min(latest) if latest else None


def gap(conn: sa.Connection, period: Period, groups: Iterable[str]) -> str | None:
    """A sentence saying why the mirror is not complete for `period`, or None when it is."""
    need = needed_until(period)
    last = synced_until(conn, groups)
    if last is not None and last >= need:
        return None
    seen = "never" if last is None else last.isoformat(timespec="minutes")
    return (f"CRM mirror not synced past {need.isoformat(timespec='minutes')} (end of {period.title}) yet "
            f"(last successful sync of every object group started: {seen}); the report waits")


def crm_groups() -> list[str]:
    """The CRM sync's object groups, from crm_fields.yaml (the groups every report reads from)."""
    from leadsla.crm.mapping import load

    return sorted(load().groups)
