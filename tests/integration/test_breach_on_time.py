"""Breaches at their instant: planned whole by the monitor (messages and CRM action,
`decisions.ahead.breach_at`), re-checked right before each row goes (`notify.recheck`), the
reassignment and lock performed by the delivery loop at the second (`escalation.breach.perform_due`
with the re-check, against the Salesforce stand-in). A touch before the deadline ends the whole
breach: nothing sent, nothing reassigned, no lock. Both backends.

The demo policy's five-minute demo-request tier: the breach checkpoint at target + 1 min (6 min
after SAL), to the rep and her manager (the tier made not critical, so leadership's Slack channels
are not needed, except where a test says otherwise), reassignment to the rep's manager, 24 h lock.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from leadsla.crm import mapping as mapping_mod
from leadsla.crm.salesforce import SalesforceClient
from leadsla.escalation.breach import perform_due
from leadsla.notify.delivery import deliver_due
from leadsla.notify.recheck import Recheck
from leadsla.store import open_store, schema
from leadsla.store.audit import AuditContext
from leadsla.store.connection import read_only
from leadsla.tasks.monitor import run_escalation, run_monitor
from tests.integration.test_lock_keeping import FAST, resync, seed_org
from tests.ontime_fixtures import (
    MANAGER,
    MANAGER_EMAIL,
    REP,
    REP_EMAIL,
    URL,
    audit_rows,
    lead_id,
    log_call,
    open_all_week_policy,
    outbox_rows,
    seed_people,
    seed_sal_lead,
    set_status,
)
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

pytest_plugins = ["tests.notify_fixtures"]  # the stand-in fixtures

POLICY = open_all_week_policy(critical_demo=False)
CRITICAL = open_all_week_policy()
MONITOR = AuditContext(dag_id="sla_monitor", run_id="scheduled__1", task_id="evaluate", try_number=1)
DELIVERY = AuditContext(dag_id="sla_delivery", run_id="scheduled__1", task_id="deliver", try_number=1)
SAL_AT = dt.datetime(2026, 12, 6, 13, 0, 0, tzinfo=dt.UTC)
BREACH = dt.timedelta(minutes=6)  # target 5 min + 1 min
PLANNING = dt.timedelta(seconds=200)  # a run 160 s before the breach: within the 3-minute horizon
MESSAGES = {(REP_EMAIL, "email"), (REP_EMAIL, "slack"), (MANAGER_EMAIL, "email"), (MANAGER_EMAIL, "slack")}


def monitor(engine, at: dt.datetime, policy=POLICY, **kwargs) -> dict:
    return run_monitor(engine, at, MONITOR, policy=policy, url=URL, **kwargs)


def breach_rows(engine, record_id: str | None = None) -> list:
    rows = outbox_rows(engine, checkpoint="breach")
    return [r for r in rows if record_id is None or r.record_id == record_id]


def messages(rows) -> set[tuple[str, str]]:
    return {(r.recipient, r.channel) for r in rows if r.channel != "crm"}


# --- planning ---------------------------------------------------------------------------------------


def test_a_breach_is_planned_whole_for_its_instant_with_the_at_reach_keys(store, tmp_path) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    rid = seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + dt.timedelta(seconds=20))
    summary = monitor(store, SAL_AT + PLANNING)
    assert summary["planned_actions"] == 1 and summary["breaches"] == 0
    rows = breach_rows(store)
    assert messages(rows) == MESSAGES
    (action,) = [r for r in rows if r.channel == "crm"]
    assert action.recipient == MANAGER and action.payload["rule"] == "owner_manager"
    assert all(r.not_before == SAL_AT + BREACH and r.payload["planned"] for r in rows)
    assert all(r.status == "pending" for r in rows)
    # Audited as planned: each message's queueing and the action's, with the instant.
    queued = [e for e in audit_rows(store, "escalation") if e.detail.get("queued")]
    assert [e.detail["planned_for"][:19] for e in queued] == ["2026-12-06T13:06:00"]
    planned_for = {e.detail.get("planned_for", "")[:19] for e in audit_rows(store, "message_queued")}
    assert "2026-12-06T13:06:00" in planned_for
    # The runs up to and past the breach decide nothing more: the checkpoint is handled.
    for seconds in (260, 330, 360, 400):
        assert monitor(store, SAL_AT + dt.timedelta(seconds=seconds))["breaches"] == 0
    assert {r.idempotency_key for r in breach_rows(store)} == {r.idempotency_key for r in rows}
    # Without planning, the breach decided at reach has the very same keys.
    other = open_store(f"sqlite:///{tmp_path / 'at_reach.db'}")
    seed_people(other, SAL_AT - dt.timedelta(hours=1))
    seed_sal_lead(other, 1, SAL_AT)
    for seconds in (20, 200, 370):
        monitor(other, SAL_AT + dt.timedelta(seconds=seconds), horizon=dt.timedelta(0))
    reached = breach_rows(other, rid)
    assert {r.idempotency_key for r in reached} == {r.idempotency_key for r in rows}
    assert not any(r.payload.get("planned") for r in reached)
    other.dispose()


def test_a_critical_breach_tells_leadership_planned_unless_the_team_day_may_be_systemic(store) -> None:
    """Leadership's breach message is rolled up into a capacity alert when the team's day is
    systemic: one lead, the day cannot be (planned); three leads all about to breach, it may be
    (left to the monitor at reach, which then rolls leadership's messages up)."""
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + PLANNING, policy=CRITICAL)
    rows = breach_rows(store)
    assert {"vp.sales@example.com", "#sales-leadership"} <= {r.recipient for r in rows}
    assert len([r for r in rows if r.channel == "crm"]) == 1
    for n in (2, 3):
        seed_sal_lead(store, n, SAL_AT + dt.timedelta(minutes=10))
    later = SAL_AT + dt.timedelta(minutes=10)
    assert monitor(store, later + PLANNING, policy=CRITICAL)["planned_actions"] == 0
    assert breach_rows(store, lead_id(2)) == [] and breach_rows(store, lead_id(3)) == []
    summary = monitor(store, later + BREACH + dt.timedelta(seconds=5), policy=CRITICAL)
    assert summary["breaches"] == 2 and summary["rolled_up"] > 0  # decided at reach, as before


