"""The clock engine: hand-worked timelines in, states, elapsed, deadlines and checkpoints out."""

from __future__ import annotations

import copy
import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from leadsla import clock as clock_module
from leadsla import engine as engine_module
from leadsla.engine import CLOCK_COLUMNS, evaluate
from leadsla.policy import DEFAULT_POLICY_PATH, load_policy, policy_from_dict

NY = "America/New_York"


def at(text: str, tz: str = NY) -> pd.Timestamp:
    return pd.Timestamp(text, tz=tz).tz_convert("UTC")


def utc(text: str, tz: str = NY) -> dt.datetime:
    return at(text, tz).to_pydatetime()


@pytest.fixture(scope="module")
def policy():
    return load_policy()


USERS = pd.DataFrame(
    [
        {"user_id": "U_EAST", "manager_id": "M_EAST", "team": "sdr_east", "timezone": NY, "is_active": True},
        {"user_id": "U_EAST2", "manager_id": "M_EAST", "team": "sdr_east", "timezone": NY, "is_active": True},
        {
            "user_id": "U_APAC",
            "manager_id": "M_APAC",
            "team": "sdr_apac",
            "timezone": "Australia/Sydney",
            "is_active": True,
        },
        {"user_id": "U_AE", "manager_id": "M_AE", "team": "ae", "timezone": NY, "is_active": True},
        {"user_id": "M_EAST", "manager_id": None, "team": "sdr_managers", "timezone": NY, "is_active": True},
    ]
)


def lead(record_id: str, owner: str = "U_EAST", status: str = "SAL", **fields) -> dict:
    base = {
        "object_type": "Lead",
        "record_id": record_id,
        "status": status,
        "owner_id": owner,
        "lead_source": "Partner",
        "lead_type": "Other",
        "account_tier": "SMB",
        "country": "US",
        "created_at": at("2026-11-01 09:00"),
    }
    return base | fields


def change(record_id: str, when: str, field: str, old, new, obj: str = "Lead") -> dict:
    return {
        "object_type": obj,
        "record_id": record_id,
        "field": field,
        "old_value": old,
        "new_value": new,
        "changed_at": at(when),
        "changed_by": "SYS",
    }


def activity(who: str, when: str, owner: str, what=None) -> dict:
    return {
        "activity_id": f"A{who}{when}",
        "kind": "Task",
        "who_id": who,
        "what_id": what,
        "owner_id": owner,
        "type": "Call",
        "subtype": "Task",
        "created_at": at(when),
    }


def run(policy, records, history, acts=(), now="2026-11-23 10:30", since=None, history_policies=()):
    acts_frame = pd.DataFrame(
        list(acts),
        columns=["activity_id", "kind", "who_id", "what_id", "owner_id", "type", "subtype", "created_at"],
    )
    acts_frame["created_at"] = pd.to_datetime(acts_frame["created_at"], utc=True)
    return evaluate(
        records=pd.DataFrame(records),
        field_history=pd.DataFrame(history),
        activities=acts_frame,
        users=USERS,
        policy=policy,
        now=utc(now),
        since=None if since is None else utc(since),
        history=history_policies,
    )


