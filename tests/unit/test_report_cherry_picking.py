"""The monthly review's cherry-picking audit on hand-built stores: each check fires on its case,
names the leads and the people, and stays quiet on the clean case beside it."""

from __future__ import annotations

import datetime as dt

import pytest

from leadsla.reports import builders, cherry_picking
from leadsla.reports.config import load_report_config
from leadsla.reports.period import parse
from leadsla.routing import Routing
from tests.reports_data import Builder, t, through_store  # noqa: F401 - fixture

NOV = parse("month", "2026-11", "UTC")
H = dt.timedelta(hours=1)
QUEUE = "00G000000000001AAA"
AUTO = "005AUTO0000000001"
ROUTING = Routing.model_validate(
    {
        "score": {"field": "Lead_Score__c", "tiers": [{"id": "hot", "min": 80, "roles": ["Senior SDR"]}]},
        "reps": {"capacity": {"R1": 2}},  # Rita takes two leads to everyone else's one
    }
)


@pytest.fixture(scope="module")
def cfg():
    return load_report_config()


def _org() -> Builder:
    """Team sdr_east: Rita (weight 2), Rob (SDR), Sue and Sam (Senior SDRs: the hot tier), managed
    by Max; an automation user; the Lead Intake queue."""
    return (
        Builder()
        .user("M1", "Max", "sdr_east", role="SDR Manager")
        .user("R1", "Rita", "sdr_east", manager_id="M1")
        .user("R2", "Rob", "sdr_east", manager_id="M1")
        .user("R3", "Sue", "sdr_east", role="Senior SDR", manager_id="M1")
        .user("R4", "Sam", "sdr_east", role="Senior SDR", manager_id="M1")
        .user(AUTO, "Integration", "automation", role="System")
        .queue(QUEUE, "Lead Intake")
    )


def _audit(through_store, b: Builder, cfg):  # noqa: F811 - fixture
    data = through_store(b, routing=ROUTING, automation_user_ids=[AUTO])
    return cherry_picking.audit(data, NOV, cfg)


def _flag(result, check):
    (flag,) = [f for f in result.flags if f.check == check]
    return flag


def _found(result, check):
    return [f for f in result.findings if f.check == check]


def test_self_assignment_from_a_queue_names_the_lead_and_the_rep(cfg, through_store):  # noqa: F811
    b = _org()
    for lid in ("L1", "L2", "L3", "L4", "L5"):
        b.lead(lid, name=f"Lead {lid}", stages={"MQL": t("2026-11-02 08:00")})
    # L2: Max hands it from the queue to Rob: a manager's assignment, not self-assignment.
    b.owner_change("L2", t("2026-11-02 09:30"), QUEUE, "R2", "M1", names=("Lead Intake", "Rob"))
    # L4: Rob takes it from Rita, not from a queue (the reassignment check's business).
    b.owner_change("L4", t("2026-11-02 10:00"), "R1", "R2", "R2")
    # L5: Sue took it from the queue in October: another month.
    b.owner_change("L5", t("2026-10-30 10:00"), QUEUE, "R3", "R3")
    clean = _audit(through_store, b, cfg)
    assert not _flag(clean, cherry_picking.SELF_ASSIGNED).raised
    assert _flag(clean, cherry_picking.SELF_ASSIGNED).value == "none"
    assert _found(clean, cherry_picking.SELF_ASSIGNED) == []

    # L1: Rita takes it from the queue herself (Salesforce's id row and name row: one finding).
    b.owner_change("L1", t("2026-11-02 09:00"), QUEUE, "R1", "R1", names=("Lead Intake", "Rita"))
    # L3: a history holding only the name row (queue and rep by name): Rob took it himself.
    b.history.append(
        {
            "history_id": "HNAMES01",
            "object_type": "Lead",
            "record_id": "L3",
            "field": "Owner",
            "old_value": "lead intake",
            "new_value": "Rob",
            "changed_by": "R2",
            "changed_at": t("2026-11-03 11:00"),
        }
    )
    raised = _audit(through_store, b, cfg)
    flag = _flag(raised, cherry_picking.SELF_ASSIGNED)
    assert flag.raised and flag.record_ids == ("L1", "L3") and flag.value == "2 leads: Rita 1, Rob 1"
    found = _found(raised, cherry_picking.SELF_ASSIGNED)
    assert [(f.record_ids, f.leads, f.people, f.at) for f in found] == [
        (("L1",), "Lead L1 (L1)", "Rita", t("2026-11-02 09:00")),
        (("L3",), "Lead L3 (L3)", "Rob", t("2026-11-03 11:00")),
    ]
    assert found[0].detail == "Rita took it from queue Lead Intake for themselves"


