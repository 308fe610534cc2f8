"""SLA fields stamped on the Leads, against the local Salesforce API (real SalesforceHook over
HTTPS): every watched lead shows its clock, only changes are written (a colour turns at its minute
with no CRM change), our own stamps neither loop through the sync nor wake the lock keeper, the
budget guard keeps breaches and reds, a field the org lacks or cannot hold is one notice, and a
value the org refuses stops for that record only.

The org is `tests.stamping_fixtures.StampOrg` (a one-hour real-time SLA).
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from leadsla.crm import budget
from leadsla.crm.landing import parse_datetime
from leadsla.store import schema
from leadsla.tasks.monitor import run_escalation
from sandbox import sf_schema
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)
from tests.stamping_fixtures import CTX, StampOrg


@pytest.fixture
def org(salesforce_sandbox, tmp_path):  # noqa: F811
    made = StampOrg(salesforce_sandbox, tmp_path)
    yield made
    made.engine.dispose()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _clock(org: StampOrg, lead: str) -> sa.Row:
    c = schema.clocks
    with org.engine.connect() as conn:
        return conn.execute(sa.select(c).where(c.c.record_id == lead)).one()


def test_every_watched_lead_shows_its_clock_and_only_changes_are_written(org) -> None:
    now = _now()
    green, yellow, breached, met = org.accepted(10, 50, 75, 30, now=now)
    org.touch(met, now - dt.timedelta(minutes=12))
    org.check_mapping()
    org.resync()
    calls = org.sb.api_used
    summary = org.minute(now)
    assert summary["written"] == 4 and summary["api_calls"] == 2  # the pre-check and one composite call
    assert org.sb.api_used - calls == 2

    fields = org.fields(green)
    clock = _clock(org, green)
    assert parse_datetime(fields["sla_due"]) == clock.deadline == clock.clock_start + dt.timedelta(hours=1)
    assert (fields["sla_colour"], fields["sla_state"], fields["sla_breach"]) == ("green", "running", False)
    assert fields["sla_owner"] == org.rita and fields["sla_policy_version"] == "2026.11-tiered"
    assert fields["first_response_date"] is None and fields["sla_breached_at"] is None
    assert (org.fields(yellow)["sla_colour"], org.fields(yellow)["sla_state"]) == ("yellow", "running")
    late = org.fields(breached)
    assert (late["sla_colour"], late["sla_state"], late["sla_breach"]) == ("red", "breached", True)
    assert parse_datetime(late["sla_breached_at"]) == _clock(org, breached).breached_at
    touched = org.fields(met)
    assert touched["sla_state"] == "met" and touched["sla_due"]
    assert parse_datetime(touched["first_response_date"]) == now - dt.timedelta(minutes=12)
    assert touched["time_to_first_touch"] == 18.0  # real-time SLA: 18 minutes from acceptance to the call

    writes = org.audit("crm_write")
    assert {w.record_id for w in writes} == {green, yellow, breached, met}
    assert {(w.actor, w.dag_id, w.run_id, w.task_id) for w in writes} == {
        ("sla_stamping", "sla_monitor", "scheduled__1", "stamp")
    }
    # The same minute again, and the next one: nothing changed colour or state, nothing is written.
    calls = org.sb.api_used
    assert org.stamp(now)["api_calls"] == 0
    assert org.minute(now + dt.timedelta(minutes=1))["api_calls"] == 0
    assert org.sb.api_used == calls and len(org.audit("crm_write")) == 4


def test_a_colour_turns_at_its_minute_with_no_crm_change(org) -> None:
    now = _now()
    (lead,) = org.accepted(44.5, now=now)
    org.check_mapping()
    org.resync()
    org.minute(now)
    assert org.fields(lead)["sla_colour"] == "green"
    modified = org.sb.get("Lead", lead)["SystemModstamp"]
    org.resync()  # our own stamp comes back: an echo, not a change
    later = now + dt.timedelta(minutes=1)  # 45.5 minutes of a one-hour target: yellow (75 %)
    summary = org.minute(later)  # no sync in between: nothing changed in the CRM
    assert summary["written"] == 1 and summary["fields"] == {"sla_colour": 1}
    assert org.fields(lead)["sla_colour"] == "yellow"
    assert org.sb.get("Lead", lead)["SystemModstamp"] > modified
    [_, colour] = org.audit("crm_write")
    assert colour.detail == {"fields": {"SLA_Colour__c": "yellow"}} and colour.record_id == lead
    org.resync()
    summary = org.minute(now + dt.timedelta(minutes=16))  # 60.5 minutes: red, breached
    assert summary["fields"] == {"sla_colour": 1, "sla_state": 1, "sla_breach": 1, "sla_breached_at": 1}
    assert org.fields(lead)["sla_state"] == "breached"


def test_our_own_stamps_never_loop_through_the_sync(org) -> None:
    now = _now()
    leads = org.accepted(10, 50, 75, now=now)
    org.check_mapping()
    assert org.resync() > 0
    org.evaluate(now)
    assert org.stamp(now)["written"] == 3
    # The sync lands the three stamped leads (their modstamps moved) but counts none as changed:
    # crm_sync's publish skips, no asset event, no extra sla_monitor run.
    assert org.resync() == 0
    with org.engine.connect() as conn:
        objects = conn.execute(
            sa.select(schema.sync_runs.c.detail)
            .where(schema.sync_runs.c.group_name == "leads")
            .order_by(schema.sync_runs.c.sync_id.desc())
        ).first()[0]["objects"]
    lead_sync = next(o for o in objects if o["object"] == "Lead")
    assert lead_sync["echoes"] == 3 and lead_sync["changed"] == 0
    # And had it run, it would change no clock and stamp nothing.
    before = {lead: _clock(org, lead) for lead in leads}
    assert org.evaluate(now)["clocks_written"] == 0
    assert {lead: _clock(org, lead) for lead in leads} == before
    assert org.stamp(now)["api_calls"] == 0
    # A person's change is still a change.
    org.sb.update("Lead", leads[0], {"Status": "SQL"}, user_id=org.rita)
    assert org.resync() == 2  # the lead and its Status history row


def test_stamping_never_wakes_the_lock_keeper(org) -> None:
    """A breached lead escalated to Max and locked: its stamps, written as the integration user (an
    automation user in the demo policy), leave the lock keeper with nothing to do."""
    now = _now()
    (lead,) = org.accepted(70, now=now)
    org.check_mapping()
    org.resync()
    org.evaluate(now)
    policy = org.configuration.policy.model_copy(
        update={"automation_user_ids": [org.sb.store.integration_user_id]}
    )
    escalated = run_escalation(org.engine, now, CTX, client=org.client, mapping=org.mapping, policy=policy)
    assert escalated["escalations"] == {"reassigned": 1}
    assert org.sb.get("Lead", lead)["OwnerId"] == org.max
    org.stamp(now)
    record = org.sb.get("Lead", lead)
    assert record["SLA_State__c"] == "breached" and record["SLA_Accountable_Owner__c"] == org.rita
    org.resync()
    history = _history(org, lead)
    for minute in range(1, 4):
        org.resync()
        at = now + dt.timedelta(minutes=minute)
        org.evaluate(at)
        calls = org.sb.api_used
        kept = run_escalation(org.engine, at, CTX, client=org.client, mapping=org.mapping, policy=policy)
        assert kept == {"locks": {"restored": 0, "released": 0, "conflict": 0}, "escalations": {}}
        assert org.sb.api_used == calls  # the lock keeper made no CRM call
        org.stamp(at)
    org.resync()
    record = org.sb.get("Lead", lead)
    assert record["OwnerId"] == org.max and record["SLA_Lock_Until__c"]
    assert not org.audit("lock_restored", "lock_released")
    assert _history(org, lead) == history  # the stamps wrote no Owner or Status change to keep a lock against


def _history(org: StampOrg, lead: str) -> list[tuple]:
    h = schema.field_history
    with org.engine.connect() as conn:
        return conn.execute(
            sa.select(h.c.field, h.c.new_value, h.c.changed_by)
            .where(h.c.record_id == lead)
            .order_by(h.c.changed_at)
        ).all()


def test_past_its_budget_stamping_writes_only_breaches_and_reds_and_tells_data_engineering_once(org) -> None:
    now = _now()
    fresh, warning, breached = org.accepted(5, 50, 75, now=now)
    org.check_mapping()
    org.resync()
    org.with_mapping(daily_api_budget=100, stamp_budget_share=0.05)  # 5 calls a day
    with org.engine.begin() as conn:  # the morning's stamping already spent them
        budget.record_stamping_calls(
            conn, started_at=dt.datetime.now(dt.UTC), calls=5, written=400, run_id="earlier"
        )
    summary = org.minute(now)
    assert summary["over_budget"] is True and summary["held"] == 2 and summary["written"] == 1
    assert org.fields(breached)["sla_state"] == "breached"
    assert org.fields(fresh)["sla_colour"] is None and org.fields(warning)["sla_colour"] is None
    [notice] = org.outbox("stamping_over_budget")
    assert notice.channel == "slack" and notice.recipient == org.configuration.quality.incident_channel
    assert notice.payload["lines"][0].startswith("SLA stamping has used 5 Salesforce API calls today")
    # Later the same day: the warning turns red, the fresh lead stays waiting; no second notice.
    org.resync()
    later = now + dt.timedelta(minutes=11)  # warning at 61 min (red), fresh at 16 min (green)
    summary = org.minute(later)
    assert summary["written"] == 1 and org.fields(warning)["sla_colour"] == "red"
    assert org.fields(fresh)["sla_colour"] is None
    assert len(org.outbox("stamping_over_budget")) == 1
    with org.engine.connect() as conn:
        spent = budget.calls_today(conn, dt.datetime.now(dt.UTC), group=budget.STAMPING_GROUP)
    assert spent == 5 + 2 + 2  # every stamping call is counted against the share
    org.with_mapping(daily_api_budget=15000, stamp_budget_share=0.10)  # room again: the rest follows
    org.resync()
    assert org.minute(later)["written"] == 1 and org.fields(fresh)["sla_colour"] == "green"


def _lead_schema(monkeypatch, drop: set[str] = frozenset(), **replace: sf_schema.Field) -> None:
    """The org's Lead without some fields, or with some fields of another type (in-process API)."""
    lead = sf_schema.OBJECTS["lead"]
    fields = tuple(replace.get(f.name, f) for f in lead.fields if f.name not in drop)
    monkeypatch.setitem(
        sf_schema.OBJECTS, "lead", sf_schema.SObject(**{**_sobject_args(lead), "fields": fields})
    )


