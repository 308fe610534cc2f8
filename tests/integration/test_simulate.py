"""The demo org: shape, movement, reproducibility, and that the API serves what it writes."""

from __future__ import annotations

import collections
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
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
    # Texts: managers and reps have fictional mobile numbers (555-01xx), each their own; the
    # out-of-office rep has none (the e-mail fallback and sla_health's list show in the demo).
    from leadsla.decisions.phones import normalise_phone

    texted = [u for u in users if u.get("Title") in ("SDR Manager", "SDR")]
    numbers = [normalise_phone(u.get("MobilePhone")) for u in texted]
    assert sum(n is None for n in numbers) == 1 and all(
        n is None or n.startswith("+120255501") for n in numbers
    )
    assert len({n for n in numbers if n}) == len(texted) - 1


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
    onboarding completes, mostly within 14 days; nothing is stamped after the org's clock. (The AEs'
    own pipeline and book: tests/integration/test_simulate_handoffs.py.)"""
    monkeypatch.setattr(simulate, "BUSINESS_RATE", 0.0)
    monkeypatch.setattr(simulate, "OFF_HOURS_RATE", 0.0)
    monkeypatch.setattr(simulate, "AE_PIPELINE_RATE", 0.0)
    monkeypatch.setattr(simulate, "AE_ONBOARDING_BOOK", 0)
    monkeypatch.setattr(simulate, "AE_OPEN_BOOK", 0)
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


# ----------------------------------------------------------------- the lifecycle's other paths

FIVE_DAYS = timedelta(days=5)


@pytest.fixture(scope="module")
def lifecycle_demo(tmp_path_factory):
    """A working week of the demo org (seed 6, Monday 00:00 UTC to Saturday), synced into a store
    through the Salesforce stand-in (crm_sync's `run_group`) and its clocks evaluated at the end
    with `make run`'s demo policy (the integration user listed as an automation user)."""
    from tests.sandbox_fixtures import synced_evaluation

    root = tmp_path_factory.mktemp("lifecycle")
    start = datetime(2026, 3, 9, tzinfo=UTC)
    store = OrgStore(root / "salesforce" / "org.sqlite3")
    org = simulate.DemoOrg(store, seed=6, start=start)
    org.advance(start + FIVE_DAYS)
    frames, _, evaluation = synced_evaluation(root, org)
    yield Lifecycle(store, org, frames, evaluation)
    store.close()


class Lifecycle:
    """The lifecycle demo: the org (store, simulator), the synced mirror's frames, the clocks."""

    def __init__(self, store, org, frames, evaluation) -> None:
        self.store, self.org, self.frames = store, org, frames
        self.clocks = evaluation.clocks.astype({"sla_id": str, "record_id": str, "state": str})
        self.checkpoints = evaluation.checkpoints.astype({"sla_id": str, "checkpoint": str})
        self.statuses = _history(store, "LeadHistory", "LeadId")
        for lead_id, rows in list(self.statuses.items()):
            self.statuses[lead_id] = [h for h in rows if h["Field"] == "Status"]
        automated = store.integration_user_id
        self.touches: dict[str, list[datetime]] = collections.defaultdict(list)  # what a rep logged
        self.automated: list[dict] = []
        for obj in ("Task", "Event"):
            for a in store.scan(obj):
                if a.get("CreatedById") == automated:
                    self.automated.append(a)
                else:
                    self.touches[a["WhoId"]].append(_at(a.get("CompletedDateTime") or a["CreatedDate"]))

    def moves(self, old: str, new: str) -> list[tuple[str, datetime]]:
        """(lead id, when) of every Status change old -> new."""
        return [
            (lead_id, _at(h["CreatedDate"]))
            for lead_id, rows in self.statuses.items()
            for h in rows
            if h["OldValue"] == old and h["NewValue"] == new
        ]

    def sales_touch(self, lead_id: str | None = None):
        clocks = self.clocks[self.clocks["sla_id"] == "sales_touch"]
        return clocks if lead_id is None else clocks[clocks["record_id"] == lead_id]


def _unlogged_exits(demo: Lifecycle) -> list[tuple[str, str]]:
    """(lead id, new status) of every SAL exit to a decision with no task or event logged by a
    person since the lead was accepted."""
    out = []
    for lead_id, rows in demo.statuses.items():
        accepted = None
        for h in rows:
            at = _at(h["CreatedDate"])
            if h["NewValue"] == "SAL" and h["OldValue"] == "MQL":
                accepted = at
            elif h["OldValue"] == "SAL" and h["NewValue"] in ("SQL", "Recycled", "Disqualified"):
                if accepted and not any(accepted <= t <= at for t in demo.touches[lead_id]):
                    out.append((lead_id, h["NewValue"]))
    return out


def test_each_lifecycle_path_happens_in_a_working_week(lifecycle_demo):
    demo = lifecycle_demo
    accepted = len(demo.moves("MQL", "SAL"))
    assert accepted > 300

    unlogged = collections.Counter(status for _, status in _unlogged_exits(demo))
    assert unlogged["SQL"] and unlogged["Recycled"] + unlogged["Disqualified"]
    assert 0.03 < sum(unlogged.values()) / accepted < 0.15  # a share, not the rule

    nurtured, resumed = demo.moves("SAL", simulate.NURTURE), demo.moves(simulate.NURTURE, "SAL")
    assert nurtured and resumed and {lead for lead, _ in resumed} <= {lead for lead, _ in nurtured}
    assert 0.01 < len(nurtured) / accepted < 0.1

    recycled, returned = (
        demo.moves("SAL", "Recycled") + demo.moves("MQL", "Recycled"),
        demo.moves("Recycled", "MQL"),
    )
    assert returned and len(returned) < 0.35 * len(recycled)
    back = {lead for lead, _ in returned}
    accepted_again = [
        lead for lead in back if len([h for h in demo.statuses[lead] if h["NewValue"] == "SAL"]) == 2
    ]
    assert accepted_again  # Recycled -> MQL -> SAL: accepted a second time
    every_recycling = recycled + demo.moves("SQL", "Recycled")
    for lead in back:  # days after it was recycled, each lead once
        again_at = next(at for who, at in returned if who == lead)
        rejected_at = max(at for who, at in every_recycling if who == lead and at < again_at)
        assert again_at - rejected_at >= timedelta(days=simulate.RETURN_DAYS[0])
    assert len(back) == len(returned)

    # A few MQLs wait business hours for the review (the MQL acceptance SLA's warnings and
    # breaches); the rest are reviewed within minutes of the team's next opening.
    zone = {u["Id"]: u["TimeZoneSidKey"] for u in demo.store.scan("User")}
    slow = reviewed = 0
    for lead in demo.store.scan("Lead"):
        rows = demo.statuses.get(lead["Id"])
        if not rows:
            continue
        reviewed += 1
        late = simulate._add_business_hours(_at(lead["CreatedDate"]), 3, zone[lead["OwnerId"]], (9, 17))
        slow += _at(rows[0]["CreatedDate"]) > late
    assert reviewed > 300 and 0.01 < slow / reviewed < 0.12


def test_rejections_carry_only_signed_off_reasons(lifecycle_demo):
    demo = lifecycle_demo
    signed_off = set(sf_schema.REJECTION_REASONS)
    assert {r for r, _ in simulate.MQL_REJECTION_REASONS} <= signed_off
    assert set(simulate.RECYCLE_REASONS) <= signed_off
    leads = list(demo.store.scan("Lead"))
    for lead in leads:
        if lead["Status"] in ("Recycled", "Disqualified"):
            assert lead.get("Rejection_Reason__c") in signed_off, lead
        elif lead["Status"] in ("MQL", "SAL"):
            assert not lead.get("Rejection_Reason__c"), lead  # a re-engaged lead's old reason is cleared
    reasons = {h["NewValue"] for h in demo.store.scan("LeadHistory") if h["Field"] == "Rejection_Reason__c"}
    assert reasons - {None} <= signed_off and len(reasons - {None}) >= 5


def test_sequence_emails_are_the_automation_users_never_a_touch(lifecycle_demo):
    from leadsla.policy import AUTOMATED_SUBTYPES
    from sandbox.devstack import demo_org_automation_user_ids

    demo = lifecycle_demo
    automation = demo.store.integration_user_id
    assert automation in demo_org_automation_user_ids()
    assert {s for s, _ in simulate.SEQUENCE_SUBTYPES} <= set(AUTOMATED_SUBTYPES)
    sequence = [a for a in demo.automated if a.get("TaskSubtype") in AUTOMATED_SUBTYPES]
    assert sequence and len(sequence) == len(demo.automated)  # the integration user logs nothing else
    assert {a["TaskSubtype"] for a in sequence} == set(AUTOMATED_SUBTYPES)
    reps = {r.id for r in demo.org.reps}
    for a in sequence:
        assert a["OwnerId"] in reps and a["Status"] == "Completed" and a["CompletedDateTime"]
    people = [t for t in demo.store.scan("Task") if t["CreatedById"] != automation]
    assert people and not {t["TaskSubtype"] for t in people} & set(AUTOMATED_SUBTYPES)
    assert all(t["Status"] == "Completed" and t["CompletedDateTime"] for t in people)
    # The store knows who created each one, so the engine can leave them out.
    activities = demo.frames["activities"]
    synced = activities[activities["subtype"].isin(list(AUTOMATED_SUBTYPES))]
    assert len(synced) == len(sequence) and set(synced["created_by"]) == {automation}


def test_the_demo_clocks_show_each_path(lifecycle_demo):
    demo = lifecycle_demo
    clocks = demo.sales_touch()
    states = collections.Counter(clocks["state"])
    # Mostly the plain flow: met by the rep's touch.
    assert states["met"] > 0.6 * len(clocks)

    # Decided without a logged task: the clock ends handed on, not breached.
    unlogged = {lead for lead, _ in _unlogged_exits(demo)}
    handed_on = clocks[clocks["state"].isin(["handed_on", "handed_on_late"])]
    assert len(handed_on) and set(handed_on["record_id"]) <= unlogged

    # Recycled and back: two clocks, one per acceptance, for sales_touch and mql_acceptance alike.
    back = {lead for lead, _ in demo.moves("Recycled", "MQL")}
    twice = [lead for lead in back if len(demo.sales_touch(lead)) == 2]
    assert twice
    mql = demo.clocks[demo.clocks["sla_id"] == "mql_acceptance"]
    assert all(len(mql[mql["record_id"] == lead]) == 2 for lead in back)

    # Nurture pauses the clock: paused while there, resumed (the same clock) when back in SAL.
    in_nurture = {lead["Id"] for lead in demo.store.scan("Lead") if lead["Status"] == simulate.NURTURE}
    paused = clocks[clocks["state"] == "paused"]
    assert len(paused) and set(paused["record_id"]) <= in_nurture
    resumed = {lead for lead, _ in demo.moves(simulate.NURTURE, "SAL")} - back
    assert resumed and all(len(demo.sales_touch(lead)) == 1 for lead in resumed)

    # No clock was stopped by an automated e-mail; some ran on past one to the rep's own touch.
    ran_past = 0
    for a in demo.automated:
        sent = _at(a["CompletedDateTime"])
        for clock in demo.sales_touch(a["WhoId"]).itertuples():
            if clock.clock_start <= sent and (pd.isna(clock.stopped_at) or clock.stopped_at > sent):
                ran_past += 1
            assert pd.isna(clock.stopped_at) or clock.stopped_at != sent
    assert ran_past > 10

    # Every Lead SLA still shows warnings and breaches, not only met clocks.
    cp = demo.checkpoints
    for sla in ("sales_touch", "mql_acceptance"):
        reached = collections.Counter(cp[cp["sla_id"] == sla]["checkpoint"])
        assert reached["warning"] and reached["breach"], (sla, reached)


def test_the_lifecycle_paths_are_reproducible_and_survive_a_restart(tmp_path):
    def two_days(path):
        store = OrgStore(path)
        org = simulate.DemoOrg(store, seed=8, start=MONDAY_2PM)
        org.advance(MONDAY_2PM + timedelta(days=2))
        history = sorted(
            (h["CreatedDate"], h["LeadId"], h["Field"], str(h["OldValue"]), str(h["NewValue"]))
            for h in store.scan("LeadHistory")
        )
        tasks = sorted(
            (t["CreatedDate"], t["WhoId"], t["TaskSubtype"], t["CreatedById"]) for t in store.scan("Task")
        )
        return store, org, history, tasks

    store, org, history, tasks = two_days(tmp_path / "a.sqlite3")
    other, _, history_again, tasks_again = two_days(tmp_path / "b.sqlite3")
    other.close()
    assert history == history_again and tasks == tasks_again
    # Pending events live in memory: a restart re-plans the re-engagements and the nurture returns.
    assert org.returning
    again = simulate.DemoOrg(store, seed=8)
    assert again.returning == org.returning and again.returned == org.returned
    assert {e.record_id for e in again.events if e.kind == "return"} == set(org.returning)
    nurtured = {lead["Id"] for lead in store.scan("Lead") if lead["Status"] == simulate.NURTURE}
    assert nurtured and nurtured <= {e.record_id for e in again.events if e.kind == "resume"}
    store.close()