def _routed(b: Builder, lid: str, at: dt.datetime, owner: str, rule: str = "territory:americas") -> None:
    """A lead routed to `owner` at `at`: the routing audit entry and the routing write's history row
    (from the intake queue, by the integration user)."""
    b.lead(lid, name=f"Lead {lid}", stages={"MQL": at - H})
    b.event(
        "routing",
        at,
        lid,
        sla_id=None,
        actor="routing",
        detail={"owner": owner, "from_owner": QUEUE, "team": "sdr_east", "rule": rule},
    )
    b.owner_change(lid, at + dt.timedelta(seconds=5), QUEUE, owner, AUTO)


def test_reassignment_shortly_after_routing_names_both_reps_and_who_moved_it(cfg, through_store):  # noqa: F811
    b = _org()
    # L11: Max moves Rita's lead to Rob two days after routing: outside the 24 h window.
    _routed(b, "L11", t("2026-11-04 10:00"), "R1")
    b.owner_change("L11", t("2026-11-06 10:00"), "R1", "R2", "M1")
    # L12: the automation (the breach reassignment) moves it within the hour: nobody's choice.
    _routed(b, "L12", t("2026-11-05 10:00"), "R1")
    b.owner_change("L12", t("2026-11-05 11:00"), "R1", "M1", AUTO)
    # L13: Rob takes a lead that was never routed (the audit has no entry for it).
    b.lead("L13", name="Lead L13", stages={"MQL": t("2026-11-05 09:00")})
    b.owner_change("L13", t("2026-11-05 12:00"), "R1", "R2", "R2")
    # L14: routed to Sue, and Max moves it from Rita (who had it from Sue) to Rob: not the routed rep.
    _routed(b, "L14", t("2026-11-06 10:00"), "R3")
    b.owner_change("L14", t("2026-11-06 11:00"), "R3", "R1", AUTO)
    b.owner_change("L14", t("2026-11-06 12:00"), "R1", "R2", "M1")
    clean = _audit(through_store, b, cfg)
    assert (
        not _flag(clean, cherry_picking.REASSIGNED).raised and _found(clean, cherry_picking.REASSIGNED) == []
    )
    assert not _flag(clean, cherry_picking.SELF_ASSIGNED).raised  # the routing writes come from the queue

    # L10: routed to Rita at 10:00; Rob takes it for himself at 14:00.
    _routed(b, "L10", t("2026-11-03 10:00"), "R1")
    b.owner_change("L10", t("2026-11-03 14:00"), "R1", "R2", "R2", names=("Rita", "Rob"))
    raised = _audit(through_store, b, cfg)
    flag = _flag(raised, cherry_picking.REASSIGNED)
    assert flag.raised and flag.record_ids == ("L10",)
    assert flag.threshold == "any routed lead moved to another rep by a person within 24 h"
    (found,) = _found(raised, cherry_picking.REASSIGNED)
    assert (found.leads, found.people, found.at) == (
        "Lead L10 (L10)",
        "Rita -> Rob, by Rob",
        t("2026-11-03 14:00"),
    )
    assert found.detail == "routed to Rita (territory:americas), moved to Rob by themselves 4.0 h later"

    # A 72-hour window also catches Max moving L11 after 48 hours.
    wide = cfg.model_copy(
        update={"cherry_picking": cfg.cherry_picking.model_copy(update={"reassignment_hours": 72})}
    )
    found = _found(_audit(through_store, b, wide), cherry_picking.REASSIGNED)
    assert [(f.record_ids, f.people) for f in found] == [
        (("L10",), "Rita -> Rob, by Rob"),
        (("L11",), "Rita -> Rob, by Max"),
    ]
    assert found[1].detail == "routed to Rita (territory:americas), moved to Rob by Max 48.0 h later"


