"""Recycling decisions without a store: attempts (the SLA's touch rule since the lead entered SAL),
N attempts over D business days on the owner's calendar, what holds a lead back (a reply, a
meeting) or starts the count afresh (a status change), what never counts (sequence and mass
e-mails, automation users, other reps), the recommendation, the auto decision and the re-entry."""

from __future__ import annotations

import copy
import datetime as dt

import pandas as pd
import pytest
import yaml

from leadsla.decisions.recipients import Directory
from leadsla.decisions.recycling import business_days_after, decide
from leadsla.notify.payloads import parse_payload
from leadsla.notify.render import render_email, render_slack
from leadsla.policy import DEFAULT_POLICY_PATH, load_policy, policy_from_dict

NY = "America/New_York"
URL = "https://acme.my.salesforce.com"
RAW = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
POLICY = load_policy()
BOT = "005000000000000AAA"  # an automation user
AUTO = policy_from_dict({**copy.deepcopy(RAW), "automation_user_ids": [BOT]}, "p.yaml")
AUTO_MODE = policy_from_dict(
    {
        **copy.deepcopy(RAW),
        "automation_user_ids": [BOT],
        "recycle": {**RAW["recycle"], "mode": "auto"},
    },
    "auto.yaml",
)
USERS = pd.DataFrame(
    [
        ("U1", "Ann Able", "ann@example.com", "M1", "SDR Americas", NY),
        ("U2", "Ben Other", "ben@example.com", "M1", "SDR Americas", NY),
        ("U3", "Syd Ney", "syd@example.com", "M2", "SDR APAC", "Australia/Sydney"),
        ("M1", "Mia Manager", "mia@example.com", None, "SDR Americas", NY),
        (BOT, "Integration", "bot@example.com", None, None, "UTC"),
    ],
    columns=["user_id", "name", "email", "manager_id", "team", "timezone"],
).assign(is_active=True)
HISTORY_COLUMNS = ["object_type", "record_id", "field", "old_value", "new_value", "changed_at", "changed_by"]
ACTIVITY_COLUMNS = [
    "activity_id",
    "kind",
    "who_id",
    "what_id",
    "owner_id",
    "type",
    "subtype",
    "created_at",
    "created_by",
    "status",
    "completed_at",
    "is_deleted",
]


def at(text: str, tz: str = NY) -> dt.datetime:
    return pd.Timestamp(text, tz=tz).tz_convert("UTC").to_pydatetime()