def one(ev, record_id: str, sla_id: str = "sales_touch") -> pd.Series:
    rows = ev.clocks[(ev.clocks["record_id"] == record_id) & (ev.clocks["sla_id"] == sla_id)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def statuses(ev, record_id: str) -> dict[str, str]:
    cps = ev.checkpoints[ev.checkpoints["record_id"] == record_id]
    return dict(zip(cps["checkpoint"], cps["status"], strict=True))


# us_east in the shipped policy: Mon-Fri 09:00-17:00 New York, US/NY holidays.
SAL_FRIDAY = [change("L1", "2026-11-20 14:00", "Status", "MQL", "SAL")]


def test_friday_sal_breaches_monday_and_catch_up_sends_only_the_breach(policy):
    ev = run(policy, [lead("L1")], SAL_FRIDAY, now="2026-11-23 10:30")
    c = one(ev, "L1")
    # Fri 14:00-17:00 = 3 h, Mon 09:00-10:30 = 1.5 h -> 4.5 h of a 4 h target.
    assert (c.state, c.elapsed_seconds, c.remaining_seconds, c.colour) == ("breached", 16200, -1800, "red")
    assert c.deadline == at("2026-11-23 10:00") == c.breached_at
    assert (c.tier, c.calendar, c.team, c.owner_id, c.policy_version) == (
        "standard",
        "us_east",
        "sdr_east",
        "U_EAST",
        policy.version,
    )
    assert statuses(ev, "L1") == {"half": "superseded", "warning": "superseded", "breach": "due"}
    cps = ev.checkpoints.set_index("checkpoint")
    assert cps.loc["half", "reached_at"] == at("2026-11-20 16:00")
    assert cps.loc["warning", "reached_at"] == at("2026-11-23 09:12")
    assert cps.loc["breach", "reached_at"] == at("2026-11-23 10:01")


def test_since_marks_earlier_checkpoints_past(policy):
    ev = run(policy, [lead("L1")], SAL_FRIDAY, now="2026-11-23 09:30", since="2026-11-23 09:00")
    c = one(ev, "L1")
    assert (c.state, c.elapsed_seconds, c.colour) == ("running", 12600, "yellow")  # 87.5 %
    assert statuses(ev, "L1") == {"half": "past", "warning": "due"}
    assert (c.next_checkpoint, c.next_checkpoint_at) == ("breach", at("2026-11-23 10:01"))


def test_colour_green_below_75_percent(policy):
    ev = run(policy, [lead("L1")], SAL_FRIDAY, now="2026-11-20 16:59")
    c = one(ev, "L1")
    assert (c.state, c.elapsed_seconds, c.colour, c.percent_elapsed) == ("running", 10740, "green", 74.58)


def test_owner_activity_stops_the_clock_but_someone_elses_does_not(policy):
    history = SAL_FRIDAY + [change("L2", "2026-11-20 14:00", "Status", "MQL", "SAL")]
    acts = [activity("L1", "2026-11-20 15:00", "U_EAST"), activity("L2", "2026-11-20 15:00", "U_OTHER")]
    ev = run(policy, [lead("L1"), lead("L2")], history, acts, now="2026-11-23 10:30")
    met = one(ev, "L1")
    assert (met.state, met.elapsed_seconds, met.stopped_at, met.colour) == (
        "met",
        3600,
        at("2026-11-20 15:00"),
        "green",
    )
    assert statuses(ev, "L1") == {}
    assert one(ev, "L2").state == "breached"


def test_stopped_late_is_met_late_and_its_checkpoints_are_past(policy):
    ev = run(
        policy,
        [lead("L1")],
        SAL_FRIDAY,
        [activity("L1", "2026-11-23 11:00", "U_EAST")],
        now="2026-11-23 12:00",
    )
    c = one(ev, "L1")
    assert (c.state, c.elapsed_seconds, c.colour, c.breached_at) == (
        "met_late",
        18000,
        "red",
        at("2026-11-23 10:00"),
    )
    assert set(statuses(ev, "L1").values()) == {"past"}


def test_leaving_sal_without_a_touch_hands_the_clock_on_and_never_breaches(policy):
    # SAL 09:50, qualified (SQL) at 11:00 on a call nobody logged: the clock ends there, handed on.
    history = [
        change("L1", "2026-11-17 09:50", "Status", "MQL", "SAL"),
        change("L1", "2026-11-17 11:00", "Status", "SAL", "SQL"),
    ]
    ev = run(policy, [lead("L1", status="SQL")], history, now="2026-11-18 12:00")
    c = one(ev, "L1")
    assert (c.state, c.stopped_at, c.elapsed_seconds) == ("handed_on", at("2026-11-17 11:00"), 70 * 60)
    assert pd.isna(c.breached_at) and set(statuses(ev, "L1").values()) <= {"past"}
    # Leaving after the target ran out: handed on late (the breach stands), never running on.
    late = [history[0], change("L1", "2026-11-18 11:00", "Status", "SAL", "Recycled")]
    c = one(run(policy, [lead("L1", status="Recycled")], late, now="2026-11-18 12:00"), "L1")
    assert (c.state, c.breached_at) == ("handed_on_late", at("2026-11-17 13:50"))


def test_a_touch_and_leaving_at_the_same_instant_is_met(policy):
    history = [*SAL_FRIDAY, change("L1", "2026-11-20 15:00", "Status", "SAL", "SQL")]
    acts = [activity("L1", "2026-11-20 15:00", "U_EAST")]
    assert (
        one(run(policy, [lead("L1", status="SQL")], history, acts, now="2026-11-23 12:00"), "L1").state
        == "met"
    )


def test_nurture_pauses_and_the_return_to_sal_resumes_the_same_clock(policy):
    history = [
        *SAL_FRIDAY,
        change("L1", "2026-11-20 15:00", "Status", "SAL", "Nurture - contact later"),
        change("L1", "2026-11-23 11:00", "Status", "Nurture - contact later", "SAL"),
    ]
    paused = run(policy, [lead("L1", status="Nurture - contact later")], history[:2], now="2026-11-23 10:30")
    c = one(paused, "L1")
    # 1 h before the pause; the projected deadline assumes it resumes now: Mon 10:30 + 3 h = 13:30.
    assert (c.state, c.elapsed_seconds, c.deadline) == ("paused", 3600, at("2026-11-23 13:30"))
    resumed = run(policy, [lead("L1")], history, now="2026-11-23 12:00")
    assert len(resumed.clocks) == 1
    c = one(resumed, "L1")
    assert c.clock_start == at("2026-11-20 14:00")
    assert (c.state, c.elapsed_seconds, c.deadline) == ("running", 3600 + 3600, at("2026-11-23 14:00"))


def test_a_new_sal_after_a_stop_starts_a_second_clock(policy):
    acts = [activity("L1", "2026-11-20 15:00", "U_EAST")]
    history = [
        *SAL_FRIDAY,
        change("L1", "2026-11-23 09:00", "Status", "SAL", "SQL"),
        change("L1", "2026-11-24 09:00", "Status", "SQL", "SAL"),
    ]
    ev = run(policy, [lead("L1")], history, acts, now="2026-11-24 10:00")
    assert list(ev.clocks["state"]) == ["met", "running"]
    assert list(ev.clocks["elapsed_seconds"]) == [3600, 3600]


def test_recycled_and_back_to_sal_a_week_later_gets_a_new_clock(policy):
    history = [
        *SAL_FRIDAY,
        change("L1", "2026-11-20 15:00", "Status", "SAL", "Recycled"),
        change("L1", "2026-11-27 09:00", "Status", "Recycled", "MQL"),
        change("L1", "2026-11-27 10:00", "Status", "MQL", "SAL"),
    ]
    ev = run(policy, [lead("L1")], history, now="2026-11-27 11:00")
    sales = ev.clocks[ev.clocks["sla_id"] == "sales_touch"]
    assert list(sales["state"]) == ["handed_on", "running"]
    assert list(sales["clock_start"]) == [at("2026-11-20 14:00"), at("2026-11-27 10:00")]


def test_ownership_move_rebases_onto_the_new_owners_calendar(policy):
    # NY owner from Fri 2026-11-20 14:00 to 16:00 (2 h); then a Sydney owner. Sydney is UTC+11 in
    # November: Mon 09:00-17:00 Sydney = Sun 17:00-Mon 01:00 New York. By NY Sun 19:00 (Mon 11:00
    # Sydney) the Sydney owner has had 2 h. Total 4 h.
    history = [*SAL_FRIDAY, change("L1", "2026-11-20 16:00", "OwnerId", "U_EAST", "U_APAC")]
    ev = run(policy, [lead("L1", owner="U_APAC")], history, now="2026-11-22 19:00")
    c = one(ev, "L1")
    assert (c.elapsed_seconds, c.owner_id, c.team, c.calendar) == (4 * 3600, "U_APAC", "sdr_apac", "apac")
    assert c.deadline == at("2026-11-22 19:00")
    assert c.state == "running"  # elapsed == target is not yet over it


def test_a_breach_stays_with_the_rep_who_owned_the_lead_when_it_breached(policy):
    # L1 breaches Mon 10:00 under U_EAST; the breach escalation reassigns it to the manager at
    # 10:01. L2 does the same and the manager then touches it (met late). L3 moves from U_EAST to
    # U_APAC before its target runs out: U_APAC let it breach. L4 is reassigned but not breached:
    # whoever has it now answers for it.
    history = [
        *SAL_FRIDAY,
        change("L1", "2026-11-23 10:01", "OwnerId", "U_EAST", "M_EAST"),
        change("L2", "2026-11-20 14:00", "Status", "MQL", "SAL"),
        change("L2", "2026-11-23 10:01", "OwnerId", "U_EAST", "M_EAST"),
        change("L3", "2026-11-20 14:00", "Status", "MQL", "SAL"),
        change("L3", "2026-11-20 15:00", "OwnerId", "U_EAST", "U_APAC"),
        change("L4", "2026-11-23 10:00", "Status", "MQL", "SAL"),
        change("L4", "2026-11-23 10:15", "OwnerId", "U_EAST", "U_EAST2"),
    ]
    records = [
        lead("L1", owner="M_EAST"),
        lead("L2", owner="M_EAST"),
        lead("L3", owner="U_APAC"),
        lead("L4", owner="U_EAST2"),
    ]
    ev = run(policy, records, history, [activity("L2", "2026-11-23 10:20", "M_EAST")], now="2026-11-23 10:30")
    c = one(ev, "L1")
    assert c.state == "breached" and c.breached_at == at("2026-11-23 10:00")
    assert (c.owner_id, c.team) == ("M_EAST", "sdr_managers")
    assert (c.accountable_owner_id, c.accountable_team) == ("U_EAST", "sdr_east")
    c = one(ev, "L2")
    assert (c.state, c.owner_id, c.accountable_owner_id, c.accountable_team) == (
        "met_late",
        "M_EAST",
        "U_EAST",
        "sdr_east",
    )
    c = one(ev, "L3")
    assert c.state == "breached" and c.breached_at < at("2026-11-23 10:30")
    assert (c.owner_id, c.accountable_owner_id, c.accountable_team) == ("U_APAC", "U_APAC", "sdr_apac")
    c = one(ev, "L4")
    assert c.state == "running"
    assert (c.owner_id, c.team, c.accountable_owner_id, c.accountable_team) == (
        "U_EAST2",
        "sdr_east",
        "U_EAST2",
        "sdr_east",
    )


def test_accountable_owner_agrees_with_the_owner_at_the_breach_instant(policy):
    # Random owner moves around random breaches: the accountable owner of a breached clock is the
    # owner as of its breach instant (none of these moves falls exactly on one), else the current.
    rng = np.random.default_rng(7)
    records, history = [], []
    owners = ["U_EAST", "U_EAST2", "U_APAC", "M_EAST"]
    for i in range(150):
        start = pd.Timestamp("2026-11-16 09:00", tz=NY) + pd.Timedelta(
            minutes=int(rng.integers(0, 6 * 24 * 60))
        )
        history.append(change(f"R{i}", start.strftime("%Y-%m-%d %H:%M"), "Status", "MQL", "SAL"))
        owner = owners[0]
        t = start
        for _ in range(int(rng.integers(0, 3))):
            t = t + pd.Timedelta(minutes=int(rng.integers(1, 3 * 24 * 60)) + 0.5)
            new = owners[int(rng.integers(0, len(owners)))]
            if new != owner:
                history.append(change(f"R{i}", t.strftime("%Y-%m-%d %H:%M:%S"), "OwnerId", owner, new))
                owner = new
        records.append(lead(f"R{i}", owner=owner))
    history = [h for h in history if h["changed_at"] <= at("2026-11-23 10:30")]
    ev = run(policy, records, history, now="2026-11-23 10:30")
    clocks = ev.clocks.set_index("record_id")
    moves = pd.DataFrame([h for h in history if h["field"] == "OwnerId"])
    checked = 0
    for rid, c in clocks.iterrows():
        expected = c.owner_id
        if c.state in ("breached", "met_late"):
            mine = moves[(moves["record_id"] == rid) & (moves["changed_at"] <= c.breached_at)]
            later = moves[(moves["record_id"] == rid) & (moves["changed_at"] > c.breached_at)]
            if len(mine):
                expected = mine.sort_values("changed_at").iloc[-1]["new_value"]
            elif len(later):
                expected = later.sort_values("changed_at").iloc[0]["old_value"]
            checked += expected != c.owner_id
        assert c.accountable_owner_id == expected, rid
        assert c.accountable_team == USERS.set_index("user_id").at[expected, "team"], rid
    assert checked >= 5  # the case this is about (owner moved after the breach) did occur


def test_owner_at_activity_time_decides_the_stop(policy):
    # The activity is by U_EAST, who owned the lead at 15:00 but not at evaluation time.
    history = [*SAL_FRIDAY, change("L1", "2026-11-20 16:00", "OwnerId", "U_EAST", "U_APAC")]
    ev = run(policy, [lead("L1", owner="U_APAC")], history, [activity("L1", "2026-11-20 15:00", "U_EAST")])
    assert one(ev, "L1").state == "met"


def test_tiers_in_priority_order(policy):
    records = [
        lead("DEMO", lead_type="Demo Request"),
        lead("ENT", lead_type="Demo Request", account_tier="Enterprise"),  # enterprise is listed first
        lead("WEB", lead_type="Webinar"),
        lead("IN", lead_source="Inbound"),
        lead("INLATE", lead_source="Inbound"),
    ]
    history = [change(r["record_id"], "2026-11-20 14:00", "Status", "MQL", "SAL") for r in records[:4]]
    history.append(change("INLATE", "2026-11-20 20:00", "Status", "MQL", "SAL"))  # after hours
    ev = run(policy, records, history, now="2026-11-20 14:30")
    got = ev.clocks.set_index("record_id")
    assert got.loc["DEMO", "tier"] == "demo_request" and got.loc["DEMO", "target_seconds"] == 300
    assert got.loc["DEMO", "state"] == "breached" and got.loc["DEMO", "critical"]
    assert got.loc["ENT", "tier"] == "enterprise" and got.loc["ENT", "calendar"] == "24x7"
    assert got.loc["WEB", "target_seconds"] == 24 * 3600
    assert got.loc["IN", "target_seconds"] == 2 * 3600
    ev = run(policy, records, history, now="2026-11-23 09:30")
    got = ev.clocks.set_index("record_id")
    assert got.loc["INLATE", "target_seconds"] == 4 * 3600
    assert got.loc["INLATE", "elapsed_seconds"] == 1800
    # Enterprise counts real time: Fri 14:00 -> Mon 09:30 is 67.5 h of a 1 h target.
    assert got.loc["ENT", "elapsed_seconds"] == int(67.5 * 3600)


def test_clocks_keep_the_policy_version_they_started_under(policy):
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    newer = copy.deepcopy(raw)
    newer.update(version="2026.11.22", effective_from="2026-11-22T00:00:00Z")
    newer["slas"][0]["tiers"][-1]["target"]["duration"] = "2h"
    new_policy = policy_from_dict(newer)
    history = [*SAL_FRIDAY, change("L2", "2026-11-23 09:00", "Status", "MQL", "SAL")]
    ev = run(new_policy, [lead("L1"), lead("L2")], history, now="2026-11-23 09:30", history_policies=[policy])
    old, new = one(ev, "L1"), one(ev, "L2")
    assert (old.policy_version, old.target_seconds) == (policy.version, 4 * 3600)
    assert (new.policy_version, new.target_seconds) == ("2026.11.22", 2 * 3600)


def test_rows_after_now_are_ignored(policy):
    history = [*SAL_FRIDAY, change("L1", "2026-11-23 11:00", "Status", "SAL", "Working")]
    before = run(policy, [lead("L1", status="Working")], history, now="2026-11-23 10:30")
    assert one(before, "L1").state == "breached"


def test_opportunity_slas_and_calendar_time(policy):
    opp = {
        "object_type": "Opportunity",
        "record_id": "O1",
        "status": "Demo Completed",
        "owner_id": "U_AE",
        "lead_source": None,
        "lead_type": None,
        "account_tier": None,
        "country": "US",
        "created_at": at("2026-11-01 09:00"),
    }
    history = [
        change("O1", "2026-11-16 09:00", "StageName", "Discovery", "Demo Completed", obj="Opportunity"),
        change("O1", "2026-11-18 09:00", "CS_Kickoff_Date__c", None, "2026-11-18", obj="Opportunity"),
    ]
    ev = run(policy, [opp], history, now="2026-11-23 09:00")
    d2p = one(ev, "O1", "demo_to_proposal")
    # 24 business hours from Mon 09:00 = Wed 17:00 (three 8 h days); by the next Monday 09:00 that is 40 h.
    assert (d2p.deadline, d2p.elapsed_seconds, d2p.state) == (at("2026-11-18 17:00"), 40 * 3600, "breached")
    onboarding = one(ev, "O1", "cs_onboarding")
    assert onboarding.deadline == at("2026-12-02 09:00")  # 14 calendar days
    assert onboarding.elapsed_seconds == 5 * 86400


def test_output_matches_the_store_clocks_table(policy):
    from leadsla.store.schema import clocks

    ev = run(policy, [lead("L1")], SAL_FRIDAY)
    assert list(ev.clocks.columns) == CLOCK_COLUMNS
    # The store keeps two columns of its own beside the engine's: when a clock can next change
    # (`engine.next_changes`) and since when it is stale (`store.clocks`).
    assert set(CLOCK_COLUMNS) | {"next_change_at", "stale_since"} == {c.name for c in clocks.columns}
    row = ev.clock_rows()[0]
    assert row["clock_start"] == utc("2026-11-20 14:00") and row["stopped_at"] is None


def test_clock_rows_store_round_trip(policy, store):
    import sqlalchemy as sa

    from leadsla.store.schema import clocks

    ev = run(policy, [lead("L1")], SAL_FRIDAY)
    with store.begin() as conn:
        conn.execute(clocks.insert(), ev.clock_rows())
        back = conn.execute(sa.select(clocks)).mappings().one()
    assert back["state"] == "breached" and back["deadline"] == utc("2026-11-23 10:00")


def test_vectorised_engine_agrees_with_the_scalar_calendar(policy):
    rng = np.random.default_rng(3)
    starts = at("2026-01-05 00:00") + pd.to_timedelta(rng.integers(0, 300 * 86400, 200), unit="s")
    owners = rng.choice(["U_EAST", "U_APAC"], 200)
    records = [lead(f"R{i}", owner=o) for i, o in enumerate(owners)]
    history = [
        {**change(f"R{i}", "2026-01-01", "Status", "MQL", "SAL"), "changed_at": s}
        for i, s in enumerate(starts)
    ]
    now = "2026-12-31 00:00"
    ev = run(policy, records, history, now=now)
    got = ev.clocks.set_index("record_id")
    for i, (s, o) in enumerate(zip(starts, owners, strict=True)):
        cal = policy.calendar("us_east" if o == "U_EAST" else "apac")
        row = got.loc[f"R{i}"]
        assert row.elapsed_seconds == cal.elapsed(s.to_pydatetime(), utc(now)).total_seconds()
        assert row.deadline == cal.deadline(s.to_pydatetime(), dt.timedelta(hours=4))


def test_empty_inputs_give_empty_frames_with_the_store_columns(policy):
    ev = run(policy, [lead("L1")], [change("L1", "2026-11-20 14:00", "Email", None, "a@b.c")])
    assert ev.clocks.empty and list(ev.clocks.columns) == CLOCK_COLUMNS
    assert ev.checkpoints.empty


def test_a_queue_owner_uses_the_default_calendar(policy):
    ev = run(policy, [lead("L1", owner="00G_QUEUE")], SAL_FRIDAY)
    c = one(ev, "L1")
    assert (c.calendar, c.team, c.owner_id) == ("us_east", None, "00G_QUEUE")


def test_pause_field_without_history_reads_the_raw_crm_fields(policy):
    replied = lead("L1", fields={"Lead_Replied__c": "true"})
    ev = run(
        policy,
        [replied, lead("L2", fields={})],
        [*SAL_FRIDAY, change("L2", "2026-11-20 14:00", "Status", "MQL", "SAL")],
    )
    assert (one(ev, "L1").state, one(ev, "L1").elapsed_seconds) == ("paused", 0)
    assert one(ev, "L2").state == "breached"


def test_evaluation_is_deterministic(policy):
    history = [*SAL_FRIDAY, change("L1", "2026-11-20 16:00", "OwnerId", "U_EAST", "U_APAC")]
    a = run(policy, [lead("L1", owner="U_APAC")], history, now="2026-11-24 10:00")
    b = run(policy, [lead("L1", owner="U_APAC")], history, now="2026-11-24 10:00")
    pd.testing.assert_frame_equal(a.clocks, b.clocks)
    pd.testing.assert_frame_equal(a.checkpoints, b.checkpoints)


def test_naive_now_is_refused(policy):
    from leadsla.calendar import CalendarError

    with pytest.raises(CalendarError, match="now .* is naive"):
        evaluate(
            records=pd.DataFrame([lead("L1")]),
            field_history=pd.DataFrame(SAL_FRIDAY),
            activities=pd.DataFrame(),
            users=USERS,
            policy=policy,
            now=dt.datetime(2026, 11, 23, 10, 0),
        )


def test_checkpoint_order_can_differ_per_tier(policy):
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    raw["slas"][0]["checkpoints"].append({"id": "early", "at": "2h elapsed", "notify": ["owner"]})
    custom = policy_from_dict(raw)
    records = [lead("WEB", lead_type="Webinar"), lead("DEMO", lead_type="Demo Request")]
    history = [change(r["record_id"], "2026-11-23 09:00", "Status", "MQL", "SAL") for r in records]
    ev = run(custom, records, history, now="2026-11-23 12:00")
    assert statuses(ev, "WEB") == {"early": "due"}  # 50 % of 24 h is 12 h: not yet
    assert one(ev, "WEB").next_checkpoint == "half"
    assert one(ev, "WEB").next_checkpoint_at == at("2026-11-24 13:00")  # 12 business hours
    # For the 5-minute tier "2h elapsed" comes after the breach, so it is the latest reached.
    assert statuses(ev, "DEMO") == {
        "half": "superseded",
        "warning": "superseded",
        "breach": "superseded",
        "early": "due",
    }
    offsets = ev.checkpoints[ev.checkpoints["record_id"] == "DEMO"]["offset_seconds"].tolist()
    assert offsets == [150, 240, 360, 7200]


def test_nullable_string_columns_give_the_same_answer(policy):
    records = pd.DataFrame([lead("L1"), lead("L2", owner=None, lead_type=None)])
    history = pd.DataFrame([*SAL_FRIDAY, change("L2", "2026-11-20 14:00", "Status", None, "SAL")])
    plain = evaluate(
        records=records,
        field_history=history,
        activities=pd.DataFrame(),
        users=USERS,
        policy=policy,
        now=utc("2026-11-23 10:30"),
    )
    text = [
        "object_type",
        "record_id",
        "status",
        "owner_id",
        "lead_source",
        "lead_type",
        "account_tier",
        "country",
    ]
    nullable = evaluate(
        records=records.astype(dict.fromkeys(text, "string")),
        field_history=history.astype(
            dict.fromkeys(["object_type", "record_id", "field", "old_value", "new_value"], "string")
        ),
        activities=pd.DataFrame(),
        users=USERS,
        policy=policy,
        now=utc("2026-11-23 10:30"),
    )
    assert (
        nullable.clocks["elapsed_seconds"].tolist()
        == plain.clocks["elapsed_seconds"].tolist()
        == [16200, 16200]
    )
    assert nullable.clocks["calendar"].tolist() == ["us_east", "us_east"]


# --- property: the vectorised segments agree with a plain walk over the scalar calendar API -------

TEAM_CALENDAR = {"U_EAST": "us_east", "U_EAST2": "us_east", "U_APAC": "apac"}


@st.composite
def timelines(draw):
    start = at("2026-11-02 00:00") + pd.Timedelta(minutes=draw(st.integers(0, 28 * 24 * 60)))
    owner = draw(st.sampled_from(sorted(TEAM_CALENDAR)))
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(1, 36 * 60),
                st.sampled_from(["owner", "pause", "resume"]),
                st.sampled_from(sorted(TEAM_CALENDAR)),
            ),
            max_size=5,
        )
    )
    now = start + pd.Timedelta(minutes=draw(st.integers(0, 12 * 24 * 60)))
    return start, owner, steps, now


