"""SLA stamping's store side with an in-memory CRM, on both store backends: the CRM's copy of each
record's SLA fields read out of the raw JSON as its field holds it, only what differs sent, the
store's copy kept current so the next run sends nothing, and the API calls counted for the budget.

The real hook over HTTPS is exercised in tests/integration/test_sla_stamping.py.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.configuration import check_files
from leadsla.crm import budget
from leadsla.crm.protocol import ApiUsage
from leadsla.stamping.stamp import stamp_clocks
from leadsla.store import schema
from leadsla.store.audit import AuditContext

T0 = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)
REP = "005000000000001AAA"
CTX = AuditContext(dag_id="sla_monitor", run_id="scheduled__1", task_id="stamp", try_number=1)
CONFIGURATION = check_files().raise_for_problems()
MAPPING = CONFIGURATION.mapping


def sf_time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class FakeCrm:
    """Takes composite updates and answers the write-back's one pre-check query (nothing changed)."""

    def __init__(self) -> None:
        self.calls = 0
        self.updates: list[list[dict]] = []

    def query_pages(self, soql: str, *, include_deleted: bool = False):
        self.calls += 1
        assert soql.startswith("SELECT Id, LastModifiedDate FROM Lead WHERE SystemModstamp > "), soql
        yield []

    def update_records(self, object_name, records, *, if_unmodified_since):
        self.calls += 1
        self.updates.append([dict(r) for r in records])
        return [{"id": r["Id"], "success": True, "errors": []} for r in records]

    def usage(self) -> ApiUsage:
        return ApiUsage(self.calls)


def _types() -> dict:
    """The stamp fields as the stand-in's describe() reports them."""
    kinds = {
        "SLA_Due__c": {"type": "datetime"},
        "SLA_Colour__c": {"type": "picklist", "picklist": ["green", "yellow", "red"]},
        "SLA_State__c": {
            "type": "picklist",
            "picklist": ["running", "paused", "met", "handed on", "breached"],
        },
        "First_Response_Date__c": {"type": "datetime"},
        "Time_to_First_Touch__c": {"type": "double", "precision": 18, "scale": 2},
        "SLA_Breach__c": {"type": "boolean"},
        "SLA_Breached_At__c": {"type": "datetime"},
        "SLA_Accountable_Owner__c": {"type": "reference", "reference_to": ["User"]},
        "SLA_Policy_Version__c": {"type": "string", "length": 40},
    }
    return {api: {"updateable": True, "length": 255, **kind} for api, kind in kinds.items()}


def _clock(rid: str, **kw) -> dict:
    row = {
        "sla_id": "sales_touch",
        "record_id": rid,
        "clock_start": T0,
        "object_type": "Lead",
        "policy_version": "2026.11-tiered",
        "tier": "standard",
        "calendar": "us_east",
        "target_seconds": 14400,
        "owner_id": REP,
        "team": "sdr_east",
        "accountable_owner_id": REP,
        "accountable_team": "sdr_east",
        "state": "running",
        "elapsed_seconds": 600,
        "remaining_seconds": 13800,
        "percent_elapsed": 4.17,
        "colour": "green",
        "deadline": T0 + dt.timedelta(hours=4),
        "stopped_at": None,
        "breached_at": None,
        "evaluated_at": T0,
    }
    return {**row, **kw}


def _seed(store) -> tuple[str, str, str]:
    touched, turned, new = "00Q000000000001AAA", "00Q000000000002AAA", "00Q000000000003AAA"
    met_at = T0 + dt.timedelta(minutes=12, seconds=30)
    stamped = {  # what an earlier run wrote on `touched` (the CRM's JSON: text, number, true/false)
        "SLA_Due__c": sf_time(T0 + dt.timedelta(hours=4)),
        "SLA_Colour__c": "green",
        "SLA_State__c": "met",
        "First_Response_Date__c": sf_time(met_at),
        "Time_to_First_Touch__c": 12.5,
        "SLA_Breach__c": False,
        "SLA_Breached_At__c": None,
        "SLA_Accountable_Owner__c": REP,
        "SLA_Policy_Version__c": "2026.11-tiered",
    }
    running = {
        **stamped,
        "SLA_State__c": "running",
        "First_Response_Date__c": None,
        "Time_to_First_Touch__c": None,
    }
    with store.begin() as conn:
        conn.execute(
            schema.records.insert(),
            [
                {
                    "object_type": "Lead",
                    "record_id": rid,
                    "status": "SAL",
                    "owner_id": REP,
                    "modified_at": T0,
                    "fields": {"Status": "SAL", "OwnerId": REP, **copy},
                    "synced_at": T0,
                }
                for rid, copy in (
                    (touched, stamped),
                    (turned, {**running, "SLA_Colour__c": "green"}),
                    (new, {}),
                )
            ],
        )
        conn.execute(
            schema.clocks.insert(),
            [
                _clock(touched, state="met", stopped_at=met_at, elapsed_seconds=750),
                _clock(turned, colour="yellow", elapsed_seconds=11000, percent_elapsed=76.4),
                _clock(new),
            ],
        )
        conn.execute(
            schema.crm_mapping_checks.insert().values(
                mapping_digest=MAPPING.digest,
                checked_at=T0,
                objects=sorted(MAPPING.objects),
                stamp_fields={"since": T0.isoformat(), "fields": _types()},
            )
        )
    return touched, turned, new


def test_only_what_differs_is_sent_and_the_next_run_sends_nothing(store) -> None:
    touched, turned, new = _seed(store)
    crm = FakeCrm()
    summary = stamp_clocks(
        store, T0, CTX, client=crm, mapping=MAPPING, policy=CONFIGURATION.policy, channel="C0DATAENG01"
    )
    assert summary["written"] == 2 and summary["unchanged"] == 1 and summary["api_calls"] == 2
    [batch] = crm.updates
    sent = {r["Id"]: {k: v for k, v in r.items() if k != "Id"} for r in batch}
    assert sent[turned] == {"SLA_Colour__c": "yellow"}
    assert sent[new] == {
        "SLA_Due__c": sf_time(T0 + dt.timedelta(hours=4)),
        "SLA_Colour__c": "green",
        "SLA_State__c": "running",
        "SLA_Breach__c": False,
        "SLA_Accountable_Owner__c": REP,
        "SLA_Policy_Version__c": "2026.11-tiered",
    }
    with store.connect() as conn:
        copy = conn.execute(
            sa.select(schema.records.c.fields).where(schema.records.c.record_id == new)
        ).scalar()
        rows = conn.execute(
            sa.select(schema.sync_runs.c.group_name, schema.sync_runs.c.status, schema.sync_runs.c.api_calls)
        ).all()
        spent = budget.calls_today(conn, dt.datetime.now(dt.UTC), group=budget.STAMPING_GROUP)
    assert copy["SLA_Colour__c"] == "green" and copy["Status"] == "SAL"  # the store's copy is current
    assert rows == [("sla_stamping", "stamped", 2)] and spent == 2
    again = stamp_clocks(
        store, T0, CTX, client=crm, mapping=MAPPING, policy=CONFIGURATION.policy, channel="C0DATAENG01"
    )
    assert again["written"] == 0 and again["unchanged"] == 3 and again["api_calls"] == 0
    assert len(crm.updates) == 1
