"""Fixtures for warnings sent at their checkpoint's instant: the demo policy open around the clock
(so a real-time test runs any day, nights and weekends too), and a store seeded with one rep,
her manager and demo-request leads entering SAL at a given instant.

The shipped policy's five-minute `demo_request` tier is kept as it is (50 % and 80 % warnings,
the breach at target + 1 min); only the owner's calendar (us_east) is opened all week, without
holidays, so business time is real time whenever the test runs.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import yaml

from leadsla.paths import config_dir
from leadsla.policy import Policy, policy_from_dict
from leadsla.store import schema

REP, MANAGER = "005000000000001AAA", "005000000000002AAA"
REP_EMAIL, MANAGER_EMAIL = "rita.rep@example.com", "max.manager@example.com"
URL = "https://acme.my.salesforce.com"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def open_all_week_policy(*, critical_demo: bool = True) -> Policy:
    """The demo policy (include/config/sla_policy.yaml) with us_east open 00:00-24:00 every day;
    `critical_demo` False makes the demo-request tier not critical (its breach then tells the rep
    and her manager, not leadership at once)."""
    path = config_dir() / "sla_policy.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["calendars"]["us_east"] = {
        "timezone": "America/New_York",
        "hours": {d: ["00:00-24:00"] for d in DAYS},
    }
    if not critical_demo:
        for sla in raw["slas"]:
            for tier in sla.get("tiers", []):
                if tier["id"] == "demo_request":
                    tier["critical"] = False
    return policy_from_dict(raw, source=str(path), base_dir=path.parent)


def seed_people(engine: sa.Engine, at: dt.datetime) -> None:
    """The rep (sdr_east) and her manager, synced at `at`."""
    with engine.begin() as conn:
        conn.execute(
            schema.users.insert(),
            [
                {
                    "user_id": MANAGER,
                    "name": "Max Manager",
                    "email": MANAGER_EMAIL,
                    "manager_id": None,
                    "team": "sdr_east",
                    "timezone": "America/New_York",
                    "is_active": True,
                    "fields": {},
                    "synced_at": at,
                },
                {
                    "user_id": REP,
                    "name": "Rita Rep",
                    "email": REP_EMAIL,
                    "manager_id": MANAGER,
                    "team": "sdr_east",
                    "timezone": "America/New_York",
                    "is_active": True,
                    "fields": {},
                    "synced_at": at,
                },
            ],
        )


def lead_id(n: int) -> str:
    return f"00Q{n:015d}"


def seed_sal_lead(engine: sa.Engine, n: int, sal_at: dt.datetime, *, owner: str = REP) -> str:
    """A demo-request lead created a minute before `sal_at` and moved MQL -> SAL at `sal_at`."""
    rid = lead_id(n)
    created = sal_at - dt.timedelta(minutes=1)
    with engine.begin() as conn:
        conn.execute(
            schema.records.insert(),
            {
                "object_type": "Lead",
                "record_id": rid,
                "name": f"Demo Lead {n}",
                "company": "Acme <Corp>",
                "status": "SAL",
                "owner_id": owner,
                "lead_source": "Web",
                "lead_type": "Demo Request",
                "country": "US",
                "created_at": created,
                "modified_at": sal_at,
                "fields": {"Status": "SAL", "OwnerId": owner, "Lead_Type__c": "Demo Request"},
                "synced_at": sal_at,
            },
        )
        conn.execute(
            schema.field_history.insert(),
            {
                "history_id": f"017{n:015d}",
                "object_type": "Lead",
                "record_id": rid,
                "field": "Status",
                "old_value": "MQL",
                "new_value": "SAL",
                "changed_by": owner,
                "changed_at": sal_at,
            },
        )
    return rid


def log_call(engine: sa.Engine, rid: str, at: dt.datetime, *, n: int = 1, owner: str = REP) -> None:
    """The owner's completed call on the lead at `at`, landed in the store (as the sync would)."""
    with engine.begin() as conn:
        conn.execute(
            schema.activities.insert(),
            {
                "activity_id": f"00T{n:015d}",
                "kind": "Task",
                "who_id": rid,
                "owner_id": owner,
                "type": "Call",
                "subject": "Call",
                "created_at": at,
                "created_by": owner,
                "status": "Completed",
                "completed_at": at,
                "synced_at": at,
            },
        )


def set_status(engine: sa.Engine, rid: str, old: str, new: str, at: dt.datetime, *, n: int = 2) -> None:
    """The lead's Status moved `old` -> `new` at `at` (record and history row, as the sync lands it)."""
    with engine.begin() as conn:
        conn.execute(
            schema.records.update()
            .where(schema.records.c.record_id == rid)
            .values(status=new, modified_at=at, fields={"Status": new, "OwnerId": REP})
        )
        conn.execute(
            schema.field_history.insert(),
            {
                "history_id": f"017{n:015d}",
                "object_type": "Lead",
                "record_id": rid,
                "field": "Status",
                "old_value": old,
                "new_value": new,
                "changed_by": REP,
                "changed_at": at,
            },
        )


def outbox_rows(engine: sa.Engine, **where) -> list:
    o = schema.outbox
    query = sa.select(o).order_by(o.c.outbox_id)
    for column, value in where.items():
        query = query.where(o.c[column] == value)
    with engine.connect() as conn:
        return conn.execute(query).all()


def audit_rows(engine: sa.Engine, event: str) -> list:
    a = schema.audit
    with engine.connect() as conn:
        return conn.execute(sa.select(a).where(a.c.event == event).order_by(a.c.audit_id)).all()
