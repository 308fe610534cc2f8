"""The outbox's state read narrow (`notify.outbox.queue_state` with `leaders`: the rows no decision
reads only counted per person, in SQL) decides exactly what the whole read decides, on both store
backends: the rate limit's digests and the capacity alerts' roll-ups, over a varied outbox (due,
tried, held, delivered in and before the window, not due yet, planned for later and for earlier,
notices, digests, texts, breach actions, leaders' breach messages) at instants on either side of
the planned ones. The monitor reads it narrow (`tasks.monitor._decision_reads`)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pandas as pd
import pytest
import sqlalchemy as sa

from leadsla.decisions.ahead import leadership
from leadsla.decisions.capacity import decide_capacity
from leadsla.decisions.digest import decide_digests
from leadsla.decisions.plan import Message, Notice, Plan
from leadsla.notify import outbox as outbox_module
from leadsla.notify.outbox import enqueue, queue_notices, queue_state
from leadsla.policy import load_policy
from leadsla.store.audit import AuditContext
from leadsla.store.schema import outbox
from tests.integration.test_capacity import clocks as team_clocks
from tests.notify_fixtures import alert_payload

POLICY = load_policy()
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="evaluate", try_number=1)
DAY = dt.datetime(2026, 11, 17, 14, 0, tzinfo=dt.UTC)  # Tuesday 09:00 New York
NOW = DAY + dt.timedelta(hours=8)  # 17:00 New York
WINDOW = 10
RITA, MAX = "rita.rep@example.com", "max.manager@example.com"
#: The instants the two reads are compared at: before, at and after the planned rows' instants.
INSTANTS = [NOW - dt.timedelta(minutes=30), NOW, NOW + dt.timedelta(minutes=7), NOW + dt.timedelta(hours=2)]


def iso(at: dt.datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def message(
    n: int,
    recipient: str,
    channel: str,
    kind: str = "warning",
    *,
    team: str = "sdr_east",
    start: dt.datetime = DAY,
    planned_for: dt.datetime | None = None,
    not_before: dt.datetime | None = None,
) -> Message:
    rid = f"00Q{team[4].upper()}{n:014d}"
    payload = alert_payload(
        kind,
        lead={"id": rid, "name": f"Lead {n}"},
        team={"name": team, "timezone": "America/New_York"},
        **({"planned": True, "due_at": iso(planned_for)} if planned_for else {}),
    )
    return Message(
        "sales_touch",
        rid,
        start + dt.timedelta(minutes=n),
        "breach" if kind == "breach" else "warn_50",
        recipient,
        channel,
        payload,
        not_before=not_before or planned_for,
    )


def set_row(conn: sa.Connection, m: Message, **values) -> None:
    """A row's delivery state as a deliverer would leave it (test set-up, not a production write)."""
    done = conn.execute(outbox.update().where(outbox.c.idempotency_key == m.key).values(**values))
    assert done.rowcount == 1


def seed_varied(engine: sa.Engine) -> None:
    vps = sorted(leadership(POLICY))
    assert vps, "the demo policy names leaders for the capacity alerts"
    early = NOW - dt.timedelta(minutes=5)
    due = [message(n, RITA, "email") for n in range(6)]
    breaches = [message(10 + n, RITA, "email", "breach") for n in range(2)]
    tried = message(20, RITA, "email")
    delivered = message(21, RITA, "email")
    delivered_long_ago = message(22, RITA, "email")
    quiet = message(23, RITA, "email", not_before=NOW + dt.timedelta(hours=10))
    planned_later = message(24, RITA, "email", planned_for=NOW + dt.timedelta(minutes=5))
    planned_breach_later = message(25, RITA, "email", "breach", planned_for=NOW + dt.timedelta(minutes=5))
    planned_breach_earlier = message(26, RITA, "email", "breach", planned_for=NOW - dt.timedelta(minutes=20))
    planned_earlier = message(27, RITA, "email", planned_for=NOW - dt.timedelta(minutes=2))
    held = message(28, RITA, "email")
    failed = message(29, RITA, "email")
    # On Slack, only breaches beside two due warnings: the breaches alone fill the allowance.
    slack_breaches = [message(30 + n, RITA, "slack", "breach") for n in range(3)]
    slack_due = [message(40 + n, RITA, "slack") for n in range(2)]
    texts = [message(50 + n, RITA, "sms", "breach") for n in range(4)] + [message(54, RITA, "sms")]
    manager = [message(60 + n, MAX, "email") for n in range(2)] + [message(62, MAX, "email", "breach")]
    # Leaders' breach messages about a systemic team (rolled up), another team (not), and one tried.
    east = [message(70 + n, vp, "email" if "@" in vp else "slack", "breach") for n in range(3) for vp in vps]
    west = [message(80, vp, "email" if "@" in vp else "slack", "breach", team="sdr_west") for vp in vps]
    vp_tried = message(90, vps[0], "email" if "@" in vps[0] else "slack", "breach")
    vp_future = message(
        91, vps[0], "email" if "@" in vps[0] else "slack", "breach", planned_for=NOW + dt.timedelta(minutes=5)
    )
    with engine.begin() as conn:
        enqueue(
            conn,
            [
                *due,
                *breaches,
                tried,
                delivered,
                delivered_long_ago,
                quiet,
                planned_later,
                planned_breach_later,
                planned_breach_earlier,
                planned_earlier,
                held,
                failed,
                *slack_breaches,
                *slack_due,
                *texts,
                *manager,
                *east,
                *west,
                vp_tried,
                vp_future,
            ],
            early,
            CTX,
        )
        set_row(conn, tried, attempts=1, claimed_until=NOW + dt.timedelta(seconds=20))
        set_row(conn, delivered, status="delivered", attempts=1, delivered_at=NOW - dt.timedelta(minutes=3))
        set_row(
            conn, delivered_long_ago, status="delivered", attempts=1, delivered_at=NOW - dt.timedelta(hours=1)
        )
        set_row(conn, held, claimed_until=NOW + dt.timedelta(minutes=2))  # held for a digest: untouched
        set_row(conn, failed, attempts=2, not_before=NOW - dt.timedelta(minutes=1))  # back off, due again
        set_row(conn, vp_tried, attempts=1)
        set_row(conn, texts[0], status="failed", attempts=3)
        queue_notices(
            conn,
            [
                Notice(
                    source="health",
                    subject="stale sync",
                    opened_at=DAY,
                    checkpoint="incident",
                    recipients=(("email", RITA), ("slack", vps[-1])),
                    title="The sync is late",
                    severity="warning",
                )
            ],
            early,
            CTX,
        )
        # An earlier digest of Max's warnings (a pending digest row counts, never digestible).
        maxs = [r for r in queue_state(conn, early, window_minutes=WINDOW).rows if r.recipient == MAX]
        outbox_module.apply(
            conn,
            Plan(digests=decide_digests(maxs, early, max_alerts=1, window_minutes=WINDOW)),
            early,
            CTX,
        )


