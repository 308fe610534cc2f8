"""Whether the store is complete for a report's period: the CRM mirror (the store's `sync_runs`)
and the SLA clocks evaluated from it (`evaluations`, one row per monitor run).

A period's figures are final only once every CRM object group (crm_fields.yaml `groups`) has had a
successful sync that *started* after the period ended: a sync sees every change committed before
it starts, so nothing of the period can still be on its way. A period reported to date (the run's
time cut to the minute) needs syncs started no earlier than `TO_DATE_TOLERANCE` before that cut,
since the mirror always lags the CRM by a sync cycle.

The report DAGs wait for a complete store in a sensor (`wait_for_data`, which logs the gap) and
refuse to e-mail an incomplete report (`MirrorNotSynced`); the CLI builds it anyway and prints the
gap as a warning. Reads only; never reads the wall clock.
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
    """The store is not complete for the report's period yet: the report must wait.

    The report DAGs' sensor waits until `gap` is None; `send` raising this means the store changed
    in between (a resync), and its ordinary retries check again.
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
        started = conn.execute(
            sa.select(runs.c.started_at)
            .where(runs.c.group_name == group, runs.c.status == "success")
            .order_by(runs.c.started_at.desc())
            .limit(1)
        ).scalar()
        if started is None:
            return None
        latest.append(started)
    return min(latest) if latest else None


def completing_sync_finished(
    conn: sa.Connection, need: dt.datetime, groups: Iterable[str]
) -> dt.datetime | None:
    """When the syncs that completed the mirror up to `need` had all finished: per group, the first
    successful sync started at or after `need`; the latest of their ends. None if a group has none."""
    runs = schema.sync_runs
    ends = []
    for group in sorted(set(groups)):
        finished = conn.execute(
            sa.select(sa.func.min(runs.c.finished_at)).where(
                runs.c.group_name == group, runs.c.status == "success", runs.c.started_at >= need
            )
        ).scalar()
        if finished is None:
            return None
        ends.append(finished)
    return max(ends) if ends else None


def gap(conn: sa.Connection, period: Period, groups: Iterable[str]) -> str | None:
    """A sentence saying why the store is not complete for `period`, or None when it is: the CRM
    mirror synced past the period's end, and the SLA clocks evaluated since (a report built between
    the sync and the monitor's next run would show the period's leads without their clocks)."""
    need = needed_until(period)
    last = synced_until(conn, groups)
    if last is None or last < need:
        seen = "never" if last is None else last.isoformat(timespec="minutes")
        return (
            f"CRM mirror not synced past {need.isoformat(timespec='minutes')} (end of {period.title}) yet "
            f"(last successful sync of every object group started: {seen}); the report waits"
        )
    synced_at = completing_sync_finished(conn, need, groups)
    read = conn.execute(sa.select(sa.func.max(schema.evaluations.c.read_at))).scalar()
    if synced_at is not None and (read is None or read < synced_at):
        seen = "never" if read is None else read.isoformat(timespec="seconds")
        return (
            f"SLA clocks not evaluated since the CRM sync that completed {period.title} "
            f"(finished {synced_at.isoformat(timespec='seconds')}; last evaluation read the store: {seen}); "
            "the report waits for sla_monitor"
        )
    return None


def crm_groups() -> list[str]:
    """The CRM sync's object groups, from crm_fields.yaml (the groups every report reads from)."""
    from leadsla.crm.mapping import load

    return sorted(load().groups)