# --- at the instant, against the CRM -------------------------------------------------------------


@pytest.fixture
def org(salesforce_sandbox, store):  # noqa: F811
    """The rep's demo-request lead in the Salesforce stand-in, synced to the store, SAL at SAL_AT."""
    ids = seed_org(salesforce_sandbox)
    mapping = mapping_mod.load()
    client = SalesforceClient(retry=FAST, timeout=10)
    resync(store, mapping, client)
    lead = ids["lead"]
    r = schema.records
    with store.begin() as conn:
        conn.execute(schema.users.update().values(team="sdr_east"))
        fields = conn.execute(sa.select(r.c.fields).where(r.c.record_id == lead)).scalar_one()
        conn.execute(
            r.update()
            .where(r.c.record_id == lead)
            .values(lead_type="Demo Request", fields={**fields, "Lead_Type__c": "Demo Request"})
        )
        conn.execute(
            schema.field_history.insert(),
            {
                "history_id": "017000000000000001",
                "object_type": "Lead",
                "record_id": lead,
                "field": "Status",
                "old_value": "MQL",
                "new_value": "SAL",
                "changed_by": ids["rep"],
                "changed_at": SAL_AT,
            },
        )
    return salesforce_sandbox, store, mapping, client, ids


def performer(engine, client, mapping):
    """The delivery loop's breach actions (`tasks.monitor.BreachActions` without the configuration)."""
    recheck = Recheck(POLICY)
    return lambda at: perform_due(
        engine, at, DELIVERY, client=client, mapping=mapping, policy=POLICY, recheck=recheck
    )


