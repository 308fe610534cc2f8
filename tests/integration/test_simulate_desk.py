"""The demo org's follow-the-sun demo-request desk (`desk=True`, `make run`): demo requests at any
hour, booked onto the rep on shift, accepted and called back in minutes (a share late); the rest of
the org draws exactly what it drew without the desk; a saved org keeps it or gets it; `make run`'s
demo policy gives it a 24 x 7 calendar and passes `leadsla config check --org`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leadsla.cli import main
from leadsla.policy import load_policy
from sandbox import simulate
from sandbox.devstack import DESK_CALENDAR, DESK_POLICY_TEAM, write_demo_policy
from sandbox.sf_store import OrgStore
from sandbox.soql import parse_datetime

pytest_plugins = ["tests.sandbox_fixtures"]

SATURDAY = datetime(2026, 11, 28, tzinfo=UTC)


def _others(store: OrgStore, desk_leads: set[str]) -> list[tuple]:
    """Every lead but the desk's, without its Id (the desk's leads take ids in between)."""
    return sorted(
        (r["CreatedDate"], r["Name"], r["Status"], r["OwnerId"], r["LeadSource"], r["Country"])
        for r in store.scan("Lead")
        if r["Id"] not in desk_leads
    )


@pytest.fixture(scope="module")
def weekend(tmp_path_factory):
    """A weekend of a `leadsla` org with the desk, and the same org without it."""
    root = tmp_path_factory.mktemp("desk")
    with_desk = OrgStore(root / "desk.sqlite3")
    org = simulate.DemoOrg(with_desk, seed=4, start=SATURDAY, routing="leadsla", desk=True)
    org.advance(SATURDAY + timedelta(days=2))
    without = OrgStore(root / "plain.sqlite3")
    plain = simulate.DemoOrg(without, seed=4, start=SATURDAY, routing="leadsla")
    plain.advance(SATURDAY + timedelta(days=2))
    yield with_desk, org, without, plain
    with_desk.close()
    without.close()


def test_the_desk_leaves_the_rest_of_the_org_unchanged(weekend) -> None:
    with_desk, org, without, plain = weekend
    assert org.desk and not plain.desk and org.desk_leads and not plain.desk_leads
    assert _others(with_desk, org.desk_leads) == _others(without, set())


def test_demo_requests_arrive_day_and_night_and_go_to_the_rep_on_shift(weekend) -> None:
    store, org, _, _ = weekend
    users = {u["Id"]: u for u in store.scan("User")}
    desk = [r for r in org.reps if r.team == simulate.DESK_TEAM]
    assert [r.tz for r in desk] == [tz for tz, _ in simulate.DESK_SHIFTS]
    assert users[org.managers[simulate.DESK_TEAM]]["ManagerId"] == org.vps["sales"]
    # Their breaches are a critical tier's, texted at once: each has a fictional mobile of their own.
    from leadsla.decisions.phones import normalise_phone

    people = [u for u in users.values() if u.get("Team__c") == simulate.DESK_TEAM]
    phones = {normalise_phone(u.get("MobilePhone")) for u in people}
    others = {normalise_phone(u.get("MobilePhone")) for u in users.values() if u not in people}
    assert len(people) == 4 and None not in phones and len(phones) == 4 and not phones & others
    assert all(n.startswith("+120255501") for n in phones)
    leads = [lead for lead in store.scan("Lead") if lead["Id"] in org.desk_leads]
    hours = {parse_datetime(lead["CreatedDate"]).hour for lead in leads}
    assert len(leads) > 25 and len(hours) >= 16  # about one an hour, around the clock, at the weekend
    history = {}
    for h in store.scan("LeadHistory"):
        history.setdefault(h["LeadId"], []).append(h)
    for lead in leads:
        created = parse_datetime(lead["CreatedDate"])
        assert (lead["LeadSource"], lead["Lead_Type__c"]) == ("Demo Request", "Demo Request")
        first_owner = next(
            (
                h["OldValue"]
                for h in sorted(history.get(lead["Id"], []), key=lambda h: h["CreatedDate"])
                if h["Field"] == "Owner"
            ),
            lead["OwnerId"],
        )
        assert first_owner == org._desk_rep(created).id
        if lead.get("SAL_Date__c"):
            assert timedelta(0) < parse_datetime(lead["SAL_Date__c"]) - created < timedelta(minutes=2)
    touches = {t["WhoId"]: parse_datetime(t["CompletedDateTime"]) for t in store.scan("Task")}
    waits = [
        touches[lead["Id"]] - parse_datetime(lead["SAL_Date__c"])
        for lead in leads
        if lead.get("SAL_Date__c") and lead["Id"] in touches
    ]
    late = sum(w > timedelta(minutes=6) for w in waits)
    assert waits and 0 < late < len(waits) / 2  # most called back in time, some after the breach


def test_a_saved_org_gets_the_desk_and_keeps_it(tmp_path) -> None:
    store = OrgStore(tmp_path / "org.sqlite3")
    org = simulate.DemoOrg(store, seed=2, start=SATURDAY)
    org.advance(SATURDAY + timedelta(hours=2))
    assert not org.desk and not any(u.get("Team__c") == simulate.DESK_TEAM for u in store.scan("User"))
    live = SATURDAY + timedelta(hours=2)
    org = simulate.DemoOrg(store, seed=2, desk=True, live_from=live)
    org.advance(live + timedelta(minutes=12))
    showcase = sorted(
        parse_datetime(lead["CreatedDate"]) for lead in store.scan("Lead") if lead["Id"] in org.desk_leads
    )
    # The showcase: one demo request every two minutes after the live start (the org's clock).
    assert [t for t in showcase if t >= live] == [live + timedelta(minutes=2 * k) for k in range(1, 7)]
    again = simulate.DemoOrg(store, seed=2)  # a saved org keeps its desk
    assert again.desk and again.desk_leads == org.desk_leads
    assert sum(u.get("Team__c") == simulate.DESK_TEAM for u in store.scan("User")) == 4
    store.close()


def test_the_demo_policy_runs_the_desk_around_the_clock(tmp_path) -> None:
    policy = load_policy(write_demo_policy(tmp_path / "sla_policy.yaml"))
    assert policy.team_calendar(simulate.DESK_TEAM) == DESK_CALENDAR
    assert policy.team_key(simulate.DESK_TEAM) == DESK_POLICY_TEAM
    calendar = policy.calendar(DESK_CALENDAR)
    sunday_night = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    assert calendar.deadline(sunday_night, 5 * 60) == sunday_night + timedelta(minutes=5)
    tier = next(t for t in policy.sla("sales_touch").tiers if t.id == "demo_request")
    assert tier.critical and tier.when == {"lead_type": [simulate.DESK_LEAD_TYPE]}


def test_the_demo_policy_passes_config_check_against_the_demo_org(
    salesforce_sandbox, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("LEADSLA_POLICY_PATH", str(write_demo_policy(tmp_path / "sla_policy.yaml")))
    assert main(["config", "check", "--org"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("agree (5 SLAs, 2 lifecycles) and match the org")
