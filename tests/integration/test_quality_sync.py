"""The gate inside the sync on both store backends: nothing vanishes, replay releases, one incident notice."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from leadsla.crm import sync
from leadsla.notify.outbox import queue_notices
from leadsla.quality import rules as quality_rules
from leadsla.quality.quarantine import SyncGate, replay
from leadsla.store import schema
from tests.unit.test_crm_sync_store import FakeCrm, lead, leads_only  # noqa: F401 (fixture)

pytestmark = pytest.mark.xdist_group("gx")
T1 = dt.datetime(2024, 5, 6, 10, 0, tzinfo=dt.UTC)


def _count(engine, table, *where):
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar()


def test_every_row_lands_or_is_quarantined_and_a_mapping_fix_releases(store, leads_only):  # noqa: F811
    crm = FakeCrm(page_size=4)
    for n in range(6):
        crm.add("Lead", **lead(n, T1, Name=f"<b>{n}</b> <!channel> ' OR 1=1 -- Ünï"))
    crm.add("Lead", **lead(7, T1, Status="Nurture"))
    crm.add("Lead", **lead(8, T1, Id="bad-id"))
    crm.add("Lead", **lead(9, T1, Status="Recycled"))
    gate = SyncGate(quality_rules.load(status_map=leads_only.status_map.setdefault("Lead", {})), run_id="r1")
    result = sync.sync_object(crm, store, leads_only, leads_only.objects["Lead"], now=T1, gate=gate)
    q = schema.quarantine
    loaded = _count(store, schema.records)
    held = _count(store, q, q.c.released_at.is_(None))
    assert (loaded, held) == (7, 2) and result.fetched == 9  # nothing vanished
    with store.connect() as conn:
        names = dict(conn.execute(sa.select(schema.records.c.record_id, schema.records.c.name)).all())
        reasons = dict(conn.execute(sa.select(q.c.record_id, q.c.reasons)).all())
        flags = dict(
            conn.execute(sa.select(schema.quality_flags.c.record_id, schema.quality_flags.c.reasons)).all()
        )
    assert names[lead(0, T1)["Id"]] == "<b>0</b> <!channel> ' OR 1=1 -- Ünï"  # data, as is
    assert any("picklist" in r for r in reasons[lead(7, T1)["Id"]])
    assert any("Salesforce Id" in r for r in reasons["bad-id"])
    assert any("rejection reason" in r for r in flags[lead(9, T1)["Id"]])
    summary = gate.finish(store, T1)
    assert summary["leads"]["rows"] == 9 and summary["leads"]["quarantined"] == 2

    # Still held on replay with the same mapping; released (and landed) once the mapping knows Nurture.
    rules = quality_rules.load(status_map=leads_only.status_map.setdefault("Lead", {}))
    assert replay(store, leads_only, rules, T1 + dt.timedelta(minutes=1))["released"] == 0
    leads_only.status_map.setdefault("Lead", {})["Nurture"] = "Recycled"
    fixed = quality_rules.load(status_map=leads_only.status_map.setdefault("Lead", {}))
    out = replay(store, leads_only, fixed, T1 + dt.timedelta(minutes=2))
    assert out == {"open": 2, "released": 1, "still_held": 1}
    with store.connect() as conn:
        status = conn.execute(
            sa.select(schema.records.c.status).where(schema.records.c.record_id == lead(7, T1)["Id"])
        ).scalar()
        released = conn.execute(sa.select(q.c.released_at).where(q.c.record_id == lead(7, T1)["Id"])).scalar()
    assert status == "Recycled" and released is not None


def test_incident_notice_is_queued_once_per_incident(store, leads_only):  # noqa: F811
    rules = quality_rules.load(status_map=leads_only.status_map.setdefault("Lead", {}))
    crm = FakeCrm(page_size=50)
    for n in range(25):
        crm.add("Lead", **lead(n, T1, Status="Bogus" if n % 2 else "MQL"))
    for run in range(2):  # two consecutive bad runs: one incident, one notice
        gate = SyncGate(rules, run_id=f"r{run}", queue_notices=queue_notices)
        sync.sync_object(crm, store, leads_only, leads_only.objects["Lead"], now=T1, gate=gate)
        summary = gate.finish(store, T1 + dt.timedelta(minutes=run))
        assert summary["leads"]["incident"] == "leads@2024-05-06T10:00:00+00:00"
    o = schema.outbox
    with store.connect() as conn:
        rows = conn.execute(sa.select(o.c.recipient, o.c.channel, o.c.payload)).all()
    assert len(rows) == 1 and rows[0].recipient == rules.incident_channel and rows[0].channel == "slack"
    assert rows[0].payload["kind"] == "notice" and "leads" in rows[0].payload["title"]
    # A clean run closes it; the next bad run is a new incident with its own notice.
    good = SyncGate(rules, queue_notices=queue_notices)
    good.tallies["leads"] = type(gate.tallies["leads"])(rows=30)
    assert good.finish(store, T1 + dt.timedelta(minutes=5))["leads"]["incident"] is None
    gate = SyncGate(rules, queue_notices=queue_notices)
    sync.sync_object(crm, store, leads_only, leads_only.objects["Lead"], now=T1, gate=gate)
    assert gate.finish(store, T1 + dt.timedelta(minutes=6))["leads"]["incident"].endswith("10:06:00+00:00")
    assert _count(store, o) == 2