class Org:
    """Leads, their Status history and activities, in the store's frame shapes."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.history: list[dict] = []
        self.activities: list[dict] = []

    def lead(self, rid: str, sal: str, owner: str = "U1", status: str = "SAL", **fields) -> str:
        self.records.append(
            {
                "object_type": "Lead",
                "record_id": rid,
                "name": f"Lead {rid}",
                "status": status,
                "owner_id": owner,
                "created_at": at("2026-12-01 09:00"),
                "fields": fields,
            }
        )
        self.change(rid, sal, "Status", "MQL", "SAL")
        return rid

    def change(self, rid: str, when: str, field: str, old, new, tz: str = NY) -> None:
        self.history.append(
            {
                "object_type": "Lead",
                "record_id": rid,
                "field": field,
                "old_value": old,
                "new_value": new,
                "changed_at": at(when, tz),
                "changed_by": "U1",
            }
        )

    def touch(
        self,
        rid: str,
        when: str,
        kind_type: str = "Call",
        owner: str = "U1",
        by: str | None = None,
        subtype: str | None = None,
        kind: str = "Task",
        tz: str = NY,
    ) -> None:
        self.activities.append(
            {
                "activity_id": f"A{len(self.activities)}",
                "kind": kind,
                "who_id": rid,
                "what_id": None,
                "owner_id": owner,
                "type": kind_type,
                "subtype": subtype or (kind_type if kind == "Task" else "Event"),
                "created_at": at(when, tz),
                "created_by": by or owner,
                "status": "Completed" if kind == "Task" else None,
                "completed_at": at(when, tz) if kind == "Task" else None,
                "is_deleted": False,
            }
        )

    def three_attempts(self, rid: str, owner: str = "U1") -> None:
        """Mon 7 Dec SAL at 09:30; calls and an e-mail Mon, Tue, Thu (New York)."""
        self.touch(rid, "2026-12-07 10:00", owner=owner)
        self.touch(rid, "2026-12-08 11:00", "Email", owner=owner)
        self.touch(rid, "2026-12-10 14:00", owner=owner)

    def decide(self, now: dt.datetime, policy=AUTO):
        frames = {
            "records": pd.DataFrame(self.records),
            "field_history": pd.DataFrame(self.history, columns=HISTORY_COLUMNS),
            "activities": pd.DataFrame(self.activities, columns=ACTIVITY_COLUMNS),
        }
        for name, col in (("field_history", "changed_at"), ("activities", "created_at")):
            frames[name][col] = pd.to_datetime(frames[name][col], utc=True)
        frames["activities"]["completed_at"] = pd.to_datetime(frames["activities"]["completed_at"], utc=True)
        return decide(
            **frames,
            users=USERS,
            policy=policy,
            now=now,
            directory=Directory(policy, USERS),
            instance_url=URL,
        )


def test_three_attempts_over_five_business_days_are_due_at_the_fifth_days_opening() -> None:
    org = Org()
    org.lead("L1", "2026-12-07 09:30")
    org.three_attempts("L1")
    friday = org.decide(at("2026-12-11 16:00"))
    assert friday.attempts == {"L1": 3} and friday.due == [] and friday.counted == 1
    assert org.decide(at("2026-12-14 08:59")).due == []
    (due,) = org.decide(at("2026-12-14 09:00")).due
    assert (due.record_id, due.attempts, due.owner_id) == ("L1", 3, "U1")
    assert due.first_attempt == at("2026-12-07 10:00") and due.last_attempt == at("2026-12-10 14:00")
    assert due.entered == at("2026-12-07 09:30") and due.due_at == at("2026-12-14 09:00")


def test_two_attempts_are_never_enough_however_long_the_lead_waits() -> None:
    org = Org()
    org.lead("L1", "2026-12-07 09:30")
    org.touch("L1", "2026-12-07 10:00")
    org.touch("L1", "2026-12-08 10:00")
    plan = org.decide(at("2027-01-20 12:00"))
    assert plan.attempts == {"L1": 2} and plan.due == [] and plan.held == {}


def test_sequence_and_mass_emails_automation_and_other_reps_never_count() -> None:
    org = Org()
    org.lead("L1", "2026-12-07 09:30")
    org.touch("L1", "2026-12-07 10:00")
    org.touch("L1", "2026-12-08 10:00", "Email")
    org.touch("L1", "2026-12-08 10:05", "Email", subtype="Cadence", by=BOT)  # a sequence step
    org.touch("L1", "2026-12-08 10:06", "Email", subtype="ListEmail")  # a mass e-mail on the rep's name
    org.touch("L1", "2026-12-08 10:07", "Call", by=BOT)  # logged by the integration user
    org.touch("L1", "2026-12-09 10:00", "Call", owner="U2")  # another rep's call
    org.touch("L1", "2026-12-09 11:00", "Other")  # not a type the touch rule names
    plan = org.decide(at("2026-12-21 12:00"))
    assert plan.attempts == {"L1": 2} and plan.due == []
    org.touch("L1", "2026-12-10 10:00")  # the owner's third call
    assert org.decide(at("2026-12-21 12:00")).attempts == {"L1": 3}


def test_only_attempts_since_the_lead_entered_sal_count_and_a_status_change_starts_afresh() -> None:
    org = Org()
    org.lead("L1", "2026-12-07 09:30", Contact_Attempts__c=3)  # stamped before the trip to nurture
    org.touch("L1", "2026-12-04 10:00")  # before SAL (as an MQL): not an attempt
    org.three_attempts("L1")
    org.change("L1", "2026-12-10 15:00", "Status", "SAL", "Nurture - contact later")
    org.change("L1", "2026-12-11 09:00", "Status", "Nurture - contact later", "SAL")
    plan = org.decide(at("2026-12-21 12:00"))
    assert plan.attempts == {"L1": 0} and plan.due == []  # the lead said "later": a new count
    org.touch("L1", "2026-12-11 10:00")
    org.touch("L1", "2026-12-14 10:00")
    org.touch("L1", "2026-12-15 10:00")
    assert org.decide(at("2026-12-18 08:59")).due == []  # 5 business days from Fri 11 Dec: Fri 18
    assert [o.record_id for o in org.decide(at("2026-12-18 09:00")).due] == ["L1"]


@pytest.mark.parametrize(
    ("respond", "why"),
    [
        (lambda org: org.change("L1", "2026-12-09 12:00", "Lead_Replied__c", "false", "true"), "replied"),
        (lambda org: org.records[0]["fields"].update(Lead_Replied__c=True), "replied"),
        (lambda org: org.touch("L1", "2026-12-11 09:00", "Meeting", kind="Event"), "meeting"),
        (lambda org: org.touch("L1", "2026-12-11 09:00", "Other", kind="Event"), "meeting"),
    ],
)
def test_a_reply_or_a_meeting_holds_the_lead_back(respond, why: str) -> None:
    org = Org()
    org.lead("L1", "2026-12-07 09:30")
    org.three_attempts("L1")
    respond(org)
    plan = org.decide(at("2026-12-21 12:00"))
    assert plan.due == [] and plan.held == {"L1": why}


def test_a_meeting_an_automation_user_logged_or_one_before_sal_holds_nothing_back() -> None:
    org = Org()
    org.lead("L1", "2026-12-07 09:30")
    org.three_attempts("L1")
    org.touch("L1", "2026-12-08 09:00", "Meeting", kind="Event", by=BOT)
    org.touch("L1", "2026-12-01 09:00", "Meeting", kind="Event")
    assert [o.record_id for o in org.decide(at("2026-12-21 12:00")).due] == ["L1"]


def test_business_days_are_the_owners_team_calendars_with_its_holidays() -> None:
    us_east = POLICY.calendar("us_east")
    # Tue 22 Dec: Wed 23, (Thu 24 policy-closed, Fri 25 Christmas), Mon 28, Tue 29, Wed 30,
    # (Thu 31 policy-closed, Fri 1 Jan New Year), Mon 4 Jan: the fifth, at 09:00 New York.
    assert business_days_after(us_east, at("2026-12-22 16:00"), 5) == at("2027-01-04 09:00")
    assert business_days_after(us_east, at("2026-12-22 16:00"), 0) == at("2026-12-22 16:00")
    org = Org()
    org.lead("S1", "2026-12-07 09:30", owner="U3")
    org.three_attempts("S1", owner="U3")
    # First attempt Mon 7 Dec 10:00 New York = Tue 8 Dec 02:00 Sydney: due Tue 15 Dec 09:00 Sydney.
    (due,) = org.decide(at("2026-12-15 09:00", "Australia/Sydney")).due
    assert due.due_at == at("2026-12-15 09:00", "Australia/Sydney")
    assert org.decide(at("2026-12-15 08:59", "Australia/Sydney")).due == []


def test_attempts_are_stamped_only_when_they_change() -> None:
    org = Org()
    org.lead("SAME", "2026-12-07 09:30", Contact_Attempts__c=3.0)
    org.three_attempts("SAME")
    org.lead("NONE", "2026-12-07 09:30")  # no attempt, nothing stamped yet: nothing to write
    org.lead("ZERO", "2026-12-07 09:30", Contact_Attempts__c=2)  # a stamp from an earlier stay in SAL
    org.lead("MORE", "2026-12-07 09:30", Contact_Attempts__c="1")
    org.touch("MORE", "2026-12-07 10:00")
    org.touch("MORE", "2026-12-07 16:00")
    org.lead("GONE", "2026-12-07 09:30", status="SQL", Contact_Attempts__c=1)  # left SAL: left alone
    org.touch("GONE", "2026-12-07 10:00")
    org.touch("GONE", "2026-12-07 11:00")
    plan = org.decide(at("2026-12-11 12:00"))
    assert plan.attempts == {"ZERO": 0, "MORE": 2} and plan.counted == 4


def test_recommend_mode_tells_the_owner_and_manager_once_per_entry_with_a_link() -> None:
    org = Org()
    org.lead("00Q000000000001AAA", "2026-12-07 09:30")
    org.records[0]["name"] = "Robert'); <!channel> & <b>Tables</b>"
    org.three_attempts("00Q000000000001AAA")
    plan = org.decide(at("2026-12-14 10:00"))
    assert plan.recycles == []
    (notice,) = plan.notices
    assert set(notice.recipients) == {
        ("slack", "ann@example.com"),
        ("email", "ann@example.com"),
        ("slack", "mia@example.com"),
        ("email", "mia@example.com"),
    }
    assert (notice.subject, notice.opened_at, notice.checkpoint) == (
        "00Q000000000001AAA",
        at("2026-12-07 09:30"),
        "recommend",
    )
    again = org.decide(at("2026-12-15 10:00")).notices[0]
    assert {again.key(c, r) for c, r in again.recipients} == {notice.key(c, r) for c, r in notice.recipients}
    assert "3 attempts since SAL" in notice.lines[0] and "No reply, no meeting" in notice.lines[1]
    payload = parse_payload(notice.payload())
    link = f"{URL}/lightning/r/Lead/00Q000000000001AAA/view"
    slack = render_slack(payload, "k")
    text = str(slack["blocks"])
    assert link in text and "<!channel>" not in text and "&lt;!channel&gt;" in text
    mail = render_email(payload)
    assert f'<a href="{link}">' in mail.html and "<b>Tables</b>" not in mail.html
    assert "&lt;b&gt;Tables&lt;/b&gt;" in mail.html and link in mail.text


def test_auto_mode_recycles_with_the_reason_and_a_re_engagement_date_per_the_cadence() -> None:
    org = Org()
    org.lead("L1", "2026-12-07 09:30")
    org.three_attempts("L1")
    plan = org.decide(at("2026-12-14 23:30"), AUTO_MODE)  # 23:30 New York: still the 14th there
    assert plan.notices == []
    (recycle,) = plan.recycles
    assert (recycle.record_id, recycle.status, recycle.reason) == ("L1", "Recycled", "No Response")
    assert recycle.reengage_on == dt.date(2026, 12, 14) + dt.timedelta(days=90)
    assert recycle.outreach.attempts == 3


def test_a_recycled_lead_re_enters_on_its_date_unless_the_date_is_stale_or_the_policy_keeps_it() -> None:
    org = Org()
    for rid, date in (
        ("DUE", "2027-03-14"),
        ("LATER", "2027-03-15"),
        ("STALE", "2026-12-01"),
        ("NONE", None),
    ):
        org.lead(rid, "2026-12-07 09:30", status="Recycled", Re_Engagement_Date__c=date)
        org.change(rid, "2026-12-14 10:00", "Status", "SAL", "Recycled")
    plan = org.decide(at("2027-03-14 08:00"), AUTO_MODE)
    (back,) = plan.reentries
    assert (back.record_id, back.status, back.due_on, back.mql) == ("DUE", "MQL", dt.date(2027, 3, 14), True)
    assert back.recycled_at == at("2026-12-14 10:00")
    stays = copy.deepcopy(RAW)
    stays["recycle"]["nurture"]["reenter"] = None
    assert org.decide(at("2027-03-14 08:00"), policy_from_dict(stays, "stays.yaml")).reentries == []


def test_no_recycle_section_decides_nothing() -> None:
    raw = copy.deepcopy(RAW)
    del raw["recycle"]
    org = Org()
    org.lead("L1", "2026-12-07 09:30")
    org.three_attempts("L1")
    plan = org.decide(at("2026-12-21 12:00"), policy_from_dict(raw, "none.yaml"))
    assert plan.attempts == {} and plan.due == [] and plan.notices == [] and plan.reentries == []
