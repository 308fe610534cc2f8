"""Escalation errors are classified, against the local Salesforce API on both store backends: the CRM
refusing (an error answer, a timeout) keeps a breach action queued with back-off; a bug is recorded
on its action, every other due action is still performed, and then the bug fails the task. Lock
keeping does the same per locked lead, and a bug there does not stop new breaches being escalated.
"""

from __future__ import annotations

import datetime as dt
import http.client

import pytest
import requests
import sqlalchemy as sa

from leadsla.crm import mapping as mapping_mod
from leadsla.crm.protocol import ApiLimitExceeded, CrmError, is_refusal
from leadsla.crm.salesforce import SalesforceClient
from leadsla.escalation.breach import perform_due
from leadsla.store import schema
from leadsla.store.audit import record
from leadsla.tasks.monitor import run_escalation
from tests.integration.test_lock_keeping import CTX, FAST, POLICY, events, queue_breach, resync, seed_org
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)


@pytest.fixture
def crm(salesforce_sandbox, store):  # noqa: F811
    """Three SAL leads of the rep, synced to a store on each backend."""
    ids = seed_org(salesforce_sandbox, leads=3)
    mapping = mapping_mod.load()
    client = SalesforceClient(retry=FAST, timeout=10)
    resync(store, mapping, client)
    return salesforce_sandbox, store, mapping, client, ids


def breach_rows(engine) -> dict[str, sa.Row]:
    o = schema.outbox
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(o.c.record_id, o.c.status, o.c.attempts, o.c.not_before, o.c.last_error).where(
                o.c.channel == "crm"
            )
        ).all()
    return {r.record_id: r for r in rows}


def failures(engine) -> list[dict]:
    return [d for _, d in events(engine, "message_failed")]


def test_a_crm_refusal_keeps_the_action_queued_with_back_off(crm) -> None:
    sb, engine, mapping, client, ids = crm
    lead = ids["lead"]
    now = dt.datetime.now(dt.UTC)
    queue_breach(engine, ids, now)
    sb.inject_fault("REQUEST_LIMIT_EXCEEDED", times=None)
    assert perform_due(engine, now, CTX, client=client, mapping=mapping) == {"retry": 1}
    row = breach_rows(engine)[lead]
    assert row.status == "pending" and row.attempts == 1 and row.not_before > now
    assert "ApiLimitExceeded" in row.last_error
    assert [d["failure"] for d in failures(engine)] == ["crm_refused"]
    assert sb.get("Lead", lead)["OwnerId"] == ids["rep"]
    sb.clear_faults()  # the allowance is back: the action is performed when it falls due again
    assert perform_due(engine, row.not_before, CTX, client=client, mapping=mapping) == {"reassigned": 1}
    assert sb.get("Lead", lead)["OwnerId"] == ids["manager"]


def test_a_bug_is_recorded_and_fails_the_task_after_every_other_action(crm) -> None:
    sb, engine, mapping, client, ids = crm
    broken, fine = ids["leads"][:2]
    now = dt.datetime.now(dt.UTC)
    for lead in (broken, fine):
        queue_breach(engine, ids, now, lead=lead)
    with engine.begin() as conn:  # a row an older release wrote without the owner it breached under
        o = schema.outbox
        payload = conn.execute(sa.select(o.c.payload).where(o.c.record_id == broken)).scalar_one()
        payload = {k: v for k, v in payload.items() if k != "from_owner"}
        conn.execute(o.update().where(o.c.record_id == broken).values(payload=payload))
    with pytest.raises(KeyError, match="from_owner") as raised:
        perform_due(engine, now, CTX, client=client, mapping=mapping)
    assert any("1 of 2 breach actions failed on a bug" in note for note in raised.value.__notes__)
    # The other action was performed and audited all the same.
    assert sb.get("Lead", fine)["OwnerId"] == ids["manager"]
    assert [d["to"] for _, d in events(engine, "reassignment")] == [ids["manager"]]
    rows = breach_rows(engine)
    assert rows[fine].status == "delivered"
    assert rows[broken].status == "pending" and rows[broken].not_before > now  # kept, recorded
    assert rows[broken].last_error.startswith("KeyError")
    assert [d["failure"] for d in failures(engine)] == ["bug"]
    assert sb.get("Lead", broken)["OwnerId"] == ids["rep"]