def _sobject_args(obj: sf_schema.SObject) -> dict:
    names = ("name", "key_prefix", "fields", "tracked", "history_object", "history_parent_field", "label")
    return {n: getattr(obj, n) for n in names} | {"queryable": obj.queryable, "writable": obj.writable}


def test_a_field_the_org_lacks_or_cannot_hold_is_one_notice_and_the_rest_goes_on(org, monkeypatch) -> None:
    _lead_schema(
        monkeypatch,
        drop={"SLA_Colour__c"},
        SLA_Policy_Version__c=sf_schema.Field("SLA_Policy_Version__c", sf_schema.STRING, length=8),
        SLA_Due__c=sf_schema.Field("SLA_Due__c", sf_schema.DATE),
    )
    now = _now()
    (lead,) = org.accepted(50, now=now)
    assert org.check_mapping()["checked_now"] is True  # the sync's check passes without the colour
    org.resync()  # and the sync reads the Lead without it
    summary = org.minute(now)
    assert summary["unfit"] == ["sla_colour", "sla_due", "sla_policy_version"]
    fields = org.sb.get("Lead", lead)
    assert "SLA_Colour__c" not in fields and not fields.get("SLA_Due__c")
    assert fields["SLA_State__c"] == "running" and fields["SLA_Accountable_Owner__c"] == org.rita
    notices = sorted(org.outbox("unfit_field:%"), key=lambda n: n.payload["title"])
    assert [n.payload["title"] for n in notices] == [
        "SLA field Lead.SLA_Colour__c is not stamped",
        "SLA field Lead.SLA_Due__c is not stamped",
        "SLA field Lead.SLA_Policy_Version__c is not stamped",
    ]
    lines = [n.payload["lines"][0] for n in notices]
    assert lines[0].startswith("the org has no field Lead.SLA_Colour__c")
    assert lines[1] == (
        "Lead.SLA_Due__c is a date field: when the target runs out (blank while the clock is paused) "
        "needs a datetime field."
    )
    assert lines[2].startswith("Lead.SLA_Policy_Version__c is a string(8) field: ")
    assert {n.recipient for n in notices} == {org.configuration.quality.incident_channel}
    stopped = org.audit("stamp_field_stopped")
    assert sorted(e.detail["api_field"] for e in stopped) == [
        "SLA_Colour__c",
        "SLA_Due__c",
        "SLA_Policy_Version__c",
    ]
    # Every later run goes on without them, and says so once.
    org.resync()
    org.minute(now + dt.timedelta(minutes=20))
    assert org.sb.get("Lead", lead)["SLA_State__c"] == "breached"
    assert len(org.outbox("unfit_field:%")) == 3