def test_a_planned_breach_is_sent_and_its_lead_reassigned_at_its_instant(org, slack_api, smtp_sink) -> None:
    sb, engine, mapping, client, ids = org
    lead, instant = ids["lead"], SAL_AT + BREACH
    monitor(engine, SAL_AT + PLANNING)
    assert len(breach_rows(engine)) == 5
    # the half (queued at reach) and the 80 % warnings (planned) go at their instants
    deliver_due(engine, SAL_AT + dt.timedelta(minutes=4), DELIVERY, recheck=Recheck(POLICY))
    # The loop at the breach's second: the messages go and the action is performed, each re-checked.
    counts = deliver_due(
        engine, instant, DELIVERY, recheck=Recheck(POLICY), actions=performer(engine, client, mapping)
    )
    assert counts["actions_reassigned"] == 1
    assert {r.status for r in breach_rows(engine)} == {"delivered"}
    crm = sb.get("Lead", lead)
    assert crm["OwnerId"] == ids["manager"] and crm["SLA_Lock_Until__c"]
    lock = dt.datetime.fromisoformat(crm["SLA_Lock_Until__c"].replace("Z", "+00:00"))
    assert lock == instant + dt.timedelta(hours=24)  # from the reassignment at the instant
    (outcome,) = [e for e in audit_rows(engine, "escalation") if e.detail.get("outcome")]
    assert outcome.detail["outcome"] == "reassigned" and outcome.detail["late_by_seconds"] == 60
    assert len(audit_rows(engine, "reassignment")) == 1 and len(audit_rows(engine, "lock_set")) == 1
    sent = [e for e in audit_rows(engine, "message_sent") if e.checkpoint == "breach"]
    assert sorted(e.detail["channel"] for e in sent) == ["crm", "email", "email", "slack", "slack"]
    # Exactly once: the monitor's escalate and the next runs find nothing left to do.
    later = instant + dt.timedelta(seconds=30)
    assert (
        run_escalation(engine, later, MONITOR, client=client, mapping=mapping, policy=POLICY)["escalations"]
        == {}
    )
    assert monitor(engine, later)["breaches"] == 0
    assert sb.get("Lead", lead)["OwnerId"] == ids["manager"]


@pytest.mark.parametrize("first", ["delivery_loop", "escalate"])
def test_a_touch_synced_before_the_deadline_cancels_the_whole_breach(
    org, slack_api, smtp_sink, first
) -> None:
    """The rep called 30 s before the deadline: whichever performer comes first (the loop or the
    monitor's escalate), no message goes, nothing is reassigned, no lock, every row audited."""
    sb, engine, mapping, client, ids = org
    lead, instant = ids["lead"], SAL_AT + BREACH
    monitor(engine, SAL_AT + PLANNING)
    log_call(engine, lead, SAL_AT + dt.timedelta(minutes=5) - dt.timedelta(seconds=30), owner=ids["rep"])
    if first == "delivery_loop":
        deliver_due(
            engine, instant, DELIVERY, recheck=Recheck(POLICY), actions=performer(engine, client, mapping)
        )
    else:
        escalated = run_escalation(engine, instant, MONITOR, client=client, mapping=mapping, policy=POLICY)
        assert escalated["escalations"] == {"cancelled_by_touch": 1}
    rows = breach_rows(engine)
    assert len(rows) == 5 and {r.status for r in rows} == {"cancelled"}
    cancelled = [e for e in audit_rows(engine, "cancelled_by_touch") if e.checkpoint == "breach"]
    assert sorted(e.detail["idempotency_key"] for e in cancelled) == sorted(r.idempotency_key for r in rows)
    assert {e.detail["reason"] for e in cancelled} == {"touched"}
    assert {e.actor for e in cancelled if e.detail["channel"] == "crm"} == {"escalation"}
    crm = sb.get("Lead", lead)
    assert crm["OwnerId"] == ids["rep"] and not crm.get("SLA_Lock_Until__c")
    # Nothing left for anyone: no breach decided at reach, no action, no message, no lock in the store.
    later = instant + dt.timedelta(minutes=1)
    assert monitor(engine, later)["breaches"] == 0
    assert (
        run_escalation(engine, later, MONITOR, client=client, mapping=mapping, policy=POLICY)["escalations"]
        == {}
    )
    deliver_due(engine, later, DELIVERY, recheck=Recheck(POLICY))  # the warnings, caught up
    assert {r.status for r in breach_rows(engine)} == {"cancelled"}
    assert audit_rows(engine, "reassignment") == [] and audit_rows(engine, "lock_set") == []
    assert not [m for m in slack_api.messages() if "breach" in str(m.get("metadata", ""))]
    with engine.connect() as conn:
        r = schema.records
        owner, locked = conn.execute(
            sa.select(r.c.owner_id, r.c.lock_until).where(r.c.record_id == lead)
        ).one()
    assert owner == ids["rep"] and locked is None


