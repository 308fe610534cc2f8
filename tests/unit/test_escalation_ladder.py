"""The escalation ladder (leadsla.decisions.ladder): each rung, the repeat count at its boundary and
its 30-day window, the VPs' daily digest at their morning hour across timezones and DST, the
critical bypass, `ladder: flat` equal to the seed-000 behaviour, and the policy's one-line errors.
Pure: no store."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from leadsla.decisions.checkpoints import decide_checkpoints
from leadsla.decisions.ladder import DIGEST_SOURCE, decide_breach_digests, morning_at_or_before
from leadsla.decisions.recipients import Directory
from leadsla.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, policy_from_dict, seed000
from leadsla.yaml_file import read_yaml_file

RAW = read_yaml_file(DEFAULT_POLICY_PATH, PolicyError, "policy")
LADDER = load_policy()
FLAT = policy_from_dict(seed000(RAW), "seed000")
URL = "https://acme.my.salesforce.com"
REP, MANAGER, DIRECTOR = "005000000000001AAA", "005000000000002AAA", "005000000000003AAA"
USERS = pd.DataFrame(
    [
        {"user_id": REP, "name": "Rita Rep", "email": "rita@example.com", "manager_id": MANAGER},
        {"user_id": MANAGER, "name": "Max Manager", "email": "max@example.com", "manager_id": DIRECTOR},
        {"user_id": DIRECTOR, "name": "Dora Director", "email": "dora@example.com", "manager_id": None},
    ]
).assign(team="sdr_east", timezone="America/New_York", is_active=True)
VPS = {"vp.sales@example.com", "vp.marketing@example.com", "vp.revops@example.com"}


def _rid(n: int) -> str:
    return f"00Q{n:012d}AAA"


def _clock(n: int, breached_at: str | None, **over) -> dict:
    at = pd.Timestamp(breached_at) if breached_at else None
    start = (at or pd.Timestamp("2026-11-17T15:00:00Z")) - pd.Timedelta(hours=4)
    row = {
        "sla_id": "sales_touch",
        "record_id": _rid(n),
        "clock_start": start,
        "object_type": "Lead",
        "tier": "standard",
        "target_seconds": 14400,
        "owner_id": REP,
        "accountable_owner_id": REP,
        "team": "sdr_east",
        "state": "breached" if at is not None else "running",
        "deadline": start + pd.Timedelta(hours=4),
        "breached_at": at,
        "critical": False,
        "elapsed_seconds": 14700,
    }
    row.update(over)
    return row


def _breach_of(clocks: list[dict], policy=LADDER, now: str | None = None):
    """Decide the breach checkpoint of the last clock in `clocks` (the others are history)."""
    last = clocks[-1]
    cps = pd.DataFrame(
        [
            {
                "sla_id": last["sla_id"],
                "record_id": last["record_id"],
                "clock_start": last["clock_start"],
                "policy_version": "v",
                "checkpoint": "breach",
                "offset_seconds": 14460,
                "reached_at": last["breached_at"] + pd.Timedelta(minutes=1),
                "status": "due",
            }
        ]
    )
    at = pd.Timestamp(now) if now else last["breached_at"] + pd.Timedelta(minutes=2)
    return decide_checkpoints(
        pd.DataFrame(clocks),
        cps,
        pd.DataFrame(
            [
                {"record_id": c["record_id"], "name": "Ada", "company": "AE", "lead_source": "Web"}
                for c in clocks
            ]
        ),
        Directory(policy, USERS),
        now=at.to_pydatetime(),
        handled=[],
        instance_url=URL,
    )


def _emails(plan) -> dict[str, str]:
    return {
        m.recipient: (m.payload.get("ladder") or {}).get("rule")
        for m in plan.messages
        if m.channel == "email"
    }


def test_a_breach_tells_the_owner_and_manager_at_once_and_no_vp():
    plan = _breach_of([_clock(1, "2026-11-17T19:00:00Z")])
    assert _emails(plan) == {"rita@example.com": "breach", "max@example.com": "breach"}


def test_flat_mode_is_todays_behaviour_every_breach_to_the_three_vps():
    plan = _breach_of([_clock(1, "2026-11-17T19:00:00Z")], policy=FLAT)
    assert set(_emails(plan)) == {"rita@example.com", "max@example.com"} | VPS
    assert set(_emails(plan).values()) == {"flat"}
    flat_file = load_policy(DEFAULT_POLICY_PATH.with_name("sla_policy.flat.yaml"))
    assert not flat_file.sla("sales_touch").laddered
    assert {"vp_sales", "vp_marketing", "vp_revops"} <= set(flat_file.sla("sales_touch").breach.notify)


@pytest.mark.parametrize(("earlier", "director"), [(1, False), (2, True), (3, False), (4, False), (5, True)])
def test_the_reps_third_breach_in_30_days_tells_the_director_and_each_further_third(earlier, director):
    history = [_clock(10 + i, f"2026-11-{10 + i:02d}T19:00:00Z") for i in range(earlier)]
    plan = _breach_of([*history, _clock(1, "2026-11-17T19:00:00Z")])
    emails = _emails(plan)
    assert ("dora@example.com" in emails) is director
    if director:
        assert emails["dora@example.com"] == "repeat"
        why = next(m.payload["ladder"]["why"] for m in plan.messages if m.recipient == "dora@example.com")
        assert (
            why
            == f"the rep's {earlier + 1}{'rd' if earlier == 2 else 'th'} breach across all SLAs in 30 days"
        )


def test_the_window_is_30_days_back_from_the_breach_exclusive_at_its_start():
    breach = pd.Timestamp("2026-11-17T19:00:00Z")
    exactly_30 = (breach - pd.Timedelta(days=30)).isoformat()
    inside = (breach - pd.Timedelta(days=30) + pd.Timedelta(seconds=1)).isoformat()
    out = _breach_of(
        [_clock(2, exactly_30), _clock(3, "2026-11-16T19:00:00Z"), _clock(1, breach.isoformat())]
    )
    assert "dora@example.com" not in _emails(out)
    inn = _breach_of([_clock(2, inside), _clock(3, "2026-11-16T19:00:00Z"), _clock(1, breach.isoformat())])
    assert _emails(inn)["dora@example.com"] == "repeat"


def test_the_count_is_per_rep_across_slas_and_later_breaches_do_not_count():
    other_rep = [
        _clock(20 + i, "2026-11-16T19:00:00Z", owner_id=MANAGER, accountable_owner_id=MANAGER)
        for i in range(3)
    ]
    later = [_clock(30 + i, "2026-11-18T19:00:00Z") for i in range(3)]  # after this breach: not yet
    plan = _breach_of(
        [
            *other_rep,
            *later,
            _clock(2, "2026-11-15T19:00:00Z", sla_id="mql_acceptance"),
            _clock(3, "2026-11-16T19:00:00Z"),
            _clock(1, "2026-11-17T19:00:00Z"),
        ],
        now="2026-11-18T20:00:00Z",
    )
    assert _emails(plan)["dora@example.com"] == "repeat"  # an MQL breach counts for the same rep
    data = seed000(RAW)  # this_sla: the MQL breach no longer counts
    data = {**RAW, "slas": [dict(s) for s in RAW["slas"]]}
    data["slas"][0]["ladder"] = {**RAW["slas"][0]["ladder"], "repeat": {"across": "this_sla"}}
    only = policy_from_dict(data, "this_sla")
    plan = _breach_of(
        [
            _clock(2, "2026-11-15T19:00:00Z", sla_id="mql_acceptance"),
            _clock(3, "2026-11-16T19:00:00Z"),
            _clock(1, "2026-11-17T19:00:00Z"),
        ],
        policy=only,
    )
    assert "dora@example.com" not in _emails(plan)


def test_a_critical_tier_breach_still_reaches_the_vps_at_once_even_at_night():
    night = "2026-11-18T04:00:00Z"  # 23:00 in New York: quiet hours
    plan = _breach_of([_clock(1, night, tier="enterprise", critical=True)])
    emails = _emails(plan)
    assert {e for e, rule in emails.items() if rule == "critical"} == VPS
    assert all(m.not_before == pd.Timestamp(night) + pd.Timedelta(minutes=2) for m in plan.messages)


def _digest(clocks: list[dict], now: str, handled=(), policy=LADDER):
    return decide_breach_digests(
        pd.DataFrame(clocks),
        pd.DataFrame(
            [
                {"record_id": c["record_id"], "name": f"Lead {c['record_id'][-6:]}", "company": None}
                for c in clocks
            ]
        ),
        Directory(policy, USERS),
        pd.Timestamp(now).to_pydatetime(),
        handled,
    )


def test_the_vps_get_one_digest_at_their_morning_hour_listing_the_days_breaches():
    clocks = [_clock(i, f"2026-11-17T{14 + i}:00:00Z") for i in range(5)]  # Tue 09:00-13:00 NY
    clocks.append(_clock(9, "2026-11-17T20:00:00Z", tier="enterprise", critical=True))  # went at once
    clocks.append(_clock(8, "2026-11-18T13:30:00Z"))  # Wed 08:30: tomorrow's digest
    assert _digest(clocks, "2026-11-18T12:59:00Z") == []  # 07:59 in New York: not yet
    notices = _digest(clocks, "2026-11-18T13:00:00Z")
    assert sorted(n.subject for n in notices) == ["vp_marketing", "vp_revops", "vp_sales"]
    sales = next(n for n in notices if n.subject == "vp_sales")
    assert sales.recipients == (("email", "vp.sales@example.com"),)
    assert len(sales.lines) == 5 and sales.lines[0].startswith("Tue 09:00 Sales touched lead")
    assert sales.audit_detail["ladder_rule"] == "digest" and sales.audit_detail["breaches"] == 5
    assert sales.opened_at == dt.datetime(2026, 11, 18, 13, tzinfo=dt.UTC)
    # Sent once per person and morning: a rerun after it was queued decides nothing.
    handled = [(DIGEST_SOURCE, None, n.opened_at, n.checkpoint) for n in notices]
    assert _digest(clocks, "2026-11-18T15:00:00Z", handled) == []
    # The next morning covers from the last one sent; after downtime, one digest covers every day.
    later = _digest(clocks, "2026-11-20T14:00:00Z", handled)
    assert [len(n.lines) for n in later if n.subject == "vp_sales"] == [1]
    assert _digest(clocks[:5], "2026-11-21T13:00:00Z", handled) == []  # no breach, no message


def test_the_morning_hour_is_each_vps_own_timezone_across_dst():
    data = {
        **RAW,
        "contacts": {
            **RAW["contacts"],
            "vp_marketing": {**RAW["contacts"]["vp_marketing"], "timezone": "Europe/London"},
        },
    }
    policy = policy_from_dict(data, "tz")
    clocks = [_clock(1, "2026-10-23T20:00:00Z")]
    # London leaves summer time on Sun 25 Oct, New York on Sun 1 Nov: 08:00 local moves in UTC.
    assert morning_at_or_before(
        dt.datetime(2026, 10, 24, 8, tzinfo=dt.UTC), 8, "Europe/London"
    ) == dt.datetime(2026, 10, 24, 7, tzinfo=dt.UTC)
    assert morning_at_or_before(
        dt.datetime(2026, 10, 26, 8, tzinfo=dt.UTC), 8, "Europe/London"
    ) == dt.datetime(2026, 10, 26, 8, tzinfo=dt.UTC)
    assert morning_at_or_before(
        dt.datetime(2026, 11, 2, 13, tzinfo=dt.UTC), 8, "America/New_York"
    ) == dt.datetime(2026, 11, 2, 13, tzinfo=dt.UTC)
    # Spring forward in New York (8 Mar 2026): 02:00 does not exist; the digest goes at 03:00 EDT.
    assert morning_at_or_before(
        dt.datetime(2026, 3, 8, 8, tzinfo=dt.UTC), 2, "America/New_York"
    ) == dt.datetime(2026, 3, 8, 7, tzinfo=dt.UTC)
    at_london_8 = _digest(clocks, "2026-10-24T07:00:00Z", policy=policy)
    assert [n.subject for n in at_london_8] == ["vp_marketing"]
    assert "(Europe/London)" in at_london_8[0].intro
    assert sorted(n.subject for n in _digest(clocks, "2026-10-24T12:00:00Z", policy=policy)) == [
        "vp_marketing",
        "vp_revops",
        "vp_sales",
    ]


def test_a_morning_hour_inside_quiet_hours_waits_for_their_end():
    data = {**RAW, "slas": [dict(s) for s in RAW["slas"]]}
    data["slas"][0]["ladder"] = {**RAW["slas"][0]["ladder"], "digest": {"notify": ["vp_sales"], "hour": 6}}
    for s in data["slas"][1:]:
        s["ladder"] = "flat"
    policy = policy_from_dict(data, "early")
    clocks = [_clock(1, "2026-11-17T19:00:00Z")]
    assert _digest(clocks, "2026-11-18T11:30:00Z", policy=policy) == []  # 06:30: quiet until 08:00
    assert [n.subject for n in _digest(clocks, "2026-11-18T13:00:00Z", policy=policy)] == ["vp_sales"]


@pytest.mark.parametrize(
    ("ladder", "error"),
    [
        ({"digest": {"notify": ["vp_sales"], "hour": 24}}, "slas[0].ladder.digest.hour: 24:"),
        ({"repeat": {"notify": ["directr"]}}, "slas[0].ladder.repeat.notify[0]: 'directr': expected a role"),
        (
            {"digest": {"notify": ["vp_sales"], "channels": ["fax"]}},
            "slas[0].ladder.digest.channels[0]: 'fax':",
        ),
        ({"digest": {"notify": ["owner"]}}, "slas[0].ladder.digest.notify[0]: 'owner': a digest goes to"),
        ({"mode": "flat", "repeat": {}}, "slas[0].ladder.repeat: a flat ladder has no rungs"),
        ("flatt", "slas[0].ladder: 'flatt': expected flat, or a mapping of rungs"),
    ],
)
def test_a_bad_ladder_is_one_line_naming_its_path(ladder, error):
    data = {**RAW, "slas": [dict(s) for s in RAW["slas"]]}
    data["slas"][0]["ladder"] = ladder
    with pytest.raises(PolicyError) as err:
        policy_from_dict(data, "p.yaml")
    assert error in str(err.value) and "\n" not in str(err.value)


def test_a_vp_both_told_at_once_and_in_the_digest_is_refused():
    data = {**RAW, "slas": [dict(s) for s in RAW["slas"]]}
    data["slas"][0]["breach"] = {**RAW["slas"][0]["breach"], "notify": ["owner", "vp_sales"]}
    with pytest.raises(PolicyError, match=r"slas\[0\].ladder.digest.notify\[0\]: 'vp_sales': also in"):
        policy_from_dict(data, "p.yaml")
