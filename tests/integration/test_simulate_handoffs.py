"""The demo org's Opportunity handoffs (issue 17): the Account Executives own the converted
Opportunities and work a pipeline of their own, so the demo's two-week backlog holds decided clocks
and breaches of every Opportunity SLA - demo to proposal (the AEs'), CS kickoff and CS onboarding
(Customer Success's) - while the rest of the org draws exactly what it drew without them."""

from __future__ import annotations

import collections
import json
from datetime import UTC, datetime, timedelta

import pytest

from sandbox import simulate
from sandbox.sf_store import OrgStore

pytest_plugins = ["tests.sandbox_fixtures"]

#: The demo's seed and backlog (sandbox.devstack), ending on a Sunday noon as a weekend `make run`.
SEED, BACKLOG = 7, timedelta(days=14)
END = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
OPPORTUNITY_SLAS = ("demo_to_proposal", "cs_kickoff", "cs_onboarding")
OPEN = ("running", "paused")


@pytest.fixture(scope="module")
def backlog(tmp_path_factory):
    """The demo org's two-week backlog (seed 7), synced into a store through the Salesforce stand-in
    (crm_sync's `run_group`) and its clocks evaluated at its end with `make run`'s demo policy."""
    from tests.sandbox_fixtures import synced_evaluation

    root = tmp_path_factory.mktemp("handoffs")
    store = OrgStore(root / "salesforce" / "org.sqlite3")
    org = simulate.DemoOrg(store, seed=SEED, start=END - BACKLOG)
    org.advance(END)
    _, policy, evaluation = synced_evaluation(root, org)
    clocks = evaluation.clocks.astype({"sla_id": str, "record_id": str, "state": str, "team": str})
    yield store, org, policy, clocks
    store.close()


def test_the_account_executives_report_to_the_vp_sales_and_own_the_converted_deals(backlog) -> None:
    store, org, policy, _ = backlog
    users = {u["Id"]: u for u in store.scan("User")}
    ae_team = [u for u in users.values() if u.get("Team__c") == simulate.AE_TEAM]
    manager = org.managers[simulate.AE_TEAM]
    assert users[manager]["ManagerId"] == org.vps["sales"] and users[manager]["Title"] == "AE Manager"
    aes = [u for u in ae_team if u["Id"] != manager]
    assert len(aes) == len(simulate.TEAMS) and all(u["ManagerId"] == manager for u in aes)
    assert all(u["Department"] == simulate.AE_TEAM and u["TimeZoneSidKey"] == simulate.AE_TZ for u in ae_team)
    assert policy.team_key(simulate.AE_TEAM) == "ae"  # the shipped policy's crm_names
    # Every converted lead's deal is owned by the AE of the converting SDR's team.
    opportunities = {o["Id"]: o for o in store.scan("Opportunity")}
    converted = [lead for lead in store.scan("Lead") if lead.get("IsConverted")]
    assert len(converted) > 100
    for lead in converted:
        sdr = org._rep(lead["OwnerId"])
        assert opportunities[lead["ConvertedOpportunityId"]]["OwnerId"] == org.aes[sdr.team]
    assert all(users[o["OwnerId"]].get("Team__c") == simulate.AE_TEAM for o in opportunities.values())


def test_every_opportunity_handoff_has_decided_clocks_and_breaches_in_the_backlog(backlog) -> None:
    _, _, _, clocks = backlog
    for sla_id in OPPORTUNITY_SLAS:
        own = clocks[clocks["sla_id"] == sla_id]
        decided = own[~own["state"].isin(OPEN)]
        late = decided["state"].isin(["met_late", "breached", "handed_on_late"])
        assert len(decided) >= 10, (sla_id, len(decided))
        assert 0.08 <= late.mean() <= 0.3, (sla_id, int(late.sum()), len(decided))
        assert set(own["team"]) == {simulate.AE_TEAM}  # the deal's owner: an AE
    # The onboarding clocks start in the AEs' book, before the backlog, and decide in it.
    onboarding = clocks[(clocks["sla_id"] == "cs_onboarding") & clocks["state"].eq("met_late")]
    assert len(onboarding) >= 1


def _others(store: OrgStore, ae_deals: set[str]) -> tuple[list, list]:
    """Every lead, and every Opportunity but the AEs' own with its stage history, without ids (the
    AEs' deals take ids in between)."""
    leads = sorted(
        (r["CreatedDate"], r["Name"], r["Status"], r["OwnerId"], r["LeadSource"], r.get("IsConverted"))
        for r in store.scan("Lead")
    )
    history = collections.defaultdict(list)
    for h in store.scan("OpportunityFieldHistory"):
        history[h["OpportunityId"]].append((h["CreatedDate"], h["Field"], str(h["NewValue"])))
    deals = sorted(
        (o["CreatedDate"], o["Name"], o["OwnerId"], o["Amount"], sorted(history[o["Id"]]))
        for o in store.scan("Opportunity")
        if o["Id"] not in ae_deals
    )
    return leads, deals


def test_the_aes_pipeline_leaves_the_rest_of_the_org_unchanged(tmp_path, monkeypatch) -> None:
    start = END - timedelta(days=5)
    with_pipeline = OrgStore(tmp_path / "pipeline.sqlite3")
    org = simulate.DemoOrg(with_pipeline, seed=SEED, start=start)
    org.advance(END)
    monkeypatch.setattr(simulate, "AE_PIPELINE_RATE", 0.0)
    monkeypatch.setattr(simulate, "AE_ONBOARDING_BOOK", 0)
    monkeypatch.setattr(simulate, "AE_OPEN_BOOK", 0)
    without = OrgStore(tmp_path / "plain.sqlite3")
    plain = simulate.DemoOrg(without, seed=SEED, start=start)
    plain.advance(END)
    assert len(org.ae_deals) > 40 and not plain.ae_deals
    assert _others(with_pipeline, org.ae_deals) == _others(without, set())
    with_pipeline.close()
    without.close()


def test_a_saved_org_keeps_its_aes_and_one_saved_before_them_gets_them(tmp_path) -> None:
    store = OrgStore(tmp_path / "org.sqlite3")
    start = END - timedelta(days=1)
    org = simulate.DemoOrg(store, seed=SEED, start=start)
    org.advance(END)
    users = len(list(store.scan("User")))
    again = simulate.DemoOrg(store, seed=SEED)
    assert again.aes == org.aes and again.ae_deals == org.ae_deals and len(list(store.scan("User"))) == users
    # An org saved before the AEs: they join at its clock, without a back-dated book.
    state = json.loads(store.get_meta("demo_state"))
    for key in ("aes", "ae_tz", "ae_rng", "ae_deals", "ae_turn"):
        del state[key]
    store.set_meta("demo_state", json.dumps(state))
    deals = len(list(store.scan("Opportunity")))
    old = simulate.DemoOrg(store, seed=SEED)
    assert old.aes and set(old.aes.values()).isdisjoint(org.aes.values())
    assert not old.ae_deals and len(list(store.scan("Opportunity"))) == deals
    store.close()
