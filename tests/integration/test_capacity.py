"""Systemic breach: one capacity alert per team and day to leadership, the team's VP breach messages
rolled up into it. Decided by `leadsla.decisions.capacity` from the outbox's state, applied by
`leadsla.notify.outbox.apply` on both store backends."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from leadsla.decisions.capacity import decide_capacity, systemic_teams
from leadsla.decisions.plan import Message, Plan
from leadsla.notify import outbox as outbox_module
from leadsla.notify.outbox import enqueue
from leadsla.policy import load_policy
from leadsla.store.audit import AuditContext
from leadsla.store.schema import audit, outbox
from tests.notify_fixtures import alert_payload

POLICY = load_policy()
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="evaluate", try_number=1)
DAY = dt.datetime(2026, 11, 17, 14, 0, tzinfo=dt.UTC)  # Tuesday 09:00 New York
NOW = DAY + dt.timedelta(hours=8)  # 17:00 New York
VPS = {"vp.sales@example.com", "vp.marketing@example.com", "vp.revops@example.com"}


def roll_up_capacity(conn, frame: pd.DataFrame, policy, now: dt.datetime, context) -> dict[str, int]:
    """The monitor's capacity step: decide from the outbox's state, then apply."""
    state = outbox_module.queue_state(conn, now, window_minutes=10)
    notices, roll_ups = decide_capacity(frame, policy, now, state.rows, state.handled)
    applied = outbox_module.apply(conn, Plan(notices=notices, roll_ups=roll_ups), now, context)
    teams = len(systemic_teams(frame, policy, now))
    return {"teams": teams, "alerts": applied["notices"], "rolled_up": applied["rolled_up"]}


def clocks(team: str, started: int, breached: int, *, day: dt.datetime = DAY) -> pd.DataFrame:
    rows = []
    for i in range(started):
        start = day + dt.timedelta(minutes=20 * i)
        rows.append(
            {
                "sla_id": "sales_touch",
                "record_id": f"00Q{team[4].upper()}{i:014d}",
                "clock_start": start,
                "team": team,
                "state": "breached" if i < breached else "running",
                "breached_at": start + dt.timedelta(hours=4) if i < breached else None,
            }
        )
    return pd.DataFrame(rows)


def breach_actions(frame: pd.DataFrame, recipients) -> list[Message]:
    out = []
    for r in frame[frame["breached_at"].notna()].to_dict("records"):
        for rcpt in recipients:
            payload = alert_payload(
                "breach",
                lead={"id": r["record_id"], "name": "Ada <b>"},
                team={"name": r["team"], "timezone": "America/New_York"},
            )
            out.append(
                Message(
                    "sales_touch",
                    r["record_id"],
                    r["clock_start"].to_pydatetime()
                    if hasattr(r["clock_start"], "to_pydatetime")
                    else r["clock_start"],
                    "breach",
                    rcpt,
                    "email",
                    payload,
                )
            )
    return out


def test_threshold_is_more_than_the_share_of_todays_clocks_in_the_team_day() -> None:
    assert systemic_teams(clocks("sdr_east", 10, 6), POLICY, NOW) == []  # 60 % is not more than 60 %
    [day] = systemic_teams(clocks("sdr_east", 10, 7), POLICY, NOW)
    assert (day.team, day.started, day.breached, day.day) == ("sdr_east", 10, 7, dt.date(2026, 11, 17))
    yesterday = clocks("sdr_east", 10, 10, day=DAY - dt.timedelta(days=1))
    assert systemic_teams(yesterday, POLICY, NOW) == []  # yesterday's clocks are not today's problem
    assert systemic_teams(clocks("sdr_east", 2, 2), POLICY, NOW) == []  # below min_clocks
    # 23:30 New York is already the next day in London: the team's own calendar day decides.
    late = clocks("sdr_emea", 5, 5, day=dt.datetime(2026, 11, 17, 9, 0, tzinfo=dt.UTC))
    assert systemic_teams(late, POLICY, dt.datetime(2026, 11, 18, 0, 30, tzinfo=dt.UTC)) == []


def test_one_capacity_alert_and_the_vp_breach_mails_roll_up_once(store) -> None:
    east, west = clocks("sdr_east", 10, 8), clocks("sdr_west", 10, 2)
    frame = pd.concat([east, west], ignore_index=True)
    with store.begin() as conn:
        enqueue(
            conn,
            breach_actions(east, [*sorted(VPS), "rita.rep@example.com"]) + breach_actions(west, VPS),
            NOW,
            CTX,
        )
        counts = roll_up_capacity(conn, frame, POLICY, NOW, CTX)
    assert counts == {"teams": 1, "alerts": 6, "rolled_up": 8 * 3}  # 3 VPs x (email + Slack channel)
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(
                outbox.c.checkpoint, outbox.c.recipient, outbox.c.status, outbox.c.payload, outbox.c.channel
            )
        ).all()
        events = conn.execute(
            sa.select(audit.c.event, audit.c.detail).where(
                audit.c.event.in_(["capacity_alert", "message_rolled_up"])
            )
        ).all()
    alerts = [r for r in rows if r.checkpoint == "capacity"]
    assert {(r.channel, r.recipient) for r in alerts} == {("email", v) for v in VPS} | {
        ("slack", "#sales-leadership"),
        ("slack", "#marketing-leadership"),
        ("slack", "#revops"),
    }
    lines = " ".join(alerts[0].payload["lines"])
    assert alerts[0].payload["subject"] == "sdr_east" and "8 of 10" in lines and "80%" in lines
    assert "between 09:00 and 12:00" in lines and "America/New_York" in lines  # the hours, in the team's zone
    rolled = [r for r in rows if r.status == "rolled_up"]
    assert len(rolled) == 24 and {r.recipient for r in rolled} == VPS
    assert all(r.payload["team"]["name"] == "sdr_east" for r in rolled)
    assert (
        sum(r.status == "pending" and r.recipient == "rita.rep@example.com" for r in rows) == 8
    )  # reps still told
    assert (
        sum(r.status == "pending" and r.payload.get("team", {}).get("name") == "sdr_west" for r in rows) == 6
    )
    assert (
        sum(e == "message_rolled_up" for e, _ in events) == 24
        and sum(e == "capacity_alert" for e, _ in events) == 6
    )
    assert all(d["capacity_key"] for e, d in events if e == "message_rolled_up" and d["channel"] == "email")
    # A later breach of the same team the same day: no second alert, its VP mails roll up too.
    more = clocks("sdr_east", 11, 9)
    later = NOW + dt.timedelta(minutes=30)
    with store.begin() as conn:
        enqueue(conn, breach_actions(more.iloc[8:9], VPS), later, CTX)
        assert roll_up_capacity(conn, more, POLICY, later, CTX) == {"teams": 1, "alerts": 0, "rolled_up": 3}