def _hot(b: Builder, n: int, owner: str, tag: str, *, score: int = 90, **routed) -> None:
    for i in range(n):
        lid = f"{tag}{i:02d}"
        b.lead(
            lid,
            owner=owner,
            name=f"Hot {lid}",
            fields={"Lead_Score__c": score},
            stages={"MQL": t("2026-11-10 08:00") + i * H},
        )
        if routed:
            b.event(
                "routing",
                t("2026-11-10 08:00") + i * H,
                lid,
                sla_id=None,
                actor="routing",
                detail={"owner": owner, **routed},
            )


def test_a_reps_share_of_hot_leads_far_from_the_tiers_weighted_share(cfg, through_store):  # noqa: F811
    # Hot leads (score >= 80) are dealt to the Senior SDRs, Sue and Sam, one to one.
    b = _org()
    _hot(b, 5, "R3", "A")
    _hot(b, 4, "R4", "B")
    _hot(b, 1, "R1", "C")  # one hot lead reached Rita: 10% against her 0% in the tier (within 15 points)
    _hot(b, 3, "R1", "D", rule="suppression:account_owner")  # her accounts' leads: nobody's turn
    _hot(b, 4, "R2", "E", score=50)  # not hot
    clean = _audit(through_store, b, cfg)
    flag = _flag(clean, cherry_picking.HOT_SHARE)
    assert not flag.raised and flag.value == "every rep within the threshold (1 team)"
    assert _found(clean, cherry_picking.HOT_SHARE) == []

    _hot(b, 6, "R3", "F")  # Sue now holds 11 of 16 (69%) against 50%; Sam 4 (25%)
    raised = _audit(through_store, b, cfg)
    flag = _flag(raised, cherry_picking.HOT_SHARE)
    assert flag.raised and flag.value == "sdr_east hot: Sue 69% vs 50%; sdr_east hot: Sam 25% vs 50%"
    assert flag.threshold == "|share - weighted share| > 15% (teams with >= 10 leads)"
    sue, sam = _found(raised, cherry_picking.HOT_SHARE)  # by user id
    assert sue.people == "Sue" and sue.record_ids == tuple(f"A{i:02d}" for i in range(5)) + tuple(
        f"F{i:02d}" for i in range(6)
    )
    assert sue.detail == "Sue holds 11 of 16 sdr_east hot leads (69%) against a weighted share of 50%"
    assert "Hot A00 (A00)" in sue.leads
    assert sam.people == "Sam" and sam.record_ids == tuple(f"B{i:02d}" for i in range(4))


def test_too_few_hot_leads_say_nothing(cfg, through_store):  # noqa: F811
    b = _org()
    _hot(b, 9, "R3", "A")  # all nine to Sue: below the 10 a share needs
    flag = _flag(_audit(through_store, b, cfg), cherry_picking.HOT_SHARE)
    assert not flag.raised and flag.value == "no team had 10 hot leads or more"
    _hot(b, 1, "R3", "B")
    assert _flag(_audit(through_store, b, cfg), cherry_picking.HOT_SHARE).raised


def _accepted(b: Builder, counts: dict[str, int]) -> None:
    n = 0
    for owner, k in counts.items():
        for _ in range(k):
            n += 1
            mql = t("2026-11-12 08:00") + n * H
            b.lead(f"S{n:02d}", owner=owner, name=f"Accepted {n}", stages={"MQL": mql, "SAL": mql + H})


def test_a_reps_share_of_accepted_leads_far_from_their_weighted_share(cfg, through_store):  # noqa: F811
    # The rotation: Rita weight 2, Rob, Sue and Sam 1 each (Max manages them: out of it) -> 40/20/20/20%.
    clean = _org()
    _accepted(clean, {"R1": 10, "R2": 4, "R3": 3, "R4": 3})  # 50/20/15/15%: within 15 points of the weights
    result = _audit(through_store, clean, cfg)
    assert not _flag(result, cherry_picking.ACCEPTED_SHARE).raised
    assert _found(result, cherry_picking.ACCEPTED_SHARE) == []

    skewed = _org()
    _accepted(skewed, {"R1": 4, "R2": 10, "R3": 3, "R4": 3})  # Rob 50% against 20%, Rita 20% against 40%
    result = _audit(through_store, skewed, cfg)
    flag = _flag(result, cherry_picking.ACCEPTED_SHARE)
    assert (
        flag.raised and flag.value == "sdr_east accepted: Rita 20% vs 40%; sdr_east accepted: Rob 50% vs 20%"
    )
    rita, rob = _found(result, cherry_picking.ACCEPTED_SHARE)
    assert rob.detail == "Rob holds 10 of 20 sdr_east accepted leads (50%) against a weighted share of 20%"
    assert len(rob.record_ids) == 10 and rita.record_ids == ("S01", "S02", "S03", "S04")