def _reference(policy, start, owner, steps, now):
    """Walk the events in order, summing scalar elapsed per unpaused span on the owner's calendar."""
    events, t, paused, cur = [], start, False, owner
    for minutes, kind, who in steps:
        t = t + pd.Timedelta(minutes=minutes)
        if t > now:
            break
        events.append((t, kind, who))
    spans, seg_start = [], start
    for t, kind, who in events:
        spans.append((seg_start, t, cur, paused))
        seg_start = t
        if kind == "owner":
            cur = who
        elif kind == "pause":
            paused = True
        else:
            paused = False
    spans.append((seg_start, now, cur, paused))
    target, elapsed, deadline = 4 * 3600, 0, None
    for a, b, who, is_paused in spans:
        if is_paused:
            continue
        cal = policy.calendar(TEAM_CALENDAR[who])
        part = int(cal.elapsed(a.to_pydatetime(), b.to_pydatetime()).total_seconds())
        if deadline is None and elapsed + part >= target:
            deadline = cal.deadline(a.to_pydatetime(), target - elapsed)
        elapsed += part
    if deadline is None:
        deadline = policy.calendar(TEAM_CALENDAR[cur]).deadline(now.to_pydatetime(), target - elapsed)
    return elapsed, deadline, events


@settings(max_examples=80, deadline=None, derandomize=True)
@given(case=timelines())
def test_engine_matches_a_plain_walk_over_owner_and_pause_changes(policy, case):
    start, owner, steps, now = case
    expected_elapsed, expected_deadline, events = _reference(policy, start, owner, steps, now)
    history = [{**change("L1", "2026-01-01", "Status", "MQL", "SAL"), "changed_at": start}]
    cur, status = owner, "SAL"
    for t, kind, who in events:
        if kind == "owner":
            history.append({**change("L1", "2026-01-01", "OwnerId", cur, who), "changed_at": t})
            cur = who
        else:
            new = "Nurture - contact later" if kind == "pause" else "SAL"
            history.append({**change("L1", "2026-01-01", "Status", status, new), "changed_at": t})
            status = new
    ev = run(
        policy,
        [lead("L1", owner=cur, status=status)],
        history,
        now=now.tz_convert(NY).strftime("%Y-%m-%d %H:%M"),
    )
    c = one(ev, "L1")
    assert c.elapsed_seconds == expected_elapsed
    assert c.deadline == expected_deadline
    assert c.owner_id == cur