@pytest.fixture
def varied(store) -> sa.Engine:
    seed_varied(store)
    return store


@pytest.mark.parametrize("at", INSTANTS, ids=lambda at: at.strftime("%H:%M"))
def test_the_narrow_read_decides_the_digests_and_roll_ups_the_whole_read_does(varied, at) -> None:
    leaders = leadership(POLICY)
    with varied.connect() as conn:
        whole = queue_state(conn, at, window_minutes=WINDOW)
        narrow = queue_state(conn, at, window_minutes=WINDOW, leaders=leaders)
    assert narrow.handled == whole.handled and narrow.next_seq == whole.next_seq
    assert not whole.counted and narrow.counted  # the narrow read counts what it leaves out
    assert len(narrow.rows) < len(whole.rows)
    # Every row of the whole read is in the narrow one, read or counted, by person; none twice.
    assert {r.key for r in narrow.rows} <= {r.key for r in whole.rows}
    assert Counter((r.recipient, r.channel) for r in whole.rows) == Counter(
        (r.recipient, r.channel) for r in narrow.rows
    ) + Counter(narrow.counted)
    for max_alerts in range(1, 12):
        expected = decide_digests(whole.rows, at, max_alerts=max_alerts, window_minutes=WINDOW)
        assert (
            decide_digests(
                narrow.rows, at, max_alerts=max_alerts, window_minutes=WINDOW, counted=narrow.counted
            )
            == expected
        ), max_alerts
    frame = pd.concat([team_clocks("sdr_east", 10, 8), team_clocks("sdr_west", 10, 2)], ignore_index=True)
    notices, roll_ups = decide_capacity(frame, POLICY, at, whole.rows, whole.handled)
    assert decide_capacity(frame, POLICY, at, narrow.rows, narrow.handled) == (notices, roll_ups)
    if at == NOW:  # the comparison decides something: digests of both kinds and roll-ups
        assert roll_ups and notices
        digests = decide_digests(whole.rows, at, max_alerts=3, window_minutes=WINDOW)
        assert {(d.recipient, d.channel) for d in digests} >= {(RITA, "email"), (RITA, "slack")}
        # Rita's Slack breaches are only counted by the narrow read, yet they fill her allowance.
        assert not any(
            r.recipient == RITA and r.channel == "slack" and r.kind == "breach" for r in narrow.rows
        )
        assert decide_digests(narrow.rows, at, max_alerts=3, window_minutes=WINDOW) != digests


def test_a_planned_row_is_left_out_of_the_counts_until_its_instant(varied) -> None:
    leaders = leadership(POLICY)
    counts = {}
    for at in (NOW, NOW + dt.timedelta(minutes=5)):
        with varied.connect() as conn:
            counts[at] = queue_state(conn, at, window_minutes=WINDOW, leaders=leaders).counted
    # Rita's planned breach e-mail falls due at NOW + 5 min: counted from its instant, not before.
    assert counts[NOW + dt.timedelta(minutes=5)][(RITA, "email")] == counts[NOW][(RITA, "email")] + 1
