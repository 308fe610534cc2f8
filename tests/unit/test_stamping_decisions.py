"""What sla_monitor stamps on a Lead (`leadsla.decisions.stamping`): the record's current clock in
the CRM's words, only where the CRM's copy differs, urgent changes first past the budget, and the
describe() check of whether the org's field can hold each value."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from leadsla.decisions import stamping
from leadsla.decisions.stamping import BY_NAME, clock_values, current_clocks, plan_stamps, unfit_reason

T0 = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)
REP = "005000000000001AAA"
QUEUE = "00G000000000001AAA"
FIELDS = [f.name for f in stamping.STAMP_FIELDS]


def clock(record_id: str = "00Q000000000001AAA", **kw) -> dict:
    """A clocks-table row: a running sales_touch clock of 4 business hours, 1 h in."""
    row = {
        "sla_id": "sales_touch",
        "record_id": record_id,
        "clock_start": T0,
        "state": "running",
        "colour": "green",
        "deadline": T0 + dt.timedelta(hours=4),
        "stopped_at": None,
        "breached_at": None,
        "elapsed_seconds": 3600,
        "accountable_owner_id": REP,
        "policy_version": "2026.11-tiered",
    }
    return {**row, **kw}


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def crm_copy(values: dict) -> dict:
    """What the CRM sends back for stamped values: datetimes as text to the millisecond."""
    return {
        k: (v.strftime("%Y-%m-%dT%H:%M:%S.000+0000") if isinstance(v, dt.datetime) else v)
        for k, v in values.items()
    }


def test_a_running_clock_is_due_green_and_owned_by_its_rep() -> None:
    assert clock_values(clock(), touch=True) == {
        "sla_due": T0 + dt.timedelta(hours=4),
        "sla_colour": "green",
        "sla_state": "running",
        "first_response_date": None,
        "time_to_first_touch": None,
        "sla_breach": False,
        "sla_breached_at": None,
        "sla_owner": REP,
        "sla_policy_version": "2026.11-tiered",
    }


def test_a_paused_clock_has_no_due_time() -> None:
    """The engine projects a paused clock's deadline as if it ran from now, so it moves every minute:
    a due time there would be rewritten every minute and mean nothing to a list view."""
    values = clock_values(clock(state="paused", colour="yellow"), touch=True)
    assert values["sla_due"] is None and values["sla_state"] == "paused" and values["sla_colour"] == "yellow"


def test_a_clock_met_by_a_touch_gives_the_first_response_and_business_minutes() -> None:
    touched = T0 + dt.timedelta(minutes=95, seconds=20)
    values = clock_values(clock(state="met", stopped_at=touched, elapsed_seconds=5720), touch=True)
    assert values["first_response_date"] == touched
    assert values["time_to_first_touch"] == 95.33  # business minutes, to the field's two decimals
    assert (
        clock_values(clock(state="met", elapsed_seconds=5720), touch=True, minutes_scale=0)[
            "time_to_first_touch"
        ]
        == 95
    )
    assert values["sla_state"] == "met" and values["sla_breach"] is False


def test_a_clock_met_by_a_field_rule_has_no_first_response() -> None:
    """mql_acceptance stops when the lead is accepted: that is not a touch."""
    values = clock_values(clock(sla_id="mql_acceptance", state="met", stopped_at=T0), touch=False)
    assert values["first_response_date"] is None and values["time_to_first_touch"] is None


@pytest.mark.parametrize(
    ("state", "words", "breach"),
    [
        ("breached", "breached", True),
        ("met_late", "met", True),
        ("handed_on", "handed on", False),
        ("handed_on_late", "handed on", True),
    ],
)
def test_states_in_words_with_the_breach_flag_saying_late(state, words, breach) -> None:
    late = T0 + dt.timedelta(hours=4)
    values = clock_values(
        clock(state=state, colour="red" if breach else "green", breached_at=late if breach else None),
        touch=True,
    )
    assert values["sla_state"] == words and values["sla_breach"] is breach
    assert values["sla_breached_at"] == (late if breach else None)
    assert values["first_response_date"] is None or state == "met_late"


def test_a_queue_answering_for_a_clock_leaves_the_owner_blank() -> None:
    assert clock_values(clock(accountable_owner_id=QUEUE), touch=True)["sla_owner"] is None


def test_the_current_clock_is_the_latest_and_an_open_one_wins_a_tie() -> None:
    rid = "00Q000000000001AAA"
    old = clock(rid, state="met", clock_start=T0 - dt.timedelta(days=3))
    new = clock(rid, sla_id="mql_acceptance", clock_start=T0)
    ended_same_start = clock(rid, sla_id="another", state="handed_on", clock_start=T0)
    other = clock("00Q000000000002AAA")
    chosen = current_clocks(frame(old, new, ended_same_start, other)).set_index("record_id")
    assert chosen.loc[rid, "sla_id"] == "mql_acceptance"
    assert len(chosen) == 2


def test_only_fields_that_differ_from_the_crm_copy_are_written() -> None:
    rid = "00Q000000000001AAA"
    stamped = crm_copy(clock_values(clock(), touch=True))
    plan = plan_stamps(frame(clock(rid)), {rid: stamped}, fields=FIELDS, touch_slas={"sales_touch"})
    assert plan.changes == {} and plan.unchanged == 1
    later = clock(rid, colour="yellow", elapsed_seconds=11000)
    plan = plan_stamps(frame(later), {rid: stamped}, fields=FIELDS, touch_slas={"sales_touch"})
    assert plan.changes == {rid: {"sla_colour": "yellow"}}
    assert plan.clocks[rid] == ("sales_touch", T0) and not plan.urgent


def test_a_record_the_store_does_not_hold_is_not_stamped_and_unmapped_fields_are_left() -> None:
    rid = "00Q000000000001AAA"
    plan = plan_stamps(frame(clock(rid)), {}, fields=FIELDS, touch_slas=())
    assert plan.changes == {}
    plan = plan_stamps(frame(clock(rid)), {rid: {}}, fields=["sla_colour"], touch_slas=())
    assert plan.changes == {rid: {"sla_colour": "green"}}
    with pytest.raises(ValueError, match="not stamp fields: \\['owner'\\]"):
        plan_stamps(frame(clock(rid)), {rid: {}}, fields=["owner"], touch_slas=())


@pytest.mark.parametrize(
    ("name", "copy", "written"),
    [
        ("sla_due", "2026-11-17T19:00:00.000+0000", False),
        ("sla_due", "2026-11-17T19:00:00.400Z", False),  # the clocks keep whole seconds
        ("sla_due", "2026-11-17T19:00:01.000+0000", True),
        ("sla_due", None, True),
        ("time_to_first_touch", 95.33, False),
        ("time_to_first_touch", "95.33", False),
        ("time_to_first_touch", 95.0, True),
        ("sla_breach", True, False),
        ("sla_breach", "true", True),
        ("sla_breach", None, True),
        ("sla_breached_at", "2026-11-17T19:00:00.000+0000", False),
        ("sla_owner", REP, False),
        ("sla_owner", REP[:15], True),
    ],
)
def test_values_compare_as_the_crm_returns_them(name, copy, written) -> None:
    rid = "00Q000000000001AAA"
    late = T0 + dt.timedelta(hours=4)
    row = clock(rid, state="met_late", colour="red", stopped_at=late, breached_at=late, elapsed_seconds=5720)
    row["deadline"] = late
    plan = plan_stamps(frame(row), {rid: {name: copy}}, fields=[name], touch_slas={"sales_touch"})
    assert (rid in plan.changes) is written


def test_a_refused_field_stops_for_that_clock_and_is_tried_on_a_new_one() -> None:
    rid = "00Q000000000001AAA"
    stopped = {rid: {("sales_touch", T0): {"sla_colour"}}}
    plan = plan_stamps(frame(clock(rid)), {rid: {}}, fields=FIELDS, touch_slas=(), stopped=stopped)
    assert "sla_colour" not in plan.changes[rid] and "sla_due" in plan.changes[rid]
    again = clock(rid, clock_start=T0 + dt.timedelta(days=2))
    plan = plan_stamps(frame(again), {rid: {}}, fields=FIELDS, touch_slas=(), stopped=stopped)
    assert plan.changes[rid]["sla_colour"] == "green"


def test_past_the_budget_only_breaches_and_turns_to_red_are_written() -> None:
    ids = [f"00Q00000000000{i}AAA" for i in range(1, 5)]
    before = crm_copy(clock_values(clock(), touch=True))
    rows = frame(
        clock(ids[0], colour="yellow"),  # a warning: waits
        clock(ids[1], colour="red", state="breached", breached_at=T0 + dt.timedelta(hours=4)),
        clock(ids[2], colour="red"),  # red (a handed-on-late clock turns red without a breach flag change)
        clock(ids[3]),  # unchanged
    )
    plan = plan_stamps(rows, dict.fromkeys(ids, before), fields=FIELDS, touch_slas=(), guard=True)
    assert set(plan.changes) == {ids[1], ids[2]} == plan.urgent
    assert plan.changes[ids[1]] == {
        "sla_colour": "red",
        "sla_state": "breached",
        "sla_breach": True,
        "sla_breached_at": T0 + dt.timedelta(hours=4),
    }
    assert plan.held == 1 and plan.unchanged == 1


# --- can the org's field hold it? ----------------------------------------------------------------


def described(type_: str, **kw) -> dict:
    return {"type": type_, "updateable": True, "length": 255, "picklist": [], "reference_to": [], **kw}


@pytest.mark.parametrize(
    ("name", "field", "texts", "reason"),
    [
        ("sla_due", None, (), "the org has no field Lead.X__c (for when the target runs out"),
        ("sla_due", described("datetime", updateable=False), (), "Lead.X__c (datetime) is not writable"),
        ("sla_due", described("date"), (), "Lead.X__c is a date field: when the target runs out"),
        ("sla_due", described("double"), (), "Lead.X__c is a double field: "),
        ("sla_breach", described("string"), (), "Lead.X__c is a string field: whether the clock breached"),
        (
            "time_to_first_touch",
            described("double", precision=5, scale=2),
            (),
            "Lead.X__c is a number(5, 2) field: business minutes from the clock's start to that touch "
            "needs at least 6 digits before the point",
        ),
        (
            "sla_policy_version",
            described("string", length=8),
            ("2026.11-tiered",),
            "Lead.X__c is a string(8) field: the policy version the clock runs under needs 14 characters",
        ),
        ("sla_state", described("string", length=5), (), "needs 9 characters ('handed on')"),
        (
            "sla_colour",
            described("picklist", picklist=["Green", "Yellow", "Red"]),
            (),
            "Lead.X__c is a picklist without the value(s) 'green', 'yellow', 'red'",
        ),
        ("sla_owner", described("reference", reference_to=["Group"]), (), "is a lookup to Group: "),
        ("sla_owner", described("string", length=15), (), "a user id needs 18 characters"),
    ],
)
def test_a_field_that_cannot_hold_the_value_is_named_with_its_type(name, field, texts, reason) -> None:
    found = unfit_reason(BY_NAME[name], "X__c", field, texts)
    assert found is not None and reason in found, found


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("sla_due", described("datetime")),
        ("time_to_first_touch", described("double", precision=18, scale=2)),
        ("time_to_first_touch", described("int")),
        ("sla_colour", described("picklist", picklist=["green", "yellow", "red", "grey"])),
        ("sla_colour", described("string", length=10)),
        ("sla_owner", described("reference", reference_to=["User"])),
        ("sla_owner", described("string", length=18)),
        ("sla_breach", described("boolean")),
        ("sla_policy_version", described("string", length=14)),
    ],
)
def test_a_field_that_fits_passes(name, field) -> None:
    texts = ("2026.11-tiered",) if name == "sla_policy_version" else ()
    assert unfit_reason(BY_NAME[name], "X__c", field, texts) is None


def test_stamping_never_names_the_owner_the_status_or_the_lock() -> None:
    """What could wake the lock keeper or move a clock is never a stamp field."""
    assert not {"owner", "sla_lock_until", "sla_status", "routing_reason"} & set(BY_NAME)