def test_a_value_the_org_refuses_stops_that_field_for_that_record_not_the_batch(org, monkeypatch) -> None:
    now = _now()
    picky, plain, other = org.accepted(75, 75, 10, now=now)
    org.sb.store.add_validation_rule(
        "Lead",
        "SLA_State__c",
        lambda row: row["Id"] == picky and row.get("SLA_State__c") == "breached",
        "Breached leads of this region are marked by the regional desk",
    )
    org.check_mapping()
    org.resync()
    summary = org.minute(now)
    assert summary["refused"] == 1 and summary["written"] == 3
    refused = org.fields(picky)
    assert refused["sla_state"] is None and refused["sla_colour"] == "red" and refused["sla_breach"] is True
    assert org.fields(plain)["sla_state"] == "breached" and org.fields(other)["sla_state"] == "running"
    [entry] = org.audit("stamp_rejected")
    assert (entry.record_id, entry.sla_id, entry.detail["field"], entry.detail["value"]) == (
        picky,
        "sales_touch",
        "sla_state",
        "breached",
    )
    assert entry.detail["reason"] == (
        "FIELD_CUSTOM_VALIDATION_EXCEPTION: Breached leads of this region are marked by the regional desk"
    )
    assert (entry.dag_id, entry.task_id) == ("sla_monitor", "stamp")
    # The next runs leave the refused field alone: no call, no new entry.
    org.resync()
    calls = org.sb.api_used
    assert org.minute(now + dt.timedelta(seconds=30))["api_calls"] == 0 and org.sb.api_used == calls
    assert len(org.audit("stamp_rejected")) == 1