# --- changes before the deadline: withdrawn, decided again --------------------------------------------


def test_a_reassignment_withdraws_the_whole_breach_and_the_monitor_decides_it_again(
    store, slack_api, smtp_sink
) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    rid = seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + PLANNING)
    planned = {r.idempotency_key: r for r in breach_rows(store)}
    with store.begin() as conn:  # the manager takes the lead 60 s before the deadline
        conn.execute(
            schema.records.update().where(schema.records.c.record_id == rid).values(owner_id=MANAGER)
        )
        conn.execute(
            schema.field_history.insert(),
            {
                "history_id": "017000000000000099",
                "object_type": "Lead",
                "record_id": rid,
                "field": "OwnerId",
                "old_value": REP,
                "new_value": MANAGER,
                "changed_by": MANAGER,
                "changed_at": SAL_AT + dt.timedelta(seconds=240),
            },
        )
    instant = SAL_AT + BREACH
    # The monitor's escalate takes the action first: the whole breach is withdrawn with it.
    recheck = Recheck(POLICY)
    assert perform_due(store, instant, MONITOR, client=None, mapping=None, recheck=recheck) == {
        "cancelled_by_change": 1
    }
    assert {r.status for r in breach_rows(store)} == {"withdrawn"}
    withdrawn = [e for e in audit_rows(store, "cancelled_by_change") if e.checkpoint == "breach"]
    # The action to the manager is still called for (she is the owner now: lock only), her messages
    # too, the rep's no longer: the breach as planned is not the one due, so it ends whole.
    assert len(withdrawn) == 5 and {e.detail["reason"] for e in withdrawn} == {"breach_changed"}
    assert len(withdrawn[0].detail["no_longer_called_for"]) == 2
    # Not handled any more: the next run decides the breach at reach for the lead's new owner.
    summary = monitor(store, instant + dt.timedelta(seconds=20))
    assert summary["breaches"] == 1
    now_rows = [r for r in breach_rows(store) if r.status == "pending"]
    assert messages(now_rows) == {(MANAGER_EMAIL, "email"), (MANAGER_EMAIL, "slack")}
    assert not any(r.payload.get("planned") for r in now_rows)  # at reach: sent as decided
    # The same keys came back (revived, decided afresh); the rep's stay withdrawn, never sent.
    assert {r.idempotency_key for r in now_rows} <= set(planned) and len(now_rows) == 3
    (action,) = [r for r in now_rows if r.channel == "crm"]
    assert action.payload["from_owner"] == MANAGER and action.payload["rule"] is None


def test_a_pause_withdraws_the_whole_breach_and_the_monitor_decides_nothing(store) -> None:
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    rid = seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + PLANNING)
    set_status(store, rid, "SAL", "Nurture - contact later", SAL_AT + dt.timedelta(seconds=280))
    instant = SAL_AT + BREACH
    with store.begin() as conn:
        from leadsla.notify.outbox import claim

        (action,) = claim(conn, instant, channels=["crm"])
    with read_only(store) as conn:
        assert Recheck(POLICY)(conn, action, instant).detail["reason"] == "paused"
    escalated = perform_due(
        store, instant + dt.timedelta(minutes=3), DELIVERY, client=None, mapping=None, recheck=Recheck(POLICY)
    )
    assert escalated == {"cancelled_by_change": 1}
    assert {r.status for r in breach_rows(store)} == {"withdrawn"}
    assert monitor(store, instant + dt.timedelta(minutes=3, seconds=5))["breaches"] == 0
    assert [r for r in breach_rows(store) if r.status == "pending"] == []


# --- the repeat rung, counted again at the instant ------------------------------------------------------

DIRECTOR, DIRECTOR_EMAIL = "005000000000003AAA", "dana.director@example.com"


def seed_director(engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.users.insert(),
            {
                "user_id": DIRECTOR,
                "name": "Dana Director",
                "email": DIRECTOR_EMAIL,
                "manager_id": None,
                "team": "sdr_east",
                "timezone": "America/New_York",
                "is_active": True,
                "fields": {},
                "synced_at": SAL_AT - dt.timedelta(days=3),
            },
        )
        conn.execute(
            schema.users.update().where(schema.users.c.user_id == MANAGER).values(manager_id=DIRECTOR)
        )


