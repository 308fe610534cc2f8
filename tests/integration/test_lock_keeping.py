"""Breach escalation and lock keeping against the local Salesforce API (real SalesforceHook over
HTTPS): the CRM sync lands what happened, the escalate task reverts an automated reassignment during
the lock and alerts the manager, the manager's own change releases the lock; escalation under
412 (lead touched meanwhile) and UNABLE_TO_LOCK_ROW (retried)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from leadsla.crm import mapping as mapping_mod
from leadsla.crm import sync
from leadsla.crm.salesforce import RetryPolicy, SalesforceClient
from leadsla.decisions.breach import decide_breach_actions
from leadsla.decisions.plan import Plan
from leadsla.decisions.recipients import Directory
from leadsla.escalation.breach import perform_due
from leadsla.notify import outbox
from leadsla.policy import load_policy
from leadsla.store import open_store, schema
from leadsla.store.audit import AuditContext
from leadsla.store.mirror import load_frames
from leadsla.tasks.monitor import run_escalation
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.005)
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="escalate", try_number=1)
POLICY = load_policy()


def seed_org(sb, leads: int = 1) -> dict:
    """A manager, a rep, an assignment-rule user and `leads` SAL leads owned by the rep, in the
    sandbox org; their ids (``lead`` the first lead, ``leads`` all)."""
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=6)
    manager, rule_user = sb.seed(
        "User",
        [
            {
                "FirstName": "Max",
                "LastName": "Manager",
                "Email": "max.manager@example.com",
                "Username": "max@x.com",
                "IsActive": True,
                "TimeZoneSidKey": "America/New_York",
            },
            {
                "FirstName": "Rule",
                "LastName": "Bot",
                "Email": "rules@example.com",
                "Username": "rules@x.com",
                "IsActive": True,
                "TimeZoneSidKey": "America/New_York",
            },
        ],
    )
    (rep,) = sb.seed(
        "User",
        [
            {
                "FirstName": "Rita",
                "LastName": "Rep",
                "Email": "rita.rep@example.com",
                "Username": "rita@x.com",
                "IsActive": True,
                "ManagerId": manager,
                "TimeZoneSidKey": "America/New_York",
            }
        ],
    )
    names = ["Lovelace", "Babbage", "Hopper", "Turing"]
    lead_ids = sb.seed(
        "Lead",
        [
            {
                "FirstName": "Ada",
                "LastName": names[i % len(names)],
                "Company": "AE",
                "Status": "SAL",
                "OwnerId": rep,
                "CreatedDate": t0,
                "SystemModstamp": t0,
                "LastModifiedDate": t0,
            }
            for i in range(leads)
        ],
    )
    return {"manager": manager, "rep": rep, "rule_user": rule_user, "lead": lead_ids[0], "leads": lead_ids}


@pytest.fixture
def org(salesforce_sandbox, tmp_path):  # noqa: F811
    """A manager, a rep, an assignment-rule user and a lead owned by the rep, synced to a store."""
    sb = salesforce_sandbox
    ids = seed_org(sb)
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    mapping = mapping_mod.load()
    client = SalesforceClient(retry=FAST, timeout=10)
    yield sb, engine, mapping, client, ids
    engine.dispose()


def resync(engine, mapping, client) -> None:
    for group in ("org", "leads"):
        assert sync.sync_group(client, engine, mapping, group, force=True).status == "success"


def queue_breach(engine, ids, now: dt.datetime, lead: str | None = None) -> int:
    """Queue a lead's breach action (default: the first lead's) as the monitor would; returns how
    many were new."""
    with engine.begin() as conn:
        frames = load_frames(conn)
        conn.execute(schema.users.update().values(team="sdr_east"))
        frames["users"]["team"] = "sdr_east"
        directory = Directory(POLICY, frames["users"], frames["queues"])
        start = now - dt.timedelta(hours=5)
        clock = {
            "sla_id": "sales_touch",
            "record_id": lead or ids["lead"],
            "object_type": "Lead",
            "owner_id": ids["rep"],
            "team": "sdr_east",
            "clock_start": pd.Timestamp(start),
            "tier": "standard",
            "breached_at": pd.Timestamp(now - dt.timedelta(minutes=1)),
        }
        plan = Plan(breach_actions=decide_breach_actions([clock], directory))
        return outbox.apply(conn, plan, now, CTX)["breaches"]


def keep_locks(engine, now: dt.datetime, context: AuditContext, **crm) -> dict[str, int]:
    """The escalate task's lock keeping (its breach actions are done by then)."""
    return run_escalation(engine, now, context, **crm)["locks"]