def test_a_field_deleted_after_the_describe_check_is_refused_per_record(org, monkeypatch) -> None:
    """INVALID_FIELD on each breached record's write: that field stops for those records, their
    other fields go in a second write, and the record without a breach time is written at once."""
    now = _now()
    late_a, late_b, running = org.accepted(75, 80, 10, now=now)
    org.check_mapping()
    org.resync()
    _lead_schema(monkeypatch, drop={"SLA_Breached_At__c"})  # an admin deletes it later that day
    summary = org.minute(now)
    assert summary["refused"] == 2 and summary["written"] == 3 and summary["api_calls"] == 3
    for lead in (late_a, late_b):
        record = org.sb.get("Lead", lead)
        assert record["SLA_State__c"] == "breached" and "SLA_Breached_At__c" not in record
    assert org.fields(running)["sla_state"] == "running"
    refused = org.audit("stamp_rejected")
    assert sorted((e.record_id, e.detail["field"]) for e in refused) == sorted(
        [(late_a, "sla_breached_at"), (late_b, "sla_breached_at")]
    )
    assert all(e.detail["reason"].startswith("INVALID_FIELD: ") for e in refused)


def test_a_lead_changed_meanwhile_is_re_read_and_a_locked_row_waits_for_the_next_run(org) -> None:
    now = _now()
    moved, ours, locked = org.accepted(50, 50, 50, now=now)
    org.check_mapping()
    org.resync()
    org.evaluate(now)
    # After the evaluation: Rita qualifies one lead (a CRM change the clocks have not seen) ...
    org.sb.update("Lead", moved, {"Status": "SQL"}, user_id=org.rita)
    # ... and the other two carry an earlier stamp of ours the sync has not landed yet.
    org.sb.store.update("Lead", ours, {"SLA_Colour__c": "green"})
    org.sb.store.update("Lead", locked, {"SLA_Colour__c": "green"})
    summary = org.stamp(now)
    assert summary["left"] == 1 and summary["written"] == 2
    assert org.fields(moved)["sla_state"] is None  # left for the run after the sync
    assert org.fields(ours)["sla_colour"] == "yellow"  # our own change since: written
    conflicts = {e.record_id for e in org.audit("crm_write_conflict")}
    assert conflicts == {moved, ours, locked}
    org.resync()
    summary = org.minute(now + dt.timedelta(minutes=1))
    assert org.fields(moved)["sla_state"] == "handed on"
    # UNABLE_TO_LOCK_ROW on every try: nothing lost, nothing stopped; the next run writes it.
    org.resync()
    fault = org.sb.inject_fault("UNABLE_TO_LOCK_ROW", endpoint="composite", times=None, method="PATCH")
    later = now + dt.timedelta(minutes=11)  # 61 minutes: red
    summary = org.minute(later)
    assert summary["failed"] == 2 and summary["refused"] == 0 and fault.fired >= 3
    assert org.fields(locked)["sla_colour"] == "yellow"
    org.sb.clear_faults()
    summary = org.stamp(later)
    assert summary["written"] == 2 and org.fields(locked)["sla_colour"] == "red"
    assert not org.audit("stamp_rejected")