def test_a_bug_keeping_one_lock_keeps_the_others_and_still_escalates(crm) -> None:
    sb, engine, mapping, client, ids = crm
    locked_bad, locked_ok, new = ids["leads"]
    now = dt.datetime.now(dt.UTC)
    for lead in (locked_bad, locked_ok):
        queue_breach(engine, ids, now, lead=lead)
    assert perform_due(engine, now, CTX, client=client, mapping=mapping) == {"reassigned": 2}
    # An assignment rule takes both locked leads; a lock_set entry without its holder is the bug.
    for lead in (locked_bad, locked_ok):
        sb.update("Lead", lead, {"OwnerId": ids["rule_user"]}, user_id=ids["rule_user"])
    resync(engine, mapping, client)
    later = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        record(conn, "lock_set", at=later, context=CTX, object_type="Lead", record_id=locked_bad, detail={})
    queue_breach(engine, ids, later, lead=new)
    policy = POLICY.model_copy(update={"automation_user_ids": [ids["rule_user"]]})
    with pytest.raises(KeyError, match="holder") as raised:
        run_escalation(engine, later, CTX, client=client, mapping=mapping, policy=policy)
    assert any("keeping 1 SLA lock(s) failed on a bug" in note for note in raised.value.__notes__)
    assert sb.get("Lead", locked_ok)["OwnerId"] == ids["manager"]  # the other lock was kept
    assert [d["from"] for _, d in events(engine, "lock_restored")] == [ids["rule_user"]]
    assert sb.get("Lead", new)["OwnerId"] == ids["manager"]  # the new breach was escalated
    assert sb.get("Lead", locked_bad)["OwnerId"] == ids["rule_user"]


def test_a_crm_refusal_keeping_a_lock_is_counted_and_tried_again(crm) -> None:
    sb, engine, mapping, client, ids = crm
    lead = ids["lead"]
    now = dt.datetime.now(dt.UTC)
    queue_breach(engine, ids, now)
    perform_due(engine, now, CTX, client=client, mapping=mapping)
    sb.update("Lead", lead, {"OwnerId": ids["rule_user"]}, user_id=ids["rule_user"])
    resync(engine, mapping, client)
    policy = POLICY.model_copy(update={"automation_user_ids": [ids["rule_user"]]})
    sb.inject_fault("REQUEST_LIMIT_EXCEEDED", times=None)
    later = dt.datetime.now(dt.UTC)
    summary = run_escalation(engine, later, CTX, client=client, mapping=mapping, policy=policy)
    assert summary["locks"] == {"restored": 0, "released": 0, "conflict": 0, "refused": 1}
    sb.clear_faults()
    summary = run_escalation(engine, later, CTX, client=client, mapping=mapping, policy=policy)
    assert summary["locks"]["restored"] == 1 and sb.get("Lead", lead)["OwnerId"] == ids["manager"]


@pytest.mark.parametrize(
    "exc",
    [
        CrmError("Salesforce composite failed: INVALID_FIELD"),
        ApiLimitExceeded("REQUEST_LIMIT_EXCEEDED"),
        requests.ConnectionError("reset"),
        requests.exceptions.ChunkedEncodingError("cut"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        http.client.RemoteDisconnected("gone"),
    ],
)
def test_what_counts_as_the_crm_saying_no(exc) -> None:
    assert is_refusal(exc)


@pytest.mark.parametrize(
    "exc",
    [KeyError("from_owner"), TypeError("bad"), ValueError("naive"), sa.exc.OperationalError("x", {}, None)],
)
def test_everything_else_is_a_bug(exc) -> None:
    assert not is_refusal(exc)