def test_the_monthly_review_shows_the_audit_and_attaches_its_findings(cfg, through_store):  # noqa: F811
    b = _org()
    b.lead("L1", name="<b>Ann</b> & Co", stages={"MQL": t("2026-11-02 08:00")})
    b.owner_change("L1", t("2026-11-02 09:00"), QUEUE, "R1", "R1")
    report = builders.monthly(through_store(b, routing=ROUTING, automation_user_ids=[AUTO]), NOV, cfg)
    html = report.html()
    assert "Cherry-picking audit" in html and 'id="cherry-picking-findings"' in html
    assert "&lt;b&gt;Ann&lt;/b&gt; &amp; Co (L1)" in html and "<b>Ann</b>" not in html  # lead text escaped
    assert cherry_picking.ADVICE[cherry_picking.SELF_ASSIGNED].split(";")[0] in html.replace("&#39;", "'")
    rows = report.csvs["cherry_picking.csv"].splitlines()
    assert rows[0] == "check,at,record_ids,leads,people,detail" and len(rows) == 2 and ",L1," in rows[1]
    flags = report.csvs["red_flags.csv"]
    assert all(check in flags for check in cherry_picking.ADVICE)


def test_without_a_routing_section_reps_weigh_the_same_and_hot_leads_are_not_measured(cfg, through_store):  # noqa: F811
    b = _org()
    _accepted(
        b, {"R1": 10, "R2": 4, "R3": 3, "R4": 3}
    )  # fine against Rita's weight 2; 50% against 25% without
    result = cherry_picking.audit(through_store(b), NOV, cfg)
    assert _flag(result, cherry_picking.HOT_SHARE).value == "no score tiers in the policy's routing section"
    flag = _flag(result, cherry_picking.ACCEPTED_SHARE)
    assert flag.raised and flag.value == "sdr_east accepted: Rita 50% vs 25%"


def test_a_rep_away_is_not_short_of_their_share(cfg, through_store):  # noqa: F811
    # Rob takes none of the team's 20 accepted leads; the others hold them 10/5/5 (their weights 2/1/1).
    b = _org()
    _accepted(b, {"R1": 10, "R3": 5, "R4": 5})
    (short,) = _found(_audit(through_store, b, cfg), cherry_picking.ACCEPTED_SHARE)
    assert short.people == "Rob" and short.detail.startswith("Rob holds 0 of 20 sdr_east accepted leads (0%)")
    assert len(short.record_ids) == 20  # named with the leads that went to the others
    # Away all November by the policy's absences: his weight counts none of the month's days.
    away = Routing.model_validate(
        {
            **ROUTING.model_dump(by_alias=True),
            "reps": {
                "capacity": {"R1": 2},
                "absences": [{"user": "r2@example.com", "from": "2026-10-20", "to": "2026-11-30"}],
            },
        }
    )
    data = through_store(b, routing=away, automation_user_ids=[AUTO])
    assert not _flag(cherry_picking.audit(data, NOV, cfg), cherry_picking.ACCEPTED_SHARE).raised
    # Away half the month: weights 2, 0.5, 1, 1 -> his fair share 11%, and 0% is within 15 points.
    half = Routing.model_validate(
        {
            **ROUTING.model_dump(by_alias=True),
            "reps": {
                "capacity": {"R1": 2},
                "absences": [{"user": "R2", "from": "2026-11-16", "to": "2026-11-30"}],
            },
        }
    )
    data = through_store(b, routing=half, automation_user_ids=[AUTO])
    assert not _flag(cherry_picking.audit(data, NOV, cfg), cherry_picking.ACCEPTED_SHARE).raised
    # Out of office in the CRM and holding none of the leads: away, left out of the rotation.
    b.users[2]["out_of_office"] = True
    assert b.users[2]["user_id"] == "R2"
    assert not _flag(_audit(through_store, b, cfg), cherry_picking.ACCEPTED_SHARE).raised
