"""The project's share of the org's daily API allowance: count, project, warn.

Every sync cycle records its API calls in `sync_runs`, and so does SLA stamping (group
`STAMPING_GROUP`, status `stamped`: never a sync, so freshness and report readiness ignore it);
`calls_today` sums them since UTC midnight and `projected_calls` extrapolates the day from the pace
so far. `budget_warning` returns the text of the warning for the data-engineering channel (or
None), and `over_budget_notice` the notice that carries it; `stamping_budget_notice` tells the
same channel that stamping reached its share. The outbox queues them, so this module never sends
anything.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.decisions.plan import Notice
from leadsla.store.schema import sync_runs

#: Below this share of the day, projections are too noisy: the pace is taken over at least an hour.
_MIN_DAY_FRACTION = 1 / 24
#: sync_runs.group_name of SLA stamping's API calls (sla_monitor's stamp task).
STAMPING_GROUP = "sla_stamping"
#: sync_runs.status of a stamping row: it counts calls, it is not a sync.
STAMPED = "stamped"


def _utc_midnight(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def calls_today(conn: sa.Connection, now: dt.datetime, *, group: str | None = None) -> int:
    """API calls recorded in sync_runs since UTC midnight of `now` (of one group when given)."""
    query = sa.select(sa.func.coalesce(sa.func.sum(sync_runs.c.api_calls), 0)).where(
        sync_runs.c.started_at >= _utc_midnight(now)
    )
    if group is not None:
        query = query.where(sync_runs.c.group_name == group)
    return int(conn.execute(query).scalar() or 0)


def record_stamping_calls(
    conn: sa.Connection, *, started_at: dt.datetime, calls: int, written: int, run_id: str | None
) -> None:
    """One sync_runs row for SLA stamping's API calls (they count against the daily budget)."""
    conn.execute(
        sync_runs.insert().values(
            started_at=started_at,
            finished_at=dt.datetime.now(dt.UTC),
            status=STAMPED,
            api_calls=calls,
            records_changed=written,
            detail={"message": f"SLA fields stamped on {written} records"},
            run_id=run_id,
            group_name=STAMPING_GROUP,
        )
    )


def projected_calls(used_today: int, now: dt.datetime) -> int:
    """Calls by the end of the UTC day at today's pace so far."""
    utc = now.astimezone(dt.UTC)
    fraction = (utc.hour * 3600 + utc.minute * 60 + utc.second) / 86400
    return int(round(used_today / max(fraction, _MIN_DAY_FRACTION)))


def budget_warning(
    *,
    used_today: int,
    projected_today: int,
    daily_budget: int,
    org_remaining: int | None = None,
    org_max: int | None = None,
) -> str | None:
    """The warning text when the project's share would exceed its daily budget, else None.

    Args:
        used_today: calls the project made today (UTC).
        projected_today: calls by the end of the day at the current pace.
        daily_budget: the configured share (crm_fields.yaml sync.daily_api_budget).
        org_remaining, org_max: the org's allowance from Sforce-Limit-Info, when known.
    """
    if used_today <= daily_budget and projected_today <= daily_budget:
        return None
    org = (
        f"; the org has {org_remaining:,} of {org_max:,} daily API calls left"
        if org_remaining is not None and org_max is not None
        else ""
    )
    if used_today > daily_budget:
        head = (
            f"CRM sync has used {used_today:,} Salesforce API calls today, "
            f"over its daily budget of {daily_budget:,}"
        )
    else:
        head = (
            f"CRM sync is on pace for {projected_today:,} Salesforce API calls today "
            f"({used_today:,} so far), over its daily budget of {daily_budget:,}"
        )
    return head + org + ": raise sync.daily_api_budget in crm_fields.yaml or slow the crm_sync schedule."


def over_budget_notice(warning: str, *, now: dt.datetime, channel: str) -> Notice:
    """The data-engineering channel's notice that the sync is over its daily API budget.

    Keyed on the UTC day, so every cycle of an over-budget day plans the same notice and the
    outbox queues it once.
    """
    day = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Notice(
        source="crm_sync",
        subject="daily API budget",
        opened_at=day,
        checkpoint="over_budget",
        recipients=(("slack", channel),),
        title="CRM sync is over its daily Salesforce API budget",
        severity="warning",
        lines=(warning,),
    )


def stamping_budget_notice(
    *,
    used_today: int,
    allowance: int,
    held: int,
    share: float,
    daily_budget: int,
    now: dt.datetime,
    channel: str,
) -> Notice:
    """The data-engineering channel's notice that SLA stamping spent its share of the day's budget.

    Keyed on the UTC day, so every stamp run of that day plans the same notice and it is queued once.
    """
    return Notice(
        source="sla_stamping",
        subject="daily API budget",
        opened_at=_utc_midnight(now),
        checkpoint="stamping_over_budget",
        recipients=(("slack", channel),),
        title="SLA stamping is over its share of the daily Salesforce API budget",
        severity="warning",
        lines=(
            f"SLA stamping has used {used_today:,} Salesforce API calls today, its share is {allowance:,} "
            f"({share:.0%} of sync.daily_api_budget {daily_budget:,}).",
            "Until midnight UTC only breaches and colours turning red are written on the records; "
            f"{held:,} records with other changes wait for tomorrow.",
            "Raise stamping.budget_share or sync.daily_api_budget in crm_fields.yaml if the org can "
            "afford it.",
        ),
    )
