"""Lead routing against the local Salesforce API (real SalesforceHook over HTTPS): the sync lands a
small org, `run_routing` assigns the intake queue's leads with their reason on the record and an
audit entry, and `run_unowned` alerts on what nobody can take.

The org is `tests.routing_fixtures.Org`.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa

from leadsla.crm.landing import parse_datetime
from leadsla.policy import PolicyError
from leadsla.store import schema
from leadsla.tasks.routing import run_routing, run_unowned
from tests.routing_fixtures import CTX, POLICY_FILE, Org
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)


@pytest.fixture
def org(salesforce_sandbox, tmp_path):  # noqa: F811
    made = Org(salesforce_sandbox, tmp_path)
    yield made
    made.engine.dispose()


def test_intake_leads_get_an_owner_and_their_reason_in_one_write_with_an_audit_entry(org) -> None:
    us = org.leads(*[org._lead(f"Us{i}", "US") for i in range(8)])
    (gb,) = org.leads(org._lead("Brit", "GB"))
    (hot,) = org.leads(org._lead("Hot", "US", Lead_Score__c=91))
    (customer,) = org.leads(org._lead("Jo", "US", Company="Someone", Email="jo@globex.example"))
    (by_name,) = org.leads(org._lead("Kim", "CA", Company="GLOBEX CORPORATION Inc.", Email="kim@gmail.com"))
    (dupe,) = org.leads(org._lead("Sam", "US", Email="Sam@Initech.example"))
    (nowhere,) = org.leads(org._lead("Zed", "ZA"))
    (locked,) = org.leads(
        org._lead("Lock", "US", SLA_Lock_Until__c=dt.datetime.now(dt.UTC) + dt.timedelta(hours=20))
    )
    (manual,) = org.leads(org._lead("Mine", "US", OwnerId=org.ann))
    calls_before = org.sb.api_used
    summary = org.route()

    owner = {lead: org.sb.get("Lead", lead)["OwnerId"] for lead in [*us, gb, hot, customer, by_name, dupe]}
    assert {owner[lead] for lead in us} == {org.ann, org.cat}  # Ben is away, Dan inactive
    assert sorted([owner[lead] for lead in us].count(rep) for rep in (org.ann, org.cat)) == [4, 4]
    assert owner[gb] == org.eve
    assert owner[hot] == org.cat  # the Senior SDR takes the hot lead
    assert owner[customer] == owner[by_name] == org.olga  # suppression: never round robin
    assert owner[dupe] == org.eve  # the open lead's owner
    for untouched, was in ((nowhere, org.intake), (locked, org.intake), (manual, org.ann)):
        record = org.sb.get("Lead", untouched)
        assert record["OwnerId"] == was and not record.get("Routing_Reason__c")

    record = org.sb.get("Lead", customer)
    assert record["Routing_Reason__c"] == "account_owner: Globex Corporation (customer)"
    assert record["Routing_Rule__c"] == "suppression:account_owner"
    assert record["Routing_Policy_Version__c"] == "2026.11-tiered"
    assert org.sb.get("Lead", dupe)["Routing_Reason__c"].startswith(f"duplicate_of: {org.open_lead}")
    hot_reason = org.sb.get("Lead", hot)["Routing_Reason__c"]
    assert org.sb.get("Lead", hot)["Routing_Rule__c"] == "territory:americas/hot"
    assert "score 91 (hot)" in hot_reason and "Cat Senior" in hot_reason
    assert hot_reason.endswith("; skipped: Ben Away (out of office)")
    gb_record = org.sb.get("Lead", gb)
    assert (
        gb_record["Routing_Rule__c"] == "territory:emea"
        and "territory: emea -> sdr_emea" in gb_record["Routing_Reason__c"]
    )
    # Owner, reason, rule and version in one write: one composite call for 13 leads (+ its pre-check)
    assert org.sb.api_used - calls_before <= 2 + 12  # the resync's queries, the pre-check, the write
    assert summary["routed"] == 13 and summary["locked"] == 1 and summary["unrouted"] == 1
    assert summary["by_rule"] == {"suppression": 3, "round_robin": 10}

    routed = org.audit("routing")
    assert {e.record_id for e in routed} == set(owner)
    entry = next(e for e in routed if e.record_id == customer)
    assert (entry.dag_id, entry.run_id, entry.task_id) == ("lead_routing", "manual__1", "route")
    assert entry.detail["owner"] == org.olga and entry.detail["from_owner"] == org.intake
    assert entry.policy_version == "2026.11-tiered"
    with org.engine.connect() as conn:  # the store shows the new owners at once
        stored = dict(conn.execute(sa.select(schema.records.c.record_id, schema.records.c.owner_id)).all())
    assert all(stored[lead] == owner[lead] for lead in owner)

    again = org.route()  # nothing waits any more: nothing is written twice
    assert again["routed"] == 0 and len(org.audit("routing")) == len(routed)


def test_the_round_robin_is_fair_over_time_and_weighs_capacity(org, tmp_path, monkeypatch) -> None:
    text = POLICY_FILE.read_text().replace(
        "    capacity: {}", f"    capacity: {{{org.ann}: 2, cat.senior@example.com: 1}}"
    )
    policy_file = tmp_path / "sla_policy.yaml"
    policy_file.write_text(text)
    monkeypatch.setenv("LEADSLA_POLICY_PATH", str(policy_file))
    for batch in range(3):  # three runs: the window's earlier routing counts in the next
        org.leads(*[org._lead(f"B{batch}x{i}", "US") for i in range(10)])
        org.route()
    counts = {rep: 0 for rep in (org.ann, org.cat)}
    for entry in org.audit("routing"):
        counts[entry.detail["owner"]] += 1
    assert counts == {org.ann: 20, org.cat: 10}  # weights 2 : 1, exactly


def test_a_lead_someone_assigned_meanwhile_is_re_read_and_left_with_them(org) -> None:
    (lead,) = org.leads(org._lead("Race", "US"))
    org.resync()
    time.sleep(1.1)  # If-Unmodified-Since has whole seconds
    org.sb.update("Lead", lead, {"OwnerId": org.eve}, user_id=org.mia)  # the manager was faster
    summary = run_routing(org.engine, dt.datetime.now(dt.UTC), CTX, client=org.client)
    assert org.sb.get("Lead", lead)["OwnerId"] == org.eve
    assert summary["routed"] == 0 and summary["conflicts_left"] == 1
    assert [e.record_id for e in org.audit("crm_write_conflict")] == [lead]
    assert org.audit("routing") == []


def test_a_locked_row_is_retried_and_routed(org) -> None:
    leads = org.leads(*[org._lead(f"Busy{i}", "US") for i in range(3)])
    org.sb.inject_fault("UNABLE_TO_LOCK_ROW", endpoint="composite", times=1)
    summary = org.route()
    assert summary["routed"] == 3
    assert all(org.sb.get("Lead", lead)["Routing_Reason__c"] for lead in leads)


def test_a_policy_naming_an_unknown_user_routes_nothing(org, tmp_path, monkeypatch) -> None:
    text = POLICY_FILE.read_text().replace("    capacity: {}", "    capacity: {nobody@example.com: 2}")
    (tmp_path / "p.yaml").write_text(text)
    monkeypatch.setenv("LEADSLA_POLICY_PATH", str(tmp_path / "p.yaml"))
    (lead,) = org.leads(org._lead("Wait", "US"))
    with pytest.raises(PolicyError, match=r"routing.reps names \['nobody@example.com'\]"):
        org.route()
    assert org.sb.get("Lead", lead)["OwnerId"] == org.intake


def test_an_unowned_lead_alerts_the_team_manager_and_revops_once_then_on_a_schedule(org) -> None:
    org.sb.update("User", org.cat, {"Out_Of_Office__c": True})
    org.sb.update("User", org.ann, {"IsActive": False})  # nobody in SDR Americas can take a lead
    (stuck,) = org.leads(org._lead("Stuck", "US", Lead_Score__c=91, Campaign__c="Q4 <!here> Webinar"))
    (nowhere,) = org.leads(org._lead("Zed", "ZA"))
    now = dt.datetime.now(dt.UTC)
    assert org.route(now)["unrouted"] == 2
    first = run_unowned(org.engine, now, CTX)
    assert first["unowned"] >= 2
    rows = {(r.checkpoint, r.channel, r.recipient) for r in org.outbox() if r.payload["subject"] == stuck}
    assert rows == {
        ("unowned:0", "email", "mia.manager@example.com"),
        ("unowned:0", "slack", "mia.manager@example.com"),
        ("unowned:0", "email", "vp.revops@example.com"),
        ("unowned:0", "slack", "#revops"),
    }
    payload = next(r.payload for r in org.outbox() if r.payload["subject"] == stuck)
    text = " ".join(payload["lines"])
    assert "queue Lead Intake" in text and "no rep of sdr_east is available" in text
    assert "Next reminder at" in text
    # what the manager triages by, synced from the CRM ("not set" where it holds nothing)
    assert (
        "Triage: score 91 · deal value $25,000 (estimated: a typical deal) · source Web · "
        "campaign Q4 <!here> Webinar." in payload["lines"]
    )
    # the lead without a territory reaches RevOps (no team manager to resolve)
    assert {r.recipient for r in org.outbox() if r.payload["subject"] == nowhere} == {
        "vp.revops@example.com",
        "#revops",
    }
    nowhere_lines = next(r.payload for r in org.outbox() if r.payload["subject"] == nowhere)["lines"]
    assert "no territory matches Country ZA" in " ".join(nowhere_lines)
    assert any(line.startswith("Triage: score not set · ") for line in nowhere_lines)
    assert run_unowned(org.engine, now + dt.timedelta(seconds=50), CTX)["queued"] == 0  # exactly once
    alerts = org.audit("unowned_alert_queued")
    assert {e.record_id for e in alerts} == {stuck, nowhere}

    # an hour on, in the team's working hours: the reminder
    since = dt.datetime.fromisoformat(next(e.detail["since"] for e in alerts if e.record_id == stuck))
    from leadsla.policy import load_policy

    calendar = load_policy().calendar("us_east")
    later = calendar.deadline(since + dt.timedelta(hours=1, minutes=3), 60) - dt.timedelta(seconds=30)
    reminded = run_unowned(org.engine, later, CTX)
    assert reminded["queued"] >= 4
    numbers = {r.checkpoint for r in org.outbox() if r.payload["subject"] == stuck}
    assert len(numbers) == 2 and "unowned:0" in numbers

    # someone owns it: no more alerts for it
    org.sb.update("Lead", stuck, {"OwnerId": org.eve}, user_id=org.mia)
    org.resync()
    before = len([r for r in org.outbox() if r.payload["subject"] == stuck])
    run_unowned(org.engine, later + dt.timedelta(hours=3), CTX)
    assert len([r for r in org.outbox() if r.payload["subject"] == stuck]) == before


def test_watch_mode_writes_nothing_and_reports_misrouted_and_unowned_leads(
    org, tmp_path, monkeypatch
) -> None:
    text = POLICY_FILE.read_text().replace("  mode: route\n", "  mode: watch\n")
    (tmp_path / "watch.yaml").write_text(text)
    monkeypatch.setenv("LEADSLA_POLICY_PATH", str(tmp_path / "watch.yaml"))
    (waiting,) = org.leads(org._lead("Queued", "US"))
    (wrong_team,) = org.leads(org._lead("Wrong", "US", OwnerId=org.eve))  # US lead with the EMEA rep
    (customer,) = org.leads(org._lead("Jo", "US", Email="jo@globex.example", OwnerId=org.ann))
    (fine,) = org.leads(org._lead("Fine", "US", OwnerId=org.ann))
    calls = org.sb.api_used
    summary = org.route()
    assert summary["routed"] == 0 and summary["watched"] == 1 and summary["misrouted"] == 2
    assert org.sb.get("Lead", waiting)["OwnerId"] == org.intake and not org.sb.get("Lead", waiting).get(
        "Routing_Reason__c"
    )
    assert org.sb.api_used - calls <= 12  # the resync's reads only: no write, no pre-check
    found = {e.record_id: e.detail for e in org.audit("misrouted_lead")}
    assert set(found) == {wrong_team, customer} and fine not in found
    assert found[customer]["rule"] == "suppression:account_owner"
    assert "Olga Owner" in found[customer]["why"]
    assert found[wrong_team]["rule"] == "territory:americas"
    queued = len(org.audit("misrouted_lead"))  # one per recipient and channel
    assert org.route()["misrouted"] == 2  # still mis-routed, but told once per lead and owner
    assert len(org.audit("misrouted_lead")) == queued
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)
    run_unowned(org.engine, later, CTX)
    assert waiting in {e.record_id for e in org.audit("unowned_alert_queued")}


def test_a_lead_whose_owner_left_or_whose_lock_ended_gets_its_first_alert_minutes_later(org) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=30)
    old = {"CreatedDate": long_ago, "Status": "SAL"}
    (left,) = org.leads(org._lead("Left", "GB", OwnerId=org.eve, **old))  # worked by Eve for a day
    (unlocked,) = org.leads(
        org._lead(
            "Unlocked", "US", SLA_Lock_Until__c=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30), **old
        )
    )
    org.sb.update("User", org.eve, {"IsActive": False})  # Eve leaves now
    org.resync()
    deactivated = parse_datetime(org.sb.get("User", org.eve)["SystemModstamp"])
    run_unowned(org.engine, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3), CTX)
    first = {e.record_id: e.detail for e in org.audit("unowned_alert_queued")}
    # Unowned since Eve left and since the lock ended, not for 30 hours: the series starts with its
    # first alert at once (a reminder counted from the creation would wait for working hours).
    assert first[left]["reminder"] == 0 and first[unlocked]["reminder"] == 0
    assert dt.datetime.fromisoformat(first[left]["since"]) == deactivated
    assert dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(first[unlocked]["since"]) < dt.timedelta(
        minutes=1
    )
