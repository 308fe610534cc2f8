"""The War Room's reads: the live panel (open clocks by colour, at-risk list, breaches today, the
systemic-breach banner), the leads nobody working owns, the range panel (scorecards, trend, funnel,
rejection reasons; the arithmetic in `war_room.figures`), drill-down to the records behind any
figure, a lead's "why" timeline (routing's decisions told in words) and the data-quality / health
findings.

Every figure is registered under a key in `figures` with the record ids behind it, so the
drill-down lists exactly the rows a figure counted. Filters are pushed into SQL so that only the
range's rows are loaded (the page must answer in under a second with 100,000 leads). Read-only:
the only writes are `record_visit` and `record_denied`, one audit row each.

Team scope (`war_room.access.Scope`): every read that lists or counts leads takes `teams`, the
team names a user sees (None: every team), and keeps only their leads: a clock when the team
holding it or the team answering for it is one of them (the range figures, which count who
answers: the answering team), a lead when its owner's team is, and an unowned lead when the team
it waits for is (`lead_in_scope` for one lead). A clock whose owner has no team counts for its
SLA's team (`war_room.handoffs`).

Handoffs (`war_room.handoffs.Handoff`): every panel reads the clocks of one SLA, Lead- or
Opportunity-based; records are joined on the clock's object (an Opportunity's name, account and
Amount), and the MQL funnel and rejection reasons, which follow Leads, are computed for Lead
handoffs only. The SLA matrix across every handoff is `war_room.matrix`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from leadsla.ownership.book import ROUTED_EVENT, Owners, owners
from leadsla.ownership.unowned import ALERT_EVENT, unowned_leads
from leadsla.policy import Policy
from leadsla.reports import metrics
from leadsla.reports.timeline import record_timeline
from leadsla.store import schema
from leadsla.store.audit import AuditContext, record
from leadsla.store.connection import read_only
from leadsla.war_room import figures as range_figures
from leadsla.war_room import live
from leadsla.war_room.filters import Filters
from leadsla.war_room.handoffs import NO_TEAM, Handoff

#: Clocks still waiting for a touch; "breached" ones are the red, overdue part of the live panel.
OPEN_STATES = ("running", "paused", "breached")
#: The at-risk list's columns, as the page shows them.
AT_RISK_COLUMNS = (
    "record_id",
    "name",
    "amount",
    "owner",
    "team",
    "state",
    "colour",
    "remaining_seconds",
    "deadline",
    "next_checkpoint",
)
#: Each clock state (`leadsla.engine.STATES`) as the page says it: how the clock ended, or where it is.
STATE_LABELS = {
    "running": "running",
    "paused": "paused",
    "breached": "breached",
    "met": "met",
    "met_late": "met late",
    "handed_on": "handed on",
    "handed_on_late": "handed on late",
}
AT_RISK_ROWS = 25
#: The live panel's colours, in the page's order.
COLOURS = ("green", "yellow", "red")
#: Unowned leads listed on the page (the longest waiting); the count and its drill-down have all.
UNOWNED_ROWS = 25
#: Routing's audit events (`leadsla.ownership`) the timeline tells in words.
MISROUTED_EVENT = "misrouted_lead"
ROUTING_EVENTS = (ROUTED_EVENT, ALERT_EVENT, MISROUTED_EVENT)
#: `field = 'Status'` as a literal: SQLite uses the partial Status index of field_history only when
#: the query's condition matches the index's own (a bound parameter does not).
STATUS_FIELD = sa.literal_column("'Status'")
DRILL_ROWS = 500
#: The audit event of a refused War Room request (`record_denied`).
DENIED_EVENT = "war_room_denied"
#: Systemic breach: a team where at least this many leads breached today ...
SYSTEMIC_MIN_BREACHES = 3
#: ... spread over at least this share of its reps (a team-wide capacity problem, not one rep).
SYSTEMIC_REP_SHARE = 0.5

#: The record ids behind each figure of a panel, by figure key (`open:red`, `rep:<name>`, ...).
FigureIds = dict[str, tuple[str, ...]]
#: The team names a user's War Room shows (`war_room.access.Scope.names`); None: every team.
Teams = frozenset[str] | None


class UnknownFigure(LookupError):
    """A drill-down asked for a figure the page does not show."""


class IdsOnDemand(Mapping[str, tuple[str, ...]]):
    """A panel's figure ids (`FigureIds`) where some are read only when asked for: the open clocks'
    ids are tens of thousands at a million leads and only a drill-down lists them (the live panel
    is computed afresh for every request, the drill-down's included, so reading them then lists the
    same clocks the request counted). Each is read once."""

    def __init__(self, ready: FigureIds, later: dict[str, Callable[[], tuple[str, ...]]]) -> None:
        self._ready = dict(ready)
        self._later = dict(later)

    def __getitem__(self, key: str) -> tuple[str, ...]:
        if key not in self._ready and key in self._later:
            self._ready[key] = self._later.pop(key)()
        return self._ready[key]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._ready, *self._later])

    def __len__(self) -> int:
        return len(self._ready) + len(self._later)


def read_only_connection(engine: sa.Engine) -> sa.Connection:
    """A connection that can only read (`store.connection.read_only`): on SQLite it takes no write
    lock, so the page neither waits for the CRM sync nor holds it up."""
    return read_only(engine)


def fetch_frame(conn: sa.Connection, stmt: sa.Select, *, objects: bool = False) -> pd.DataFrame:
    """The statement's rows as a frame; `objects` keeps every column as plain Python objects
    (pandas' string inference and string-dtype factorising cost more than the range figures'
    arithmetic at 100,000 leads)."""
    result = conn.execute(stmt)
    keys = list(result.keys())
    # The DBAPI rows straight from the cursor: SQLAlchemy's per-row Row objects and result
    # processing cost more than the query itself at War Room sizes. Columns needing conversion
    # are read raw on purpose (see `raw_columns`); JSON paths come back as plain strings.
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    if objects:
        values = np.array(rows, dtype=object) if rows else np.empty((0, len(keys)), dtype=object)
        return pd.DataFrame(values.reshape(len(rows), len(keys)), columns=keys, dtype=object)
    return pd.DataFrame.from_records(rows, columns=keys) if rows else pd.DataFrame(columns=keys)


def raw_columns(table: sa.Table, *names: str) -> list:
    """The table's columns (all, or those named), with UTC timestamps read raw (no per-row
    TypeDecorator call) for `parse_utc` or `war_room.figures` to convert vectorised - the stored
    values are UTC on both backends."""
    columns = []
    for column in table.c:
        if names and column.name not in names:
            continue
        columns.append(
            UtcText(column).label(column.name) if isinstance(column.type, schema.UtcDateTime) else column
        )
    return columns


class UtcText(sa.sql.functions.FunctionElement):
    """A UTC timestamp column as naive UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff': what SQLite stores,
    and what PostgreSQL is asked to print, so both are parsed by numpy in one call (the aware
    datetimes psycopg builds went through pandas' per-object path: a second for the cohort of the
    30 days before today at a million leads)."""

    type = sa.String()
    name = "utc_text"
    inherit_cache = True


@compiles(UtcText)
def _utc_text(element: UtcText, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(UtcText, "postgresql")
def _utc_text_postgresql(element: UtcText, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"


def parse_utc(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """`frame` with each of `columns` it has (read by `raw_columns`) parsed into aware UTC
    timestamps, in place; an empty frame gets empty UTC columns."""
    for column in columns:
        if column in frame:
            frame[column] = (
                pd.to_datetime(frame[column], utc=True, format="ISO8601")
                if len(frame)
                else pd.Series([], dtype="datetime64[us, UTC]")
            )
    return frame


def plain_rows(frame: pd.DataFrame) -> list[dict]:
    """The frame's rows as dicts for the templates, with missing values (NaN, NaT, None) as None."""
    return [
        {
            column: (None if not isinstance(value, tuple | list) and pd.isna(value) else value)
            for column, value in row.items()
        }
        for row in frame.to_dict("records")
    ]