# --- the fast paths give the same answer as the plain ones ----------------------------------------


def _mixed_case():
    """A few dozen leads with owner moves, pauses, resumes, owner and non-owner activities."""
    rng = np.random.default_rng(11)
    records, history, acts = [], [], []
    owners = sorted(TEAM_CALENDAR)
    for i in range(60):
        rid, owner = f"M{i:03d}", owners[i % len(owners)]
        t = at("2026-11-16 08:00") + pd.Timedelta(minutes=int(rng.integers(0, 5 * 24 * 60)))
        history.append({**change(rid, "2026-01-01", "Status", "MQL", "SAL"), "changed_at": t})
        status = "SAL"
        for _ in range(int(rng.integers(0, 4))):
            t = t + pd.Timedelta(minutes=int(rng.integers(5, 600)))
            kind = rng.integers(0, 3)
            if kind == 0:
                new_owner = owners[int(rng.integers(0, len(owners)))]
                history.append({**change(rid, "2026-01-01", "OwnerId", owner, new_owner), "changed_at": t})
                owner = new_owner
            elif kind == 1:
                new = "Nurture - contact later" if status == "SAL" else "SAL"
                history.append({**change(rid, "2026-01-01", "Status", status, new), "changed_at": t})
                status = new
            else:
                who = owner if rng.integers(0, 2) else "U_OTHER"
                acts.append(
                    {**activity(rid, "2026-01-01", who), "activity_id": f"A{i}{t.value}", "created_at": t}
                )
        records.append(lead(rid, owner=owner, status=status))
    return records, history, acts


