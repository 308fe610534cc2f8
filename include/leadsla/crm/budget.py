"""The project's share of the org's daily API allowance: count, project, warn.

Every sync cycle records its API calls in `sync_runs`; `calls_today` sums them since UTC midnight
and `projected_calls` extrapolates the day from the pace so far. `budget_warning` returns the text
of the warning for the data-engineering channel (or None), and `over_budget_notice` the notice
that carries it; the outbox queues it, so this module never sends anything.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.decisions.plan import Notice
from leadsla.store.schema import sync_runs

#: Below this share of the day, projections are too noisy: the pace is taken over at least an hour.
_MIN_DAY_FRACTION = 1 / 24


def calls_today(conn: sa.Connection, now: dt.datetime) -> int:
    """API calls recorded by sync runs since UTC midnight of `now`."""
    midnight = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    total = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(sync_runs.c.api_calls), 0)).where(
            sync_runs.c.started_at >= midnight
        )
    ).scalar()
    return int(total or 0)


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
