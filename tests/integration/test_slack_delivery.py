"""Slack delivery with the real SlackHook/slack_sdk against the Slack stand-in: DMs, fallback,
Block Kit content, escaping, 429 storms, 5xx, and crash reconciliation. SQLite store (the
outbox itself is tested on both backends in test_outbox.py)."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import sqlalchemy as sa

from leadsla.decisions.plan import Message
from leadsla.notify.delivery import deliver_due
from leadsla.notify.outbox import claim, enqueue
from leadsla.notify.slack import SlackSender
from leadsla.store import open_store
from leadsla.store.audit import AuditContext
from leadsla.store.schema import audit, outbox
from tests.notify_fixtures import CLOCK_START, FALLBACK_CHANNEL, MANAGER, REP, alert_payload

pytest_plugins = ["tests.notify_fixtures"]  # the stand-in fixtures

T = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="deliver_alerts", try_number=1)


@pytest.fixture
def engine(tmp_path):
    eng = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    yield eng
    eng.dispose()


def queue(engine, *payloads_and_recipients, checkpoint="warn_50"):
    actions = [
        Message("mql_to_sal", "00Q000000000001AAA", CLOCK_START, checkpoint, rcpt, "slack", payload)
        for rcpt, payload in payloads_and_recipients
    ]
    with engine.begin() as conn:
        return enqueue(conn, actions, T, CTX)


def statuses(engine):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(outbox.c.recipient, outbox.c.status, outbox.c.external_id).order_by(outbox.c.outbox_id)
        ).all()


def dm_channel(user: dict, slack) -> str:
    uid = slack.state.users[user["email"]]["id"]
    return "D" + uid[1:]


def test_dm_to_rep_and_fallback_channel_for_someone_without_slack(engine, slack_api) -> None:
    ghost = {
        "name": "Gus Ghost",
        "email": "gus@example.com",
        "timezone": "America/Chicago",
        "slack_fallback_channel": FALLBACK_CHANNEL,
    }
    queue(engine, (REP["email"], alert_payload()), ("gus@example.com", alert_payload(recipient=ghost)))
    summary = deliver_due(engine, T, CTX)
    assert summary == {
        "claimed": 2,
        "delivered": 2,
        "reconciled": 0,
        "retry": 0,
        "failed": 0,
        "double_marked": 0,
    }
    by_channel = {m["channel"]: m for m in slack_api.messages()}
    assert set(by_channel) == {dm_channel(REP, slack_api), FALLBACK_CHANNEL}
    rows = statuses(engine)
    assert [r[1] for r in rows] == ["delivered", "delivered"]
    assert {r[2] for r in rows} == {m["ts"] for m in by_channel.values()}
    with engine.connect() as conn:
        sent = conn.execute(
            sa.select(audit.c.detail, audit.c.task_id).where(audit.c.event == "message_sent")
        ).all()
    assert sorted(d["via"] for d, _ in sent) == ["dm", "fallback"] and {t for _, t in sent} == {
        "deliver_alerts"
    }


def test_two_people_without_slack_falling_back_to_one_channel_post_the_alert_there_once(
    engine, slack_api
) -> None:
    ghosts = [
        {
            "name": n,
            "email": f"{n.lower()}@example.com",
            "timezone": "America/Chicago",
            "slack_fallback_channel": FALLBACK_CHANNEL,
        }
        for n in ("Gus", "Gwen")
    ]
    queue(engine, *[(g["email"], alert_payload(recipient=g)) for g in ghosts])
    assert deliver_due(engine, T, CTX)["delivered"] == 2
    assert [m["channel"] for m in slack_api.messages()] == [FALLBACK_CHANNEL]  # one post, not one per person
    assert [r[1] for r in statuses(engine)] == ["delivered", "delivered"]
    with engine.connect() as conn:
        sent = [
            d
            for (d,) in conn.execute(
                sa.select(audit.c.detail).where(audit.c.event == "message_sent").order_by(audit.c.audit_id)
            )
        ]
    assert [d.get("same_destination", False) for d in sent] == [False, True]
    assert sent[0]["external_id"] == sent[1]["external_id"]  # the second row points at the one post
    # Another checkpoint of the same clock is a different alert: it is posted.
    queue(engine, (ghosts[0]["email"], alert_payload(recipient=ghosts[0])), checkpoint="warn_80")
    assert (
        deliver_due(engine, T + dt.timedelta(seconds=2), CTX, budget=dt.timedelta(seconds=10))["delivered"]
        == 1
    )
    assert len(slack_api.messages()) == 2


def test_no_slack_account_and_no_fallback_fails_permanently_with_a_reason(engine, slack_api) -> None:
    nobody = {"name": "No Body", "email": "nobody@example.com", "timezone": "UTC"}
    queue(engine, ("nobody@example.com", alert_payload(recipient=nobody)))
    assert deliver_due(engine, T, CTX)["failed"] == 1
    with engine.connect() as conn:
        status, error = conn.execute(sa.select(outbox.c.status, outbox.c.last_error)).one()
    assert status == "failed" and "no Slack account" in error and "nobody@example.com" in error


def test_block_kit_content_metadata_and_recipient_timezone(engine, slack_api) -> None:
    manager = {"name": "Max Manager", "email": MANAGER["email"], "timezone": "Europe/London"}
    keys = queue(
        engine, (REP["email"], alert_payload()), (MANAGER["email"], alert_payload(recipient=manager))
    )
    deliver_due(engine, T, CTX)
    rep_msg = slack_api.messages(dm_channel(REP, slack_api))[0]
    mgr_msg = slack_api.messages(dm_channel(MANAGER, slack_api))[0]
    text = json.dumps(rep_msg["blocks"])
    for expected in (
        "Ada Lovelace",
        "Analytical Engines Ltd",
        "Webinar",
        "High-Intent",
        "Rita Rep",
        "2 h 00 min of 4 h 00 min",
        "https://acme.my.salesforce.com/lightning/r/Lead/00Q000000000001AAA/view",
        "*Owner's open clocks*\\n3",
    ):
        assert expected in text, expected
    # The 18:00 UTC deadline in each recipient's own zone, never bare UTC.
    assert "Mon 9 Mar 2026, 14:00 EDT" in text and "UTC" not in text
    assert "Mon 9 Mar 2026, 18:00 GMT" in json.dumps(mgr_msg["blocks"])
    assert rep_msg["metadata"]["event_type"] == "leadsla_alert"
    assert rep_msg["metadata"]["event_payload"]["idempotency_key"] == keys[0]
    # The topic names the clock checkpoint, whoever the message is for: the same for rep and manager.
    assert rep_msg["metadata"]["event_payload"]["topic"] == mgr_msg["metadata"]["event_payload"]["topic"]


@pytest.mark.parametrize("name", ["<!channel>", "<https://evil.example|click>", "<@U00000001> & co"])
def test_lead_text_is_escaped_so_it_pings_nobody_and_links_nowhere(engine, slack_api, name) -> None:
    queue(
        engine,
        (
            REP["email"],
            alert_payload(
                name=name,
                lead={
                    "id": "00Q000000000001AAA",
                    "name": name,
                    "company": "<!here> Corp",
                    "source": "<#C123>",
                    "tier": "A",
                },
            ),
        ),
    )
    deliver_due(engine, T, CTX)
    msg = slack_api.messages()[0]
    everything = json.dumps([msg["text"], msg["blocks"]])
    for raw in (name, "<!here>", "<#C123>", "<!channel>", "<https://evil", "<@U0"):
        assert raw not in everything
    escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in everything and "&lt;!here&gt; Corp" in everything
    # The only links are ours: the record's deep link.
    links = [seg.split("|")[0] for seg in everything.split("<")[1:]]
    assert links and all(
        link.startswith("https://acme.my.salesforce.com/lightning/r/Lead/") for link in links
    )


def test_429_storm_is_ridden_out_by_retry_after(engine, slack_api) -> None:
    slack_api.inject("429", count=3, retry_after=0)  # "0" still waits MIN_RETRY_AFTER_S each time
    queue(engine, (REP["email"], alert_payload()))
    summary = deliver_due(engine, T, CTX, budget=dt.timedelta(seconds=10))
    assert summary["delivered"] == 1 and summary["rate_limited"] == 3
    assert len(slack_api.messages()) == 1 and slack_api.stats()["fault_429"] == 3
    assert slack_api.stats()["call_chat.postMessage"] == 4


def test_5xx_is_retried_and_an_ambiguous_5xx_does_not_post_twice(engine, slack_api) -> None:
    slack_api.inject("500", method="users.lookupByEmail")  # SDK ServerErrorRetryHandler
    slack_api.inject("503")  # nothing posted: our retry posts
    slack_api.inject("500_after_post", count=1)  # posted, then 500: found in history, not re-posted
    queue(engine, (REP["email"], alert_payload()))
    summary = deliver_due(engine, T, CTX)
    assert summary["delivered"] == 1 and summary["reconciled"] == 1
    assert len(slack_api.messages()) == 1
    stats = slack_api.stats()
    assert stats["call_users.lookupByEmail"] == 2 and stats["call_chat.postMessage"] == 2


def test_slack_down_leaves_the_row_queued_then_delivers(engine, slack_api) -> None:
    slack_api.inject("drop", method=None, count=50)
    queue(engine, (REP["email"], alert_payload()))
    assert deliver_due(engine, T, CTX)["retry"] == 1
    assert statuses(engine)[0][1] == "pending" and slack_api.messages() == []
    slack_api.state.faults.clear()
    assert deliver_due(engine, T + dt.timedelta(seconds=1), CTX)["claimed"] == 0  # back-off holds it
    assert deliver_due(engine, T + dt.timedelta(minutes=1), CTX)["delivered"] == 1
    assert len(slack_api.messages()) == 1


def test_worker_killed_between_send_and_mark_is_reconciled_not_resent(engine, slack_api) -> None:
    queue(engine, (REP["email"], alert_payload()))
    with engine.begin() as conn:
        [row] = claim(conn, T, dt.timedelta(minutes=5), 10)
    posted = SlackSender().deliver(row)  # sent... and the worker dies before marking
    assert deliver_due(engine, T + dt.timedelta(minutes=1), CTX)["claimed"] == 0  # lease still held
    summary = deliver_due(engine, T + dt.timedelta(minutes=6), CTX)
    assert summary["delivered"] == 1 and summary["reconciled"] == 1
    assert len(slack_api.messages()) == 1
    assert statuses(engine)[0][2] == posted.external_id


def test_overlapping_deliverers_send_each_row_exactly_once(engine, slack_api) -> None:
    people = [{"email": f"rep{i}@example.com", "name": f"rep{i}"} for i in range(12)]
    slack_api.add_users(people)
    queue(
        engine,
        *[
            (
                p["email"],
                alert_payload(
                    recipient={"name": p["name"], "email": p["email"], "timezone": "America/New_York"}
                ),
            )
            for p in people
        ],
    )
    results = []

    def run():
        results.append(deliver_due(engine, T, CTX, batch=3))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r["delivered"] for r in results) == 12 and sum(r["double_marked"] for r in results) == 0
    keys = [m["metadata"]["event_payload"]["idempotency_key"] for m in slack_api.messages()]
    assert len(keys) == 12 and len(set(keys)) == 12