def test_block_parallel_evaluation_equals_one_block(policy, monkeypatch):
    records, history, acts = _mixed_case()
    whole = run(policy, records, history, acts, now="2026-11-24 12:00", since="2026-11-24 09:00")
    assert len(whole.clocks) == 60 and set(whole.clocks["state"]) >= {"breached", "paused", "met"}
    assert (whole.clocks["accountable_owner_id"] != whole.clocks["owner_id"]).any()  # moved after a breach
    monkeypatch.setattr(engine_module, "_BLOCK_CLOCKS", 7)  # nine blocks, the last one short
    sequential = run(policy, records, history, acts, now="2026-11-24 12:00", since="2026-11-24 09:00")
    monkeypatch.setattr(engine_module, "_THREADS", 3)
    monkeypatch.setattr(engine_module, "_PARALLEL_MIN_CLOCKS", 1)
    threaded = run(policy, records, history, acts, now="2026-11-24 12:00", since="2026-11-24 09:00")
    for blocks in (sequential, threaded):
        pd.testing.assert_frame_equal(whole.clocks, blocks.clocks)
        pd.testing.assert_frame_equal(whole.checkpoints, blocks.checkpoints)


def test_record_id_join_falls_back_to_pandas_when_hashes_collide(policy, monkeypatch):
    records, history, acts = _mixed_case()
    hashed = run(policy, records, history, acts, now="2026-11-24 12:00")
    monkeypatch.setattr(clock_module, "_hashes", lambda values: np.zeros(len(values), np.int64))
    colliding = run(policy, records, history, acts, now="2026-11-24 12:00")
    pd.testing.assert_frame_equal(hashed.clocks, colliding.clocks)
    pd.testing.assert_frame_equal(hashed.checkpoints, colliding.checkpoints)


