"""The sync cycle's store side with an in-memory CRM: pages, watermark, overlap, deletes, malformed rows.

The real hook over HTTPS is exercised in tests/integration/test_crm_sync.py; here the CRM is a
small fake that answers the incremental SOQL the sync builds, so the landing and watermark rules
are checked on both store backends in milliseconds.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from leadsla.crm import budget, sync
from leadsla.crm import mapping as mapping_mod
from leadsla.crm.protocol import ApiLimitExceeded, ApiUsage, MappingError
from leadsla.notify.outbox import queue_notices
from leadsla.store import schema, watermarks

T0 = dt.datetime(2024, 5, 6, 9, 0, tzinfo=dt.UTC)


def sf_time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class FakeCrm:
    """Answers `SELECT ... FROM X [WHERE ... modstamp > t] ORDER BY` from in-memory rows."""

    def __init__(self, page_size: int = 3) -> None:
        self.rows: dict[str, list[dict]] = {}
        self.page_size = page_size
        self.calls = 0
        self.queries: list[str] = []
        self.limit_after: int | None = None
        self.describe = None
        self.picklists = None

    def add(self, obj: str, **fields) -> dict:
        self.rows.setdefault(obj, []).append(fields)
        return fields

    def query_pages(self, soql: str, *, include_deleted: bool = False):
        self.queries.append(soql)
        obj = re.search(r"FROM (\w+)", soql).group(1)
        since = re.search(r"(\w+) > (\S+Z)", soql)
        rows = [r for r in self.rows.get(obj, []) if include_deleted or not r.get("IsDeleted")]
        if since:
            bound = dt.datetime.fromisoformat(since.group(2).replace("Z", "+00:00"))
            rows = [
                r
                for r in rows
                if dt.datetime.fromisoformat(r[since.group(1)].replace("+0000", "+00:00")) > bound
            ]
        rows.sort(key=lambda r: r.get("SystemModstamp") or r.get("CreatedDate"))
        for start in range(0, max(len(rows), 1), self.page_size):
            self.calls += 1
            if self.limit_after is not None and self.calls > self.limit_after:
                raise ApiLimitExceeded("REQUEST_LIMIT_EXCEEDED")
            yield [dict(r) for r in rows[start : start + self.page_size]]

    def describe_fields(self, name: str) -> set[str]:
        self.calls += 1
        return self.describe(name)

    def describe_picklists(self, name: str) -> dict[str, list[str]]:
        return self.picklists(name)  # the same describe call as describe_fields (the client caches it)

    def describe_field_types(self, name: str) -> dict[str, dict]:
        return {f: {"type": "string", "updateable": True} for f in self.describe(name)}  # same call

    def usage(self) -> ApiUsage:
        return ApiUsage(self.calls, 100, 5000)


def lead(n: int, at: dt.datetime, **kw) -> dict:
    return {
        "Id": f"00Q{n:015d}",
        "Name": f"Lead {n}",
        "Status": "MQL",
        "IsDeleted": False,
        "CreatedDate": sf_time(T0),
        "SystemModstamp": sf_time(at),
        **kw,
    }


@pytest.fixture
def leads_only(tmp_path):
    raw = __import__("yaml").safe_load(mapping_mod.DEFAULT_PATH.read_text())
    raw["groups"] = {
        "leads": {"every_minutes": 1, "objects": ["Lead"]},
        "org": {"every_minutes": 15, "objects": [o for o in raw["objects"] if o != "Lead"]},
    }
    return mapping_mod.parse(raw, "test")


def lead_rows(engine):
    with engine.connect() as conn:
        return {r.record_id: r for r in conn.execute(sa.select(schema.records))}


def test_backfill_pages_then_incremental_with_overlap_and_deletes(store, leads_only):
    crm = FakeCrm(page_size=3)
    for n in range(7):
        crm.add("Lead", **lead(n, T0 + dt.timedelta(minutes=n)))
    summary = sync.sync_group(crm, store, leads_only, "leads", now=T0 + dt.timedelta(hours=1))
    assert summary.status == "success"
    assert summary.objects[0].pages == 3 and summary.records_changed == 7
    with store.connect() as conn:
        assert watermarks.read(conn, "Lead") == T0 + dt.timedelta(minutes=6)
    assert len(lead_rows(store)) == 7

    # idle rerun: the overlap window re-reads the last 5 minutes but nothing counts as changed
    again = sync.sync_group(crm, store, leads_only, "leads", now=T0 + dt.timedelta(hours=1, minutes=1))
    assert again.records_changed == 0
    assert "SystemModstamp > 2024-05-06T09:01:00.000Z" in crm.queries[-1]

    # a change committed late (modstamp inside the overlap, before the watermark) is still caught,
    # and a delete arrives through queryAll as IsDeleted
    crm.rows["Lead"][4].update(Status="SAL", SystemModstamp=sf_time(T0 + dt.timedelta(minutes=5, seconds=30)))
    crm.rows["Lead"][6].update(IsDeleted=True, SystemModstamp=sf_time(T0 + dt.timedelta(minutes=8)))
    third = sync.sync_group(crm, store, leads_only, "leads", now=T0 + dt.timedelta(hours=1, minutes=2))
    rows = lead_rows(store)
    assert rows["00Q000000000000004"].status == "SAL"
    assert rows["00Q000000000000006"].is_deleted is True
    assert third.objects[0].deleted == 1


def test_malformed_record_is_quarantined_and_the_rest_flows(store, leads_only, caplog):
    crm = FakeCrm()
    crm.add("Lead", **lead(1, T0))
    crm.add("Lead", **lead(2, T0, CreatedDate="yesterday-ish"))
    crm.add("Lead", **lead(3, T0, Id="not-an-id"))
    summary = sync.sync_group(crm, store, leads_only, "leads", now=T0)
    assert set(lead_rows(store)) == {"00Q000000000000001"}
    assert summary.quarantined == 2
    assert "00Q000000000000002" in caplog.text and "not-an-id" in caplog.text
    with store.connect() as conn:
        q = conn.execute(sa.select(schema.quarantine.c.record_id, schema.quarantine.c.reasons)).all()
    assert {r.record_id for r in q} == {"00Q000000000000002", "not-an-id"}
    assert any("CreatedDate = 'yesterday-ish' is not a dateTime" in r.reasons[0] for r in q)
    sync.sync_group(crm, store, leads_only, "leads", now=T0 + dt.timedelta(minutes=1))  # re-read in overlap
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.quarantine)).scalar() == 2


def test_limit_stops_the_cycle_and_keeps_the_watermark(store, leads_only):
    crm = FakeCrm(page_size=2)
    for n in range(6):
        crm.add("Lead", **lead(n, T0 + dt.timedelta(minutes=n)))
    crm.limit_after = 2  # third page refused
    summary = sync.sync_group(crm, store, leads_only, "leads", now=T0)
    assert summary.status == "limited" and "REQUEST_LIMIT_EXCEEDED" in summary.message
    with store.connect() as conn:
        # the two committed pages moved it to their newest row; the refused page moved nothing
        assert watermarks.read(conn, "Lead") == T0 + dt.timedelta(minutes=3)
        run = conn.execute(sa.select(schema.sync_runs)).one()
    assert run.status == "limited" and run.group_name == "leads" and run.api_calls == 3
    assert len(lead_rows(store)) == 4


def test_group_cadence_and_describe_cache(store, leads_only):
    crm = FakeCrm()
    assert sync.sync_group(crm, store, leads_only, "org", now=T0).status == "success"
    assert (
        sync.sync_group(crm, store, leads_only, "org", now=T0 + dt.timedelta(minutes=5)).status == "not_due"
    )
    assert (
        sync.sync_group(crm, store, leads_only, "org", now=T0 + dt.timedelta(minutes=15)).status == "success"
    )

    org = {n: set(o.fields) | set(o.filter) | {"UserRoleId"} for n, o in leads_only.objects.items()}
    crm.describe = lambda name: org[name]
    assert sync.ensure_mapping_checked(crm, store, leads_only, T0) is True
    calls = crm.calls
    assert sync.ensure_mapping_checked(crm, store, leads_only, T0 + dt.timedelta(hours=1)) is False
    assert crm.calls == calls  # cached: no describe calls
    org["Lead"].discard("MQL_Date__c")
    with pytest.raises(MappingError, match="Lead.MQL_Date__c"):
        sync.ensure_mapping_checked(crm, store, leads_only, T0 + dt.timedelta(hours=25))


def test_mapping_check_stores_picklist_drift_as_a_warning_and_rechecks_when_the_lifecycle_changes(
    store, leads_only, caplog
):
    from leadsla.lifecycle import lifecycle_from_dict, load_lifecycle

    lifecycle = load_lifecycle()
    lead_lc = lifecycle.lead()
    org = {n: set(o.fields) | set(o.filter) | {"UserRoleId"} for n, o in leads_only.objects.items()}
    picklists = {
        "Lead": {
            "Status": [*lead_lc.names, "Working"],
            "Rejection_Reason__c": list(lead_lc.rejection_reasons),
        },
        "Opportunity": {"StageName": lifecycle.of("Opportunity").names},
    }
    crm = FakeCrm()
    crm.describe, crm.picklists = (lambda name: org[name]), (lambda name: picklists.get(name, {}))

    def stored_drift():
        with store.connect() as conn:
            return conn.execute(sa.select(schema.crm_mapping_checks.c.drift)).scalar_one()

    result = sync.check_mapping(crm, store, leads_only, T0, lifecycle=lifecycle)
    assert result["checked_now"] is True and result["drift"] == 1  # a warning: the check passed
    (drift,) = stored_drift()
    assert drift.startswith("the org's Lead.Status value 'Working' is neither a status in ")
    assert f"picklist drift: {drift}" in caplog.text
    calls = crm.calls
    assert (
        sync.ensure_mapping_checked(crm, store, leads_only, T0 + dt.timedelta(hours=1), lifecycle=lifecycle)
        is False
    )
    assert crm.calls == calls  # this mapping and lifecycle were checked an hour ago: no describe

    # The lifecycle gains the status: the same mapping is checked again, and the drift is gone.
    raw = __import__("yaml").safe_load(open(lifecycle.source).read())
    raw["objects"]["Lead"]["statuses"].insert(2, {"name": "Working", "stage": "open"})
    widened = lifecycle_from_dict(raw, "widened")
    later = T0 + dt.timedelta(hours=2)
    assert sync.ensure_mapping_checked(crm, store, leads_only, later, lifecycle=widened) is True
    assert stored_drift() == []

    # Drift never fails the check; a missing mapped field still does.
    picklists["Lead"]["Status"].remove("SAL")
    assert sync.ensure_mapping_checked(
        crm, store, leads_only, later + dt.timedelta(days=1), lifecycle=widened
    )
    assert stored_drift() == [
        "widened: Lead status 'SAL' is not a value of the org's Lead.Status (nor mapped from one in test "
        "status_map.Lead)"
    ]
    org["Lead"].discard("Lead_Type__c")
    with pytest.raises(MappingError, match="Lead.Lead_Type__c"):
        sync.ensure_mapping_checked(crm, store, leads_only, later + dt.timedelta(days=2), lifecycle=widened)


def test_cycle_report_warns_over_budget(store, leads_only):
    crm = FakeCrm()
    crm.calls = 20_000
    summary = sync.sync_group(crm, store, leads_only, "leads", now=T0)
    report = sync.cycle_report(store, leads_only, [summary.to_xcom()], now=T0)
    assert report["api_calls_today"] >= 20_000
    assert "over its daily budget of 15,000" in report["budget_warning"]


def test_over_budget_notice_goes_to_data_engineering_once_a_day(store):
    warning = "CRM sync used 20,000 API calls today, over its daily budget of 15,000"

    def warn(now: dt.datetime) -> bool:
        with store.begin() as conn:
            notice = budget.over_budget_notice(warning, now=now, channel="C0DATAENG01")
            return bool(queue_notices(conn, [notice], now))

    assert warn(T0) is True
    assert warn(T0 + dt.timedelta(minutes=1)) is False
    assert warn(T0 + dt.timedelta(days=1)) is True
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(schema.outbox.c.recipient, schema.outbox.c.channel, schema.outbox.c.payload).order_by(
                schema.outbox.c.outbox_id
            )
        ).all()
    assert [(r.recipient, r.channel) for r in rows] == [("C0DATAENG01", "slack")] * 2
    assert rows[0].payload["kind"] == "notice" and rows[0].payload["lines"] == [warning]
