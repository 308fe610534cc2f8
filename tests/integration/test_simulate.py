"""The demo org: shape, movement, reproducibility, and that the API serves what it writes."""

from __future__ import annotations

import collections
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sandbox import sf_schema, simulate
from sandbox.sf_store import OrgStore

pytest_plugins = ["tests.sandbox_fixtures"]

MONDAY_2PM = datetime(2026, 3, 9, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Six simulated hours on a Monday after a day of backlog, through the CLI at high speed."""
    data = tmp_path_factory.mktemp("demo")
    assert (
        simulate.main(
            [
                "--data",
                str(data),
                "--speed",
                "200000",
                "--seed",
                "3",
                "--backlog-hours",
                "24",
                "--for-hours",
                "6",
                "--start",
                MONDAY_2PM.isoformat(),
            ]
        )
        == 0
    )
    store = OrgStore(data / "org.sqlite3")
    yield store
    store.close()


def test_teams_managers_and_vps(demo):
    users = list(demo.scan("User"))
    titles = collections.Counter(u.get("Title") for u in users)
    assert titles["VP Sales"] == titles["VP Marketing"] == titles["VP RevOps"] == 1
    assert titles["SDR Manager"] == 3 and titles["SDR"] == 12
    managers = {u["Id"]: u for u in users if u.get("Title") == "SDR Manager"}
    zones = {u["TimeZoneSidKey"] for u in managers.values()}
    assert zones == {"America/New_York", "Europe/London", "Australia/Sydney"}
    reps = [u for u in users if u.get("Title") == "SDR"]
    assert all(r["ManagerId"] in managers for r in reps)
    assert sum(1 for r in reps if r.get("Out_Of_Office__c")) == 1
    # Every person is someone else: names are shown side by side and e-mail addresses reach one person.
    people = [u for u in users if u.get("Email")]
    assert len({(u["FirstName"], u["LastName"]) for u in people}) == len(people)
    assert len({u["Email"] for u in people}) == len(people)
    queues = [g for g in demo.scan("Group") if g.get("Type") == "Queue"]
    assert {q["DeveloperName"] for q in queues} == {"Breached_SLA", "SDR_Unassigned"}


def test_statuses_move_with_history_and_activities(demo):
    leads = list(demo.scan("Lead"))
    assert len(leads) > 50
    statuses = collections.Counter(lead["Status"] for lead in leads)
    assert statuses["MQL"] and statuses["SAL"]
    assert statuses["SQL"] + statuses["Recycled"] + statuses["Disqualified"] + statuses["Converted"] > 0
    moves = collections.Counter(
        (h["OldValue"], h["NewValue"]) for h in demo.scan("LeadHistory") if h["Field"] == "Status"
    )
    assert moves[("MQL", "SAL")] > 10
    reasons = {lead.get("Rejection_Reason__c") for lead in leads if lead["Status"] == "Disqualified"}
    assert reasons and reasons <= set(sf_schema.REJECTION_REASONS)
    tasks = list(demo.scan("Task"))
    assert {t["TaskSubtype"] for t in tasks} >= {"Call", "Email"}
    lead_ids = {lead["Id"] for lead in leads}
    assert all(t["WhoId"] in lead_ids for t in tasks)
    sal = [lead for lead in leads if lead["Status"] == "SAL"]
    assert all(lead.get("SAL_Date__c") and lead.get("MQL_Date__c") for lead in sal)


def test_leads_arrive_mostly_in_the_teams_business_hours(demo):
    users = {u["Id"]: u for u in demo.scan("User")}
    in_hours = total = 0
    for lead in demo.scan("Lead"):
        owner = users[lead["OwnerId"]]
        created = datetime.fromisoformat(lead["CreatedDate"].replace("+0000", "+00:00"))
        local = created.astimezone(ZoneInfo(owner["TimeZoneSidKey"]))
        total += 1
        in_hours += local.weekday() < 5 and 8 <= local.hour < 18
    assert in_hours / total > 0.7


def test_monday_spike_and_reproducibility(tmp_path):
    def created_days(path, seed, days=1):
        store = OrgStore(path)
        org = simulate.DemoOrg(store, seed=seed, start=datetime(2026, 3, 2, tzinfo=UTC))  # a Monday
        org.advance(org.clock + timedelta(days=days))
        leads = sorted((lead["CreatedDate"], lead["Name"]) for lead in store.scan("Lead"))
        store.close()
        return leads

    first = created_days(tmp_path / "a.sqlite3", 11)
    assert first and first == created_days(tmp_path / "b.sqlite3", 11)
    assert first != created_days(tmp_path / "c.sqlite3", 12)
    week = created_days(tmp_path / "week.sqlite3", 11, days=7)
    per_weekday = collections.Counter(datetime.fromisoformat(c[:10]).weekday() for c, _ in week)
    weekday_avg = sum(per_weekday[d] for d in range(1, 5)) / 4
    assert per_weekday[0] > 1.3 * weekday_avg
    assert per_weekday[5] + per_weekday[6] < weekday_avg


def test_restart_keeps_the_org_and_its_clock(tmp_path):
    store = OrgStore(tmp_path / "org.sqlite3")
    org = simulate.DemoOrg(store, seed=5, start=MONDAY_2PM)
    org.advance(MONDAY_2PM + timedelta(hours=3))
    users, leads, clock = store.count("User"), store.count("Lead"), org.clock
    again = simulate.DemoOrg(store, seed=5)
    assert again.clock == clock and store.count("User") == users and store.count("Lead") == leads
    again.advance(clock + timedelta(hours=3))
    assert store.count("Lead") > leads
    store.close()


def test_the_api_serves_the_demo_and_counts_change(salesforce_sandbox):
    org = simulate.DemoOrg(salesforce_sandbox.store, seed=2, start=MONDAY_2PM)
    org.advance(MONDAY_2PM + timedelta(hours=2))
    sf = salesforce_sandbox.hook().get_conn()
    before = sf.query("SELECT COUNT() FROM Lead")["totalSize"]
    assert before > 0
    org.advance(org.clock + timedelta(hours=2))
    assert sf.query("SELECT COUNT() FROM Lead")["totalSize"] > before
    res = sf.query(
        "SELECT Id, Status, Owner.Name, Owner.TimeZoneSidKey FROM Lead WHERE Status = 'SAL' LIMIT 5"
    )
    assert res["records"] and all(r["Owner"]["TimeZoneSidKey"] for r in res["records"])
    users = sf.query("SELECT Id, Name, Team__c, UserRole.Name FROM User WHERE Title = 'SDR' ORDER BY Name")
    assert len(users["records"]) == 12
    assert all(u["UserRole"]["Name"] == f"{u['Team__c']} SDR" for u in users["records"])


def _automated_owner_changes(store: OrgStore) -> list[tuple[str, str, str, str]]:
    automated = store.integration_user_id
    return sorted(
        (h["CreatedDate"], h["LeadId"], h["OldValue"], h["NewValue"])
        for h in store.scan("LeadHistory")
        if h["Field"] == "Owner" and h["CreatedById"] == automated
    )


def test_the_assignment_rule_moves_stale_untouched_leads_round_robin_as_the_integration_user(tmp_path):
    from sandbox.devstack import demo_org_automation_user_ids

    def sweep(path):
        store = OrgStore(path)
        org = simulate.DemoOrg(store, seed=4, start=MONDAY_2PM)
        org.advance(MONDAY_2PM + timedelta(hours=30))
        return store, org, _automated_owner_changes(store)

    store, org, moves = sweep(tmp_path / "a.sqlite3")
    assert moves, "no automated reassignment in 30 simulated hours"
    assert (
        store.integration_user_id in demo_org_automation_user_ids()
    )  # what the demo policy treats as automation
    reps = {r.id: r for r in org.reps}
    team_of = {r.id: r.team for r in org.reps} | {m: t for t, m in org.managers.items()}
    for at, lead_id, old, new in moves:
        lead_at = parse_at(at)
        assert lead_at.minute == 0 and lead_at.hour % 2 == 0  # on the sweep's cadence
        assert new in reps and not reps[new].out_of_office and new != old and reps[new].team == team_of[old]
        assert lead_at - parse_at(store.get("Lead", lead_id)["SAL_Date__c"]) >= simulate.STALE_AFTER
    assert len({lead_id for _, lead_id, _, _ in moves}) == len(moves)  # each lead moved once
    # Round robin: within a team, consecutive moves go to different reps.
    by_team = collections.defaultdict(list)
    for _, _, old, new in moves:
        by_team[team_of[old]].append(new)
    assert all(len(set(news[:2])) == len(news[:2]) for news in by_team.values())
    store.close()
    again, _, moves_again = sweep(tmp_path / "b.sqlite3")
    assert moves_again == moves  # deterministic per seed
    again.close()


def test_a_lead_the_monitor_escalated_to_the_manager_is_reassigned_by_the_rule(tmp_path):
    store = OrgStore(tmp_path / "org.sqlite3")
    org = simulate.DemoOrg(store, seed=4, start=MONDAY_2PM)
    org.advance(MONDAY_2PM + timedelta(hours=1))
    rep = next(r for r in org.reps if not r.out_of_office)
    lead = store.create(
        "Lead",
        {
            "FirstName": "Ada",
            "LastName": "Lovelace",
            "Company": "Engines",
            "Status": "SAL",
            "OwnerId": rep.id,
            "SAL_Date__c": org.clock - timedelta(hours=6),
        },
        now=org.clock,
        user_id=rep.id,
    )
    manager = org.managers[rep.team]
    store.update(
        "Lead", lead["Id"], {"OwnerId": manager}, now=org.clock, user_id=manager
    )  # the breach action
    org.advance(org.clock + simulate.REBALANCE_EVERY)
    [(_, _, old, new)] = [m for m in _automated_owner_changes(store) if m[1] == lead["Id"]]
    assert old == manager and new in {r.id for r in org.reps if r.team == rep.team and not r.out_of_office}
    store.close()


def parse_at(value: str) -> datetime:
    from sandbox.soql import parse_datetime

    return parse_datetime(value)


def _history(store, obj: str, parent: str) -> dict[str, list[dict]]:
    rows = collections.defaultdict(list)
    for h in store.scan(obj):
        rows[h[parent]].append(h)
    for hs in rows.values():
        hs.sort(key=lambda h: h["CreatedDate"])
    return rows


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("+0000", "+00:00"))


def test_sales_rejects_a_share_of_mqls_with_a_reason(demo):
    leads = {lead["Id"]: lead for lead in demo.scan("Lead")}
    decided = rejected = 0
    for lead_id, hs in _history(demo, "LeadHistory", "LeadId").items():
        first = next((h for h in hs if h["Field"] == "Status" and h["OldValue"] == "MQL"), None)
        if first is None:
            continue
        decided += 1
        if first["NewValue"] in ("Recycled", "Disqualified"):
            rejected += 1
            assert leads[lead_id].get("Rejection_Reason__c") in sf_schema.REJECTION_REASONS
            assert not leads[lead_id].get("SAL_Date__c")  # rejected at MQL: never accepted
    assert decided > 50 and 0.05 < rejected / decided < 0.35


def test_deals_get_their_proposal_kickoff_and_onboarding_mostly_on_time(tmp_path, monkeypatch):
    """Opportunities alone (no new leads): after the demo the proposal follows within 3 business
    days mostly; a won deal's CS kickoff is booked within 2 business days mostly, some late; the
    onboarding completes, mostly within 14 days; nothing is stamped after the org's clock."""
    monkeypatch.setattr(simulate, "BUSINESS_RATE", 0.0)
    monkeypatch.setattr(simulate, "OFF_HOURS_RATE", 0.0)
    store = OrgStore(tmp_path / "org.sqlite3")
    org = simulate.DemoOrg(store, seed=9, start=MONDAY_2PM)
    rep = org.reps[0].id
    for i in range(120):
        stage = "Demo Completed" if i % 2 else "Negotiation/Review"
        opp = store.create(
            "Opportunity",
            {
                "Name": f"Deal {i}",
                "AccountId": org.accounts[i % 30],
                "OwnerId": rep,
                "StageName": stage,
                "CloseDate": MONDAY_2PM.date(),
            },
            now=MONDAY_2PM,
            user_id=rep,
        )
        due = org._stage_due(rep, stage, MONDAY_2PM) if i % 2 else MONDAY_2PM + timedelta(minutes=i)
        org._schedule(due, "stage", opp["Id"])
    org.advance(MONDAY_2PM + timedelta(days=60))
    stamps = [_at(h["CreatedDate"]) for h in store.scan("OpportunityFieldHistory")]
    assert stamps and max(stamps) <= org.clock

    history = _history(store, "OpportunityFieldHistory", "OpportunityId")
    proposals = on_time = 0
    for hs in history.values():
        demo_at = next((_at(h["CreatedDate"]) for h in hs if h["NewValue"] == "Demo Completed"), MONDAY_2PM)
        moved = next(
            (
                _at(h["CreatedDate"])
                for h in hs
                if h["Field"] == "StageName" and h["OldValue"] == "Demo Completed"
            ),
            None,
        )
        if moved is not None:
            proposals += 1
            on_time += moved <= simulate._add_business_hours(demo_at, 24, "America/New_York", (9, 17))
    assert proposals > 40 and 0.75 < on_time / proposals < 1

    won = [o for o in store.scan("Opportunity") if o["StageName"] == "Closed Won"]
    assert len(won) > 20 and all(o.get("CS_Kickoff_Date__c") and o.get("Onboarding_Complete__c") for o in won)
    kickoff_on_time = onboarded_on_time = 0
    for o in won:
        hs = history[o["Id"]]
        won_at = next(_at(h["CreatedDate"]) for h in hs if h["NewValue"] == "Closed Won")
        kickoff = next(h for h in hs if h["Field"] == "CS_Kickoff_Date__c")
        done = next(h for h in hs if h["Field"] == "Onboarding_Complete__c")
        assert done["NewValue"] is True and kickoff["CreatedById"] != o["OwnerId"]  # Customer Success acts
        kickoff_on_time += _at(kickoff["CreatedDate"]) <= simulate._add_business_hours(
            won_at, 16, "America/New_York", (9, 17)
        )
        onboarded_on_time += _at(done["CreatedDate"]) - _at(kickoff["CreatedDate"]) <= timedelta(days=14)
    assert 0.7 < kickoff_on_time / len(won) < 1 and 0.6 < onboarded_on_time / len(won) < 1
    store.close()


def test_business_hours_skip_nights_and_weekends():
    friday_4pm_ny = datetime(2026, 3, 13, 20, 0, tzinfo=UTC)
    assert simulate._add_business_hours(friday_4pm_ny, 2, "America/New_York", (9, 17)) == datetime(
        2026, 3, 16, 14, 0, tzinfo=UTC
    )  # Monday 10:00 New York (EDT from 8 March)
    saturday = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
    assert simulate._add_business_hours(saturday, 8, "America/New_York", (9, 17)) == datetime(
        2026, 3, 16, 21, 0, tzinfo=UTC
    )