def team_in(
    column: sa.ColumnElement, names: frozenset[str] | set[str], handoff: Handoff | None
) -> sa.ColumnElement:
    """A clock's team `column` is one of `names`; a clock with no team counts for the handoff's team
    (`war_room.handoffs`)."""
    condition = column.in_(sorted(names))
    if handoff is not None and handoff.counts_for(names):
        condition = sa.or_(condition, column.is_(None))
    return condition


def records_per(keys: list[sa.Column], *conditions: sa.ColumnElement) -> sa.Select:
    """How many distinct records have a clock under `conditions`, per value of the clocks' `keys`.

    Counted over a DISTINCT subquery, which PostgreSQL hashes: `count(DISTINCT record_id)` sorts
    every row with the database's collation (0.4 s for the 50,000 open clocks of a million-lead
    org)."""
    clocks = schema.clocks
    distinct = sa.select(*keys, clocks.c.record_id).where(*conditions).distinct().subquery()
    grouped = [distinct.c[key.name] for key in keys]
    return sa.select(*grouped, sa.func.count().label("records")).group_by(*grouped)


def clock_filters(
    filters: Filters, *, accountable: bool = False, teams: Teams = None, handoff: Handoff | None = None
) -> list:
    """Owner/team/source filters on clocks: by who has the lead now, or (`accountable`, for
    compliance) by who answers for the clock - the owner when it breached; and the scope's `teams`
    (module docstring), a teamless clock counting for the `handoff`'s team."""
    clocks, records = schema.clocks, schema.records
    conditions = []
    if teams is not None:
        conditions += (
            [team_in(clocks.c.accountable_team, teams, handoff)]
            if accountable
            else clock_filters_for_teams(teams, handoff)
        )
    if filters.owner:
        conditions.append(
            (clocks.c.accountable_owner_id if accountable else clocks.c.owner_id) == filters.owner
        )
    if filters.team:
        conditions.append(
            team_in(clocks.c.accountable_team if accountable else clocks.c.team, {filters.team}, handoff)
        )
    if filters.lead_source:
        conditions.append(
            clocks.c.record_id.in_(
                sa.select(records.c.record_id).where(records.c.lead_source == filters.lead_source)
            )
        )
    return conditions


def lead_filters(filters: Filters, teams: Teams = None) -> list:
    """Conditions on `records` for the filters' leads: live (not deleted) leads, of the owner, of an
    owner in the team (by the users table), from the lead source; of an owner in the scope's `teams`."""
    records, users = schema.records, schema.users
    conditions = [records.c.object_type == "Lead", records.c.is_deleted.is_(False)]
    if teams is not None:
        conditions.append(_owned_in(teams))
    if filters.owner:
        conditions.append(records.c.owner_id == filters.owner)
    if filters.team:
        conditions.append(
            records.c.owner_id.in_(sa.select(users.c.user_id).where(users.c.team == filters.team))
        )
    if filters.lead_source:
        conditions.append(records.c.lead_source == filters.lead_source)
    return conditions


def _owned_in(teams: frozenset[str]) -> sa.ColumnElement:
    """`records.owner_id` is a CRM user of one of `teams`."""
    users = schema.users
    return schema.records.c.owner_id.in_(sa.select(users.c.user_id).where(users.c.team.in_(sorted(teams))))


def options(engine: sa.Engine, teams: Teams = None, object_type: str = "Lead") -> dict:
    """Values for the filter drop-downs: lead sources (of the handoff's `object_type`: an
    Opportunity's LeadSource too), owners (id, name), teams (of the scope's `teams`' records and
    people)."""
    records, users = schema.records, schema.users
    in_scope = [] if teams is None else [_owned_in(teams)]
    with read_only_connection(engine) as conn:
        if teams is None:
            sources = _lead_sources(conn, object_type)
        else:
            sources = [
                source
                for (source,) in conn.execute(
                    sa.select(records.c.lead_source)
                    .where(records.c.object_type == object_type, *in_scope)
                    .distinct()
                    .order_by(records.c.lead_source)
                )
                if source
            ]
        people = conn.execute(
            sa.select(users.c.user_id, users.c.name, users.c.team)
            .where(*([] if teams is None else [users.c.team.in_(sorted(teams))]))
            .order_by(users.c.name)
        ).all()
    return {
        "sources": sources,
        "owners": [(user.user_id, user.name or user.user_id) for user in people],
        "teams": sorted({user.team for user in people if user.team}),
    }


def _lead_sources(conn: sa.Connection, object_type: str) -> list[str]:
    """The distinct lead sources of `object_type`'s records, each found by one seek of the
    (object_type, lead_source) index (a loose index scan: as many steps as sources, whatever the
    number of records; DISTINCT read the whole index, 0.2 s at a million leads)."""
    records = schema.records
    source = (
        sa.select(sa.func.min(records.c.lead_source).label("lead_source"))
        .where(records.c.object_type == object_type)
        .cte("lead_source", recursive=True)
    )
    following = (
        sa.select(records.c.lead_source)
        .where(records.c.object_type == object_type, records.c.lead_source > source.c.lead_source)
        .order_by(records.c.lead_source)
        .limit(1)
    ).scalar_subquery()
    source = source.union_all(sa.select(following).where(source.c.lead_source.is_not(None)))
    return sorted(value for (value,) in conn.execute(sa.select(source.c.lead_source)) if value)