def test_the_repeat_rung_is_counted_again_at_the_instant(store, slack_api, smtp_sink) -> None:
    """The rep's third breach in 30 days tells her director. Planned, lead 1's breach is the third:
    one two days ago (lead 0) and lead 2's, due 30 s before. Lead 2 is called in time: at lead 1's
    instant its breach is the second, so the planned breach is withdrawn and decided at reach,
    without the director."""
    seed_people(store, SAL_AT - dt.timedelta(days=3))
    seed_director(store)
    seed_sal_lead(store, 0, SAL_AT - dt.timedelta(days=2))
    two = seed_sal_lead(store, 2, SAL_AT)
    one = seed_sal_lead(store, 1, SAL_AT + dt.timedelta(seconds=30))
    monitor(store, SAL_AT - dt.timedelta(days=2) + dt.timedelta(minutes=10))  # lead 0 breached
    monitor(store, SAL_AT + dt.timedelta(seconds=20))
    monitor(store, SAL_AT + dt.timedelta(seconds=215))  # plans both breaches
    assert (DIRECTOR_EMAIL, "email") in messages(breach_rows(store, one))
    assert (DIRECTOR_EMAIL, "email") not in messages(breach_rows(store, two))
    log_call(store, two, SAL_AT + dt.timedelta(seconds=280))  # 20 s before lead 2's deadline
    recheck = Recheck(POLICY)
    deliver_due(store, SAL_AT + BREACH, DELIVERY, recheck=recheck)
    assert {r.status for r in breach_rows(store, two)} == {"cancelled"}
    counts = deliver_due(store, SAL_AT + BREACH + dt.timedelta(seconds=30), DELIVERY, recheck=recheck)
    # (the one row delivered is a warning Slack's pace put back at the first try, not lead 1's)
    assert counts["cancelled_by_change"] == 6 and {r.status for r in breach_rows(store, one)} == {"withdrawn"}
    (why, *_) = [e for e in audit_rows(store, "cancelled_by_change") if e.record_id == one]
    assert why.detail["reason"] == "breach_changed" and why.detail["no_longer_called_for"]
    monitor(store, SAL_AT + BREACH + dt.timedelta(seconds=40))
    pending = [r for r in breach_rows(store, one) if r.status == "pending"]
    assert messages(pending) == MESSAGES and len(pending) == 5  # rep, manager and the action


def test_a_team_day_turning_systemic_before_the_instant_leaves_the_breach_to_the_monitor(store) -> None:
    """Planned when lead 1 was the team's only clock today; two more leads synced later breach
    before its instant: at the instant leadership's message may be rolled up into a capacity
    alert, so the planned breach is withdrawn whole and the monitor decides it at reach (rolled up)."""
    seed_people(store, SAL_AT - dt.timedelta(hours=1))
    one = seed_sal_lead(store, 1, SAL_AT)
    monitor(store, SAL_AT + PLANNING, policy=CRITICAL)
    planned = breach_rows(store, one)
    assert {"vp.sales@example.com"} <= {r.recipient for r in planned}
    for n in (2, 3):  # SAL 10 s before lead 1, landed late: their deadlines fall before its breach
        seed_sal_lead(store, n, SAL_AT - dt.timedelta(seconds=10))
    monitor(store, SAL_AT + dt.timedelta(seconds=260), policy=CRITICAL)
    assert breach_rows(store, lead_id(2)) == []  # theirs may be rolled up: left to the monitor
    instant = SAL_AT + BREACH
    recheck = Recheck(CRITICAL)
    assert perform_due(store, instant, MONITOR, client=None, mapping=None, recheck=recheck) == {
        "cancelled_by_change": 1
    }
    assert {r.status for r in breach_rows(store, one)} == {"withdrawn"}
    (why, *_) = [e for e in audit_rows(store, "cancelled_by_change") if e.record_id == one]
    assert why.detail["reason"] == "breach_changed" and why.detail["may_roll_up"] is True
    summary = monitor(store, instant + dt.timedelta(seconds=5), policy=CRITICAL)
    assert summary["breaches"] == 3 and summary["rolled_up"] > 0
    rolled = {r.recipient for r in breach_rows(store, one) if r.status == "rolled_up"}
    assert "vp.sales@example.com" in rolled
