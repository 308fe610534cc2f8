"""The War Room's reads: the live panel (open clocks by colour, at-risk list, breaches today, the
systemic-breach banner), the range panel (scorecards, trend, funnel, rejection reasons; the arithmetic
in `war_room.figures`), drill-down to the records behind any figure, a lead's "why"
timeline and the data-quality / health findings.

Every figure is registered under a key in `figures` with the record ids behind it, so the
drill-down lists exactly the rows a figure counted. Filters are pushed into SQL so that only the
range's rows are loaded (the page must answer in under a second with 100,000 leads). Read-only:
the only write is `record_visit`, one audit row.
"""

from __future__ import annotations

import datetime as dt
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa

from leadsla.reports import metrics as m
from leadsla.reports.timeline import record_timeline
from leadsla.store import schema as s
from leadsla.store.audit import AuditContext, record
from leadsla.store.connection import READ_ONLY
from leadsla.war_room import figures as rf
from leadsla.war_room.filters import Filters

#: Clocks still waiting for a touch; "breached" ones are the red, overdue part of the live panel.
OPEN_STATES = ("running", "paused", "breached")
AT_RISK_ROWS = 25
#: `field = 'Status'` as a literal: SQLite uses the partial Status index of field_history only when
#: the query's condition matches the index's own (a bound parameter does not).
STATUS_FIELD = sa.literal_column("'Status'")
DRILL_ROWS = 500
#: Systemic breach: a team where at least this many leads breached today ...
SYSTEMIC_MIN_BREACHES = 3
#: ... spread over at least this share of its reps (a team-wide capacity problem, not one rep).
SYSTEMIC_REP_SHARE = 0.5


class UnknownFigure(LookupError):
    """A drill-down asked for a figure the page does not show."""


def read_only_connection(engine: sa.Engine) -> sa.Connection:
    """A connection for reads only: on SQLite it takes no write lock, so the page neither waits
    for the CRM sync nor holds it up."""
    return engine.execution_options(**{READ_ONLY: True}).connect()


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
    """The table's columns, with UTC timestamps read raw (no per-row TypeDecorator call) and
    converted vectorised by `parse_utc` - the stored values are UTC on both backends."""
    cols = []
    for col in table.c:
        if names and col.name not in names:
            continue
        cols.append(
            sa.type_coerce(col, sa.String).label(col.name) if isinstance(col.type, s.UtcDateTime) else col
        )
    return cols