# --- now ---------------------------------------------------------------------------------------


def now_panel(
    engine: sa.Engine,
    filters: Filters,
    now: dt.datetime,
    sla_id: str,
    teams: Teams = None,
    handoff: Handoff | None = None,
    policy: Policy | None = None,
) -> dict:
    """Live state, independent of the date range: open clocks by colour, the at-risk list (least
    time remaining first), breaches since local midnight (and since the week's Monday: the SLA
    matrix's figure) and the systemic-breach banner; of the scope's `teams` (a teamless clock
    counting for the `handoff`'s team). The open clocks are counted in the store; their ids
    (`open:<colour>`) are read when a drill-down asks for them (`IdsOnDemand`). The at-risk list's
    remaining times are as of the monitor's latest run, through the `policy`'s calendars
    (`war_room.live`; without a policy, as stored)."""
    today = _local_midnight(now, filters.timezone)
    monday = today - dt.timedelta(days=now.astimezone(ZoneInfo(filters.timezone)).weekday())
    monday = _local_midnight(monday + dt.timedelta(hours=12), filters.timezone)  # across a DST change
    # `sla_id || ''` keeps SQLite from using the (sla_id, clock_start) index, which would scan every
    # clock of the SLA; the state and breached_at indexes find the few live rows directly.
    live_clocks = [
        schema.clocks.c.sla_id.concat("") == sla_id,
        *clock_filters(filters, teams=teams, handoff=handoff),
    ]
    team_label = handoff.team_label if handoff is not None else None
    with read_only_connection(engine) as conn:
        by_colour = dict(conn.execute(_open_records_per_colour(live_clocks)).all())
        at_risk = _at_risk_now(conn, live_clocks, team_label, policy, now)
        week_breaches = fetch_frame(conn, _breaches_between(monday, now, live_clocks, team_label))
        reps_per_team = _active_reps_per_team(conn)
    colours = {colour: by_colour.get(colour, 0) for colour in COLOURS}
    figure_ids: FigureIds = {}
    figure_ids["breaches_week"] = metrics.ids(week_breaches["record_id"]) if len(week_breaches) else ()
    parse_utc(week_breaches, "breached_at")
    breaches = week_breaches[week_breaches["breached_at"] >= today] if len(week_breaches) else week_breaches
    figure_ids["breaches_today"] = metrics.ids(breaches["record_id"]) if len(breaches) else ()
    banners, systemic_ids = _systemic_breaches(breaches, reps_per_team)
    figure_ids.update(systemic_ids)
    return {
        "colours": colours,
        "at_risk": plain_rows(at_risk),
        "breaches_today": len(figure_ids["breaches_today"]),
        "breaches_week": len(figure_ids["breaches_week"]),
        "systemic": banners,
        "figures": IdsOnDemand(
            figure_ids,
            {f"open:{colour}": partial(_open_ids, engine, live_clocks, colour) for colour in COLOURS},
        ),
        "today": today,
    }


def _local_midnight(now: dt.datetime, timezone: str) -> dt.datetime:
    """The UTC instant of the local midnight that began `now`'s day in `timezone`."""
    zone = ZoneInfo(timezone)
    return dt.datetime.combine(now.astimezone(zone).date(), dt.time(), zone).astimezone(dt.UTC)


def _open_records_per_colour(live_clocks: list) -> sa.Select:
    """How many records have an open clock (running, paused, breached untouched) of each colour."""
    clocks = schema.clocks
    return records_per([clocks.c.colour], clocks.c.state.in_(OPEN_STATES), *live_clocks)


def _open_ids(engine: sa.Engine, live_clocks: list, colour: str) -> tuple[str, ...]:
    """The ids of the records with an open clock of `colour` (figure `open:<colour>`), sorted."""
    clocks = schema.clocks
    with read_only_connection(engine) as conn:
        found = conn.execute(
            sa.select(clocks.c.record_id)
            .where(clocks.c.state.in_(OPEN_STATES), clocks.c.colour == colour, *live_clocks)
            .distinct()
        ).scalars()
        return tuple(sorted(found))


def amount(records: sa.Table) -> sa.ColumnElement:
    """An Opportunity's Amount (the `fields` JSON keeps it; None for a Lead or an unknown amount)."""
    return records.c.fields["Amount"].as_float()


def _at_risk(live_clocks: list, team_label: str | None = None, *more: sa.ColumnElement) -> sa.Select:
    """The open clocks with the least time remaining as stored, with the record's name (an
    Opportunity's Amount too), current owner and team (a teamless clock: the SLA's, `team_label`),
    and what `war_room.live` projects them from; `more` conditions narrow it."""
    clocks, records, users = schema.clocks, schema.records, schema.users
    return (
        sa.select(
            clocks.c.record_id,
            records.c.name,
            amount(records).label("amount"),
            users.c.name.label("owner"),
            sa.func.coalesce(clocks.c.team, team_label).label("team") if team_label else clocks.c.team,
            clocks.c.state,
            clocks.c.colour,
            clocks.c.remaining_seconds,
            clocks.c.deadline,
            clocks.c.next_checkpoint,
            *raw_columns(clocks, *(c for c in live.PROJECTION_COLUMNS if c not in AT_RISK_COLUMNS)),
        )
        .select_from(
            clocks.outerjoin(
                records,
                sa.and_(
                    records.c.record_id == clocks.c.record_id, records.c.object_type == clocks.c.object_type
                ),
            ).outerjoin(users, users.c.user_id == clocks.c.owner_id)
        )
        .where(clocks.c.state.in_(OPEN_STATES), *live_clocks, *more)
        .order_by(clocks.c.remaining_seconds, clocks.c.record_id)
    )


def _at_risk_now(
    conn: sa.Connection, live_clocks: list, team_label: str | None, policy: Policy | None, now: dt.datetime
) -> pd.DataFrame:
    """The `AT_RISK_ROWS` open clocks with the least time remaining as of the monitor's latest run.

    A stored remaining time is at least the live one, by at most the open seconds its clock ran
    since its evaluation (`live.lag_seconds`): the live top rows are all among the rows stored
    within that lag of the stored top rows' largest remaining time, so only those are read again
    and ranked on their live values (ties by record id, as the store orders them)."""
    first = fetch_frame(conn, _at_risk(live_clocks, team_label).limit(AT_RISK_ROWS))
    at = live.latest_run(conn, now) if policy is not None else None
    if at is None or first.empty:
        return first[list(AT_RISK_COLUMNS)]
    rows = first
    if len(first) == AT_RISK_ROWS:
        bound = int(first["remaining_seconds"].max()) + live.lag_seconds(conn, policy, at, live_clocks)
        rows = fetch_frame(
            conn, _at_risk(live_clocks, team_label, schema.clocks.c.remaining_seconds <= bound)
        )
    rows = live.project(rows, policy, at)
    rows = rows.sort_values(["remaining_seconds", "record_id"], kind="stable").head(AT_RISK_ROWS)
    return rows[list(AT_RISK_COLUMNS)].reset_index(drop=True)


