"""The SLA policy: the shipped files load, and every kind of mistake is named by file, key path and value."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pytest
import yaml

from leadsla.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, policy_for, policy_from_dict

FLAT = DEFAULT_POLICY_PATH.with_name("sla_policy.flat.yaml")


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def test_shipped_policy_has_the_seed_defaults():
    policy = load_policy()
    touch = policy.sla("sales_touch")
    tiers = {t.id: t for t in touch.tiers}
    assert [t.id for t in touch.tiers][-1] == "standard" and tiers["standard"].default
    assert tiers["standard"].target.seconds == 4 * 3600
    assert tiers["demo_request"].target.seconds == 5 * 60
    assert tiers["content"].target.seconds == 4 * 3600
    assert tiers["webinar_event"].target.seconds == 24 * 3600
    assert (tiers["enterprise"].target.seconds, tiers["enterprise"].target.time) == (3600, "calendar")
    assert tiers["enterprise"].critical
    assert (tiers["inbound"].target.seconds, tiers["inbound"].target.outside_hours_seconds) == (7200, 14400)
    assert [cp.offset_seconds(14400) for cp in touch.all_checkpoints()] == [7200, 11520, 14460]
    assert touch.breach.reassign == ["owner_manager", "queue:Breached SLA"]
    assert touch.breach.lock_hours == 24
    # The escalation ladder: owner and manager at once, the director at a rep's 3rd breach in 30
    # days, the VPs in a daily digest at 08:00 except critical tiers' breaches.
    assert touch.breach.notify == ["owner", "owner_manager"] and touch.laddered
    assert (touch.ladder.repeat.breach, touch.ladder.repeat.within_days) == (3, 30)
    assert touch.ladder.repeat.notify == ["owner_director"] and touch.ladder.digest.hour == 8
    assert (
        touch.ladder.digest.notify
        == touch.ladder.critical_notify()
        == ["vp_sales", "vp_marketing", "vp_revops"]
    )
    assert policy.sla("demo_to_proposal").object == "Opportunity"
    assert policy.sla("cs_onboarding").tiers[0].target.seconds == 14 * 86400
    assert policy.sla("cs_onboarding").tiers[0].target.time == "calendar"
    assert policy.calendar("us_east").timezone == "America/New_York"


def test_flat_alternative_is_valid_and_is_the_4h_with_2h_warning_seed():
    touch = load_policy(FLAT).sla("sales_touch")
    assert [t.id for t in touch.tiers] == ["standard"]
    assert [cp.offset_seconds(14400) for cp in touch.all_checkpoints()] == [7200, 14460]
    assert touch.checkpoints[0].notify == ["owner", "owner_manager"]


def _broken(raw: dict, edit) -> dict:
    data = copy.deepcopy(raw)
    edit(data)
    return data


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["slas"][0]["tiers"][2]["target"].update(duration="soon"),
            r"slas\[0\]\.tiers\[2\]\.target\.duration: 'soon': .*duration such as 4h",
        ),
        (
            lambda d: d["slas"][0]["checkpoints"][1].update(at="eighty percent"),
            r"slas\[0\]\.checkpoints\[1\]\.at: 'eighty percent': expected \"N%\"",
        ),
        (
            lambda d: d["slas"][0]["checkpoints"][0].update(notify=["ceo"]),
            r"slas\[0\]\.checkpoints\[0\]\.notify\[0\]: 'ceo': expected a role",
        ),
        (
            lambda d: d["slas"][0]["tiers"].pop(),
            r"slas\[0\]\.tiers: .*exactly one tier with default: true, listed last",
        ),
        (
            lambda d: d["slas"][0]["tiers"][0]["target"].update(calendar="mars"),
            r"slas\[0\]\.tiers\[0\]\.target\.calendar: 'mars': expected owner or one of the calendars",
        ),
        (
            lambda d: d["teams"]["sdr_east"].update(calendar="nowhere"),
            r"teams\.sdr_east\.calendar: 'nowhere'",
        ),
        (
            lambda d: d["calendars"]["uk"].update(timezone="Europe/Atlantis"),
            r"calendars\.uk: .*'Europe/Atlantis' is not an IANA timezone",
        ),
        (
            lambda d: d["slas"][1].update(object="Case"),
            r"slas\[1\]\.object: 'Case': Input should be 'Lead' or 'Opportunity'",
        ),
        (
            lambda d: d["slas"][0]["breach"].update(reassign=["the boss"]),
            r"slas\[0\]\.breach\.reassign: .*'the boss': expected owner_manager",
        ),
        (lambda d: d.update(colour="blue"), r"colour: 'blue': unknown key"),
        (lambda d: d.pop("version"), r"version: missing"),
        (lambda d: d.update(effective_from="2026-11-01T00:00:00"), r"effective_from: .*timezone-aware"),
        (
            lambda d: d["slas"][0]["tiers"][1].update(when={"favourite_colour": ["red"]}),
            r"slas\[0\]\.tiers\[1\]\.when: .*unknown record field 'favourite_colour'",
        ),
        (
            lambda d: d["slas"][0]["stop"].append({"field": "Status"}),
            r"slas\[0\]\.stop\[1\]: .*expected one of",
        ),
    ],
)
def test_errors_name_file_key_value_and_expectation(raw, tmp_path: Path, edit, expected):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(_broken(raw, edit)))
    with pytest.raises(PolicyError, match=expected) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}: invalid SLA policy: ")


def test_every_problem_is_reported_at_once_and_nothing_is_returned(raw):
    data = _broken(
        raw,
        lambda d: (
            d["slas"][0]["tiers"][2]["target"].update(duration="x"),
            d["slas"][2].update(object="Case"),
        ),
    )
    with pytest.raises(PolicyError) as info:
        policy_from_dict(data, "p.yaml")
    assert "slas[0].tiers[2].target.duration" in str(info.value) and "slas[2].object" in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1,\n")
    with pytest.raises(PolicyError, match=r"bad.yaml: not valid YAML at line"):
        load_policy(bad)


def test_policy_for_picks_the_version_in_force(raw):
    old = policy_from_dict({**raw, "version": "old", "effective_from": "2026-01-01T00:00:00Z"})
    new = policy_from_dict(raw)
    assert policy_for([new, old], dt.datetime(2026, 6, 1, tzinfo=dt.UTC)).version == "old"
    assert policy_for([new, old], dt.datetime(2026, 11, 1, tzinfo=dt.UTC)).version == new.version
    assert policy_for([new, old], dt.datetime(2025, 1, 1, tzinfo=dt.UTC)).version == "old"


def test_crm_team_names_find_the_policy_team_and_its_calendar():
    policy = load_policy()
    assert policy.team_key("SDR EMEA") == "sdr_emea" and policy.team_key("sdr emea") == "sdr_emea"
    assert policy.team_key("sdr_apac") == "sdr_apac"
    assert policy.team_calendar("SDR APAC") == "apac" and policy.team_calendar("SDR Americas") == "us_east"
    assert policy.team("Unknown Team") is None
    assert policy.team_calendar("Unknown Team") == policy.default_calendar


def test_a_crm_team_name_may_name_only_one_team(raw):
    data = _broken(raw, lambda d: d["teams"]["sdr_west"].update(crm_names=["SDR EMEA"]))
    with pytest.raises(
        PolicyError, match=r"teams.sdr_emea.crm_names: 'SDR EMEA': already names team 'sdr_west'"
    ):
        policy_from_dict(data, "p.yaml")
