"""Routing rules and decisions without a store: what the policy refuses (naming the rule), and how
suppression, territory, score, absences, working hours and the weighted round robin decide."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
import yaml

from leadsla.configuration import check_files
from leadsla.decisions.routing import Account, Book, Lead, Rep, company_key, misrouted, route
from leadsla.policy import DEFAULT_POLICY_PATH, PolicyError, load_policy, policy_from_dict

RAW = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
POLICY = load_policy()
# Tuesday 2026-12-08 15:00 UTC: 10:00 in New York, 15:00 in London, 02:00 on Wednesday in Sydney.
TUESDAY = dt.datetime(2026, 12, 8, 15, 0, tzinfo=dt.UTC)
NIGHT = dt.datetime(2026, 12, 9, 4, 0, tzinfo=dt.UTC)  # 23:00 in New York


def _with(**routing) -> dict:
    data = copy.deepcopy(RAW)
    data["routing"].update(routing)
    return data


def _rep(user_id: str, team: str = "sdr_east", **kw) -> Rep:
    return Rep(
        user_id,
        kw.pop("name", user_id),
        kw.pop("email", None),
        team,
        kw.pop("role", "SDR"),
        True,
        False,
        **kw,
    )


def _lead(record_id: str, country: str = "US", **fields) -> Lead:
    return Lead(
        record_id,
        record_id,
        fields.pop("company", f"{record_id} Ltd"),
        fields.pop("email", None),
        "00G_intake",
        {"Country": country, "LeadSource": "Web", **fields},
    )


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        (
            {
                "territories": [
                    {"id": "a", "team": "sdr_east", "when": {"Country": ["US"]}},
                    {"id": "b", "team": "sdr_west", "when": {"Country": ["us", "CA"]}},
                ]
            },
            r"territories \(a, b\): a lead could match both",
        ),
        (
            {
                "territories": [
                    {"id": "a", "team": "sdr_east", "when": {"Country": ["US"]}},
                    {"id": "b", "team": "sdr_west", "when": {"State": ["CA"]}},
                ]
            },
            r"territories \(a, b\): a lead could match both",
        ),
        (
            {"territories": [{"id": "a", "team": "sdr_nowhere", "when": {"Country": ["US"]}}]},
            r"routing.territories\[0\] \(a\).team: 'sdr_nowhere': expected one of the teams",
        ),
        ({"watch_teams": ["sdr_moon"]}, r"routing.watch_teams\[0\]: 'sdr_moon'"),
        ({"reps": {"default_capacity": 0}}, r"routing.reps.default_capacity"),
        ({"reps": {"capacity": {"a@x.example": -1}}}, r"reps.capacity.a@x.example: -1"),
        (
            {"score": {"field": "Lead_Score__c", "tiers": [{"id": "hot", "min": 80}]}},
            r"score.tiers\[0\] \(hot\)",
        ),
        ({"statuses": ["MQL", "Hot"]}, r"routing.statuses: 'Hot': not a Lead Status"),
        ({"unowned": {"notify": ["owner"]}}, r"routing.unowned.notify\[0\]: 'owner': an unowned lead has no"),
        ({"unowned": {"after": "soon"}}, r"routing.unowned.after"),
        ({"mode": "guess"}, r"routing.mode"),
    ],
)
def test_a_bad_routing_rule_is_a_policy_error_naming_it(routing, message) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_dict(_with(**routing), "p.yaml")


def test_team_manager_needs_every_territory_team_to_name_a_manager() -> None:
    data = _with()
    data["teams"]["sdr_emea"] = {k: v for k, v in data["teams"]["sdr_emea"].items() if k != "manager"}
    with pytest.raises(PolicyError, match=r"territory 'emea''s team 'sdr_emea' names no manager"):
        policy_from_dict(data, "p.yaml")


def test_a_rule_reading_a_field_the_sync_does_not_read_is_a_configuration_problem(tmp_path) -> None:
    data = _with(territories=[{"id": "west", "team": "sdr_west", "when": {"Region__c": ["West"]}}])
    (tmp_path / "sla_policy.yaml").write_text(yaml.safe_dump(data))
    check = check_files(policy=tmp_path / "sla_policy.yaml")
    assert any("routing: reads Lead.Region__c" in p for p in check.problems)


def test_suppression_comes_before_territory_and_round_robin() -> None:
    book = Book(
        accounts=[
            Account("001A", "Globex Corporation", "005olga", "https://www.globex.example/", "customer")
        ],
        open_leads={"sam@initech.example": ("00Qopen", "005eve")},
    )
    reps = [_rep("005ann"), _rep("005cat"), _rep("005olga", team=None), _rep("005eve", team="sdr_emea")]
    leads = [
        _lead("00Q1", email="jo@GLOBEX.example"),
        _lead("00Q2", company="Globex Corp.", email="kim@gmail.com"),
        _lead("00Q3", email="sam@initech.example"),
        _lead("00Q4", company="Globex Trading", email="x@gmail.com"),  # a different company
    ]
    plan = route(leads, reps, book, POLICY, TUESDAY)
    owners = {a.record_id: (a.owner_id, a.rule) for a in plan.assignments}
    assert owners["00Q1"] == ("005olga", "suppression:account_owner")
    assert owners["00Q2"] == ("005olga", "suppression:account_owner")
    assert owners["00Q3"] == ("005eve", "suppression:duplicate_lead")
    assert owners["00Q4"][1] == "territory:americas"
    assert company_key("ACME, Inc.") == company_key("Acme") == "acme"


def test_an_email_domain_match_beats_a_company_match_and_the_first_account_wins() -> None:
    initech = Account("001I", "Initech", "005ian", "initech.example", "customer")
    globex = Account("001G", "Globex", "005olga", "https://globex.example", "customer")
    globex_too = Account("001H", "Globex Holdings", "005hal", "www.globex.example", "open opportunity")
    book = Book(accounts=[initech, globex, globex_too])
    assert book.account_for(_lead("00Q1", company="Initech", email="jo@globex.example")) == globex
    assert book.account_for(_lead("00Q2", company="INITECH LLC", email="jo@gmail.com")) == initech
    assert book.account_for(_lead("00Q3", company="Globex Holdings", email="jo@gmail.com")) == globex_too
    assert book.account_for(_lead("00Q4", company="Umbrella", email="jo@umbrella.example")) is None


def test_two_new_leads_with_one_email_reach_one_rep() -> None:
    plan = route(
        [_lead("00Q1", email="a@b.example"), _lead("00Q2", email="A@b.example")],
        [_rep("005ann"), _rep("005cat")],
        Book(),
        POLICY,
        TUESDAY,
    )
    assert [a.owner_id for a in plan.assignments] == ["005ann", "005ann"]
    assert plan.assignments[1].rule == "suppression:duplicate_lead"


def test_the_round_robin_skips_away_absent_inactive_and_managers_and_weighs_load() -> None:
    data = _with(reps={"absences": [{"user": "bo@x.example", "from": "2026-12-07", "to": "2026-12-09"}]})
    policy = policy_from_dict(data, "p.yaml")
    reps = [
        _rep("005ann", open_clocks=3),
        _rep("005bo", email="Bo@x.example"),  # absent this week (the policy)
        Rep("005cy", "Cy", None, "sdr_east", "SDR", True, True),  # out of office (the CRM)
        Rep("005di", "Di", None, "sdr_east", "SDR", False, False),  # inactive
        _rep("005mo", manages=True),
        _rep("005ed"),
    ]
    plan = route([_lead(f"00Q{i}") for i in range(5)], reps, Book(), policy, TUESDAY)
    owners = [a.owner_id for a in plan.assignments]
    assert set(owners) == {"005ann", "005ed"}
    assert owners.count("005ed") == 4  # Ann starts with 3 open clocks: Ed catches up first
    # the reason on the record says who was left out and why (the inactive and managers are no members)
    assert plan.assignments[0].reason.endswith("; skipped: 005bo (absent), Cy (out of office)")


def test_a_lead_that_needs_an_answer_now_waits_for_reps_at_work() -> None:
    reps = [_rep("005ann")]
    demo = _lead("00Qd", LeadSource="Demo Request")
    night = route([demo, _lead("00Qw")], reps, Book(), POLICY, NIGHT)
    assert [a.record_id for a in night.assignments] == ["00Qw"]
    assert night.unrouted[0].why == "no rep of sdr_east is working now (inactive, away or weight 0)"
    day = route([demo], reps, Book(), POLICY, TUESDAY)
    assert day.assignments[0].owner_id == "005ann" and "needs an answer now" in day.assignments[0].reason


def test_hot_leads_go_to_the_score_tier_and_fall_back_to_the_team() -> None:
    hot = _lead("00Qh", Lead_Score__c="88")
    plan = route([hot], [_rep("005ann"), _rep("005sen", role="Senior SDR")], Book(), POLICY, TUESDAY)
    assert (plan.assignments[0].owner_id, plan.assignments[0].rule) == ("005sen", "territory:americas/hot")
    alone = route([hot], [_rep("005ann")], Book(), POLICY, TUESDAY)
    assert alone.assignments[0].owner_id == "005ann"
    assert "none of its reps available, whole team" in alone.assignments[0].reason


def test_watch_teams_are_left_alone_and_no_territory_is_unrouted() -> None:
    plan = route([_lead("00Qau", "AU"), _lead("00Qza", "ZA")], [_rep("005ann")], Book(), POLICY, TUESDAY)
    assert plan.watched == ["00Qau"] and plan.assignments == []
    assert plan.unrouted[0].why == "no territory matches Country ZA"


def test_the_weighted_share_holds_over_a_long_burst() -> None:
    data = _with(reps={"capacity": {"005a": 3, "005b": 2}})
    policy = policy_from_dict(data, "p.yaml")
    reps = [_rep("005a"), _rep("005b"), _rep("005c")]
    plan = route([_lead(f"00Q{i}") for i in range(6000)], reps, Book(), policy, TUESDAY)
    shares = {r.user_id: sum(a.owner_id == r.user_id for a in plan.assignments) / 6000 for r in reps}
    assert shares == pytest.approx({"005a": 0.5, "005b": 1 / 3, "005c": 1 / 6}, abs=0.001)


def test_watch_finds_owners_that_break_suppression_or_the_territory() -> None:
    book = Book(accounts=[Account("001A", "Globex", "005olga", "globex.example", "open opportunity")])
    reps = [_rep("005ann", team="sdr_apac"), _rep("005eve", team="sdr_emea"), _rep("005olga", team=None)]
    leads = [
        Lead("00Q1", "One", "x", "jo@globex.example", "005ann", {"Country": "AU"}),
        Lead("00Q2", "Two", "y", None, "005eve", {"Country": "AU"}),
        Lead("00Q3", "Three", "z", None, "005ann", {"Country": "AU"}),
        Lead("00Q4", "Four", "w", None, "005eve", {"Country": "US"}),  # a routed team: not watched
    ]
    found = {m.record_id: m.rule for m in misrouted(leads, reps, book, POLICY)}
    assert found == {"00Q1": "suppression:account_owner", "00Q2": "territory:apac"}
