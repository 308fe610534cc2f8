"""The SLA matrix, the War Room's landing view: one row per handoff (every SLA of the policy) with
its compliance over the range, its open clocks green / yellow / red, its breaches this week and its
weekly compliance trend; each row links to that handoff's panels, each count to its drill-down.

Three grouped reads over every SLA at once (not one pass of the panels per handoff): the range's
clocks judged as of its end and counted per SLA, week and outcome (`queries._judged_clocks`'
rules, from the judged-clocks index), the open clocks per SLA and colour, and the breaches since
leadership's Monday per SLA. Counts are distinct records where the handoff's panel counts records
(open clocks, breaches) and clocks where it counts clocks (decided, violated), so a matrix figure
equals the figure it links to. Filters (owner, team, lead source) and the team scope apply as on
the panels, a teamless clock counting for its SLA's team. Read-only.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from leadsla.reports import metrics
from leadsla.store import schema
from leadsla.war_room import figures as range_figures
from leadsla.war_room.filters import Filters
from leadsla.war_room.handoffs import Handoff
from leadsla.war_room.queries import (
    OPEN_STATES,
    Teams,
    clock_filters,
    read_only_connection,
    records_per,
    week_case,
    week_starts,
)

#: Weeks the trend column draws (the range's last ones).
TREND_WEEKS = 8


def week_start(now: dt.datetime, timezone: str) -> dt.datetime:
    """The UTC instant of the local Monday midnight that began `now`'s week in `timezone`."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    return dt.datetime.combine(today - dt.timedelta(days=today.weekday()), dt.time(), zone).astimezone(dt.UTC)


def _per_handoff(
    handoffs: dict[str, Handoff], filters: Filters, teams: Teams, **kw: bool
) -> sa.ColumnElement:
    """Each handoff's clocks under the filters and the scope (`clock_filters` for its SLA): one OR
    of one branch per SLA, as a teamless clock's team depends on the SLA."""
    clocks = schema.clocks
    return sa.or_(
        *[
            sa.and_(
                clocks.c.sla_id == handoff.id, *clock_filters(filters, teams=teams, handoff=handoff, **kw)
            )
            for handoff in handoffs.values()
        ]
    )


def judged_counts(handoffs: dict[str, Handoff], filters: Filters, teams: Teams = None) -> sa.Select:
    """Clocks started in the range per SLA, week (index into `week_starts`) and outcome (judged as
    of the range's end, as the panels judge them; `excluded` per SLA's `left_counts_as`)."""
    clocks = schema.clocks
    period = filters.period
    excluding = sorted(h.id for h in handoffs.values() if h.left_counts_as == "excluded")
    excluded = (
        [
            (
                sa.and_(
                    clocks.c.sla_id.in_(excluding),
                    clocks.c.stopped_at < period.end,
                    clocks.c.state.in_(metrics.HANDED_ON_STATES),
                ),
                range_figures.EXCLUDED,
            )
        ]
        if excluding
        else []
    )
    outcome = sa.case(
        (clocks.c.breached_at < period.end, range_figures.VIOLATED),
        *excluded,
        (clocks.c.stopped_at < period.end, range_figures.MET),
        else_=range_figures.OPEN,
    ).label("outcome")
    week = week_case(filters).label("week")
    in_range = [
        clocks.c.sla_id.in_(list(handoffs)),
        clocks.c.clock_start >= period.start,
        clocks.c.clock_start < period.end,
        _per_handoff(handoffs, filters, teams, accountable=True),
    ]
    return (
        sa.select(clocks.c.sla_id, week, outcome, sa.func.count().label("clocks"))
        .where(*in_range)
        .group_by(clocks.c.sla_id, week, outcome)
    )


def _open_counts(handoffs: dict[str, Handoff], filters: Filters, teams: Teams) -> sa.Select:
    """Distinct records with an open clock per SLA and colour."""
    clocks = schema.clocks
    return records_per(
        [clocks.c.sla_id, clocks.c.colour],
        clocks.c.state.in_(OPEN_STATES),
        _per_handoff(handoffs, filters, teams),
    )


def _breach_counts(
    handoffs: dict[str, Handoff], filters: Filters, teams: Teams, since: dt.datetime, now: dt.datetime
) -> sa.Select:
    """Distinct records per SLA whose clock breached in [since, now]."""
    clocks = schema.clocks
    return records_per(
        [clocks.c.sla_id],
        clocks.c.breached_at >= since,
        clocks.c.breached_at <= now,
        _per_handoff(handoffs, filters, teams),
    )


def range_counts(
    engine: sa.Engine, handoffs: dict[str, Handoff], filters: Filters, teams: Teams = None
) -> dict[str, dict]:
    """Per SLA id: decided, violated and compliance over the range, and `trend`: each week of the
    range (label, decided, compliance or None) - the matrix's range part (what the app caches)."""
    labels = [label for _, label in week_starts(filters)]
    counts: dict[str, dict[int, list[int]]] = {sla_id: {} for sla_id in handoffs}
    with read_only_connection(engine) as conn:
        for sla_id, week, outcome, clocks in conn.execute(judged_counts(handoffs, filters, teams)):
            met_violated = counts[sla_id].setdefault(int(week), [0, 0])
            if outcome == range_figures.MET:
                met_violated[0] += clocks
            elif outcome == range_figures.VIOLATED:
                met_violated[1] += clocks
    out = {}
    for sla_id, weeks in counts.items():
        met = sum(m for m, _ in weeks.values())
        violated = sum(v for _, v in weeks.values())
        trend = []
        for index, label in enumerate(labels):
            week_met, week_violated = weeks.get(index, [0, 0])
            decided = week_met + week_violated
            trend.append(
                {"week": label, "decided": decided, "compliance": week_met / decided if decided else None}
            )
        out[sla_id] = {
            "decided": met + violated,
            "violated": violated,
            "compliance": met / (met + violated) if met + violated else None,
            "trend": trend[-TREND_WEEKS:],
        }
    return out


def matrix(
    engine: sa.Engine,
    handoffs: dict[str, Handoff],
    filters: Filters,
    now: dt.datetime,
    in_range: dict[str, dict],
    teams: Teams = None,
) -> dict:
    """The matrix's rows, in the policy's order: the handoff, its range figures (`in_range`:
    `range_counts`), its open clocks by colour and its breaches since the week began (Monday,
    leadership's timezone), live at `now`; and `week_start`."""
    since = week_start(now, filters.timezone)
    open_by: dict[str, dict[str, int]] = {sla_id: {} for sla_id in handoffs}
    breaches: dict[str, int] = {}
    with read_only_connection(engine) as conn:
        for sla_id, colour, records in conn.execute(_open_counts(handoffs, filters, teams)):
            open_by[sla_id][colour] = records
        breaches = dict(conn.execute(_breach_counts(handoffs, filters, teams, since, now)).all())
    rows = []
    for sla_id, handoff in handoffs.items():
        rows.append(
            {
                "handoff": handoff,
                **in_range[sla_id],
                "open": {colour: open_by[sla_id].get(colour, 0) for colour in ("green", "yellow", "red")},
                "breaches_week": breaches.get(sla_id, 0),
            }
        )
    return {"rows": rows, "week_start": since}
