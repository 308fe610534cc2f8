"""sla_health lists the people a breach would text who have no usable mobile number (names and user
ids, never a number), on both store backends; nobody when everyone has one or nothing is texted."""

from __future__ import annotations

import datetime as dt

from leadsla.health import phones
from leadsla.policy import load_policy
from leadsla.store import schema

NOW = dt.datetime(2026, 11, 10, 15, 0, tzinfo=dt.UTC)
POLICY = load_policy()  # sales_touch's breach lists sms for the owner and their manager
REP, MANAGER, OTHER = "005000000000001AAA", "005000000000002AAA", "005000000000003AAA"


def _user(uid, name, phone, manager=None):
    return {
        "user_id": uid,
        "name": name,
        "email": f"{uid}@example.com",
        "manager_id": manager,
        "is_active": True,
        "team": "SDR East",
        "out_of_office": False,
        "fields": {"MobilePhone": phone},
        "synced_at": NOW,
    }


def _clock(sla_id, owner, state="running", n=1):
    return {
        "sla_id": sla_id,
        "record_id": f"00Q{n:015d}",
        "clock_start": NOW - dt.timedelta(hours=1),
        "object_type": "Lead",
        "policy_version": "v",
        "tier": "standard",
        "calendar": "us_east",
        "target_seconds": 14400,
        "owner_id": owner,
        "state": state,
        "elapsed_seconds": 0,
        "remaining_seconds": 0,
        "percent_elapsed": 0,
        "colour": "green",
        "evaluated_at": NOW,
    }


def test_the_owner_and_manager_a_breach_would_text_are_listed_when_they_have_no_number(store) -> None:
    with store.begin() as conn:
        conn.execute(
            schema.users.insert(),
            [
                _user(REP, "Rita Rep", "555 123 4567", manager=MANAGER),  # no country code: unusable
                _user(MANAGER, "Max Manager", None),
                _user(OTHER, "Olga Other", None),  # owns no open clock of a texting SLA
            ],
        )
        conn.execute(
            schema.clocks.insert(), [_clock("sales_touch", REP), _clock("demo_to_proposal", OTHER, n=2)]
        )
    with store.connect() as conn:
        [finding] = phones.check(conn, NOW, POLICY, {})
    assert finding.check == "no_mobile_phone" and finding.severity == "warning"
    assert f"Max Manager ({MANAGER}), Rita Rep ({REP})" in finding.summary
    assert "Olga" not in finding.summary and "4567" not in finding.summary
    assert "MobilePhone" in finding.how_to_fix


def test_nobody_is_listed_when_everyone_texted_has_a_number_or_nothing_is_texted(store) -> None:
    with store.begin() as conn:
        conn.execute(
            schema.users.insert(),
            [
                _user(REP, "Rita Rep", "+1 555 123 4567", manager=MANAGER),
                _user(MANAGER, "Max", "+447700900123"),
            ],
        )
        conn.execute(
            schema.clocks.insert(), [_clock("sales_touch", REP), _clock("sales_touch", MANAGER, "met", n=2)]
        )
    no_sms = POLICY.model_copy(update={"sms": None})
    with store.connect() as conn:
        assert phones.check(conn, NOW, POLICY, {}) == []
        assert phones.check(conn, NOW, no_sms, {}) == []