def test_tier_matcher_agrees_with_a_per_record_loop_on_a_random_frame():
    """The bitmask matcher (== passes for a few values, factorised codes for more) picks the same
    tier as walking the tiers in priority order for each record, missing values included."""
    raw = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    tiers = raw["slas"][0]["tiers"]
    # More than three accepted values on one column (the factorised path) and two columns in one tier.
    tiers.insert(
        1,
        {
            "id": "big_partner",
            "when": {"lead_source": ["Partner", "Reseller", "Referral", "Alliance"], "country": ["DE", "FR"]},
            "target": {"duration": "3h", "time": "business", "calendar": "owner"},
        },
    )
    custom = policy_from_dict(raw)
    sla = custom.sla("sales_touch")
    rng = np.random.default_rng(5)
    pools = {
        "lead_type": ["Demo Request", "Webinar", "Event", "Content", "Content Download", "Other", None],
        "lead_source": ["Partner", "Reseller", "Inbound", "Web", "Chat", "Referral", "Alliance", None],
        "account_tier": ["Enterprise", "SMB", None],
        "country": ["DE", "FR", "US", None],
    }
    n = 3000
    records = pd.DataFrame(
        {
            "object_type": "Lead",
            "record_id": [f"R{i}" for i in range(n)],
            "owner_id": "U_EAST",
            **{c: [pool[i] for i in rng.integers(0, len(pool), n)] for c, pool in pools.items()},
        }
    )
    records.loc[::7, "lead_type"] = np.nan  # both kinds of missing value
    index = clock_module.RecordIndex.build(clock_module.Columns(records, "records"), "Lead")
    got = engine_module._match_tiers(sla, index)

    def first_tier(row) -> int:
        for k, tier in enumerate(sla.tiers):
            if tier.default or all(
                isinstance(row[c], str) and row[c] in accepted for c, accepted in tier.when.items()
            ):
                return k
        raise AssertionError("no default tier")

    expected = [first_tier(row) for row in records.to_dict("records")]
    assert got.tolist() == expected
    assert len(set(expected)) == len(sla.tiers)  # every tier, the default included, was exercised


