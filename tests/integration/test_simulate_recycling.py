"""The demo org's unresponsive leads (`leadsla` mode, `make run`): three attempts by their rep, a
sequence e-mail that is no attempt, no reply; synced through the Salesforce stand-in, lead_recycling
with `make run`'s demo policy (auto) recycles exactly the ones five business days past their first
attempt. The org mode never has them (its fingerprint: tests/integration/test_simulate_routing.py).
"""

from __future__ import annotations

import collections
import datetime as dt
from datetime import UTC, datetime, timedelta

import pytest

from leadsla.decisions.recycling import business_days_after
from leadsla.policy import load_policy
from sandbox import simulate
from sandbox.sf_store import OrgStore
from sandbox.soql import parse_datetime

MONDAY = datetime(2026, 3, 9, tzinfo=UTC)
#: Twelve days of a `leadsla` org whose leads the org's own rule assigned (a `make run` backlog).
DAYS = 12


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from leadsla.crm.salesforce import SalesforceClient
    from leadsla.store import open_store
    from leadsla.store.audit import AuditContext
    from leadsla.tasks.recycling import run_recycling
    from leadsla.tasks.sync import run_group
    from sandbox import salesforce_api
    from sandbox.devstack import write_demo_policy

    root = tmp_path_factory.mktemp("recycling-demo")
    store = OrgStore(root / "salesforce" / "org.sqlite3")
    until = MONDAY + timedelta(days=DAYS)
    org = simulate.DemoOrg(store, seed=5, start=MONDAY, routing="leadsla", routing_from=until)
    org.advance(until)
    before = {lead["Id"]: dict(lead) for lead in store.scan("Lead")}
    api = salesforce_api.start(root / "salesforce")
    policy_path = write_demo_policy(root / "sla_policy.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", str(api.ca_path))
        mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", api.connection_json())
        mp.setenv("LEADSLA_STORE_URL", f"sqlite:///{root / 'store.db'}")
        mp.setenv("LEADSLA_POLICY_PATH", str(policy_path))
        try:
            synced = [run_group(group) for group in ("org", "leads")]
            assert all(s["status"] == "success" for s in synced), synced
            engine = open_store()
            summary = run_recycling(
                engine, org.clock, AuditContext(dag_id="lead_recycling"), client=SalesforceClient(timeout=10)
            )
            engine.dispose()
        finally:
            api.stop()
    yield store, org, before, summary, load_policy(policy_path)
    store.close()


def _by_lead(store: OrgStore, obj: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = collections.defaultdict(list)
    for row in sorted(store.scan(obj), key=lambda r: r["CreatedDate"]):
        found[row["WhoId"]].append(row)
    return found


def test_unresponsive_leads_get_three_attempts_a_sequence_email_and_no_answer(demo) -> None:
    store, org, before, _, _ = demo
    tasks, events = _by_lead(store, "Task"), _by_lead(store, "Event")
    unresponsive = [
        lead_id
        for lead_id, rows in tasks.items()
        if any(r["Subject"].startswith(("Call attempt", "Email attempt")) for r in rows)
    ]
    accepted = [lead for lead in before.values() if lead.get("SAL_Date__c")]
    assert 0.02 <= len(unresponsive) / len(accepted) <= 0.12, (len(unresponsive), len(accepted))
    bot = store.integration_user_id
    for lead_id in unresponsive:
        accepted_at = parse_datetime(before[lead_id]["SAL_Date__c"])  # this stay in SAL (some came back)
        since = [t for t in tasks[lead_id] if parse_datetime(t["CreatedDate"]) >= accepted_at]
        mine = [t for t in since if t["CreatedById"] != bot]
        automated = [t for t in since if t["CreatedById"] == bot]
        assert [t["Type"] for t in mine] == ["Call", "Email", "Call"][: len(mine)], lead_id
        assert all(t["CreatedById"] == t["OwnerId"] for t in mine)  # the owner's own attempts
        assert len(automated) <= 1 and all(t["TaskSubtype"] in ("Cadence", "ListEmail") for t in automated)
        booked = [e for e in events.get(lead_id, []) if parse_datetime(e["CreatedDate"]) >= accepted_at]
        assert not booked and not before[lead_id].get("Lead_Replied__c")
        assert before[lead_id]["Status"] in ("SAL", "Recycled")
        if before[lead_id]["Status"] == "Recycled":  # the rep gave up, 8 business days after the first
            assert len(mine) == 3 and before[lead_id]["Rejection_Reason__c"] == "No Response"
    # Most are still waiting in SAL for Lead SLA Monitor, three attempts made.
    waiting = [i for i in unresponsive if before[i]["Status"] == "SAL"]
    assert len(waiting) > len(unresponsive) / 2


def test_lead_recycling_recycles_the_demo_leads_past_five_business_days(demo) -> None:
    store, org, before, summary, policy = demo
    tasks = _by_lead(store, "Task")
    bot = store.integration_user_id
    expected = set()
    for lead_id, lead in before.items():
        if lead["Status"] != "SAL":
            continue
        accepted_at = parse_datetime(lead["SAL_Date__c"])
        mine = [
            t
            for t in tasks.get(lead_id, [])
            if t["CreatedById"] != bot and parse_datetime(t["CreatedDate"]) >= accepted_at
        ]
        if len(mine) < 3:
            continue
        owner = next(u for u in store.scan("User") if u["Id"] == lead["OwnerId"])
        calendar = policy.calendar(policy.team_calendar(owner["Team__c"]))
        first = parse_datetime(mine[0]["CompletedDateTime"])
        if business_days_after(calendar, first, 5) <= org.clock:
            expected.add(lead_id)
    recycled = {
        lead["Id"]
        for lead in store.scan("Lead")
        if lead["Status"] == "Recycled" and before[lead["Id"]]["Status"] == "SAL"
    }
    assert expected and recycled == expected
    assert expected <= set(org.unresponsive)  # the org's other leads answer, or leave SAL sooner
    assert summary["recycled"] == len(expected) and summary["failed"] == 0
    for lead_id in recycled:
        lead = store.get("Lead", lead_id)
        assert lead["Rejection_Reason__c"] == "No Response" and lead["Contact_Attempts__c"] == 3
        assert dt.date.fromisoformat(lead["Re_Engagement_Date__c"]) > org.clock.date()


def test_the_unresponsive_leads_survive_a_restart(demo, tmp_path) -> None:
    store, org, *_ = demo
    again = simulate.DemoOrg(store, seed=5, routing="leadsla")
    assert again.unresponsive == org.unresponsive and again.unresponsive
    planned = {e.record_id for e in again.events if e.kind in ("attempt", "give_up")}
    in_sal = {lead_id for lead_id in org.unresponsive if store.get("Lead", lead_id)["Status"] == "SAL"}
    assert in_sal and in_sal <= planned
