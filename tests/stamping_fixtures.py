"""A small org in the local Salesforce API for the SLA stamping tests (see `StampOrg`).

SDR Americas: Rita (a rep) and Max, her manager. Leads accepted (SAL) at chosen instants run the
sales_touch SLA under a test policy whose only tier is one real hour (`time: calendar`), so a
clock's colour and state follow the wall clock to the minute whatever the day: green, yellow from
45 minutes, red and breached past 60. Everything else is the shipped configuration.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import sqlalchemy as sa
import yaml

from leadsla.configuration import Configuration, check_files
from leadsla.crm import mapping as mapping_mod
from leadsla.crm import sync
from leadsla.crm.salesforce import RetryPolicy, SalesforceClient
from leadsla.paths import config_dir
from leadsla.store import open_store, schema
from leadsla.store.audit import AuditContext
from leadsla.tasks.monitor import run_monitor, run_stamping

FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.005)
CTX = AuditContext(dag_id="sla_monitor", run_id="scheduled__1", task_id="stamp", try_number=1)
EVALUATE = AuditContext(dag_id="sla_monitor", run_id="scheduled__1", task_id="evaluate", try_number=1)


def one_hour_policy(folder: Path) -> Path:
    """The shipped policy with sales_touch's tiers replaced by one real hour."""
    raw = yaml.safe_load((config_dir() / "sla_policy.yaml").read_text(encoding="utf-8"))
    touch = next(s for s in raw["slas"] if s["id"] == "sales_touch")
    touch["tiers"] = [{"id": "hour", "default": True, "target": {"duration": "1h", "time": "calendar"}}]
    path = folder / "sla_policy.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


class StampOrg:
    """The seeded org, its store, the configuration, and shortcuts to sync, evaluate and stamp."""

    def __init__(self, sb, tmp_path: Path) -> None:
        self.sb = sb
        (self.max,) = sb.seed("User", [_user("Max", "Manager")])
        (self.rita,) = sb.seed("User", [_user("Rita", "Rep", ManagerId=self.max)])
        self.engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
        self.configuration: Configuration = check_files(policy=one_hour_policy(tmp_path)).raise_for_problems()
        self.client = SalesforceClient(retry=FAST, timeout=10)

    @property
    def mapping(self) -> mapping_mod.CrmMapping:
        return self.configuration.mapping

    def with_mapping(self, **changes) -> None:
        """Run on a mapping with some values changed (e.g. a smaller stamping budget)."""
        mapping = dataclasses.replace(self.mapping, **changes)
        self.configuration = dataclasses.replace(self.configuration, mapping=mapping)

    def accepted(self, *minutes_ago: float, now: dt.datetime, **extra) -> list[str]:
        """Leads of Rita's accepted (SAL) these many minutes before `now`, one each, landing in the org
        now (so the next sync reads them)."""
        ids = []
        landed = dt.datetime.now(dt.UTC)
        for i, ago in enumerate(minutes_ago):
            at = now - dt.timedelta(minutes=ago)
            (lead,) = self.sb.seed(
                "Lead",
                [
                    {
                        "FirstName": f"Lead{i}",
                        "LastName": f"Accepted {ago:g} min ago",
                        "Company": "Analytical Engines",
                        "Status": "SAL",
                        "LeadSource": "Web",
                        "OwnerId": self.rita,
                        "CreatedDate": at - dt.timedelta(minutes=5),
                        "SystemModstamp": landed,
                        "LastModifiedDate": landed,
                        **extra,
                    }
                ],
            )
            self.sb.seed(
                "LeadHistory",
                [
                    {
                        "LeadId": lead,
                        "Field": "Status",
                        "OldValue": "MQL",
                        "NewValue": "SAL",
                        "CreatedDate": at,
                        "CreatedById": self.rita,
                    }
                ],
            )
            ids.append(lead)
        return ids

    def touch(self, lead: str, at: dt.datetime) -> None:
        """Rita logs a completed call on the lead at `at`."""
        self.sb.store.create(
            "Task",
            {
                "WhoId": lead,
                "OwnerId": self.rita,
                "Subject": "Call",
                "Type": "Call",
                "TaskSubtype": "Call",
                "Status": "Completed",
                "CompletedDateTime": at,
            },
            now=at,
            user_id=self.rita,
        )

    def check_mapping(self) -> dict:
        """crm_sync's check_mapping: the mapping (and the stamp fields' types) against describe()."""
        return sync.check_mapping(
            self.client,
            self.engine,
            self.mapping,
            dt.datetime.now(dt.UTC),
            lifecycle=self.configuration.lifecycle,
        )

    def resync(self) -> int:
        """crm_sync's groups; returns the records changed (what `publish` would emit the asset on)."""
        changed = 0
        for group in ("org", "leads"):
            summary = sync.sync_group(self.client, self.engine, self.mapping, group, force=True)
            assert summary.status == "success", summary.message
            changed += summary.records_changed
        return changed

    def evaluate(self, now: dt.datetime) -> dict:
        return run_monitor(
            self.engine, now, EVALUATE, policy=self.configuration.policy, url="https://acme.my.salesforce.com"
        )

    def stamp(self, now: dt.datetime, context: AuditContext = CTX) -> dict:
        return run_stamping(self.engine, now, context, client=self.client, configuration=self.configuration)

    def minute(self, now: dt.datetime) -> dict:
        """One sla_monitor run without a sync: evaluate at `now`, then stamp."""
        self.evaluate(now)
        return self.stamp(now)

    def fields(self, lead: str) -> dict:
        """The lead's SLA fields in the org, by logical name."""
        record = self.sb.get("Lead", lead)
        return {name: record.get(api) for name, api in self.mapping.stamp_fields.items()}

    def audit(self, *events: str) -> list:
        a = schema.audit
        with self.engine.connect() as conn:
            return conn.execute(sa.select(a).where(a.c.event.in_(events)).order_by(a.c.audit_id)).all()

    def outbox(self, checkpoint_like: str) -> list:
        o = schema.outbox
        with self.engine.connect() as conn:
            return conn.execute(sa.select(o).where(o.c.checkpoint.like(checkpoint_like))).all()


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