def _breaches_between(
    since: dt.datetime, now: dt.datetime, live_clocks: list, team_label: str | None = None
) -> sa.Select:
    """Clocks that breached in [since, now]: record_id and who breached (the accountable owner and
    team; a teamless clock: the SLA's, `team_label`), not the manager a breach escalation handed
    the lead to."""
    clocks = schema.clocks
    team = clocks.c.accountable_team
    return sa.select(
        clocks.c.record_id,
        clocks.c.accountable_owner_id.label("owner_id"),
        (sa.func.coalesce(team, team_label) if team_label else team).label("team"),
        *raw_columns(clocks, "breached_at"),
    ).where(clocks.c.breached_at >= since, clocks.c.breached_at <= now, *live_clocks)


def _active_reps_per_team(conn: sa.Connection) -> dict[str, int]:
    """How many active users each team has."""
    users = schema.users
    return dict(
        conn.execute(
            sa.select(users.c.team, sa.func.count())
            .where(users.c.is_active.is_(True), users.c.team.is_not(None))
            .group_by(users.c.team)
        ).all()
    )


def _systemic_breaches(breaches: pd.DataFrame, reps_per_team: dict[str, int]) -> tuple[list[dict], FigureIds]:
    """A banner per team with a systemic breach today (at least `SYSTEMIC_MIN_BREACHES`, by at least
    two reps and `SYSTEMIC_REP_SHARE` of the team's active reps), and its leads (`systemic:<team>`)."""
    banners = []
    figure_ids: FigureIds = {}
    for team, team_breaches in breaches.groupby("team") if len(breaches) else ():
        breaching_reps = team_breaches["owner_id"].nunique()
        team_reps = reps_per_team.get(team, 0)
        enough_breaches = len(team_breaches) >= SYSTEMIC_MIN_BREACHES
        spread_over_reps = breaching_reps >= max(2, SYSTEMIC_REP_SHARE * team_reps)
        if enough_breaches and spread_over_reps:
            figure_ids[f"systemic:{team}"] = metrics.ids(team_breaches["record_id"])
            banners.append(
                {
                    "team": team,
                    "breaches": len(team_breaches),
                    "reps": int(breaching_reps),
                    "team_reps": team_reps,
                }
            )
    return banners, figure_ids


def unowned_panel(
    engine: sa.Engine, policy: Policy, now: dt.datetime, limit: int = UNOWNED_ROWS, teams: Teams = None
) -> dict:
    """The leads nobody working owns at `now` (`ownership.unowned.unowned_leads`: a watched lead
    held by a queue, an inactive user, nobody or an owner the CRM no longer has, no breach lock on
    it), of every team (or of the scope's `teams`: a lead waiting for no team is in none): how
    many, the `limit` that have waited longest (who holds each, its team, since when and for how
    long) and all their ids (figure `unowned`)."""
    with read_only_connection(engine) as conn:
        who = owners(conn)
        waiting = sorted(
            (
                lead
                for lead in unowned_leads(conn, policy, who, now)
                if teams is None or (lead.team is not None and lead.team in teams)
            ),
            key=lambda lead: (lead.since, lead.record_id),
        )
    return {
        "count": len(waiting),
        "leads": [
            {
                "record_id": lead.record_id,
                "name": lead.name,
                "status": lead.status,
                "held_by": who.describe(lead.owner_id),
                "team": lead.team,
                "since": lead.since,
                "waited_seconds": max(0, int((now - lead.since).total_seconds())),
            }
            for lead in waiting[:limit]
        ],
        "figures": {"unowned": tuple(sorted({lead.record_id for lead in waiting}))},
    }


# --- range -------------------------------------------------------------------------------------