def events(engine, *names) -> list[tuple[str, dict]]:
    with engine.connect() as conn:
        return [
            (r.event, r.detail)
            for r in conn.execute(
                sa.select(schema.audit.c.event, schema.audit.c.detail)
                .where(schema.audit.c.event.in_(names))
                .order_by(schema.audit.c.audit_id)
            )
        ]


def escalate(org) -> dt.datetime:
    sb, engine, mapping, client, ids = org
    resync(engine, mapping, client)
    now = dt.datetime.now(dt.UTC)
    assert queue_breach(engine, ids, now) == 1
    assert perform_due(engine, now, CTX, client=client, mapping=mapping) == {"reassigned": 1}
    assert sb.get("Lead", ids["lead"])["OwnerId"] == ids["manager"]
    return now


def test_automated_reassignment_during_the_lock_is_reverted_and_the_manager_alerted(org) -> None:
    sb, engine, mapping, client, ids = org
    escalate(org)
    assert sb.get("Lead", ids["lead"])["SLA_Lock_Until__c"]
    sb.update("Lead", ids["lead"], {"OwnerId": ids["rule_user"]}, user_id=ids["rule_user"])  # assignment rule
    resync(engine, mapping, client)
    policy = POLICY.model_copy(update={"automation_user_ids": [ids["rule_user"]]})
    later = dt.datetime.now(dt.UTC)
    assert keep_locks(engine, later, CTX, client=client, mapping=mapping, policy=policy) == {
        "restored": 1,
        "released": 0,
        "conflict": 0,
    }
    assert sb.get("Lead", ids["lead"])["OwnerId"] == ids["manager"]
    [(_, detail)] = events(engine, "lock_restored")
    assert detail["from"] == ids["rule_user"] and detail["to"] == ids["manager"]
    with engine.connect() as conn:
        notices = conn.execute(
            sa.select(schema.outbox.c.channel, schema.outbox.c.recipient, schema.outbox.c.payload).where(
                schema.outbox.c.checkpoint.like("lock_restored:%")
            )
        ).all()
    assert {(n.channel, n.recipient) for n in notices} == {
        ("email", "max.manager@example.com"),
        ("slack", "max.manager@example.com"),
    }
    assert notices[0].payload["kind"] == "notice" and "Ada Lovelace" in notices[0].payload["title"]
    # The next run after the sync: our own put-back is not an automated change to undo.
    resync(engine, mapping, client)
    assert (
        keep_locks(engine, dt.datetime.now(dt.UTC), CTX, client=client, mapping=mapping, policy=policy)[
            "restored"
        ]
        == 0
    )
    assert len(events(engine, "lock_restored")) == 1


def test_a_change_by_someone_else_is_left_alone(org) -> None:
    sb, engine, mapping, client, ids = org
    escalate(org)
    sb.update("Lead", ids["lead"], {"OwnerId": ids["rep"]}, user_id=ids["rep"])  # a person, not automation
    resync(engine, mapping, client)
    policy = POLICY.model_copy(update={"automation_user_ids": [ids["rule_user"]]})
    assert keep_locks(
        engine, dt.datetime.now(dt.UTC), CTX, client=client, mapping=mapping, policy=policy
    ) == {"restored": 0, "released": 0, "conflict": 0}
    assert sb.get("Lead", ids["lead"])["OwnerId"] == ids["rep"]


