"""Checkpoint messages (leadsla.decisions.checkpoints, .recipients): roles -> people, quiet hours,
catch-up supersession. Pure: no store."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from leadsla.decisions.checkpoints import decide_checkpoints
from leadsla.decisions.keys import idempotency_key
from leadsla.decisions.recipients import Directory
from leadsla.policy import DEFAULT_POLICY_PATH, PolicyError, policy_from_dict, seed000
from leadsla.yaml_file import read_yaml_file

#: The shipped policy with the seed-000 breach rule (`ladder: flat`: every breach tells the VPs at
#: once); the escalation ladder itself is tests/unit/test_escalation_ladder.py.
POLICY = policy_from_dict(seed000(read_yaml_file(DEFAULT_POLICY_PATH, PolicyError, "policy")), "seed000")
START = pd.Timestamp("2026-11-17T15:00:00Z")  # Tuesday 10:00 New York
USERS = pd.DataFrame(
    [
        {
            "user_id": "005000000000001AAA",
            "name": "Rita Rep",
            "email": "rita@example.com",
            "manager_id": "005000000000002AAA",
            "team": "sdr_east",
            "timezone": "America/New_York",
            "is_active": True,
        },
        {
            "user_id": "005000000000002AAA",
            "name": "Max Manager",
            "email": "max@example.com",
            "manager_id": None,
            "team": "sdr_emea",
            "timezone": "Europe/London",
            "is_active": True,
        },
    ]
)
RECORDS = pd.DataFrame(
    [{"record_id": "00Q000000000001AAA", "name": "Ada <!channel>", "company": "AE", "lead_source": "Web"}]
)


def _clock(**over) -> pd.DataFrame:
    row = {
        "sla_id": "sales_touch",
        "record_id": "00Q000000000001AAA",
        "clock_start": START,
        "object_type": "Lead",
        "tier": "standard",
        "target_seconds": 14400,
        "owner_id": "005000000000001AAA",
        "team": "sdr_east",
        "state": "breached",
        "deadline": START + pd.Timedelta(hours=4),
        "critical": False,
        "elapsed_seconds": 14700,
    }
    row.update(over)
    return pd.DataFrame([row])


def _checkpoints(*names_offsets) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "sla_id": "sales_touch",
                "record_id": "00Q000000000001AAA",
                "clock_start": START,
                "policy_version": "v",
                "checkpoint": n,
                "offset_seconds": o,
                "reached_at": START + pd.Timedelta(seconds=o),
                "status": "due",
            }
            for n, o in names_offsets
        ]
    )


def test_roles_resolve_to_owner_manager_vps_and_queue_channels():
    d = Directory(POLICY, USERS, pd.DataFrame([{"queue_id": "00G000000000001AAA", "name": "Breached SLA"}]))
    owner = d.resolve("owner", "005000000000001AAA", "sdr_east")[0]
    assert (owner.email, owner.slack, owner.calendar) == ("rita@example.com", "rita@example.com", "us_east")
    manager = d.resolve("owner_manager", "005000000000001AAA", "sdr_east")[0]
    assert manager.name == "Max Manager" and manager.calendar == "uk"  # the manager's own team's hours
    vp = d.resolve("vp_sales", "005000000000001AAA", "sdr_east")[0]
    assert (vp.email, vp.slack, vp.calendar) == ("vp.sales@example.com", "#sales-leadership", None)
    queue = d.resolve("queue:Customer Success", None, "cs")[0]
    assert queue.slack == "#customer-success" and queue.email is None
    assert (
        d.resolve("owner_manager", "005000000000002AAA", "sdr_emea") == []
    )  # no manager: nobody, not a guess


def test_catch_up_sends_the_breach_once_and_supersedes_the_warnings():
    d = Directory(POLICY, USERS)
    now = (START + pd.Timedelta(hours=4, minutes=5)).to_pydatetime()
    plan = decide_checkpoints(
        _clock(),
        _checkpoints(("half", 7200), ("warning", 11520), ("breach", 14460)),
        RECORDS,
        d,
        now=now,
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )
    assert [c.checkpoint for c in plan.superseded] == ["half", "warning"]
    assert {a.checkpoint for a in plan.messages} == {"breach"}
    assert {a.recipient for a in plan.messages if a.channel == "email"} == {
        "rita@example.com",
        "max@example.com",
        "vp.sales@example.com",
        "vp.marketing@example.com",
        "vp.revops@example.com",
    }
    assert len(plan.breaches) == 1
    again = decide_checkpoints(
        _clock(),
        _checkpoints(("half", 7200), ("warning", 11520), ("breach", 14460)),
        RECORDS,
        d,
        now=now,
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )
    assert [a.key for a in again.messages] == [a.key for a in plan.messages]  # same inputs, same keys


def test_handled_checkpoints_are_not_sent_again_and_an_old_replay_sends_nothing():
    d = Directory(POLICY, USERS)
    now = (START + pd.Timedelta(hours=2)).to_pydatetime()
    handled = [("sales_touch", "00Q000000000001AAA", START.to_pydatetime(), "breach")]
    plan = decide_checkpoints(
        _clock(state="running"),
        _checkpoints(("half", 7200)),
        RECORDS,
        d,
        now=now,
        handled=handled,
        instance_url="https://acme.my.salesforce.com",
    )
    assert plan.messages == [] and [c.checkpoint for c in plan.superseded] == ["half"]


def test_quiet_hours_hold_warnings_until_the_recipients_next_opening_but_not_critical_breaches():
    d = Directory(POLICY, USERS)
    evening = dt.datetime(2026, 11, 17, 23, 30, tzinfo=dt.UTC)  # 18:30 New York, 23:30 London: both closed
    plan = decide_checkpoints(
        _clock(state="running"),
        _checkpoints(("warning", 11520)),
        RECORDS,
        d,
        now=evening,
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )
    by_person = {a.recipient: a.not_before for a in plan.messages if a.channel == "email"}
    assert by_person["rita@example.com"] == dt.datetime(2026, 11, 18, 14, 0, tzinfo=dt.UTC)  # 09:00 New York
    assert by_person["max@example.com"] == dt.datetime(2026, 11, 18, 9, 0, tzinfo=dt.UTC)  # 09:00 London
    critical = decide_checkpoints(
        _clock(critical=True),
        _checkpoints(("breach", 14460)),
        RECORDS,
        d,
        now=evening,
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )
    assert critical.messages and all(a.not_before == evening for a in critical.messages)
    night = dt.datetime(2026, 11, 18, 1, 30, tzinfo=dt.UTC)  # 20:30 New York: inside quiet hours
    calm = decide_checkpoints(
        _clock(),
        _checkpoints(("breach", 14460)),
        RECORDS,
        d,
        now=night,
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )
    vp = next(a for a in calm.messages if a.recipient == "vp.sales@example.com")
    assert vp.not_before == dt.datetime(2026, 11, 18, 13, 0, tzinfo=dt.UTC)  # quiet hours end 08:00 New York


def test_one_message_per_person_and_channel_when_roles_name_the_same_person():
    # The rep is also the team manager: the breach's owner and team_manager roles are one person.
    policy = POLICY.model_copy(
        update={
            "teams": {
                **POLICY.teams,
                "cs": POLICY.teams["cs"].model_copy(update={"manager": "005000000000001AAA"}),
            }
        }
    )
    cs_clock = _clock(sla_id="cs_onboarding", team="cs")
    cs_sla = policy.sla("cs_onboarding")
    breach = next(cp for cp in cs_sla.all_checkpoints() if cp.id == "breach")
    assert {"owner", "team_manager"} <= set(breach.notify)
    checkpoints = _checkpoints(("breach", 14460)).assign(sla_id="cs_onboarding")
    d = Directory(policy, USERS)
    plan = decide_checkpoints(
        cs_clock,
        checkpoints,
        RECORDS,
        d,
        now=(START + pd.Timedelta(hours=5)).to_pydatetime(),
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )
    rita = [a for a in plan.messages if a.recipient == "rita@example.com"]
    assert sorted(a.channel for a in rita) == sorted(breach.channels)  # one per channel, not one per role
    assert all(a.payload["roles"] == ["owner", "team_manager"] for a in rita)
    keys = {a.key for a in plan.messages}
    assert len(keys) == len(plan.messages)  # every outbox row is a distinct (destination, channel)
    # The key is the destination's, whichever role named it first: stable across runs and policies.
    assert {a.key for a in rita} == {
        idempotency_key(
            "cs_onboarding", "00Q000000000001AAA", START.to_pydatetime(), "breach", "rita@example.com", c
        )
        for c in breach.channels
    }
    again = decide_checkpoints(
        cs_clock,
        checkpoints,
        RECORDS,
        d,
        now=(START + pd.Timedelta(hours=6)).to_pydatetime(),
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )
    assert {a.key for a in again.messages} == keys


def test_a_caught_up_breach_states_the_overdue_time_at_the_run_not_at_the_checkpoint():
    # Breached Thu 19 Nov 15:01 New York (24 business hours); first run Mon 23 Nov 09:40 New York.
    start = pd.Timestamp("2026-11-16T15:01:00Z")  # Mon 16 Nov 10:01 New York
    breached = pd.Timestamp("2026-11-19T20:01:00Z")
    now = dt.datetime(2026, 11, 23, 14, 40, tzinfo=dt.UTC)
    elapsed_now = 24 * 3600 + (8 * 3600 - 60) + 40 * 60  # + rest of Thu and Fri 8 h, + Mon 09:00-09:40
    clock = _clock(
        sla_id="sales_touch",
        clock_start=start,
        target_seconds=24 * 3600,
        deadline=breached,
        elapsed_seconds=elapsed_now,
    )
    cps = _checkpoints(("breach", 24 * 3600 + 60)).assign(
        clock_start=start, reached_at=breached + pd.Timedelta(minutes=1)
    )
    plan = decide_checkpoints(
        clock,
        cps,
        RECORDS,
        Directory(POLICY, USERS),
        now=now,
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )
    slack = next(a for a in plan.messages if a.recipient == "rita@example.com" and a.channel == "slack")
    assert slack.payload["elapsed_seconds"] == elapsed_now
    assert slack.payload["remaining_seconds"] == -(elapsed_now - 24 * 3600)
    assert slack.payload["evaluated_at"] == now.isoformat()
    from leadsla.notify.alert import alert_email_message as email_message
    from leadsla.notify.alert import alert_slack_message as slack_message
    from leadsla.notify.payloads import AlertPayload

    p = AlertPayload.parse(slack.payload)
    message = slack_message(p, slack.key)
    fields = " ".join(
        f["text"] for b in message["blocks"] if b["type"] == "section" for f in b.get("fields", [])
    )
    assert "Overdue by 8 h 39 min" in message["text"] and "1 min" not in message["text"]
    assert "32 h 39 min of 24 h 00 min (as of Mon 23 Nov 2026, 09:40 EST)" in fields
    context = message["blocks"][-1]["elements"][0]["text"]
    assert "Breached at Thu 19 Nov 2026, 15:01 EST" in context
    mail = email_message(p)
    assert "Overdue by:        8 hours 39 minutes (as of Mon 23 Nov 2026, 09:40 EST)" in mail.text
    assert "8 hours 39 minutes (as of Mon 23 Nov 2026, 09:40 EST)" in mail.html


def test_a_late_warning_states_the_time_left_at_the_run():
    now = (START + pd.Timedelta(hours=3, minutes=40)).to_pydatetime()  # warning reached at 3 h 12 min
    plan = decide_checkpoints(
        _clock(state="running", elapsed_seconds=3 * 3600 + 40 * 60),
        _checkpoints(("warning", 11520)),
        RECORDS,
        Directory(POLICY, USERS),
        now=now,
        handled=[],
        instance_url="https://acme.my.salesforce.com",
    )
    mail = next(a for a in plan.messages if a.recipient == "rita@example.com" and a.channel == "email")
    assert (mail.payload["elapsed_seconds"], mail.payload["remaining_seconds"]) == (13200, 1200)
    from leadsla.notify.alert import alert_email_message as email_message
    from leadsla.notify.payloads import AlertPayload

    text = email_message(AlertPayload.parse(mail.payload)).text
    assert "assigned 3 hours 40 minutes ago. 20 minutes remain" in text
    assert "Checkpoint reached:    Tue 17 Nov 2026, 13:12 EST" in text


def test_a_channel_role_resolves_to_that_slack_channel_only():
    d = Directory(POLICY, USERS)
    [channel] = d.resolve("channel:C0SDRLEADS", "005000000000001AAA", "sdr_east")
    assert (channel.slack, channel.email, channel.role) == ("C0SDRLEADS", None, "channel:C0SDRLEADS")
    assert channel.address("email") is None and channel.address("slack") == "C0SDRLEADS"