def week_starts(filters: Filters) -> list[tuple[dt.datetime, str]]:
    """The range's weeks (leadership's, Monday start): (first UTC instant in the range, label
    YYYY-MM-DD of its Monday), in order.

    Labelled exactly as the reports label a clock's week (local midnight minus its weekday),
    one local day at a time, so the store can bucket clocks by their start without fetching it.
    """
    zone = ZoneInfo(filters.timezone)
    days = [filters.start + dt.timedelta(days=i) for i in range((filters.end - filters.start).days + 1)]
    noon = pd.Series(pd.DatetimeIndex([dt.datetime.combine(day, dt.time(12), zone) for day in days]))
    local = noon.dt.tz_convert(filters.timezone)
    labels = (local.dt.normalize() - pd.to_timedelta(local.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
    weeks: list[tuple[dt.datetime, str]] = []
    for day, label in zip(days, labels, strict=True):
        if not weeks or weeks[-1][1] != label:
            weeks.append((dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC), label))
    return weeks


def week_case(filters: Filters) -> sa.ColumnElement:
    """The index into `week_starts(filters)` of a clock's week, by its start (small ints cost
    nothing to fetch; labels are put back after)."""
    clocks = schema.clocks
    weeks = week_starts(filters)
    return (
        sa.case(
            *[
                (clocks.c.clock_start < next_week_start, week_index)
                for week_index, (_, (next_week_start, _)) in enumerate(pairwise(weeks))
            ],
            else_=len(weeks) - 1,
        )
        if len(weeks) > 1
        else sa.literal(0)
    )


def _judged_clocks(
    filters: Filters,
    sla_id: str,
    left_counts_as: str = "met",
    teams: Teams = None,
    handoff: Handoff | None = None,
) -> sa.Select:
    """Clocks started in the range, judged by the store as of the range's end (as
    `reports.metrics.judged_clocks`): record_id, rep (the accountable owner's name - the owner
    when the clock breached, else the current one -, else their id, else "(no owner)"), team (the
    clock's accountable team, else that owner's, else "(no team)"), outcome (0 open,
    1 met, 2 violated: breached before the end, 3 excluded: handed on before the end when the SLA's
    `left_counts_as` is `excluded`), touched_seconds (the engine's elapsed time when met by a touch
    or stop rule before the end; a clock handed on is not a touch) and week (index into
    `week_starts`). Every column comes from the judged-clocks index (`state` included). A clock
    with no team counts for the `handoff`'s team (`war_room.handoffs`)."""
    period = filters.period
    clocks, users = schema.clocks, schema.users
    week = week_case(filters)
    no_team = (handoff.team_label if handoff is not None else None) or NO_TEAM
    excluded = (
        [
            (
                sa.and_(clocks.c.stopped_at < period.end, clocks.c.state.in_(metrics.HANDED_ON_STATES)),
                range_figures.EXCLUDED,
            )
        ]
        if left_counts_as == "excluded"
        else []
    )
    return (
        sa.select(
            clocks.c.record_id,
            sa.func.coalesce(users.c.name, clocks.c.accountable_owner_id, "(no owner)").label("rep"),
            sa.func.coalesce(clocks.c.accountable_team, users.c.team, no_team).label("team"),
            sa.case(
                (clocks.c.breached_at < period.end, range_figures.VIOLATED),
                *excluded,
                (clocks.c.stopped_at < period.end, range_figures.MET),
                else_=range_figures.OPEN,
            ).label("outcome"),
            sa.case(
                (
                    sa.and_(clocks.c.stopped_at < period.end, clocks.c.state.in_(metrics.MET_STATES)),
                    clocks.c.elapsed_seconds,
                )
            ).label("touched_seconds"),
            week.label("week"),
        )
        .select_from(clocks.outerjoin(users, users.c.user_id == clocks.c.accountable_owner_id))
        .where(
            clocks.c.sla_id == sla_id,
            clocks.c.clock_start >= period.start,
            clocks.c.clock_start < period.end,
            *clock_filters(filters, accountable=True, teams=teams, handoff=handoff),
        )
    )


def _cohort_changes(filters: Filters, teams: Teams = None) -> sa.Select:
    """The MQL cohort's candidates (leads with an MQL change in the range, and leads created in it:
    one created as MQL has no history row for it) with every Status change of theirs before the
    range's end, one row per change (a lead without any: one row, no change), read from the
    partial Status index: record_id, status, created_at, rejection_reason, new_value, old_value,
    changed_at. `figures.cohort` keeps the leads whose MQL arrival falls in the range.

    The candidates are two disjoint reads, each by its own index, so the cost follows the range,
    not the mirror: the leads created in the range (a range scan of the covering created_at index)
    and the ones created outside it that became MQL in it (by key). One set joined to the records
    let PostgreSQL hash-join the whole records table at a million leads."""
    period = filters.period
    records, history = schema.records, schema.field_history
    became_mql = sa.select(history.c.record_id).where(
        history.c.object_type == "Lead",
        history.c.field == "Status",
        history.c.new_value == "MQL",
        history.c.changed_at >= period.start,
        history.c.changed_at < period.end,
    )
    created_in_range = sa.and_(records.c.created_at >= period.start, records.c.created_at < period.end)
    live_leads = lead_filters(filters, teams)  # as the reports: deleted leads never count
    columns = [
        records.c.record_id,
        records.c.status,
        *raw_columns(records, "created_at"),
        records.c.rejection_reason,
    ]
    created = sa.select(*columns).where(*live_leads, created_in_range)
    became = sa.select(*columns).where(
        *live_leads,
        records.c.record_id.in_(became_mql),
        sa.or_(records.c.created_at.is_(None), sa.not_(created_in_range)),
    )
    cohort = sa.union_all(created, became).cte("war_room_cohort")
    return sa.select(
        cohort.c.record_id,
        cohort.c.status,
        cohort.c.created_at,
        cohort.c.rejection_reason,
        history.c.new_value,
        history.c.old_value,
        *raw_columns(history, "changed_at"),
    ).select_from(
        cohort.outerjoin(
            history,
            sa.and_(
                history.c.object_type == "Lead",
                history.c.record_id == cohort.c.record_id,
                history.c.field == STATUS_FIELD,
                history.c.changed_at < period.end,
            ),
        )
    )


def range_panel(
    engine: sa.Engine,
    filters: Filters,
    sla_id: str,
    left_counts_as: str = "met",
    teams: Teams = None,
    handoff: Handoff | None = None,
) -> dict:
    """Scorecards per rep and team beside the team / overall average, the weekly trend, the funnel
    and rejection reasons, for the filtered range (clocks judged as of the range's end; a clock
    handed on counts as `left_counts_as` says: met, or excluded from met and violated), of the
    scope's `teams`. The funnel and reasons follow the range's MQL cohort of Leads: None for an
    Opportunity `handoff` (the page says why).

    Two reads: the range's clocks already judged (`_judged_clocks`) and the cohort candidates'
    Status changes (`_cohort_changes`); `figures` does the rest with one sort by record id per
    frame. The page shows no per-source compliance, so leads of clocks are not loaded.
    """
    period = filters.period
    leads = handoff is None or handoff.leads
    with read_only_connection(engine) as conn:
        judged = _read_judged_clocks(conn, filters, sla_id, left_counts_as, teams, handoff)
        changes = fetch_frame(conn, _cohort_changes(filters, teams), objects=True) if leads else None
    overall, overall_ids = _overall_compliance(judged)
    teams = range_figures.compliance(judged, ["team"])
    reps, rep_ids = _rep_scorecards(judged, teams.set_index("team")["compliance"])
    team_rows, team_ids = _team_scorecards(judged, teams, overall["compliance"])
    trend, trend_ids = _weekly_trend(judged)
    funnel, funnel_ids, reasons, reason_ids = None, {}, None, {}
    if changes is not None:
        cohort = range_figures.cohort(changes, period)
        funnel, funnel_ids = _funnel(cohort)
        reasons, reason_ids = _rejection_reasons(cohort)
    return {
        "overall": overall,
        "reps": reps,
        "teams": team_rows,
        "trend": trend,
        "funnel": funnel,
        "reasons": reasons,
        "figures": {**overall_ids, **rep_ids, **team_ids, **trend_ids, **funnel_ids, **reason_ids},
        "period": period,
    }


def _read_judged_clocks(
    conn: sa.Connection,
    filters: Filters,
    sla_id: str,
    left_counts_as: str = "met",
    teams: Teams = None,
    handoff: Handoff | None = None,
) -> pd.DataFrame:
    """`_judged_clocks`'s rows sorted by record id, each week's index replaced by its label."""
    judged = range_figures.sorted_by_record(
        fetch_frame(conn, _judged_clocks(filters, sla_id, left_counts_as, teams, handoff), objects=True)
    )
    judged["week"] = (
        np.array([label for _, label in week_starts(filters)], dtype=object)[
            judged["week"].to_numpy().astype(np.int64)
        ]
        if len(judged)
        else judged["week"]
    )
    return judged


def _overall_compliance(judged: pd.DataFrame) -> tuple[dict, FigureIds]:
    """Decided and violated clocks and compliance over the whole range, and their ids."""
    overall = range_figures.compliance(judged, [])
    row = overall.iloc[0] if len(overall) else None
    summary = {
        "decided": int(row["decided"]) if row is not None else 0,
        "violated": int(row["violated"]) if row is not None else 0,
        "compliance": row["compliance"] if row is not None else None,
    }
    figure_ids = {
        "overall": row["record_ids"] if row is not None else (),
        "overall_violated": row["violated_ids"] if row is not None else (),
    }
    return summary, figure_ids


def _rep_scorecards(judged: pd.DataFrame, team_compliance: pd.Series) -> tuple[list[dict], FigureIds]:
    """Per rep (by team): decided, met, violated, compliance beside their team's, median first touch;
    and the ids behind each rep's figures (`rep:<rep>`, `rep_violated:<rep>`)."""
    reps = range_figures.compliance(judged, ["team", "rep"])
    median_hours = range_figures.median_first_touch(judged, "rep")
    rows, figure_ids = [], {}
    for rep in reps.itertuples():
        figure_ids[f"rep:{rep.rep}"] = rep.record_ids
        figure_ids[f"rep_violated:{rep.rep}"] = rep.violated_ids
        rows.append(
            {
                "team": rep.team,
                "rep": rep.rep,
                "decided": rep.decided,
                "met": rep.met,
                "violated": rep.violated,
                "compliance": rep.compliance,
                "team_compliance": team_compliance.get(rep.team),
                "median_hours": median_hours.get(rep.rep),
            }
        )
    return rows, figure_ids


def _team_scorecards(
    judged: pd.DataFrame, teams: pd.DataFrame, overall_compliance: float | None
) -> tuple[list[dict], FigureIds]:
    """Per team (`teams`: its compliance rows): decided, violated, compliance beside the overall
    one, median first touch; and the ids behind each team's figures (`team:`, `team_violated:`)."""
    median_hours = range_figures.median_first_touch(judged, "team")
    rows, figure_ids = [], {}
    for team in teams.itertuples():
        figure_ids[f"team:{team.team}"] = team.record_ids
        figure_ids[f"team_violated:{team.team}"] = team.violated_ids
        rows.append(
            {
                "team": team.team,
                "decided": team.decided,
                "violated": team.violated,
                "compliance": team.compliance,
                "overall": overall_compliance,
                "median_hours": median_hours.get(team.team),
            }
        )
    return rows, figure_ids


def _weekly_trend(judged: pd.DataFrame) -> tuple[list[dict], FigureIds]:
    """Compliance per week, and the ids behind each week's figures (`week:`, `week_violated:`)."""
    trend = range_figures.compliance(judged, ["week"])
    figure_ids = {}
    for week in trend.itertuples():
        figure_ids[f"week:{week.week}"] = week.record_ids
        figure_ids[f"week_violated:{week.week}"] = week.violated_ids
    return plain_rows(trend[["week", "decided", "violated", "compliance"]]), figure_ids


def _funnel(cohort: pd.DataFrame) -> tuple[list[dict], FigureIds]:
    """The cohort's funnel by stage, and the leads that reached each stage (`funnel:<stage>`)."""
    funnel = range_figures.funnel(cohort)
    figure_ids = {f"funnel:{stage.stage}": stage.record_ids for stage in funnel.itertuples()}
    return plain_rows(funnel.drop(columns="record_ids")), figure_ids


def _rejection_reasons(cohort: pd.DataFrame) -> tuple[list[dict], FigureIds]:
    """The cohort's rejections by reason, and the leads behind each (`reason:<reason>`)."""
    reasons = range_figures.rejection_reasons(cohort)
    figure_ids = {f"reason:{reason.rejection_reason}": reason.record_ids for reason in reasons.itertuples()}
    return plain_rows(reasons.drop(columns="record_ids")), figure_ids


# --- drill-down, timeline, findings -----------------------------------------------------------


def records_for(
    engine: sa.Engine,
    record_ids: tuple[str, ...],
    sla_id: str,
    limit: int = DRILL_ROWS,
    object_type: str = "Lead",
    policy: Policy | None = None,
    now: dt.datetime | None = None,
) -> list[dict]:
    """The first `limit` records (by id) of `object_type` behind a figure, with owner and their
    clock's state (an Opportunity: its account's name as `company`, and its Amount); an open
    clock's elapsed time as of the monitor's latest run up to `now`, through the `policy`'s
    calendars (`war_room.live`; without them, as stored)."""
    shown = list(record_ids[:limit])
    if not shown:
        return []
    with read_only_connection(engine) as conn:
        leads = fetch_frame(conn, _leads_with_owner(shown, object_type))
        lead_clocks = fetch_frame(conn, _clocks_of(shown, sla_id))
        at = live.latest_run(conn, now) if policy is not None and now is not None else None
    lead_clocks = live.project(lead_clocks, policy, at)
    latest = (
        lead_clocks.drop_duplicates("record_id", keep="last").set_index("record_id")
        if len(lead_clocks)
        else None
    )
    by_id = {lead["record_id"]: lead for lead in plain_rows(leads)}
    return [_drill_row(record_id, by_id.get(record_id, {}), latest) for record_id in shown]


def _leads_with_owner(record_ids: list[str], object_type: str = "Lead") -> sa.Select:
    """The records' name, company (an Opportunity's: its account's name), status and source, their
    Amount, with their owner's name and team."""
    records, users = schema.records, schema.users
    account = records.alias("account")
    return (
        sa.select(
            records.c.record_id,
            records.c.name,
            sa.func.coalesce(records.c.company, account.c.name).label("company"),
            records.c.status,
            records.c.lead_source,
            amount(records).label("amount"),
            users.c.name.label("owner"),
            users.c.team,
        )
        .select_from(
            records.outerjoin(users, users.c.user_id == records.c.owner_id).outerjoin(
                account,
                sa.and_(account.c.object_type == "Account", account.c.record_id == records.c.account_id),
            )
        )
        .where(records.c.object_type == object_type, records.c.record_id.in_(record_ids))
    )


def _clocks_of(record_ids: list[str], sla_id: str) -> sa.Select:
    """The records' clocks of the SLA, each record's in start order (its latest last)."""
    clocks = schema.clocks
    return (
        sa.select(
            clocks.c.record_id,
            clocks.c.state,
            clocks.c.colour,
            clocks.c.clock_start,
            clocks.c.target_seconds,
            *raw_columns(
                clocks, *(c for c in live.PROJECTION_COLUMNS if c not in ("state", "target_seconds"))
            ),
        )
        .where(clocks.c.sla_id == sla_id, clocks.c.record_id.in_(record_ids))
        .order_by(clocks.c.record_id, clocks.c.clock_start)
    )


def _drill_row(record_id: str, lead: dict, latest_clocks: pd.DataFrame | None) -> dict:
    """One drill-down row: the lead's columns (None where the store has no such lead) and the state
    of its latest clock (None without one)."""
    row = {
        "record_id": record_id,
        "name": None,
        "company": None,
        "status": None,
        "lead_source": None,
        "amount": None,
        "owner": None,
        "team": None,
        "state": None,
        "colour": None,
        "elapsed_hours": None,
        "target_hours": None,
    }
    row.update(lead)
    if latest_clocks is not None and record_id in latest_clocks.index:
        row.update(
            state=latest_clocks.at[record_id, "state"],
            colour=latest_clocks.at[record_id, "colour"],
            elapsed_hours=latest_clocks.at[record_id, "elapsed_seconds"] / 3600,
            target_hours=latest_clocks.at[record_id, "target_seconds"] / 3600,
        )
    return row


def figure_ids(live: dict, in_range: dict, figure: str, *more: dict) -> tuple[str, ...]:
    """The record ids behind one figure of the page (`live`: the `now_panel`, `in_range`: the
    `range_panel`, `more`: other panels with `figures`, such as the `unowned_panel`).

    Raises:
        UnknownFigure: the page shows no such figure for these filters.
    """
    for panel in (live, in_range, *more):
        if figure in panel["figures"]:
            return panel["figures"][figure]
    raise UnknownFigure(figure)


def lead_in_scope(
    engine: sa.Engine,
    record_id: str,
    teams: Teams,
    policy: Policy | None,
    now: dt.datetime,
    handoffs: dict[str, Handoff] | None = None,
) -> bool:
    """Whether the scope's `teams` see the record (module docstring): every team sees every record;
    else its owner's team, a clock of it (held or answered for; a teamless clock of one of
    `handoffs` counts for the SLA's team) or the team its unowned wait is for must be one of them.
    False for a record the store does not hold."""
    if teams is None:
        return True
    records, clocks = schema.records, schema.clocks
    with read_only_connection(engine) as conn:
        if conn.execute(
            sa.select(records.c.record_id).where(records.c.record_id == record_id, _owned_in(teams))
        ).first():
            return True
        if conn.execute(
            sa.select(clocks.c.record_id)
            .where(clocks.c.record_id == record_id, _clock_of_teams(teams, handoffs or {}))
            .limit(1)
        ).first():
            return True
    if policy is None:
        return False
    return record_id in unowned_panel(engine, policy, now, limit=0, teams=teams)["figures"]["unowned"]


def record_exists(engine: sa.Engine, record_id: str) -> bool:
    """Whether the store holds the record (any object type)."""
    records = schema.records
    with read_only_connection(engine) as conn:
        return (
            conn.execute(sa.select(records.c.record_id).where(records.c.record_id == record_id)).first()
            is not None
        )


def clock_filters_for_teams(teams: frozenset[str], handoff: Handoff | None = None) -> list:
    """A clock held by or answered for by one of `teams` (a teamless one: by the `handoff`'s team)."""
    clocks = schema.clocks
    return [
        sa.or_(team_in(clocks.c.team, teams, handoff), team_in(clocks.c.accountable_team, teams, handoff))
    ]


def _clock_of_teams(teams: frozenset[str], handoffs: dict[str, Handoff]) -> sa.ColumnElement:
    """A clock of any SLA held or answered for by one of `teams`, a teamless one of the `handoffs`
    whose team is one of them counting."""
    clocks = schema.clocks
    (held,) = clock_filters_for_teams(teams)
    theirs = sorted(sla_id for sla_id, handoff in handoffs.items() if handoff.counts_for(teams))
    if not theirs:
        return held
    teamless = sa.and_(
        clocks.c.sla_id.in_(theirs), sa.or_(clocks.c.team.is_(None), clocks.c.accountable_team.is_(None))
    )
    return sa.or_(held, teamless)


def lead_timeline(
    engine: sa.Engine,
    record_id: str,
    fields: dict[str, tuple[str, ...]] | None = None,
    policy: Policy | None = None,
    now: dt.datetime | None = None,
) -> dict | None:
    """A record's "why": its row (an Opportunity's Amount as `amount`), clocks, audit entries (each
    with the rule that fired and the task-run link; routing's told in words, see `_routing_told`),
    its latest routing, the history of its status, owner and the `fields` of its object type
    (`handoffs.watched_fields`; default Status and OwnerId), and the quarantine and health findings
    naming it. None if unknown. An open clock's elapsed time is as of the monitor's latest run up
    to `now`, through the `policy`'s calendars (`war_room.live`; without them, as stored)."""
    events = record_timeline(engine, record_id)
    with read_only_connection(engine) as conn:
        lead = conn.execute(_record_with_owner_name(record_id)).mappings().first()
        if lead is None:
            return None
        object_type = lead["object_type"]
        lead_clocks = conn.execute(_clocks_by_start(record_id)).mappings().all()
        watched = (fields or {}).get(object_type, ("Status", "OwnerId"))
        changes = conn.execute(_status_and_owner_changes(object_type, record_id, watched)).mappings().all()
        quarantined = conn.execute(_quarantined(object_type, record_id)).mappings().all()
        who = owners(conn) if any(event["event"] in ROUTING_EVENTS for event in events) else None
        at = live.latest_run(conn, now) if policy is not None and now is not None else None
    events = _routing_told(events, who)
    routed = [event for event in events if event["event"] == ROUTED_EVENT]
    on_record = lead["fields"] if isinstance(lead["fields"], dict) else {}
    return {
        "lead": dict(lead, amount=on_record.get("Amount") if object_type == "Opportunity" else None),
        "routed": routed[-1] if routed else None,
        "clocks": _live_clocks([dict(clock) for clock in lead_clocks], policy, at),
        "events": events,
        "history": [dict(change) for change in changes],
        "quarantine": [dict(held) for held in quarantined],
        "findings": [
            finding for finding in health_findings(engine) if record_id in (finding.get("record_ids") or [])
        ],
    }


def _live_clocks(rows: list[dict], policy: Policy | None, at: dt.datetime | None) -> list[dict]:
    """The clock rows with their moving columns as of `at` (`war_room.live.project`)."""
    if not rows or policy is None or at is None:
        return rows
    moved = live.project(pd.DataFrame(rows), policy, at)
    return [{**row, **{c: moved.at[i, c].item() for c in live.MOVING_COLUMNS}} for i, row in enumerate(rows)]


def _routing_told(events: list[dict], who: Owners | None) -> list[dict]:
    """The timeline's audit entries, routing's with `routing`: the entry in words, owners named as
    the CRM has them (`Owners.describe`: a rep's name, "queue Lead Intake", "nobody").

    - `routing` (a lead routed): to whom and their team, from whom, the rule, the reason written to
      Routing_Reason__c, the policy version.
    - `unowned_alert_queued`: who held the lead, since when, its team, which reminder, why routing
      could not place it.
    - `misrouted_lead`: the owner the policy would not have chosen, the rule, why.

    A queued notice is audited once per outbox row (each recipient on each channel): an unowned
    alert is shown once per reminder of its series, a mis-routed finding once per owner, with
    `messages`, the rows it stands for."""
    if who is None:
        return events
    told: list[dict] = []
    seen: dict[tuple, dict] = {}
    for event in events:
        kind, detail = event["event"], event.get("detail") or {}
        if kind not in ROUTING_EVENTS:
            told.append(event)
            continue
        key = (
            (kind, detail.get("since"), detail.get("reminder"))
            if kind == ALERT_EVENT
            else (kind, detail.get("owner"))
            if kind == MISROUTED_EVENT
            else None
        )
        if key in seen:
            seen[key]["routing"]["messages"] += 1
            continue
        entry = dict(event, routing=_routing_entry(kind, detail, event, who))
        if key is not None:
            seen[key] = entry
        told.append(entry)
    return told


def _routing_entry(kind: str, detail: dict, event: dict, who: Owners) -> dict:
    """One routing audit entry in the timeline's words (`_routing_told`)."""
    entry = {
        "owner": who.describe(detail.get("owner")),
        "team": detail.get("team"),
        "rule": detail.get("rule"),
        "why": detail.get("why"),
        "policy_version": detail.get("policy_version") or event.get("policy_version"),
        "messages": 1,
    }
    if kind == ROUTED_EVENT:
        entry.update(from_owner=who.describe(detail.get("from_owner")), reason=detail.get("reason"))
    elif kind == ALERT_EVENT:
        since = detail.get("since")
        entry.update(
            since=dt.datetime.fromisoformat(since) if isinstance(since, str) else since,
            reminder=detail.get("reminder"),
        )
    return entry


def _record_with_owner_name(record_id: str) -> sa.Select:
    """The record's row (any object type) with its owner's name as `owner_name`."""
    records, users = schema.records, schema.users
    return (
        sa.select(records, users.c.name.label("owner_name"))
        .select_from(records.outerjoin(users, users.c.user_id == records.c.owner_id))
        .where(records.c.record_id == record_id)
    )


def _clocks_by_start(record_id: str) -> sa.Select:
    """Every clock of the record, of every SLA, in start order."""
    clocks = schema.clocks
    return sa.select(clocks).where(clocks.c.record_id == record_id).order_by(clocks.c.clock_start)


def _status_and_owner_changes(
    object_type: str, record_id: str, fields: tuple[str, ...] = ("Status", "OwnerId")
) -> sa.Select:
    """The record's changes of `fields` (its status and owner, and what its SLAs watch), oldest first."""
    history = schema.field_history
    return (
        sa.select(history)
        .where(
            history.c.object_type == object_type,
            history.c.record_id == record_id,
            history.c.field.in_(list(fields)),
        )
        .order_by(history.c.changed_at)
    )


def _quarantined(object_type: str, record_id: str) -> sa.Select:
    """The record's quarantine rows (held or released), first seen first."""
    quarantine = schema.quarantine
    return (
        sa.select(quarantine)
        .where(quarantine.c.object_type == object_type, quarantine.c.record_id == record_id)
        .order_by(quarantine.c.first_seen_at)
    )


def health_findings(engine: sa.Engine, limit: int = 50) -> list[dict]:
    """Latest rows of the `health_findings` table (sla_health's), newest first. One query: the
    table is the store's own (reflecting it for every page cost a dozen catalogue queries)."""
    findings = schema.health_findings
    with read_only_connection(engine) as conn:
        return [
            dict(finding)
            for finding in conn.execute(
                sa.select(findings)
                .order_by(findings.c.run_at.desc(), findings.c.finding_id.desc())
                .limit(limit)
            ).mappings()
        ]


def crm_feed(engine: sa.Engine) -> dict | None:
    """How crm_sync hears of CRM changes (`store.stream`: streaming or polling, since when, why),
    for the page's header; None before any change stream listener reported."""
    from leadsla.store import stream

    with read_only_connection(engine) as conn:
        if not sa.inspect(conn).has_table("crm_stream_status"):
            return None
        status = stream.status(conn)
    if status is None:
        return None
    return {"mode": status.mode, "since": status.since, "reason": status.reason}


def quarantine_summary(engine: sa.Engine) -> list[dict]:
    """Rows still held in quarantine, by object type: count and the latest one's reasons."""
    quarantine = schema.quarantine
    with read_only_connection(engine) as conn:
        held_by_object = (
            conn.execute(
                sa.select(
                    quarantine.c.object_type,
                    sa.func.count().label("held"),
                    sa.func.max(quarantine.c.last_seen_at).label("last_seen_at"),
                )
                .where(quarantine.c.released_at.is_(None))
                .group_by(quarantine.c.object_type)
                .order_by(quarantine.c.object_type)
            )
            .mappings()
            .all()
        )
        summary = []
        for held in held_by_object:
            latest = (
                conn.execute(
                    sa.select(quarantine.c.record_id, quarantine.c.reasons)
                    .where(
                        quarantine.c.released_at.is_(None), quarantine.c.object_type == held["object_type"]
                    )
                    .order_by(quarantine.c.last_seen_at.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            summary.append(dict(held, example=dict(latest) if latest else None))
    return summary


def record_denied(
    engine: sa.Engine, *, user_id: str, user_name: str, at: dt.datetime, route: str, reason: str
) -> None:
    """Audit one refused War Room request (`war_room_denied`): who, which route (its template,
    not the path: no record id), why. Never lead data."""
    with engine.begin() as conn:
        record(
            conn,
            DENIED_EVENT,
            at=at,
            context=AuditContext(),
            actor=user_name or user_id,
            detail={"user_id": user_id, "route": route, "reason": reason},
        )


def record_visit(
    engine: sa.Engine, *, user_id: str, user_name: str, at: dt.datetime, detail: dict[str, Any]
) -> None:
    """Audit one War Room visit; actor is the user's name (the monthly review's leader check
    matches the actor against CRM user ids and names)."""
    with engine.begin() as conn:
        record(
            conn,
            "war_room_visit",
            at=at,
            context=AuditContext(),
            actor=user_name or user_id,
            detail={"user_id": user_id, **detail},
        )