def parse_utc(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    """`df` with each of `cols` it has (read by `raw_columns`) parsed into aware UTC
    timestamps, in place; an empty frame gets empty UTC columns."""
    for col in cols:
        if col in df:
            df[col] = (
                pd.to_datetime(df[col], utc=True, format="ISO8601")
                if len(df)
                else pd.Series([], dtype="datetime64[us, UTC]")
            )
    return df


def clock_filters(f: Filters, *, accountable: bool = False) -> list:
    """Owner/team/source filters on clocks: by who has the lead now, or (`accountable`, for
    compliance) by who answers for the clock - the owner when it breached."""
    c, r = s.clocks, s.records
    out = []
    if f.owner:
        out.append((c.c.accountable_owner_id if accountable else c.c.owner_id) == f.owner)
    if f.team:
        out.append((c.c.accountable_team if accountable else c.c.team) == f.team)
    if f.lead_source:
        out.append(c.c.record_id.in_(sa.select(r.c.record_id).where(r.c.lead_source == f.lead_source)))
    return out


def lead_filters(f: Filters) -> list:
    """Conditions on `records` for the filters' leads: live (not deleted) leads, of the owner, of an
    owner in the team (by the users table), from the lead source."""
    r, u = s.records, s.users
    out = [r.c.object_type == "Lead", r.c.is_deleted.is_(False)]
    if f.owner:
        out.append(r.c.owner_id == f.owner)
    if f.team:
        out.append(r.c.owner_id.in_(sa.select(u.c.user_id).where(u.c.team == f.team)))
    if f.lead_source:
        out.append(r.c.lead_source == f.lead_source)
    return out


def options(engine: sa.Engine) -> dict:
    """Values for the filter drop-downs: lead sources, owners (id, name), teams."""
    r, u = s.records, s.users
    with read_only_connection(engine) as conn:
        sources = [
            v
            for (v,) in conn.execute(
                sa.select(r.c.lead_source)
                .where(r.c.object_type == "Lead")
                .distinct()
                .order_by(r.c.lead_source)
            )
            if v
        ]
        users = conn.execute(sa.select(u.c.user_id, u.c.name, u.c.team).order_by(u.c.name)).all()
    return {
        "sources": sources,
        "owners": [(x.user_id, x.name or x.user_id) for x in users],
        "teams": sorted({x.team for x in users if x.team}),
    }


# --- now ---------------------------------------------------------------------------------------


def now_panel(engine: sa.Engine, f: Filters, now: dt.datetime, sla_id: str) -> dict:
    """Live state, independent of the date range: open clocks by colour, the at-risk list (least
    time remaining first), breaches since local midnight and the systemic-breach banner."""
    c, r, u = s.clocks, s.records, s.users
    today = dt.datetime.combine(
        now.astimezone(ZoneInfo(f.timezone)).date(), dt.time(), ZoneInfo(f.timezone)
    ).astimezone(dt.UTC)
    # `sla_id || ''` keeps SQLite from using the (sla_id, clock_start) index, which would scan every
    # clock of the SLA; the state and breached_at indexes find the few live rows directly.
    where = [c.c.sla_id.concat("") == sla_id, *clock_filters(f)]
    with read_only_connection(engine) as conn:
        open_ = fetch_frame(
            conn, sa.select(c.c.record_id, c.c.colour).where(c.c.state.in_(OPEN_STATES), *where)
        )
        risk = fetch_frame(
            conn,
            sa.select(
                c.c.record_id,
                r.c.name,
                u.c.name.label("owner"),
                c.c.team,
                c.c.state,
                c.c.colour,
                c.c.remaining_seconds,
                c.c.deadline,
                c.c.next_checkpoint,
            )
            .select_from(
                c.outerjoin(r, sa.and_(r.c.record_id == c.c.record_id, r.c.object_type == "Lead")).outerjoin(
                    u, u.c.user_id == c.c.owner_id
                )
            )
            .where(c.c.state.in_(OPEN_STATES), *where)
            .order_by(c.c.remaining_seconds, c.c.record_id)
            .limit(AT_RISK_ROWS),
        )
        # Who breached (the accountable owner), not the manager a breach escalation handed it to.
        breaches = fetch_frame(
            conn,
            sa.select(
                c.c.record_id, c.c.accountable_owner_id.label("owner_id"), c.c.accountable_team.label("team")
            ).where(c.c.breached_at >= today, c.c.breached_at <= now, *where),
        )
        team_reps = dict(
            conn.execute(
                sa.select(u.c.team, sa.func.count())
                .where(u.c.is_active.is_(True), u.c.team.is_not(None))
                .group_by(u.c.team)
            ).all()
        )
    figures: dict[str, tuple[str, ...]] = {}
    colours = {}
    for colour in ("green", "yellow", "red"):
        ids = m.ids(open_.loc[open_["colour"] == colour, "record_id"]) if len(open_) else ()
        colours[colour] = len(ids)
        figures[f"open:{colour}"] = ids
    figures["breaches_today"] = m.ids(breaches["record_id"]) if len(breaches) else ()
    banners = []
    for team, g in breaches.groupby("team") if len(breaches) else ():
        reps = g["owner_id"].nunique()
        if len(g) >= SYSTEMIC_MIN_BREACHES and reps >= max(2, SYSTEMIC_REP_SHARE * team_reps.get(team, 0)):
            figures[f"systemic:{team}"] = m.ids(g["record_id"])
            banners.append(
                {"team": team, "breaches": len(g), "reps": int(reps), "team_reps": team_reps.get(team, 0)}
            )
    return {
        "colours": colours,
        "at_risk": plain_rows(risk),
        "breaches_today": len(figures["breaches_today"]),
        "systemic": banners,
        "figures": figures,
        "today": today,
    }


# --- range -------------------------------------------------------------------------------------


def week_starts(f: Filters) -> list[tuple[dt.datetime, str]]:
    """The range's weeks (leadership's, Monday start): (first UTC instant in the range, label
    YYYY-MM-DD of its Monday), in order.

    Labelled exactly as the reports label a clock's week (local midnight minus its weekday),
    one local day at a time, so the store can bucket clocks by their start without fetching it.
    """
    tz = ZoneInfo(f.timezone)
    days = [f.start + dt.timedelta(days=i) for i in range((f.end - f.start).days + 1)]
    noon = pd.Series(pd.DatetimeIndex([dt.datetime.combine(d, dt.time(12), tz) for d in days]))
    local = noon.dt.tz_convert(f.timezone)
    labels = (local.dt.normalize() - pd.to_timedelta(local.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
    out: list[tuple[dt.datetime, str]] = []
    for day, label in zip(days, labels, strict=True):
        if not out or out[-1][1] != label:
            out.append((dt.datetime.combine(day, dt.time(), tz).astimezone(dt.UTC), label))
    return out


def _judged_clocks(f: Filters, sla_id: str) -> sa.Select:
    """Clocks started in the range, judged by the store as of the range's end (as
    `reports.metrics.judged_clocks`): record_id, rep (the accountable owner's name - the owner
    when the clock breached, else the current one -, else their id, else "(no owner)"), team (the
    clock's accountable team, else that owner's, else "(no team)"), outcome (0 open,
    1 met, 2 violated: breached before the end), touched_seconds (the engine's elapsed time when
    stopped before the end) and week (index into `week_starts`)."""
    p = f.period
    c, u = s.clocks, s.users
    weeks = week_starts(f)
    # The week's index in `weeks` (small ints cost nothing to fetch; labels are put back after).
    week = (
        sa.case(
            *[(c.c.clock_start < nxt, i) for i, (_, (nxt, _)) in enumerate(pairwise(weeks))],
            else_=len(weeks) - 1,
        )
        if len(weeks) > 1
        else sa.literal(0)
    )
    return (
        sa.select(
            c.c.record_id,
            sa.func.coalesce(u.c.name, c.c.accountable_owner_id, "(no owner)").label("rep"),
            sa.func.coalesce(c.c.accountable_team, u.c.team, "(no team)").label("team"),
            sa.case(
                (c.c.breached_at < p.end, rf.VIOLATED), (c.c.stopped_at < p.end, rf.MET), else_=rf.OPEN
            ).label("outcome"),
            sa.case((c.c.stopped_at < p.end, c.c.elapsed_seconds)).label("touched_seconds"),
            week.label("week"),
        )
        .select_from(c.outerjoin(u, u.c.user_id == c.c.accountable_owner_id))
        .where(
            c.c.sla_id == sla_id,
            c.c.clock_start >= p.start,
            c.c.clock_start < p.end,
            *clock_filters(f, accountable=True),
        )
    )


def _cohort_changes(f: Filters) -> sa.Select:
    """The MQL cohort's candidates (leads with an MQL change in the range, and leads created in it:
    one created as MQL has no history row for it) with every Status change of theirs before the
    range's end, one row per change (a lead without any: one row, no change), read from the
    partial Status index: record_id, status, created_at, rejection_reason, new_value, old_value,
    changed_at. `figures.cohort` keeps the leads whose MQL arrival falls in the range."""
    p = f.period
    r, h = s.records, s.field_history
    became_mql = sa.select(h.c.record_id).where(
        h.c.object_type == "Lead",
        h.c.field == "Status",
        h.c.new_value == "MQL",
        h.c.changed_at >= p.start,
        h.c.changed_at < p.end,
    )
    created = sa.select(r.c.record_id).where(
        r.c.object_type == "Lead", r.c.created_at >= p.start, r.c.created_at < p.end
    )
    if f.owner or f.team or f.lead_source:
        became_mql = became_mql.where(h.c.record_id.in_(sa.select(r.c.record_id).where(*lead_filters(f))))
        created = created.where(*lead_filters(f))
    cohort = sa.union(became_mql, created).cte("war_room_cohort")
    return sa.select(
        r.c.record_id,
        r.c.status,
        *raw_columns(r, "created_at"),
        r.c.rejection_reason,
        h.c.new_value,
        h.c.old_value,
        *raw_columns(h, "changed_at"),
    ).select_from(
        cohort.join(
            r,
            sa.and_(
                r.c.object_type == "Lead", r.c.record_id == cohort.c.record_id, r.c.is_deleted.is_(False)
            ),
        ).outerjoin(  # as the reports: deleted leads never count
            h,
            sa.and_(
                h.c.object_type == "Lead",
                h.c.record_id == r.c.record_id,
                h.c.field == STATUS_FIELD,
                h.c.changed_at < p.end,
            ),
        )
    )


def plain_rows(df: pd.DataFrame) -> list[dict]:
    """The frame's rows as dicts for the templates, with missing values (NaN, NaT, None) as None."""
    return [
        {k: (None if not isinstance(v, tuple | list) and pd.isna(v) else v) for k, v in row.items()}
        for row in df.to_dict("records")
    ]


def range_panel(engine: sa.Engine, f: Filters, sla_id: str) -> dict:
    """Scorecards per rep and team beside the team / overall average, the weekly trend, the funnel
    and rejection reasons, for the filtered range (clocks judged as of the range's end).

    Two reads: the range's clocks already judged (`_judged_clocks`) and the cohort candidates'
    Status changes (`_cohort_changes`); `figures` does the rest with one sort by record id per
    frame. The page shows no per-source compliance, so leads of clocks are not loaded.
    """
    p = f.period

    with read_only_connection(engine) as conn:
        c = rf.sorted_by_record(fetch_frame(conn, _judged_clocks(f, sla_id), objects=True))
        c["week"] = (
            np.array([label for _, label in week_starts(f)], dtype=object)[
                c["week"].to_numpy().astype(np.int64)
            ]
            if len(c)
            else c["week"]
        )
        changes = fetch_frame(conn, _cohort_changes(f), objects=True)
    coh = rf.cohort(changes, p)
    figures: dict[str, tuple[str, ...]] = {}
    overall = rf.compliance(c, [])
    ov = overall.iloc[0] if len(overall) else None
    figures["overall"] = ov["record_ids"] if ov is not None else ()
    figures["overall_violated"] = ov["violated_ids"] if ov is not None else ()
    reps = rf.compliance(c, ["team", "rep"])
    teams = rf.compliance(c, ["team"])
    touch_rep = rf.median_first_touch(c, "rep")
    touch_team = rf.median_first_touch(c, "team")
    team_comp = teams.set_index("team")["compliance"]
    rep_rows = []
    for row in reps.itertuples():
        figures[f"rep:{row.rep}"] = row.record_ids
        figures[f"rep_violated:{row.rep}"] = row.violated_ids
        rep_rows.append(
            {
                "team": row.team,
                "rep": row.rep,
                "decided": row.decided,
                "met": row.met,
                "violated": row.violated,
                "compliance": row.compliance,
                "team_compliance": team_comp.get(row.team),
                "median_hours": touch_rep.get(row.rep),
            }
        )
    team_rows = []
    for row in teams.itertuples():
        figures[f"team:{row.team}"] = row.record_ids
        figures[f"team_violated:{row.team}"] = row.violated_ids
        team_rows.append(
            {
                "team": row.team,
                "decided": row.decided,
                "violated": row.violated,
                "compliance": row.compliance,
                "overall": ov["compliance"] if ov is not None else None,
                "median_hours": touch_team.get(row.team),
            }
        )
    trend = rf.compliance(c, ["week"])
    for row in trend.itertuples():
        figures[f"week:{row.week}"] = row.record_ids
        figures[f"week_violated:{row.week}"] = row.violated_ids
    fun = rf.funnel(coh)
    for row in fun.itertuples():
        figures[f"funnel:{row.stage}"] = row.record_ids
    reasons = rf.rejection_reasons(coh)
    for row in reasons.itertuples():
        figures[f"reason:{row.rejection_reason}"] = row.record_ids
    return {
        "overall": {
            "decided": int(ov["decided"]) if ov is not None else 0,
            "violated": int(ov["violated"]) if ov is not None else 0,
            "compliance": ov["compliance"] if ov is not None else None,
        },
        "reps": rep_rows,
        "teams": team_rows,
        "trend": plain_rows(trend[["week", "decided", "violated", "compliance"]]),
        "funnel": plain_rows(fun.drop(columns="record_ids")),
        "reasons": plain_rows(reasons.drop(columns="record_ids")),
        "figures": figures,
        "period": p,
    }


# --- drill-down, timeline, findings -----------------------------------------------------------


def records_for(
    engine: sa.Engine, record_ids: tuple[str, ...], sla_id: str, limit: int = DRILL_ROWS
) -> list[dict]:
    """The first `limit` records (by id) behind a figure, with owner and their clock's state."""
    shown = list(record_ids[:limit])
    if not shown:
        return []
    r, u, c = s.records, s.users, s.clocks
    with read_only_connection(engine) as conn:
        leads = fetch_frame(
            conn,
            sa.select(
                r.c.record_id,
                r.c.name,
                r.c.company,
                r.c.status,
                r.c.lead_source,
                u.c.name.label("owner"),
                u.c.team,
            )
            .select_from(r.outerjoin(u, u.c.user_id == r.c.owner_id))
            .where(r.c.object_type == "Lead", r.c.record_id.in_(shown)),
        )
        clocks = fetch_frame(
            conn,
            sa.select(
                c.c.record_id, c.c.state, c.c.colour, c.c.clock_start, c.c.elapsed_seconds, c.c.target_seconds
            )
            .where(c.c.sla_id == sla_id, c.c.record_id.in_(shown))
            .order_by(c.c.record_id, c.c.clock_start),
        )
    latest = clocks.drop_duplicates("record_id", keep="last").set_index("record_id") if len(clocks) else None
    by_id = {row["record_id"]: row for row in plain_rows(leads)}
    out = []
    for rid in shown:
        row = {
            "record_id": rid,
            "name": None,
            "company": None,
            "status": None,
            "lead_source": None,
            "owner": None,
            "team": None,
            "state": None,
            "colour": None,
            "elapsed_hours": None,
            "target_hours": None,
        }
        row.update(by_id.get(rid, {}))
        if latest is not None and rid in latest.index:
            row.update(
                state=latest.at[rid, "state"],
                colour=latest.at[rid, "colour"],
                elapsed_hours=latest.at[rid, "elapsed_seconds"] / 3600,
                target_hours=latest.at[rid, "target_seconds"] / 3600,
            )
        out.append(row)
    return out


def figure_ids(now: dict, rng: dict, figure: str) -> tuple[str, ...]:
    """The record ids behind one figure of the page.

    Raises:
        UnknownFigure: the page shows no such figure for these filters.
    """
    for panel in (now, rng):
        if figure in panel["figures"]:
            return panel["figures"][figure]
    raise UnknownFigure(figure)


def lead_timeline(engine: sa.Engine, record_id: str) -> dict | None:
    """A lead's "why": its row, clocks, audit entries (each with the rule that fired and the task-run
    link), Status/owner history, and the quarantine and health findings naming it. None if unknown."""
    r, c, h, u, q = s.records, s.clocks, s.field_history, s.users, s.quarantine
    with read_only_connection(engine) as conn:
        lead = (
            conn.execute(
                sa.select(r, u.c.name.label("owner_name"))
                .select_from(r.outerjoin(u, u.c.user_id == r.c.owner_id))
                .where(r.c.record_id == record_id)
            )
            .mappings()
            .first()
        )
        if lead is None:
            return None
        kind = lead["object_type"]
        clocks = (
            conn.execute(sa.select(c).where(c.c.record_id == record_id).order_by(c.c.clock_start))
            .mappings()
            .all()
        )
        history = (
            conn.execute(
                sa.select(h)
                .where(
                    h.c.object_type == kind, h.c.record_id == record_id, h.c.field.in_(["Status", "OwnerId"])
                )
                .order_by(h.c.changed_at)
            )
            .mappings()
            .all()
        )
        quarantined = (
            conn.execute(
                sa.select(q)
                .where(q.c.object_type == kind, q.c.record_id == record_id)
                .order_by(q.c.first_seen_at)
            )
            .mappings()
            .all()
        )
    return {
        "lead": dict(lead),
        "clocks": [dict(x) for x in clocks],
        "events": record_timeline(engine, record_id),
        "history": [dict(x) for x in history],
        "quarantine": [dict(x) for x in quarantined],
        "findings": [f for f in health_findings(engine) if record_id in (f.get("record_ids") or [])],
    }


def health_findings(engine: sa.Engine, limit: int = 50) -> list[dict]:
    """Latest rows of the `health_findings` table (the data-quality gate's), or [] when the store
    has no such table yet."""
    with read_only_connection(engine) as conn:
        if not sa.inspect(conn).has_table("health_findings"):
            return []
        table = sa.Table("health_findings", sa.MetaData(), autoload_with=conn)
        order = table.c.run_at.desc() if "run_at" in table.c else sa.text("1")
        return [dict(x) for x in conn.execute(sa.select(table).order_by(order).limit(limit)).mappings()]


def quarantine_summary(engine: sa.Engine) -> list[dict]:
    """Rows still held in quarantine, by object type: count and the latest one's reasons."""
    q = s.quarantine
    with read_only_connection(engine) as conn:
        rows = (
            conn.execute(
                sa.select(
                    q.c.object_type,
                    sa.func.count().label("held"),
                    sa.func.max(q.c.last_seen_at).label("last_seen_at"),
                )
                .where(q.c.released_at.is_(None))
                .group_by(q.c.object_type)
                .order_by(q.c.object_type)
            )
            .mappings()
            .all()
        )
        out = []
        for row in rows:
            latest = (
                conn.execute(
                    sa.select(q.c.record_id, q.c.reasons)
                    .where(q.c.released_at.is_(None), q.c.object_type == row["object_type"])
                    .order_by(q.c.last_seen_at.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            out.append(dict(row, example=dict(latest) if latest else None))
    return out


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
