"""A critical breach reaches the SMS gateway: the shipped policy, `run_monitor` and `deliver_due` on
both store backends, the owner's and manager's MobilePhone from the synced users, the real Apprise
client against the stand-in. A standard lead's breach in working hours is not texted."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.notify.delivery import deliver_due
from leadsla.policy import load_policy
from leadsla.store import schema
from leadsla.store.audit import AuditContext
from leadsla.tasks.monitor import run_monitor
from tests.notify_fixtures import MANAGER, REP

pytest_plugins = ["tests.notify_fixtures"]

POLICY = load_policy()  # sales_touch: demo requests are critical (5 business minutes); breach texts
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="evaluate", try_number=1)
SAL_AT = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)  # Tuesday 10:00 New York
REP_ID, MANAGER_ID = "005000000000001AAA", "005000000000002AAA"
LEAD = "00Q000000000000001"


def seed(engine, lead_type: str) -> None:
    seeded = SAL_AT - dt.timedelta(hours=1)

    def user(uid, who, manager, phone):
        return {
            "user_id": uid,
            "name": who["real_name"],
            "email": who["email"],
            "manager_id": manager,
            "team": "SDR East",
            "timezone": "America/New_York",
            "fields": {"MobilePhone": phone},
            "synced_at": seeded,
        }

    with engine.begin() as conn:
        conn.execute(
            schema.users.insert(),
            [
                user(REP_ID, REP, MANAGER_ID, "+1 202 555 0101"),
                user(MANAGER_ID, MANAGER, None, "+1 202 555 0102"),
            ],
        )
        conn.execute(
            schema.records.insert(),
            [
                {
                    "object_type": "Lead",
                    "record_id": LEAD,
                    "name": "Ada Lovelace",
                    "company": "Analytical Engines",
                    "status": "SAL",
                    "owner_id": REP_ID,
                    "lead_source": "Web",
                    "lead_type": lead_type,
                    "created_at": seeded,
                    "modified_at": seeded,
                    "fields": {"Status": "SAL", "OwnerId": REP_ID},
                    "synced_at": seeded,
                }
            ],
        )
        conn.execute(
            schema.field_history.insert(),
            [
                {
                    "history_id": "017000000000000001",
                    "object_type": "Lead",
                    "record_id": LEAD,
                    "field": "Status",
                    "old_value": "MQL",
                    "new_value": "SAL",
                    "changed_by": REP_ID,
                    "changed_at": SAL_AT,
                }
            ],
        )


def texts_queued(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                sa.select(schema.outbox.c.recipient, schema.outbox.c.status).where(
                    schema.outbox.c.channel == "sms"
                )
            ).all()
        )


def test_a_critical_breach_texts_the_owner_and_manager_through_the_gateway(
    store, sms_gateway, smtp_sink, slack_api
) -> None:
    seed(store, "Demo Request")
    breach_run = SAL_AT + dt.timedelta(minutes=10)  # 5 business minutes + 1: breached
    summary = run_monitor(store, breach_run, CTX, policy=POLICY, url="https://acme.my.salesforce.com")
    assert summary["breaches"] == 1
    assert texts_queued(store) == [("+12025550101", "pending"), ("+12025550102", "pending")]
    deliver_due(store, breach_run, CTX)
    texts = sorted(sms_gateway.messages(), key=lambda m: m["to"])
    assert [m["to"] for m in texts] == ["+12025550101", "+12025550102"]  # the VPs have no number
    assert all(
        m["message"].startswith("LeadSLA BREACH (demo_request): Sales touched lead - Ada Lovelace")
        for m in texts
    )
    assert "To you as owner" in texts[0]["message"] and "owner manager" in texts[1]["message"]
    assert texts_queued(store) == [("+12025550101", "delivered"), ("+12025550102", "delivered")]


def test_a_standard_breach_in_working_hours_is_not_texted(store, sms_gateway) -> None:
    seed(store, "Content Download")  # the content tier: 4 business hours, not critical
    breach_run = SAL_AT + dt.timedelta(hours=4, minutes=2)  # 14:02 New York: everyone at work
    assert (
        run_monitor(store, breach_run, CTX, policy=POLICY, url="https://acme.my.salesforce.com")["breaches"]
        == 1
    )
    assert texts_queued(store) == []
