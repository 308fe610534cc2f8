"""A small org in the local Salesforce API for the routing tests (see `Org`).

SDR Americas (Ann and Cat, a Senior SDR, working; Ben out of office; Dan inactive; their manager
Mia), SDR EMEA (Eve), an account executive (Olga) who owns Globex, a customer, and an open SAL lead
of Eve's (sam@initech.example). Leads wait as MQLs in the "Lead Intake" queue.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from leadsla.crm import mapping as mapping_mod
from leadsla.crm import sync
from leadsla.crm.salesforce import RetryPolicy, SalesforceClient
from leadsla.store import open_store, schema
from leadsla.store.audit import AuditContext
from leadsla.tasks.routing import run_routing

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.005)
CTX = AuditContext(dag_id="lead_routing", run_id="manual__1", task_id="route", try_number=1)
POLICY_FILE = Path(__file__).resolve().parents[1] / "include" / "config" / "sla_policy.yaml"


def _user(first: str, last: str, team: str | None, **extra) -> dict:
    return {
        "FirstName": first,
        "LastName": last,
        "Email": f"{first}.{last}@example.com".lower(),
        "Username": f"{first}@x.com".lower(),
        "IsActive": True,
        "TimeZoneSidKey": "America/New_York",
        **({"Team__c": team} if team else {}),
        **extra,
    }


class Org:
    """The seeded org, its store, and shortcuts to run and read."""

    def __init__(self, sb, tmp_path: Path) -> None:
        self.sb = sb
        self.t0 = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
        sdr_role, senior_role = sb.seed("UserRole", [{"Name": "SDR"}, {"Name": "Senior SDR"}])
        (self.mia,) = sb.seed("User", [_user("Mia", "Manager", "SDR Americas")])
        ids = sb.seed(
            "User",
            [
                _user("Ann", "Able", "SDR Americas", ManagerId=self.mia, UserRoleId=sdr_role),
                _user("Ben", "Away", "SDR Americas", ManagerId=self.mia, Out_Of_Office__c=True),
                _user("Cat", "Senior", "SDR Americas", ManagerId=self.mia, UserRoleId=senior_role),
                _user("Dan", "Gone", "SDR Americas", ManagerId=self.mia, IsActive=False),
                _user("Eve", "Emea", "SDR EMEA"),
                _user("Olga", "Owner", None),
            ],
        )
        self.ann, self.ben, self.cat, self.dan, self.eve, self.olga = ids
        (self.intake,) = sb.seed(
            "Group", [{"Name": "Lead Intake", "DeveloperName": "Lead_Intake", "Type": "Queue"}]
        )
        (globex,) = sb.seed(
            "Account",
            [{"Name": "Globex Corporation", "Website": "https://www.globex.example", "OwnerId": self.olga}],
        )
        sb.seed(
            "Opportunity",
            [
                {
                    "Name": "Globex renewal",
                    "AccountId": globex,
                    "StageName": "Closed Won",
                    "OwnerId": self.olga,
                }
            ],
        )
        (self.open_lead,) = sb.seed(
            "Lead",
            [self._lead("Existing", "GB", Email="sam@initech.example", OwnerId=self.eve, Status="SAL")],
        )
        self.engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
        self.mapping = mapping_mod.load()
        self.client = SalesforceClient(retry=FAST, timeout=10)

    def _lead(self, last: str, country: str | None, **extra) -> dict:
        return {
            "LastName": last,
            "Company": f"{last} Ltd",
            "Email": f"{last.lower()}@{last.lower()}.example",
            "Status": "MQL",
            "OwnerId": self.intake if hasattr(self, "intake") else None,
            "LeadSource": "Web",
            **({"Country": country} if country else {}),
            "CreatedDate": self.t0,
            **extra,
        }

    def leads(self, *rows: dict) -> list[str]:
        """Seed leads created half an hour ago and landing now (so the next sync reads them)."""
        now = dt.datetime.now(dt.UTC)
        return self.sb.seed("Lead", [{"SystemModstamp": now, "LastModifiedDate": now, **row} for row in rows])

    def resync(self) -> None:
        for group in ("org", "leads"):
            assert (
                sync.sync_group(self.client, self.engine, self.mapping, group, force=True).status == "success"
            )

    def route(self, now: dt.datetime | None = None) -> dict:
        self.resync()
        return run_routing(self.engine, now or dt.datetime.now(dt.UTC), CTX, client=self.client)

    def audit(self, *events: str) -> list:
        a = schema.audit
        with self.engine.connect() as conn:
            return conn.execute(sa.select(a).where(a.c.event.in_(events)).order_by(a.c.audit_id)).all()

    def outbox(self) -> list:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(schema.outbox).order_by(schema.outbox.c.created_at)).all()