def test_a_lead_created_as_an_mql_starts_the_mql_clock_at_its_creation(policy):
    # Salesforce writes no Status change for a lead created as MQL, only its "created" history row.
    created = change("L1", "2026-11-17 09:00", "created", None, None)
    accepted = change("L1", "2026-11-17 11:00", "Status", "MQL", "SAL")
    ev = run(policy, [lead("L1", status="SAL")], [created, accepted], now="2026-11-17 12:00")
    mql = ev.clocks[ev.clocks["sla_id"] == "mql_acceptance"]
    assert list(mql["clock_start"]) == [at("2026-11-17 09:00")] and list(mql["state"]) == ["met"]
    # Still an MQL: running. Without the "created" row (created before history tracking began)
    # there is no known start, so no clock from its creation date.
    still = run(policy, [lead("L2", status="MQL")], [change("L2", "2026-11-17 09:00", "created", None, None)])
    assert list(zip(still.clocks["sla_id"], still.clocks["state"], strict=True)) == [
        ("mql_acceptance", "breached")
    ]
    assert run(policy, [lead("L3", status="MQL")], []).clocks.empty
    # Created as SAL: the sales-touch clock starts at creation too.
    sal = run(policy, [lead("L4")], [change("L4", "2026-11-23 09:30", "created", None, None)])
    assert list(sal.clocks["clock_start"]) == [at("2026-11-23 09:30")]