def test_the_managers_own_disposition_releases_the_lock(org) -> None:
    sb, engine, mapping, client, ids = org
    escalate(org)
    sb.update("Lead", ids["lead"], {"Status": "Working"}, user_id=ids["manager"])
    resync(engine, mapping, client)
    assert (
        keep_locks(engine, dt.datetime.now(dt.UTC), CTX, client=client, mapping=mapping, policy=POLICY)[
            "released"
        ]
        == 1
    )
    assert not sb.get("Lead", ids["lead"])["SLA_Lock_Until__c"]
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(schema.records.c.lock_until).where(schema.records.c.record_id == ids["lead"])
            ).scalar()
            is None
        )
    [(_, detail)] = events(engine, "lock_released")
    assert detail["by"] == ids["manager"] and detail["change"] == "Status"


def test_escalation_of_a_lead_touched_meanwhile_is_not_reassigned(org) -> None:
    sb, engine, mapping, client, ids = org
    resync(engine, mapping, client)
    now = dt.datetime.now(dt.UTC)
    queue_breach(engine, ids, now)
    sb.update("Lead", ids["lead"], {"Status": "Working"}, user_id=ids["rep"])  # after our last sync: 412
    assert perform_due(engine, now, CTX, client=client, mapping=mapping) == {"changed_meanwhile": 1}
    assert sb.get("Lead", ids["lead"])["OwnerId"] == ids["rep"]
    assert events(engine, "crm_write_conflict") and not events(engine, "reassignment")
    [(_, detail)] = [e for e in events(engine, "escalation") if "outcome" in e[1]]
    assert detail["outcome"] == "changed_meanwhile"


def test_escalation_under_unable_to_lock_row_is_retried_then_succeeds(org) -> None:
    sb, engine, mapping, client, ids = org
    resync(engine, mapping, client)
    now = dt.datetime.now(dt.UTC)
    queue_breach(engine, ids, now)
    fault = sb.inject_fault("UNABLE_TO_LOCK_ROW", times=2, method="PATCH")
    assert perform_due(engine, now, CTX, client=client, mapping=mapping) == {"reassigned": 1}
    assert fault.fired == 2  # the write really met the locked row twice
    assert sb.get("Lead", ids["lead"])["OwnerId"] == ids["manager"]
    assert [d["to"] for _, d in events(engine, "reassignment")] == [ids["manager"]]


def test_the_demo_policy_recognises_the_demo_orgs_automated_reassignment(org, tmp_path) -> None:
    """`make run` loads the devstack's demo policy: an owner change by the demo org's integration
    user (the simulator's assignment rule acts as it) during the lock is put back; our own
    put-back, written as that same user, is not undone again."""
    from sandbox.devstack import demo_org_automation_user_ids, write_demo_policy

    sb, engine, mapping, client, ids = org
    policy = load_policy(write_demo_policy(tmp_path / "demo_policy.yaml"))
    assert policy.automation_user_ids == demo_org_automation_user_ids() == [sb.store.integration_user_id]
    assert POLICY.automation_user_ids == []  # the shipped production default names nobody
    escalate(org)
    sb.update("Lead", ids["lead"], {"OwnerId": ids["rep"]})  # no user: the org's integration user
    resync(engine, mapping, client)
    assert keep_locks(
        engine, dt.datetime.now(dt.UTC), CTX, client=client, mapping=mapping, policy=policy
    ) == {"restored": 1, "released": 0, "conflict": 0}
    assert sb.get("Lead", ids["lead"])["OwnerId"] == ids["manager"]
    [(_, detail)] = events(engine, "lock_restored")
    assert detail["changed_by"] == sb.store.integration_user_id
    resync(engine, mapping, client)
    assert (
        keep_locks(engine, dt.datetime.now(dt.UTC), CTX, client=client, mapping=mapping, policy=policy)[
            "restored"
        ]
        == 0
    )
    assert sb.get("Lead", ids["lead"])["OwnerId"] == ids["manager"]
