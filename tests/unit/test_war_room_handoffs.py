"""The War Room's handoffs: every SLA of the shipped policy with its team and object, the `sla`
filter validated against them and kept in links, the fields a record's timeline lists, and the
matrix's sparkline (never `nan`)."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs

import pytest

from leadsla.policy import load_policy
from leadsla.war_room.figures import sparkline
from leadsla.war_room.filters import FilterError, parse_filters
from leadsla.war_room.handoffs import handoffs, watched_fields

NOW = dt.datetime(2026, 11, 10, 15, tzinfo=dt.UTC)
TZ = "America/New_York"
SLAS = ["sales_touch", "demo_to_proposal", "cs_kickoff", "cs_onboarding", "mql_acceptance"]


def test_every_policy_sla_is_a_handoff_with_its_team_and_object() -> None:
    shown = handoffs(load_policy())
    assert list(shown) == SLAS
    cs = shown["cs_kickoff"]
    assert (cs.object_type, cs.team, cs.team_label) == ("Opportunity", "cs", "Customer Success")
    assert cs.team_names == {"cs", "Customer Success"} and not cs.leads and not cs.touch
    assert cs.counts_for({"Customer Success"}) and not cs.counts_for({"SDR Americas"})
    touch = shown["sales_touch"]
    assert touch.leads and touch.touch and touch.team_label == "SDR Americas"
    ae = shown["demo_to_proposal"]  # the shipped policy spells the team as the CRM does
    assert ae.describe() == "Demo to proposal (Account Executives, Opportunity)"
    assert ae.team_names == {"ae", "Account Executives"}
    assert {h.left_counts_as for h in handoffs(load_policy(), "excluded").values()} == {"excluded"}


def test_the_sla_filter_defaults_is_validated_and_kept_in_links() -> None:
    f = parse_filters(NOW, TZ, slas=SLAS, default_sla="sales_touch")
    assert f.sla == "sales_touch"
    chosen = parse_filters(NOW, TZ, sla=" cs_kickoff ", slas=SLAS, default_sla="sales_touch")
    assert chosen.sla == "cs_kickoff" and chosen != f  # part of the range cache's key
    assert parse_qs(chosen.query(figure="overall"))["sla"] == ["cs_kickoff"]
    assert parse_qs(chosen.query(sla="sales_touch"))["sla"] == ["sales_touch"]  # a matrix row's link
    with pytest.raises(
        FilterError, match=r"filter sla='nope' is not an SLA of the policy: expected one of sales"
    ):
        parse_filters(NOW, TZ, sla="nope", slas=SLAS, default_sla="sales_touch")


def test_a_timeline_lists_the_fields_its_objects_slas_watch() -> None:
    policy = load_policy()
    opportunity = watched_fields(policy, "Opportunity")
    assert {"StageName", "OwnerId", "CS_Kickoff_Date__c", "Onboarding_Complete__c"} <= set(opportunity)
    assert {"Status", "OwnerId", "Lead_Replied__c"} <= set(watched_fields(policy, "Lead"))


def test_the_sparkline_draws_decided_weeks_and_says_when_there_are_none() -> None:
    trend = [
        {"week": "2026-11-02", "decided": 4, "compliance": 0.5},
        {"week": "2026-11-09", "decided": 0, "compliance": None},
        {"week": "2026-11-16", "decided": 2, "compliance": 1.0},
    ]
    svg = str(sparkline(trend, 0.8))
    assert svg.startswith('<svg class="spark"') and "<polyline" in svg and "stroke-dasharray" in svg
    assert "2026-11-02: 50% of 4; 2026-11-09: no decided clocks; 2026-11-16: 100% of 2" in svg
    assert "nan" not in svg
    empty = str(sparkline([{"week": "2026-11-02", "decided": 0, "compliance": None}]))
    assert "no decided clocks" in empty and "<svg" not in empty
