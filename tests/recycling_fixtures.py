"""A small org in the local Salesforce API for the recycling tests (see `Org`).

SDR Americas: Ann (a rep) and her manager Mia; the org's integration user logs sequence e-mails on
Ann's name. `Org.worked` seeds a lead that entered SAL `days` ago with the owner's attempts a
day apart from the day after, written as the API writes them (history rows, completed Tasks),
back-dated; `Org.resync` lands everything in the store as crm_sync would.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa
import yaml

from leadsla.crm import mapping as mapping_mod
from leadsla.crm import sync
from leadsla.crm.salesforce import RetryPolicy, SalesforceClient
from leadsla.policy import DEFAULT_POLICY_PATH
from leadsla.store import open_store, schema
from leadsla.store.audit import AuditContext
from leadsla.tasks.recycling import run_recycling

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.005)
CTX = AuditContext(dag_id="lead_recycling", run_id="manual__1", task_id="recycle", try_number=1)
URL = "https://acme.my.salesforce.com"


def policy_file(tmp_path: Path, automation: list[str], **recycle) -> Path:
    """The shipped policy with the org's automation user and `recycle` keys changed."""
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["automation_user_ids"] = automation
    raw["recycle"].update(recycle)
    path = tmp_path / f"policy-{len(list(tmp_path.glob('policy-*')))}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


class Org:
    """The seeded org, its store, and shortcuts to run and read."""

    def __init__(self, sb, tmp_path: Path) -> None:
        self.sb = sb
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        (self.mia,) = sb.seed("User", [self._user("Mia", "Manager")])
        (self.ann,) = sb.seed("User", [self._user("Ann", "Able", ManagerId=self.mia)])
        self.bot = sb.store.integration_user_id
        self.engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
        self.mapping = mapping_mod.load()
        self.client = SalesforceClient(retry=FAST, timeout=10)

    @staticmethod
    def _user(first: str, last: str, **extra) -> dict:
        return {
            "FirstName": first,
            "LastName": last,
            "Email": f"{first}.{last}@example.com".lower(),
            "Username": f"{first}@x.com".lower(),
            "IsActive": True,
            "TimeZoneSidKey": "America/New_York",
            "Team__c": "SDR Americas",
            **extra,
        }

    def ago(self, days: float) -> dt.datetime:
        return self.now - dt.timedelta(days=days)

    def lead(self, last: str, sal_days_ago: float, **fields) -> str:
        """A lead created as an MQL and accepted (SAL) `sal_days_ago` days ago, owned by Ann."""
        created = self.ago(sal_days_ago + 0.1)
        row = self.sb.store.create(
            "Lead",
            {"LastName": last, "Company": f"{last} Ltd", "Status": "MQL", "OwnerId": self.ann, **fields},
            now=created,
            user_id=self.ann,
            system=True,
        )
        self.sb.store.update(
            "Lead", row["Id"], {"Status": "SAL"}, now=self.ago(sal_days_ago), user_id=self.ann
        )
        return row["Id"]

    def attempt(self, lead: str, at: dt.datetime, kind: str = "Call", by: str | None = None, **extra) -> str:
        """A completed Task on the lead, on Ann's name, logged by `by` (default Ann) at `at`."""
        return self.sb.store.create(
            "Task",
            {
                "WhoId": lead,
                "OwnerId": self.ann,
                "Subject": f"{kind} attempt",
                "Type": kind,
                "TaskSubtype": extra.pop("TaskSubtype", kind),
                "Status": "Completed",
                "CompletedDateTime": at,
                **extra,
            },
            now=at,
            user_id=by or self.ann,
        )["Id"]

    def worked(self, last: str, sal_days_ago: float, attempts: int = 3, **fields) -> str:
        """A lead with `attempts` calls and e-mails by Ann, a day apart from the day after SAL."""
        lead = self.lead(last, sal_days_ago, **fields)
        for n in range(attempts):
            self.attempt(lead, self.ago(sal_days_ago - 1 - n), "Email" if n % 2 else "Call")
        return lead

    def resync(self) -> None:
        for group in ("org", "leads"):
            assert (
                sync.sync_group(self.client, self.engine, self.mapping, group, force=True).status == "success"
            )

    def recycle(self, now: dt.datetime | None = None, *, sync_first: bool = True) -> dict:
        if sync_first:
            self.resync()
        return run_recycling(self.engine, now or dt.datetime.now(dt.UTC), CTX, client=self.client, url=URL)

    def audit(self, *events: str) -> list:
        a = schema.audit
        with self.engine.connect() as conn:
            return conn.execute(sa.select(a).where(a.c.event.in_(events)).order_by(a.c.audit_id)).all()

    def outbox(self) -> list:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(schema.outbox).order_by(schema.outbox.c.outbox_id)).all()
