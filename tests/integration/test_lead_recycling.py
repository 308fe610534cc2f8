"""Attempt counting and recycling against the local Salesforce API (real SalesforceHook over HTTPS):
the sync lands a small org, `run_recycling` stamps each accepted lead's attempts, and recommends
(the owner and manager told once, with a link) or recycles (Status, reason and re-engagement date in
one conditional write, audited) the leads worked without an answer; a lead someone works meanwhile
is left; a recycled lead comes back as an MQL on its date.

The org is `tests.recycling_fixtures.Org`.
"""

from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import pytest

from leadsla.policy import load_policy
from tests.recycling_fixtures import URL, Org, policy_file
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

NY = ZoneInfo("America/New_York")


@pytest.fixture
def org(salesforce_sandbox, tmp_path):  # noqa: F811
    made = Org(salesforce_sandbox, tmp_path)
    yield made
    made.engine.dispose()


@pytest.fixture
def auto(org, tmp_path, monkeypatch):
    """The shipped policy in `mode: auto`, with the org's integration user as the automation user."""
    monkeypatch.setenv("LEADSLA_POLICY_PATH", str(policy_file(tmp_path, [org.bot], mode="auto")))
    return org


def test_attempts_are_stamped_and_recommend_mode_tells_the_owner_and_manager_once(
    org, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("LEADSLA_POLICY_PATH", str(policy_file(tmp_path, [org.bot])))
    silent = org.worked("Silent", 14)
    org.attempt(silent, org.ago(12.5), "Email", by=org.bot, TaskSubtype="Cadence")  # a sequence step
    fresh = org.worked("Fresh", 2, attempts=1)
    replied = org.worked("Replied", 14)
    org.sb.update("Lead", replied, {"Lead_Replied__c": True}, now=org.ago(10), user_id=org.bot)

    summary = org.recycle()
    attempts = {lead: org.sb.get("Lead", lead)["Contact_Attempts__c"] for lead in (silent, fresh, replied)}
    assert attempts == {silent: 3, fresh: 1, replied: 3}  # the sequence e-mail is no attempt
    assert all(org.sb.get("Lead", lead)["Status"] == "SAL" for lead in (silent, fresh, replied))
    assert summary["recommended"] == 1 and summary["queued"] == 4 and summary["held_replied"] == 1
    rows = [r for r in org.outbox() if r.payload["subject"] == silent]
    assert {(r.channel, r.recipient) for r in rows} == {
        (channel, who)
        for channel in ("slack", "email")
        for who in ("ann.able@example.com", "mia.manager@example.com")
    }
    payload = rows[0].payload
    assert payload["record"] == {"object_type": "Lead", "id": silent, "instance_url": URL}
    assert payload["title"] == "Recycle Silent? 3 attempts, no response"
    recommended = org.audit("recycle_recommended")
    assert {e.record_id for e in recommended} == {silent} and len(recommended) == 4
    assert (recommended[0].dag_id, recommended[0].task_id) == ("lead_recycling", "recycle")
    writes = org.audit("crm_write")
    assert {e.record_id for e in writes} == {silent, fresh, replied} and {e.actor for e in writes} == {
        "recycling"
    }

    org.resync()
    calls = org.sb.api_used
    again = org.recycle(sync_first=False)  # nothing changed: no CRM call, nothing queued twice
    assert org.sb.api_used == calls and again["queued"] == 0 and again["attempts_changed"] == 0
    assert len(org.audit("recycle_recommended")) == 4 and len(org.audit("crm_write")) == 3


def test_auto_mode_recycles_with_the_reason_and_re_engagement_date_in_one_audited_write(auto) -> None:
    org = auto
    lead = org.worked("Silent", 14)
    waiting = org.worked("Waiting", 3)  # three attempts, but the first only two days ago
    summary = org.recycle()
    record = org.sb.get("Lead", lead)
    back_on = org.now.astimezone(NY).date() + dt.timedelta(days=90)
    assert (record["Status"], record["Rejection_Reason__c"]) == ("Recycled", "No Response")
    assert record["Re_Engagement_Date__c"] == back_on.isoformat() and record["Contact_Attempts__c"] == 3
    assert org.sb.get("Lead", waiting)["Status"] == "SAL"
    assert summary["recycled"] == 1 and summary["due"] == 1 and org.outbox() == []
    (entry,) = org.audit("lead_recycled")
    assert entry.record_id == lead and entry.policy_version == load_policy().version
    assert entry.detail["reason"] == "No Response" and entry.detail["attempts"] == 3
    assert entry.detail["reengage_on"] == back_on.isoformat()
    (write,) = [e for e in org.audit("crm_write") if e.record_id == lead]
    assert write.detail["fields"]["Status"] == "Recycled"  # status, reason, attempts, date: one write
    assert set(write.detail["fields"]) == {
        "Status",
        "Rejection_Reason__c",
        "Contact_Attempts__c",
        "Re_Engagement_Date__c",
    }
    assert org.recycle()["recycled"] == 0 and len(org.audit("lead_recycled")) == 1  # once


def test_a_lead_someone_works_after_the_sync_is_left_as_it_is(auto) -> None:
    org = auto
    called = org.worked("Called", 14)
    moved = org.worked("Moved", 14)
    replied = org.worked("Replied", 14)
    org.resync()
    time.sleep(1.1)  # If-Unmodified-Since has whole seconds
    org.attempt(called, dt.datetime.now(dt.UTC), "Call")  # the rep calls again, not synced yet
    org.sb.update("Lead", moved, {"Status": "Nurture - contact later"}, user_id=org.ann)
    org.sb.update("Lead", replied, {"Lead_Replied__c": True}, user_id=org.bot)  # the e-mail tool
    summary = org.recycle(sync_first=False)
    assert {lead: org.sb.get("Lead", lead)["Status"] for lead in (called, moved, replied)} == {
        called: "SAL",
        moved: "Nurture - contact later",
        replied: "SAL",
    }
    assert summary["recycled"] == 0 and summary["left"] == 3 and org.audit("lead_recycled") == []
    # Both changed leads were re-read and re-decided: neither recycled; the replied one still SAL,
    # so its attempts were stamped (the pre-check had already taken it off the recycling).
    assert {e.record_id for e in org.audit("crm_write_conflict")} == {moved, replied}
    writes = {e.record_id: set(e.detail["fields"]) for e in org.audit("crm_write")}
    assert writes == {called: {"Contact_Attempts__c"}, replied: {"Contact_Attempts__c"}}
    assert all(not org.sb.get("Lead", lead).get("Rejection_Reason__c") for lead in (called, moved, replied))


def test_a_recycled_lead_re_enters_mql_on_its_re_engagement_date(auto) -> None:
    org = auto
    today = org.now.astimezone(NY).date()
    due = org.lead("Due", 100, Contact_Attempts__c=3)
    later = org.lead("Later", 100, Contact_Attempts__c=3)
    for lead, date in ((due, today - dt.timedelta(days=1)), (later, today + dt.timedelta(days=2))):
        org.sb.update(
            "Lead",
            lead,
            {"Status": "Recycled", "Rejection_Reason__c": "No Response", "Re_Engagement_Date__c": date},
            now=org.ago(91),
            user_id=org.ann,
        )
    summary = org.recycle()
    record = org.sb.get("Lead", due)
    assert record["Status"] == "MQL" and record["MQL_Date__c"] and not record.get("SAL_Date__c")
    assert not record.get("Re_Engagement_Date__c") and record["Contact_Attempts__c"] == 0
    assert org.sb.get("Lead", later)["Status"] == "Recycled"
    (entry,) = org.audit("lead_reengaged")
    assert entry.record_id == due and entry.detail["status"] == "MQL"
    assert entry.detail["due_on"] == (today - dt.timedelta(days=1)).isoformat()
    assert summary["reengaged"] == 1
    assert org.recycle()["reengaged"] == 0 and len(org.audit("lead_reengaged")) == 1


def test_only_the_leads_recycling_may_act_on_are_read_on_both_backends(store) -> None:
    from leadsla.disposition.book import candidates
    from leadsla.store import schema

    synced = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)

    def lead(rid: str, status: str, **fields) -> dict:
        return {
            "object_type": "Lead",
            "record_id": rid,
            "status": status,
            "is_deleted": False,
            "fields": fields,
            "synced_at": synced,
        }

    rows = [
        lead("SAL1", "SAL"),
        lead("DATED", "Recycled", Re_Engagement_Date__c="2027-03-01"),
        lead("UNDATED", "Recycled", Re_Engagement_Date__c=None),
        lead("BARE", "Recycled"),
        lead("SQL1", "SQL"),
        {**lead("GONE", "SAL"), "is_deleted": True},
    ]
    with store.begin() as conn:
        conn.execute(schema.records.insert(), rows)
        conn.execute(
            schema.activities.insert(),
            [
                {
                    "activity_id": f"T{rid}",
                    "kind": "Task",
                    "who_id": rid,
                    "created_at": synced,
                    "synced_at": synced,
                }
                for rid in ("SAL1", "SQL1", "DATED")
            ],
        )
    with store.connect() as conn:
        frames = candidates(conn, load_policy(), "Re_Engagement_Date__c")
    assert sorted(frames["records"]["record_id"]) == ["DATED", "SAL1"]
    assert sorted(frames["activities"]["who_id"]) == ["DATED", "SAL1"]
