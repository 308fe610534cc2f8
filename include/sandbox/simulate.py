"""The demo org: a seeded, reproducible SDR organisation that keeps living.

Three SDR teams in three time zones (New York, London, Sydney) with managers and VPs (Sales,
Marketing, RevOps); reps of different speed (one slow, one out of office); leads from several
sources and types arriving mostly in each team's business hours with a Monday spike. Leads follow
the lifecycle (include/config/lifecycle.yaml): created as MQLs (hand-raisers) -> SAL -> SQL ->
converted to an Opportunity, or Recycled / Disqualified with a signed-off rejection reason; calls,
emails and meetings logged as completed Tasks and Events. Beside the plain flow, modest shares
(the constants below) take the lifecycle's other paths: MQLs that wait for review, accepted leads
qualified or rejected without a logged task, leads nurtured before the first touch and back,
recycled leads Marketing re-engages (MQL and SAL again), and sequence / mass e-mails the
integration user logs on the rep's name (never a touch). The org never sets Lead_Replied__c: see
docs/decisions/2026-12-06-demo-lifecycle.md for why. Nor does it write the SLA fields
(First_Response_Date__c, SLA_Due__c, SLA_Colour__c...): sla_monitor stamps them from its clocks.
Every REBALANCE_EVERY the assignment rule (acting as the org's integration user, an automated
actor) moves stale untouched SAL leads to the next rep of their team, round robin, once per lead:
so a lead the monitor escalated and locked gets an automated reassignment, and `make run` shows
the 24 h lock putting it back and alerting the manager.

Routing has two modes (docs/decisions/2026-12-06-demo-routing.md). `org` (the default): the org's
own rule gives every new lead to the next rep of its team, exactly as before routing existed (the
same seed gives the same org: routing draws from a generator of its own). `leadsla` (`make run`):
new SDR Americas and SDR EMEA leads arrive owned by the "Lead Intake" queue and wait there, not
reviewed, until a user owns them (the lead_routing DAG routes them; the org looks every
QUEUE_RECHECK), then go on as usual with that rep; SDR APAC keeps the org's own rule (the policy's
watch case). Its leads get a Lead_Score__c (about 15 % hot, 80+) and a US lead a State; each
team's first rep has the "Senior SDR" role; accounts have a Website (both modes) and are owned by
Americas and EMEA reps. About 4 % of the queue's leads come from an account that is a customer or
has an open opportunity (Company = its Name, the e-mail at its Website's domain: suppression's
case) and about 1 % from a country no territory covers, which the Americas manager assigns by
hand 1-3 hours later (the unowned-lead alert's case); the first queue leads take these two cases,
so a demo shows them at once. The out-of-office rep stays (routing must skip them). A new
`leadsla` org routes from "now": its backlog was assigned by the org's own rule. In `leadsla` mode,
backlog included, about 6 % of the accepted leads never answer: three attempts by their rep, a
sequence e-mail, no reply; Lead SLA Monitor's lead_recycling recycles them after 5 business days
(their draws come from a generator of their own too).

Run: `python -m sandbox.simulate --data DIR [--speed X] [--seed N] [--routing {org,leadsla}]` next
to the sandbox API (same --data). It writes through sf_store.OrgStore, so history rows,
SystemModstamp and ids behave as through the API. Time is simulated in fixed one-minute ticks from
a start instant, so the same seed and start give the same org. It must never write outside its
data dir nor talk to a real CRM.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from faker import Faker

from sandbox import sf_schema
from sandbox.sf_store import OrgStore
from sandbox.soql import format_datetime, parse_datetime

TICK = timedelta(minutes=1)

TEAMS = [
    # name, time zone, countries its leads come from, the Faker locale for names
    ("SDR Americas", "America/New_York", ("US", "CA", "BR"), "en_US"),
    ("SDR EMEA", "Europe/London", ("GB", "DE", "FR", "NL"), "en_GB"),
    ("SDR APAC", "Australia/Sydney", ("AU", "NZ", "SG"), "en_AU"),
]
REPS_PER_TEAM = 4
# Median minutes to first touch per rep speed.
SPEEDS = {"fast": 12, "normal": 35, "slow": 240}
SOURCES = [  # (LeadSource, Lead_Type__c, weight)
    ("Demo Request", "Inbound", 0.30),
    ("Content Download", "Inbound", 0.22),
    ("Webinar", "Mid-Market", 0.15),
    ("Event", "Enterprise", 0.10),
    ("Inbound Call", "SMB", 0.08),
    ("Partner", "Partner", 0.07),
    ("Web", "Enterprise", 0.08),
]
# Arrivals per hour for one team during its business hours; a trickle outside them.
BUSINESS_RATE = 6.0
OFF_HOURS_RATE = 0.5
MONDAY_FACTOR = 1.7
# The assignment rule's sweep: how often (on the simulated clock, from midnight UTC), which leads
# (SAL, nobody touched them, accepted at least STALE_AFTER ago) and how many per team per sweep.
REBALANCE_EVERY = timedelta(hours=2)
STALE_AFTER = timedelta(hours=5)
REBALANCE_MAX = 2
# Share of MQLs Sales rejects instead of accepting (SAL), by LeadSource: hand-raisers are nearly
# always accepted, content and event leads often are not. About one MQL in six overall.
MQL_REJECTION_RATE = {
    "Demo Request": 0.04,
    "Inbound Call": 0.08,
    "Web": 0.14,
    "Partner": 0.12,
    "Webinar": 0.24,
    "Event": 0.20,
    "Content Download": 0.32,
}
# (Rejection_Reason__c, weight): a lead-quality mix, not a uniform one. The reasons are the
# lifecycle's signed-off ones (sf_schema.REJECTION_REASONS); a test holds the two together.
MQL_REJECTION_REASONS = [
    ("Invalid contact", 0.24),
    ("No need", 0.18),
    ("No authority", 0.20),
    ("No budget", 0.14),
    ("Duplicate", 0.12),
    ("Competitor chosen", 0.07),
    ("Bad timing", 0.05),
]
#: Rejections that send the lead back to Marketing (Recycled) rather than out (Disqualified).
RECYCLE_REASONS = ("No budget", "Bad timing", "No authority")
#: The recycling rule's reason (sla_policy.yaml recycle.reason): set when a lead was worked and
#: never answered, by Lead SLA Monitor or by the rep it told. The reasons a rep picks when
#: disqualifying are the others, drawn as before the reason existed (the same seed, the same org).
NO_RESPONSE = "No Response"
DISQUALIFY_REASONS = tuple(r for r in sf_schema.REJECTION_REASONS if r != NO_RESPONSE)
# The lifecycle's other paths. Each share is small, so the demo still shows mostly the plain flow
# (accepted, touched, then qualified or rejected) and some warnings and breaches of every SLA,
# not a pile of one kind; each is drawn once, when the lead enters the status the path starts from.
#: MQLs that wait SLOW_REVIEW_HOURS business hours for Sales' review (a busy team): the MQL
#: acceptance SLA's (8 business hours) warnings and breaches; the rest are reviewed in minutes.
SLOW_REVIEW_SHARE = 0.06
SLOW_REVIEW_HOURS = (3.0, 11.0)
#: Accepted (SAL) leads decided without any logged task, about when the rep would have touched
#: them: UNLOGGED_QUALIFIED of them qualified (SQL) by the rep on a call nobody logged, the rest
#: rejected by the team's manager. Their clocks end handed on (late, for a slow rep or a 5-minute
#: demo request).
UNLOGGED_SHARE = 0.08
UNLOGGED_QUALIFIED = 0.45
#: Accepted leads moved to nurture before anyone touched them (their auto-reply says they are away):
#: back to SAL NURTURE_DAYS later, then touched; the clock pauses and resumes.
NURTURE_SHARE = 0.05
NURTURE_DAYS = (1.0, 3.0)
#: Recycled leads Marketing re-engages RETURN_DAYS later (once per lead): MQL again, accepted
#: again, a new clock. Most recycled leads stay out.
RETURN_SHARE = 0.20
RETURN_DAYS = (2.0, 5.0)
#: Accepted leads a sales-engagement sequence (Cadence) or a mass e-mail (ListEmail) writes to
#: SEQUENCE_AFTER_MINUTES after acceptance: a completed Task the integration user creates on the
#: rep's name. The policy never counts it as a touch, so the clock runs on to the rep's own.
SEQUENCE_SHARE = 0.15
SEQUENCE_AFTER_MINUTES = (2, 10)
SEQUENCE_SUBTYPES = [("Cadence", 0.75), ("ListEmail", 0.25)]
NURTURE = sf_schema.LEAD_PAUSED_STATUSES[0]
# The Opportunity path after conversion; any stage may close early (see `_next_stage`).
OPPORTUNITY_PATH = [
    "Qualification",
    "Needs Analysis",
    "Demo Completed",
    "Proposal/Price Quote",
    "Negotiation/Review",
]
# Customer Success works New York hours (the policy's us_east calendar for its SLAs); its users'
# Team__c is the name the policy's `cs` team lists in crm_names.
CS_TZ, CS_HOURS = "America/New_York", (9, 17)
CS_TEAM = "Customer Success"
# Lead routing. `org` (the default): the org's own rule assigns every new lead round robin in its
# team, as it always did. `leadsla`: the policy's `routing:` section routes through the
# lead_routing DAG: the QUEUE_TEAMS' new leads arrive owned by the INTAKE_QUEUE and wait there,
# unreviewed, until a user owns them; the other teams keep the org's rule (the policy's
# watch_teams). Every routing draw comes from its own generator (seeded "<seed>-routing"), so the
# org mode draws exactly what it drew before routing existed.
ROUTING_MODES = ("org", "leadsla")
INTAKE_QUEUE = "Lead Intake"
QUEUE_TEAMS = ("SDR Americas", "SDR EMEA")
#: The role of each team's first rep in `leadsla` mode: the policy's hot tier names it.
SENIOR_ROLE = "Senior SDR"
#: How often the org looks whether a lead a queue holds has a user owner yet.
QUEUE_RECHECK = timedelta(minutes=3)
#: Lead_Score__c (0-100): HOT_SHARE of the leads score HOT_SCORE or more (the policy's hot tier).
HOT_SHARE, HOT_SCORE = 0.15, 80
US_STATES = ("NY", "CA", "TX", "MA", "WA", "IL", "FL", "GA", "CO", "NC")
#: Queue leads from an account that is a customer or has an open opportunity (Company = the
#: Account's Name, the e-mail at its Website's domain): suppression hands them to the account owner.
CUSTOMER_SHARE = 0.04
#: Queue leads from a country no territory covers: nobody routes them; the Americas manager
#: assigns each to a rep by hand MANUAL_OWNER_HOURS later (the unowned-lead alert's case).
UNCOVERED_SHARE = 0.01
UNCOVERED_COUNTRIES = ("ZA", "AE")
MANUAL_OWNER_HOURS = (1.0, 3.0)
#: The first queue leads after routing goes live take these cases, so a demo shows each at once.
SHOWCASE = ("customer", "uncovered")
#: `leadsla` mode: accepted leads that never answer (UNRESPONSIVE_SHARE). Their rep makes
#: UNRESPONSIVE_ATTEMPTS attempts, calls and e-mails, the first at the rep's usual first touch and
#: the next ATTEMPT_GAP_HOURS business hours apart, and a sequence e-mails them once (never an
#: attempt); nobody replies, nothing is booked. Lead SLA Monitor recycles them 5 business days after
#: the first attempt (the policy's recycle rule; `make run`'s demo policy is in auto mode); a lead
#: still in SAL GIVE_UP_HOURS business hours after its first attempt its rep recycles by hand, with
#: NO_RESPONSE. Every draw comes from the recycling generator (seeded "<seed>-recycling"), so the
#: org mode never sees them.
UNRESPONSIVE_SHARE = 0.06
UNRESPONSIVE_ATTEMPTS = 3
ATTEMPT_GAP_HOURS = (8.0, 14.0)
GIVE_UP_HOURS = 64.0
# The follow-the-sun demo-request desk (`desk=True`, `make run`): docs/decisions/2026-12-06-demo-any-hour.md.
# The website's demo scheduler books every demo request straight onto the desk rep on shift (the
# org's own rule, never the Lead Intake queue), at any hour of any day; the desk accepts it (SAL)
# within a minute or two and calls back within minutes, a DESK_LATE_SHARE late. Its leads' type is
# DESK_LEAD_TYPE, so the policy's demo_request tier (5 business minutes, critical) times them, on
# the desk's 24 x 7 calendar in the demo policy (sandbox.devstack): a warning, a breach and an
# escalation at any hour. For DESK_SHOWCASE_FOR after the live demo starts (`live_from`), one more
# demo request every DESK_SHOWCASE_EVERY is called back late (after its breach), so whenever the
# monitor first looks, a clock is between its warning and its breach. Every desk draw comes from
# its own generators (seeded "<seed>-desk"): the rest of the org draws what it drew without it.
DESK_TEAM = "Inbound Desk"
#: (time zone, first UTC hour of the shift): Sydney 22-06, London 06-14, New York 14-22 UTC.
DESK_SHIFTS = (("Australia/Sydney", 22), ("Europe/London", 6), ("America/New_York", 14))
DESK_SHIFT_HOURS = 8
DESK_RATE = 1.0  # demo requests per hour, day and night, weekdays and weekends alike
DESK_SOURCE, DESK_LEAD_TYPE = "Demo Request", "Demo Request"
DESK_ACCEPT_MINUTES = (0.5, 1.5)
DESK_TOUCH_MINUTES = (1.0, 3.5)  # in time: inside the 5-minute target
DESK_LATE_SHARE = 0.2
DESK_LATE_MINUTES = (8.0, 45.0)  # late: after the breach (target + 1 min) and its escalation
DESK_OUTCOME_HOURS = (0.5, 4.0)  # after the call: a demo booked (SQL) or disqualified
DESK_BOOKED_SHARE = 0.55
DESK_SHOWCASE_EVERY = timedelta(minutes=2)
DESK_SHOWCASE_FOR = timedelta(minutes=20)
DESK_SHOWCASE_LATE_MINUTES = (20.0, 40.0)
# The Account Executives (docs/decisions/2026-12-06-demo-handoffs.md): the policy's `ae` team (its
# crm_names: AE_TEAM), in New York (the team's us_east calendar): one AE per SDR team and a manager
# reporting to the VP Sales; fixed names, no random draws. A lead an SDR converts becomes an Opportunity
# owned by the AE of the SDR's team (its stage timings still drawn in the converting SDR's hours, as before:
# the org's other draws come at the instants they always came). Beside them, the AEs' own pipeline
# (AE_PIPELINE_RATE deals a New York business hour, from partners and outbound: LeadSource "Partner") goes
# Needs Analysis -> Demo Completed -> proposal -> closed (won AE_WON_SHARE), so the demo's two weeks hold
# demo-to-proposal and CS-kickoff clocks, some late (AE_LATE_SHARE, CS_LATE_SHARE). AE_ONBOARDING_BOOK
# customers won (most kicked off) AE_BOOK_WON_DAYS before a new org's first instant finish onboarding (14
# calendar days) in the backlog, ONBOARDING_LATE_SHARE late: an onboarding clock starts and decides only
# over more than two weeks. AE_OPEN_BOOK open deals (created before the org's first instant) give its first
# week demos and closed-won deals. Every draw comes from the AEs' own generator (seeded "<seed>-ae"): the
# rest of the org draws what it drew before.
AE_TEAM = "Account Executives"
AE_TZ = "America/New_York"  # the policy's `ae` team works the us_east calendar
AE_MANAGER = ("Avery", "Closer")
AE_PEOPLE = (("Noah", "Newbiz"), ("Lena", "Ledger"), ("Sam", "Signer"))  # one per TEAMS entry, in order
AE_PIPELINE_RATE = 0.4  # new pipeline deals per New York business hour (weekdays)
AE_PIPELINE_SOURCE = "Partner"
AE_DEMO_HOURS = (2.0, 24.0)  # business hours from a new deal to its demo
AE_PROPOSAL_HOURS, AE_LATE_HOURS, AE_LATE_SHARE = (2.0, 20.0), (25.0, 40.0), 0.2  # SLA: 24 business hours
AE_CLOSE_DAYS, AE_WON_SHARE = (1.0, 4.0), 0.6  # after the proposal
CS_KICKOFF_HOURS, CS_LATE_HOURS, CS_LATE_SHARE = (1.0, 14.0), (17.0, 30.0), 0.22  # SLA: 16 business hours
ONBOARDING_DAYS, ONBOARDING_LATE_DAYS, ONBOARDING_LATE_SHARE = (5.0, 13.0), (14.5, 20.0), 0.25  # SLA: 14 days
AE_ONBOARDING_BOOK = 16
AE_OPEN_BOOK = 16  # a new org's open deals: half in Needs Analysis, half waiting on their proposal's answer
AE_BOOK_WON_DAYS = (0.5, 11.0)
_USER_PREFIX = sf_schema.sobject("User").key_prefix


def demo_mobile(team_index: int, person_index: int) -> str:
    """A demo user's MobilePhone: in the range NANP keeps for fiction (555-0100 to 555-0199), so no
    real phone is ever texted even by a misconfigured gateway."""
    return f"+1 202 555 01{(team_index * 10 + person_index) % 100:02d}"


class RoutingModeError(ValueError):
    """A saved org asked to go from `leadsla` back to `org`."""


@dataclass(order=True)
class _Event:
    at: datetime
    seq: int
    kind: str = field(compare=False)
    record_id: str = field(compare=False)
    data: dict = field(compare=False, default_factory=dict)


@dataclass
class Rep:
    id: str
    team: str
    tz: str
    speed: str
    out_of_office: bool
    manager_id: str


class DemoOrg:
    """Seeds the org once (kept in the store's meta) and then advances it tick by tick.

    Args:
        store: the sandbox org store (same SQLite file the API serves).
        seed: makes names, arrivals and outcomes reproducible.
        start: the simulated instant of the first tick (default: now, to the minute).
        routing: `org` (the org's own rule assigns every new lead) or `leadsla` (the QUEUE_TEAMS'
            new leads wait in the Lead Intake queue for the lead_routing DAG). A saved org keeps its
            mode; an `org` one is switched to `leadsla` when asked, never back (RoutingModeError).
        routing_from: in `leadsla` mode, when new leads start going to the queue (default: the
            org's start; an org switched later: its clock). Leads before it were assigned by the
            org's own rule, like a demo's history before routing went live.
        desk: add the follow-the-sun demo-request desk (DESK_TEAM); a saved org without one gets
            it from its clock on. A saved org keeps its desk.
        live_from: when the live demo starts: the desk's showcase leads follow it for
            DESK_SHOWCASE_FOR (None: no showcase). Not saved: each start has its own.
    """

    def __init__(
        self,
        store: OrgStore,
        seed: int = 7,
        start: datetime | None = None,
        routing: str = "org",
        routing_from: datetime | None = None,
        desk: bool = False,
        live_from: datetime | None = None,
    ) -> None:
        if routing not in ROUTING_MODES:
            raise ValueError(f"routing must be one of {', '.join(ROUTING_MODES)}, not {routing!r}")
        self.store = store
        self.seed = seed
        self.rng = random.Random(seed)
        self.routing = routing
        self.routing_rng = random.Random(f"{seed}-routing")  # never self.rng: the org mode is unchanged
        self.recycle_rng = random.Random(f"{seed}-recycling")  # the unresponsive leads' (leadsla mode)
        self.unresponsive: dict[str, list] = {}  # lead -> [attempts made, first attempt or None]
        self.intake_queue: str | None = None
        self.manual_owner_due: dict[str, str] = {}  # uncovered lead -> when the manager assigns it
        self.showcase: list[str] = list(SHOWCASE) if routing == "leadsla" else []
        self.waiting: set[str] = set()  # MQLs a queue holds: reviewed once a user owns them
        self.fake = Faker(["en_US", "en_GB", "en_AU"])
        self.fake.seed_instance(seed)
        self.rebalanced: set[str] = set()  # leads the assignment rule has moved (once each)
        self.rebalance_turns: dict[str, int] = {}  # team -> its round-robin position
        self.returning: dict[str, str] = {}  # recycled lead -> when Marketing re-engages it
        self.returned: set[str] = set()  # leads that came back once (never twice)
        # Accepted leads their rep has touched in this cycle. The org never writes the SLA fields
        # (First_Response_Date__c and the rest): Lead SLA Monitor stamps them from its clocks.
        self.touched: set[str] = set()
        self.desk = False
        self.desk_rng = random.Random(f"{seed}-desk")  # never self.rng: the rest of the org is unchanged
        self.desk_fake = Faker(["en_AU", "en_GB", "en_US"])
        self.desk_fake.seed_instance(f"{seed}-desk")
        self.desk_leads: set[str] = set()
        self.live_from = _minute(live_from) if live_from else None
        self.ae_rng = random.Random(f"{seed}-ae")  # never self.rng: the rest of the org is unchanged
        self.aes: dict[str, str] = {}  # SDR team -> the AE its conversions go to
        self.ae_tz: dict[str, str] = {}  # AE id -> time zone
        self.ae_deals: set[str] = set()  # the AEs' own pipeline and onboarding book (drawn from ae_rng)
        self.ae_turn = 0
        state = store.get_meta("demo_state")
        if state:
            self._load(json.loads(state))
            self._switch_routing(routing, routing_from)
        else:
            self.clock = (start or datetime.now(UTC)).replace(second=0, microsecond=0)
            self.routing_from = _minute(routing_from or self.clock)
            self._seed_org()
        if desk and not self.desk:
            self._seed_desk(self.clock)
        self.queue_checked = format_datetime(self.clock)
        self.events: list[_Event] = []
        self.seq = itertools.count()
        self.counts: dict[str, int] = {}
        self._reschedule_open_leads()
        self._reschedule_open_opportunities()
        if not self.aes:  # after the re-plans: the onboarding book plans its own deals
            self._seed_account_executives(self.clock, book=not state)
        for lead_id, due in sorted(self.returning.items()):
            self._schedule(parse_datetime(due), "return", lead_id)
        for lead_id, due in sorted(self.manual_owner_due.items()):
            self._schedule(parse_datetime(due), "manual_owner", lead_id)

    # ------------------------------------------------------------ seeding

    def _seed_org(self) -> None:
        now = self.clock
        vp_rows = [
            {"FirstName": "Valerie", "LastName": "Sales", "Title": "VP Sales", "Department": "Sales"},
            {
                "FirstName": "Marcus",
                "LastName": "Marketing",
                "Title": "VP Marketing",
                "Department": "Marketing",
            },
            {"FirstName": "Rita", "LastName": "Ops", "Title": "VP RevOps", "Department": "RevOps"},
        ]
        role_names = ["VP Sales", "VP Marketing", "VP RevOps"]
        for team, *_ in TEAMS:
            role_names += [f"{team} Manager", f"{team} SDR"]
        role_ids = self.store.bulk_insert(
            "UserRole",
            [{"Name": n, "DeveloperName": n.replace(" ", "_"), "SystemModstamp": now} for n in role_names],
        )
        roles = dict(zip(role_names, role_ids, strict=True))
        for r in vp_rows:
            r["UserRoleId"] = roles[r["Title"]]
            r.update(
                Email=f"{r['FirstName'].lower()}.{r['LastName'].lower()}@leadsla.example",
                IsActive=True,
                TimeZoneSidKey="America/New_York",
                Out_Of_Office__c=False,
                CreatedDate=now,
            )
        vps = self.store.bulk_insert("User", vp_rows)
        self.vps = dict(zip(("sales", "marketing", "revops"), vps, strict=True))
        self.reps: list[Rep] = []
        self.managers: dict[str, str] = {}
        taken: set[str] = {f"{r['FirstName']} {r['LastName']}" for r in vp_rows}
        for t_index, (team, tz, _countries, locale) in enumerate(TEAMS):
            fake = self.fake[locale]
            first, last = _new_person(fake, taken)
            manager = self.store.bulk_insert(
                "User",
                [
                    {
                        "FirstName": first,
                        "LastName": last,
                        "Title": "SDR Manager",
                        "Department": team,
                        "Team__c": team,
                        "Email": f"{first}.{last}@leadsla.example".lower(),
                        "MobilePhone": demo_mobile(t_index, 0),
                        "IsActive": True,
                        "TimeZoneSidKey": tz,
                        "ManagerId": self.vps["sales"],
                        "Out_Of_Office__c": False,
                        "CreatedDate": now,
                        "UserRoleId": roles[f"{team} Manager"],
                    }
                ],
            )[0]
            self.managers[team] = manager
            for r_index in range(REPS_PER_TEAM):
                speed = "normal" if r_index else "fast"
                out = False
                if t_index == 0 and r_index == 3:
                    speed = "slow"
                if t_index == 1 and r_index == 2:
                    out = True
                first, last = _new_person(fake, taken)
                rid = self.store.bulk_insert(
                    "User",
                    [
                        {
                            "FirstName": first,
                            "LastName": last,
                            "Title": "SDR",
                            "Department": team,
                            "Team__c": team,
                            "Email": f"{first}.{last}@leadsla.example".lower(),
                            # The out-of-office rep has no number: texts to them go by e-mail, and
                            # sla_health lists them.
                            "MobilePhone": None if out else demo_mobile(t_index, r_index + 1),
                            "IsActive": True,
                            "TimeZoneSidKey": tz,
                            "ManagerId": manager,
                            "Out_Of_Office__c": out,
                            "CreatedDate": now,
                            "UserRoleId": roles[f"{team} SDR"],
                        }
                    ],
                )[0]
                self.reps.append(Rep(rid, team, tz, speed, out, manager))
        self.queues = self.store.bulk_insert(
            "Group",
            [
                {
                    "Name": "Breached SLA",
                    "DeveloperName": "Breached_SLA",
                    "Type": "Queue",
                    "CreatedDate": now,
                },
                {
                    "Name": "SDR Unassigned",
                    "DeveloperName": "SDR_Unassigned",
                    "Type": "Queue",
                    "CreatedDate": now,
                },
            ],
        )
        accounts = []
        for _ in range(30):
            name = self.fake.company()
            accounts.append(
                {
                    "Name": name,
                    "Tier__c": self.rng.choice(sf_schema.ACCOUNT_TIERS),
                    "Industry": self.rng.choice(["Software", "Retail", "Finance", "Health", "Media"]),
                    "OwnerId": self.vps["sales"],
                    "CS_Owner__c": self.vps["revops"],
                    "Website": _website(name),
                    "CreatedDate": now,
                }
            )
        self.accounts = self.store.bulk_insert("Account", accounts)
        self._seed_customer_success(now)
        if self.routing == "leadsla":
            self._seed_routing(now)
        self._save()

    def _seed_customer_success(self, now: datetime) -> None:
        """Customer Success: a manager (reporting to the VP RevOps) and two CSMs, each the CS owner
        of every other account, so the CS SLAs' team manager resolves from reporting lines (the
        policy's `manager: crm`). Fixed names, no random draws: the rest of the org is unchanged."""
        people = [
            ("Carmen", "Success", "CS Manager", self.vps["revops"]),
            ("Omar", "Onboard", "CSM", None),
            ("Kira", "Kickoff", "CSM", None),
        ]
        ids: list[str] = []
        for first, last, title, manager in people:
            row = {
                "FirstName": first,
                "LastName": last,
                "Title": title,
                "Department": CS_TEAM,
                "Team__c": CS_TEAM,
                "Email": f"{first}.{last}@leadsla.example".lower(),
                "IsActive": True,
                "TimeZoneSidKey": CS_TZ,
                "ManagerId": manager or ids[0],
                "Out_Of_Office__c": False,
                "CreatedDate": now,
            }
            ids += self.store.bulk_insert("User", [row])
        for index, account in enumerate(self.accounts):
            self.store.update("Account", account, {"CS_Owner__c": ids[1 + index % 2]}, now=now, system=True)

    def _seed_account_executives(self, now: datetime, book: bool) -> None:
        """The Account Executives (AE_TEAM), in New York: a manager reporting to the VP Sales and one
        AE per SDR team, who takes that team's conversions. Fixed names, no draws from the org's
        generators. A new org (`book`) also gets the AEs' book: customers kicked off before its first
        instant, and open deals."""
        people = [(*AE_MANAGER, "AE Manager", self.vps["sales"])]
        people += [(first, last, "Account Executive", None) for first, last in AE_PEOPLE]
        ids: list[str] = []
        tz = AE_TZ
        for first, last, title, manager in people:
            row = {
                "FirstName": first,
                "LastName": last,
                "Title": title,
                "Department": AE_TEAM,
                "Team__c": AE_TEAM,
                "Email": f"{first}.{last}@leadsla.example".lower(),
                "IsActive": True,
                "TimeZoneSidKey": tz,
                "ManagerId": manager or ids[0],
                "Out_Of_Office__c": False,
                "CreatedDate": now,
            }
            ids += self.store.bulk_insert("User", [row])
            self.ae_tz[ids[-1]] = tz
        self.managers[AE_TEAM] = ids[0]
        self.aes = {team: ae for (team, *_), ae in zip(TEAMS, ids[1:], strict=True)}
        if book:
            self._seed_ae_book(now)
        self._save()

    def _seed_ae_book(self, now: datetime) -> None:
        """The AEs' book: AE_ONBOARDING_BOOK deals won AE_BOOK_WON_DAYS before `now`, their CS
        kickoff booked CS_LATE_SHARE late, their history written at those instants (a new org: nothing
        has synced yet; a kickoff still ahead is planned), onboarding ONBOARDING_LATE_SHARE late; and
        AE_OPEN_BOOK open deals, half in Needs Analysis, half waiting on their proposal's answer."""
        rng = self.ae_rng
        aes = list(self.aes.values())
        for index in range(AE_ONBOARDING_BOOK):
            won = _business_time(now - timedelta(days=rng.uniform(*AE_BOOK_WON_DAYS)), CS_TZ)
            late = rng.random() < CS_LATE_SHARE
            kickoff = _add_business_hours(
                won, rng.uniform(*(CS_LATE_HOURS if late else CS_KICKOFF_HOURS)), CS_TZ, CS_HOURS
            )
            owner = aes[index % len(aes)]
            opp = self.store.create(
                "Opportunity",
                {
                    "Name": f"{self.store.get('Account', self.accounts[index])['Name']} - Onboarding",
                    "AccountId": self.accounts[index],
                    "OwnerId": owner,
                    "StageName": "Negotiation/Review",
                    "CloseDate": won.date(),
                    "Amount": float(rng.randrange(10_000, 200_000, 500)),
                    "LeadSource": AE_PIPELINE_SOURCE,
                },
                now=won - timedelta(days=rng.uniform(5, 20)),
                user_id=owner,
            )
            opp = self.store.update(
                "Opportunity", opp["Id"], {"StageName": "Closed Won"}, now=won, user_id=owner
            )
            self.ae_deals.add(opp["Id"])
            if kickoff > now:
                self._schedule(kickoff, "kickoff", opp["Id"])
                continue
            opp = self.store.update(
                "Opportunity",
                opp["Id"],
                {"CS_Kickoff_Date__c": kickoff.date()},
                now=kickoff,
                user_id=self._cs_user(opp),
            )
            self._plan_customer_success(opp, kickoff, self.ae_rng)
        for index in range(AE_OPEN_BOOK):
            owner, stage = aes[index % len(aes)], ("Needs Analysis", "Proposal/Price Quote")[index % 2]
            account = self.accounts[-1 - index]
            opp = self.store.create(
                "Opportunity",
                {
                    "Name": f"{self.store.get('Account', account)['Name']} - Expansion",
                    "AccountId": account,
                    "OwnerId": owner,
                    "StageName": stage,
                    "CloseDate": (now + timedelta(days=30)).date(),
                    "Amount": float(rng.randrange(5_000, 120_000, 500)),
                    "LeadSource": AE_PIPELINE_SOURCE,
                },
                now=now - timedelta(days=rng.uniform(3, 15)),
                user_id=owner,
            )
            self.ae_deals.add(opp["Id"])
            self._schedule(self._stage_due(owner, stage, now, ae=True), "stage", opp["Id"])

    def _ae_arrivals(self, at: datetime) -> None:
        """The AEs' own pipeline: a new deal (Needs Analysis) now and then in New York business hours,
        to the next AE, its demo AE_DEMO_HOURS business hours later. One draw every minute."""
        rng = self.ae_rng
        roll = rng.random()
        local = at.astimezone(ZoneInfo(AE_TZ))
        if local.weekday() >= 5 or not 9 <= local.hour < 17 or roll >= AE_PIPELINE_RATE / 60.0:
            return
        aes = list(self.aes.values())
        owner = aes[self.ae_turn % len(aes)]
        self.ae_turn += 1
        account = rng.choice(self.accounts)
        opp = self.store.create(
            "Opportunity",
            {
                "Name": f"{self.store.get('Account', account)['Name']} - Expansion",
                "AccountId": account,
                "OwnerId": owner,
                "StageName": "Needs Analysis",
                "CloseDate": (at + timedelta(days=30)).date(),
                "Amount": float(rng.randrange(5_000, 120_000, 500)),
                "LeadSource": AE_PIPELINE_SOURCE,
            },
            now=at,
            user_id=owner,
        )
        self.ae_deals.add(opp["Id"])
        due = _add_business_hours(at, rng.uniform(*AE_DEMO_HOURS), self.ae_tz[owner], (9, 17))
        self._schedule(due, "stage", opp["Id"])

    def _seed_routing(self, now: datetime) -> None:
        """The `leadsla` mode's part of the org: the Lead Intake queue; the Senior SDR role for each
        team's first (fast) rep, the hot tier's; every account owned by a rep of the QUEUE_TEAMS
        (the owner suppression hands a customer's lead to), with its Website if it has none yet (an
        org seeded before websites). Fixed choices, no random draws."""
        self.intake_queue = self.store.bulk_insert(
            "Group",
            [
                {
                    "Name": INTAKE_QUEUE,
                    "DeveloperName": INTAKE_QUEUE.replace(" ", "_"),
                    "Type": "Queue",
                    "CreatedDate": now,
                }
            ],
        )[0]
        senior = self.store.bulk_insert(
            "UserRole",
            [{"Name": SENIOR_ROLE, "DeveloperName": SENIOR_ROLE.replace(" ", "_"), "SystemModstamp": now}],
        )[0]
        for team, *_ in TEAMS:
            first = next(r for r in self.reps if r.team == team and not r.out_of_office)
            self.store.update("User", first.id, {"UserRoleId": senior}, now=now, system=True)
        owners = [r.id for r in self.reps if r.team in QUEUE_TEAMS and not r.out_of_office]
        for index, account_id in enumerate(self.accounts):
            account = self.store.get("Account", account_id)
            changes = {"OwnerId": owners[index % len(owners)], "Website": account.get("Website")}
            changes["Website"] = changes["Website"] or _website(account["Name"])
            self.store.update("Account", account_id, changes, now=now, system=True)

    def _seed_desk(self, now: datetime) -> None:
        """The demo-request desk: a manager (reporting to the VP Sales) and one rep per DESK_SHIFTS
        shift, in the shift's time zone, in DESK_TEAM (the demo policy's follow-the-sun team).
        Names from the desk's own Faker, none an existing user's (names are e-mail addresses)."""
        roles = self.store.bulk_insert(
            "UserRole",
            [
                {"Name": n, "DeveloperName": n.replace(" ", "_"), "SystemModstamp": now}
                for n in (f"{DESK_TEAM} Manager", f"{DESK_TEAM} Rep")
            ],
        )
        taken = {f"{u.get('FirstName')} {u.get('LastName')}" for u in self.store.scan("User")}

        def person(title: str, tz: str, manager: str, role: str) -> str:
            first, last = _new_person(self.desk_fake, taken)
            # Fictional mobiles after the SDR teams' (555-0130...): the desk's breaches are a
            # critical tier's, texted at once, so a critical breach reaches the SMS gateway.
            people = sum(1 for u in self.store.scan("User") if u.get("Team__c") == DESK_TEAM)
            row = {
                "FirstName": first,
                "LastName": last,
                "Title": title,
                "Department": DESK_TEAM,
                "Team__c": DESK_TEAM,
                "Email": f"{first}.{last}@leadsla.example".lower(),
                "MobilePhone": demo_mobile(len(TEAMS), people),
                "IsActive": True,
                "TimeZoneSidKey": tz,
                "ManagerId": manager,
                "Out_Of_Office__c": False,
                "CreatedDate": now,
                "UserRoleId": role,
            }
            return self.store.bulk_insert("User", [row])[0]

        manager = person("Demo Desk Manager", "Europe/London", self.vps["sales"], roles[0])
        self.managers[DESK_TEAM] = manager
        for tz, _first_hour in DESK_SHIFTS:
            self.reps.append(
                Rep(person("Demo Desk Rep", tz, manager, roles[1]), DESK_TEAM, tz, "fast", False, manager)
            )
        self.desk = True
        self._save()

    def _desk_rep(self, at: datetime) -> Rep:
        """The desk rep on shift at `at` (DESK_SHIFTS, by the UTC hour)."""
        reps = [r for r in self.reps if r.team == DESK_TEAM]
        hour = at.astimezone(UTC).hour
        for index, (_tz, first_hour) in enumerate(DESK_SHIFTS):
            if (hour - first_hour) % 24 < DESK_SHIFT_HOURS:
                return reps[index]
        return reps[0]

    def _desk_arrivals(self, at: datetime) -> None:
        """This minute's demo request, if any: a showcase one (late) on the DESK_SHOWCASE_EVERY beat
        for DESK_SHOWCASE_FOR after `live_from`, else one at DESK_RATE an hour. One draw a minute."""
        rng = self.desk_rng
        roll, second = rng.random(), rng.randint(0, 59)
        since_live = at - self.live_from if self.live_from else None
        if since_live is not None and timedelta(0) <= since_live < DESK_SHOWCASE_FOR:
            if since_live % DESK_SHOWCASE_EVERY == timedelta(0):
                self._new_desk_lead(at, showcase=True)
        elif roll < DESK_RATE / 60.0:
            self._new_desk_lead(at - timedelta(seconds=second), showcase=False)

    def _new_desk_lead(self, at: datetime, showcase: bool) -> None:
        """A demo request, booked onto the desk rep on shift (never a queue)."""
        rng, fake = self.desk_rng, self.desk_fake
        countries = [c for team, _tz, cs, _l in TEAMS for c in cs]
        first, last, company = fake.first_name(), fake.last_name(), fake.company()
        fields = {
            "FirstName": first,
            "LastName": last,
            "Company": company,
            "Email": f"{first}.{last}@{company.split()[0].strip(',').lower()}.example".lower(),
            "Title": fake.job()[:80],
            "Status": "MQL",
            "OwnerId": self._desk_rep(at).id,
            "LeadSource": DESK_SOURCE,
            "Lead_Type__c": DESK_LEAD_TYPE,
            "Country": rng.choice(countries),
            "MQL_Date__c": at,
            "Account_Tier__c": rng.choice(sf_schema.ACCOUNT_TIERS),
            "Campaign__c": f"{DESK_SOURCE} {at:%Y-%m}",
            "Lead_Score__c": float(rng.randint(40, 100)),
        }
        if fields["Country"] == "US":
            fields["State"] = rng.choice(US_STATES)
        row = self.store.create("Lead", fields, now=at, user_id=self.vps["marketing"], system=True)
        self.desk_leads.add(row["Id"])
        delay = timedelta(minutes=rng.uniform(*DESK_ACCEPT_MINUTES))
        self._schedule(at + delay, "desk_accept", row["Id"], showcase=showcase)

    def _plan_desk(self, lead: dict, at: datetime, showcase: bool = False) -> None:
        """A desk lead's next step, at any hour: accepted, called back (in time, or late), then
        booked or disqualified. A restart plans again from the lead's status."""
        rng, status = self.desk_rng, lead.get("Status")
        if status == "MQL":
            delay = timedelta(minutes=rng.uniform(*DESK_ACCEPT_MINUTES))
            self._schedule(at + delay, "desk_accept", lead["Id"])
        elif status == "SAL" and lead["Id"] not in self.touched:
            late = showcase or rng.random() < DESK_LATE_SHARE
            minutes = (
                DESK_SHOWCASE_LATE_MINUTES if showcase else DESK_LATE_MINUTES if late else DESK_TOUCH_MINUTES
            )
            self._schedule(at + timedelta(minutes=rng.uniform(*minutes)), "desk_touch", lead["Id"])
        elif status == "SAL":
            self._schedule(at + timedelta(hours=rng.uniform(*DESK_OUTCOME_HOURS)), "desk_outcome", lead["Id"])

    def _handle_desk(self, ev: _Event, lead: dict) -> None:
        """A desk lead's event: acceptance, the call back (its owner's, whoever owns it by then), the
        outcome. Draws only from the desk's generator."""
        rng, at, owner = self.desk_rng, ev.at, lead.get("OwnerId") or ""
        if ev.kind == "desk_accept" and lead.get("Status") == "MQL":
            lead = self.store.update(
                "Lead", lead["Id"], {"Status": "SAL", "SAL_Date__c": at}, now=at, user_id=owner
            )
            self._plan_desk(lead, at, showcase=bool(ev.data.get("showcase")))
        elif ev.kind == "desk_touch" and lead.get("Status") == "SAL" and lead["Id"] not in self.touched:
            self._activity(lead, at, owner, rng.choice(["Call", "Call", "Email"]), rng=rng)
            self.touched.add(lead["Id"])
            self._plan_desk(lead, at)
        elif ev.kind == "desk_outcome" and lead.get("Status") == "SAL":
            if rng.random() < DESK_BOOKED_SHARE:
                self.store.update(
                    "Lead", lead["Id"], {"Status": "SQL", "SQL_Date__c": at}, now=at, user_id=owner
                )
            else:
                reason = rng.choice(DISQUALIFY_REASONS)
                self.store.update(
                    "Lead",
                    lead["Id"],
                    {"Status": "Disqualified", "Rejection_Reason__c": reason},
                    now=at,
                    user_id=owner,
                )

    def _switch_routing(self, routing: str, routing_from: datetime | None) -> None:
        """A saved org asked for another routing mode: `org` -> `leadsla` seeds the routing part of
        the org and routes from then on (its clock, or `routing_from` if later: never back-dated
        under a sync that passed it); `leadsla` -> `org` is refused (the queue's leads would never
        be reviewed)."""
        if routing == self.routing:
            return
        if self.routing == "leadsla":
            raise RoutingModeError(
                "this demo org routes through Lead SLA Monitor (leadsla) and cannot go back to org: run "
                "it with --routing leadsla, or start a new org in another data directory"
            )
        self.routing = routing
        self.routing_from = _minute(max(routing_from or self.clock, self.clock))
        self.showcase = list(SHOWCASE)
        self._seed_routing(self.routing_from)
        self._save()

    def _save(self) -> None:
        routing: dict[str, Any] = {"routing": self.routing}
        if self.routing == "leadsla":
            routing.update(
                routing_from=format_datetime(self.routing_from),
                intake_queue=self.intake_queue,
                routing_rng=_rng_state(self.routing_rng),
                manual_owner_due=self.manual_owner_due,
                showcase=self.showcase,
                recycle_rng=_rng_state(self.recycle_rng),
                unresponsive=self.unresponsive,
            )
        if self.desk:
            routing.update(desk_rng=_rng_state(self.desk_rng), desk_leads=sorted(self.desk_leads))
        if self.aes:
            routing.update(
                aes=self.aes,
                ae_tz=self.ae_tz,
                ae_rng=_rng_state(self.ae_rng),
                ae_deals=sorted(self.ae_deals),
                ae_turn=self.ae_turn,
            )
        self.store.set_meta(
            "demo_state",
            json.dumps(
                {
                    "clock": format_datetime(self.clock),
                    "seed": self.seed,
                    "vps": self.vps,
                    "managers": self.managers,
                    "queues": self.queues,
                    "accounts": self.accounts,
                    "reps": [r.__dict__ for r in self.reps],
                    "rng": _rng_state(self.rng),
                    "rebalanced": sorted(self.rebalanced),
                    "rebalance_turns": self.rebalance_turns,
                    "returning": self.returning,
                    "returned": sorted(self.returned),
                    "touched": sorted(self.touched),
                    **routing,
                }
            ),
        )

    def _load(self, state: dict) -> None:
        self.clock = parse_datetime(state["clock"])
        self.vps, self.managers, self.queues = state["vps"], state["managers"], state["queues"]
        self.accounts = state["accounts"]
        self.reps = [Rep(**r) for r in state["reps"]]
        self.rng.setstate(_rng_from(state["rng"]))
        self.rebalanced = set(state.get("rebalanced", ()))  # absent in orgs saved before the sweep existed
        self.rebalance_turns = dict(state.get("rebalance_turns", {}))
        self.returning = dict(state.get("returning", {}))  # absent in orgs saved before re-engagement
        self.returned = set(state.get("returned", ()))
        if "touched" in state:
            self.touched = set(state["touched"])
        else:  # saved while the org itself wrote First_Response_Date__c on the touch
            self.touched = {r["Id"] for r in self.store.scan("Lead") if r.get("First_Response_Date__c")}
        self.routing = state.get("routing", "org")  # absent in orgs saved before routing
        self.routing_from = self.clock
        if self.routing == "leadsla":
            self.routing_from = parse_datetime(state["routing_from"])
            self.intake_queue = state["intake_queue"]
            self.routing_rng.setstate(_rng_from(state["routing_rng"]))
            self.manual_owner_due = dict(state["manual_owner_due"])
            self.showcase = list(state["showcase"])
            if "recycle_rng" in state:  # absent in leadsla orgs saved before unresponsive leads
                self.recycle_rng.setstate(_rng_from(state["recycle_rng"]))
            self.unresponsive = {lead: list(v) for lead, v in state.get("unresponsive", {}).items()}
        self.desk = "desk_rng" in state  # absent in orgs saved without the desk
        if self.desk:
            self.desk_rng.setstate(_rng_from(state["desk_rng"]))
            self.desk_leads = set(state["desk_leads"])
        if "aes" in state:  # absent in orgs saved before the Account Executives
            self.aes, self.ae_tz = dict(state["aes"]), dict(state["ae_tz"])
            self.ae_rng.setstate(_rng_from(state["ae_rng"]))
            self.ae_deals, self.ae_turn = set(state["ae_deals"]), state["ae_turn"]

    def _reschedule_open_leads(self) -> None:
        """After a restart, open leads get a fresh plan (pending events live in memory only)."""
        for row in self.store.scan("Lead"):
            if row.get("Status") in ("MQL", "SAL", "SQL", NURTURE):
                self._plan(row, self.clock)

    def _reschedule_open_opportunities(self) -> None:
        """After a restart, open opportunities move on and won deals still get their kickoff and
        onboarding (pending events live in memory only)."""
        for row in self.store.scan("Opportunity"):
            if row.get("IsDeleted"):
                continue
            ae = row["Id"] in self.ae_deals
            if not row.get("IsClosed"):
                self._schedule(
                    self._stage_due(_paced_by(row, ae), row.get("StageName"), self.clock, ae),
                    "stage",
                    row["Id"],
                )
            elif row.get("StageName") == "Closed Won":
                self._plan_customer_success(row, self.clock, self.ae_rng if ae else None)

    # ------------------------------------------------------------ the flow

    def _schedule(self, at: datetime, kind: str, record_id: str, **data: Any) -> None:
        heapq.heappush(self.events, _Event(at, next(self.seq), kind, record_id, data))

    def _rep(self, rep_id: str) -> Rep | None:
        return next((r for r in self.reps if r.id == rep_id), None)

    def _arrival_rate(self, team_tz: str, at: datetime) -> float:
        local = at.astimezone(ZoneInfo(team_tz))
        if local.weekday() >= 5:
            return OFF_HOURS_RATE / 2
        rate = BUSINESS_RATE if 8 <= local.hour < 18 else OFF_HOURS_RATE
        return rate * (MONDAY_FACTOR if local.weekday() == 0 else 1.0)

    def _new_lead(self, team_index: int, at: datetime) -> None:
        team, tz, countries, locale = TEAMS[team_index]
        fake = self.fake[locale]
        source, lead_type, _ = self.rng.choices(SOURCES, weights=[s[2] for s in SOURCES])[0]
        reps = [r for r in self.reps if r.team == team]
        rep = reps[self.counts.get(team, 0) % len(reps)]
        self.counts[team] = self.counts.get(team, 0) + 1
        first, last, company = fake.first_name(), fake.last_name(), fake.company()
        fields = {
            "FirstName": first,
            "LastName": last,
            "Company": company,
            "Email": f"{first}.{last}@{company.split()[0].strip(',').lower()}.example".lower(),
            "Title": fake.job()[:80],
            "Status": "MQL",
            "OwnerId": rep.id,
            "LeadSource": source,
            "Lead_Type__c": lead_type,
            "Country": self.rng.choice(countries),
            "MQL_Date__c": at,
            "Account_Tier__c": self.rng.choice(sf_schema.ACCOUNT_TIERS),
            "Campaign__c": f"{source} {at:%Y-%m}",
        }
        case = self._routing_case(team, fields, at) if self.routing == "leadsla" else None
        row = self.store.create("Lead", fields, now=at, user_id=self.vps["marketing"], system=True)
        if case == "uncovered":
            due = at + timedelta(hours=self.routing_rng.uniform(*MANUAL_OWNER_HOURS))
            self.manual_owner_due[row["Id"]] = format_datetime(due)
            self._schedule(due, "manual_owner", row["Id"])
        self._plan(row, at)

    def _routing_case(self, team: str, lead: dict, at: datetime) -> str | None:
        """`leadsla` mode: a new lead's score (and a US lead's State); from `routing_from` on, the
        QUEUE_TEAMS' leads go to the Lead Intake queue, a share of them from a customer account or
        an uncovered country. Changes `lead`; returns its case (`customer`, `uncovered` or None).
        Draws only from the routing generator."""
        rng = self.routing_rng
        hot = rng.random() < HOT_SHARE
        lead["Lead_Score__c"] = float(rng.randint(HOT_SCORE, 100) if hot else rng.randint(0, HOT_SCORE - 1))
        roll, state = rng.random(), rng.choice(US_STATES)
        case = None
        if team in QUEUE_TEAMS and at >= self.routing_from:
            lead["OwnerId"] = self.intake_queue
            case, accounts = self._queue_case(roll)
            if case == "customer":
                account = rng.choice(accounts)
                domain = _website_domain(account.get("Website") or _website(account["Name"]))
                lead.update(
                    Company=account["Name"],
                    Email=f"{lead['FirstName']}.{lead['LastName']}@{domain}".lower(),
                    Account_Tier__c=account.get("Tier__c") or lead["Account_Tier__c"],
                )
            elif case == "uncovered":
                lead["Country"] = rng.choice(UNCOVERED_COUNTRIES)
        if lead["Country"] == "US":
            lead["State"] = state
        return case

    def _queue_case(self, roll: float) -> tuple[str | None, list[dict]]:
        """A new queue lead's case: the one `roll` draws (CUSTOMER_SHARE, UNCOVERED_SHARE), else the
        first SHOWCASE case not shown yet; `customer` only while some account is a customer or has
        an open opportunity. Returns the case and, for `customer`, those accounts."""
        drawn = (
            "customer"
            if roll < CUSTOMER_SHARE
            else "uncovered"
            if roll < CUSTOMER_SHARE + UNCOVERED_SHARE
            else None
        )
        accounts: list[dict] | None = None
        for case in (drawn, *self.showcase):
            if case == "customer":
                accounts = self._suppressing_accounts() if accounts is None else accounts
                if not accounts:
                    continue
            if case is not None:
                if case in self.showcase:
                    self.showcase.remove(case)
                return case, accounts or []
        return None, []

    def _suppressing_accounts(self) -> list[dict]:
        """Accounts suppression routes by: customers (a won opportunity) or with an open one."""
        ids = {
            opp["AccountId"]
            for opp in self.store.scan("Opportunity")
            if opp.get("AccountId") and (opp.get("StageName") == "Closed Won" or not opp.get("IsClosed"))
        }
        found = self.store.get_many(ids)
        return [found[i] for i in sorted(ids) if i in found and not found[i].get("IsDeleted")]

    def _plan(self, lead: dict, at: datetime) -> None:
        if lead["Id"] in self.desk_leads:
            self._plan_desk(lead, at)
            return
        rep = self._rep(lead.get("OwnerId") or "")
        status = lead.get("Status")
        tz = rep.tz if rep else TEAMS[0][1]
        if status == "MQL" and self.routing == "leadsla" and not _user_owned(lead):
            # A queue (or nobody) holds it: Sales reviews it once a user owns it (_check_queue).
            self.waiting.add(lead["Id"])
        elif status == "MQL":
            # Sales accepts the lead for its rep (SAL) soon after it arrives in working hours (an
            # overnight lead waits as MQL until morning); the SLA clock starts there. An
            # out-of-office rep's leads are accepted by the assignment rule all the same. A share
            # waits hours for the review.
            if self.rng.random() < SLOW_REVIEW_SHARE:
                due = _add_business_hours(at, self.rng.uniform(*SLOW_REVIEW_HOURS), tz, (9, 17))
            else:
                delay = timedelta(minutes=max(1.0, self.rng.lognormvariate(math.log(15), 0.5)))
                due = _business_time(at + delay, tz)
            self._schedule(due, "assign", lead["Id"])
        elif status == "SAL" and lead["Id"] in self.unresponsive:
            self._plan_attempt(lead, at)
        elif status == "SAL" and lead["Id"] not in self.touched:
            if rep is None or rep.out_of_office:
                # Nobody touches it until the manager reassigns it the next day: a breach.
                self._schedule(at + timedelta(hours=20 + self.rng.random() * 8), "reassign", lead["Id"])
                return
            self._schedule(self._work_due(rep, at), "touch", lead["Id"])
        elif status == NURTURE:
            # The date the lead gave comes; the rep puts it back to SAL in working hours.
            back = at + timedelta(days=self.rng.uniform(*NURTURE_DAYS))
            self._schedule(_business_time(back, tz), "resume", lead["Id"])
        elif status == "SAL":
            self._schedule(at + timedelta(hours=2 + self.rng.random() * 30), "qualify", lead["Id"])
        elif status == "SQL":
            self._schedule(at + timedelta(hours=4 + self.rng.random() * 40), "convert", lead["Id"])

    def _work_due(self, rep: Rep, at: datetime) -> datetime:
        """When `rep` first works a lead accepted at `at`: a lognormal delay around the rep's speed,
        in the rep's working hours."""
        delay = timedelta(minutes=max(1.0, self.rng.lognormvariate(math.log(SPEEDS[rep.speed]), 0.6)))
        return _business_time(at + delay, rep.tz)

    def _plan_accepted(self, lead: dict, at: datetime) -> None:
        """A newly accepted lead's path: mostly the rep's touch (`_plan`); a share decided without a
        logged task, a share nurtured first (UNLOGGED_SHARE, NURTURE_SHARE); and, beside either, a
        share written to by a sequence (SEQUENCE_SHARE)."""
        if self.routing == "leadsla" and self._unresponsive(lead, at):
            return
        if self.rng.random() < SEQUENCE_SHARE:
            after = timedelta(minutes=self.rng.uniform(*SEQUENCE_AFTER_MINUTES))
            self._schedule(at + after, "sequence", lead["Id"])
        rep = self._rep(lead.get("OwnerId") or "")
        roll = self.rng.random()
        if rep is None or rep.out_of_office or roll >= UNLOGGED_SHARE + NURTURE_SHARE:
            self._plan(lead, at)
        elif roll < UNLOGGED_SHARE:
            self._schedule(self._work_due(rep, at), "unlogged", lead["Id"])
        else:
            delay = timedelta(minutes=max(1.0, self.rng.lognormvariate(math.log(10), 0.5)))
            self._schedule(_business_time(at + delay, rep.tz), "nurture", lead["Id"])

    def _unresponsive(self, lead: dict, at: datetime) -> bool:
        """`leadsla` mode: whether a newly accepted lead is one that never answers (its path is
        planned here, from the recycling generator only)."""
        rep = self._rep(lead.get("OwnerId") or "")
        if rep is None or rep.out_of_office or self.recycle_rng.random() >= UNRESPONSIVE_SHARE:
            return False
        self.unresponsive[lead["Id"]] = [0, None]
        self._plan_attempt(lead, at)
        return True

    def _plan_attempt(self, lead: dict, at: datetime) -> None:
        """An unresponsive lead's next attempt (the first at the rep's usual first touch, the next a
        business day or two later), or, after the last, when its rep gives up on it."""
        made, first = self.unresponsive[lead["Id"]]
        rep = self._rep(lead.get("OwnerId") or "")
        tz = rep.tz if rep else TEAMS[0][1]
        if made >= UNRESPONSIVE_ATTEMPTS:
            give_up = _add_business_hours(parse_datetime(first), GIVE_UP_HOURS, tz, (9, 17))
            self._schedule(max(give_up, at), "give_up", lead["Id"])
            return
        if made == 0:
            speed = SPEEDS[rep.speed] if rep else SPEEDS["normal"]
            delay = timedelta(minutes=max(1.0, self.recycle_rng.lognormvariate(math.log(speed), 0.6)))
            due = _business_time(at + delay, tz)
        else:
            due = _add_business_hours(at, self.recycle_rng.uniform(*ATTEMPT_GAP_HOURS), tz, (9, 17))
        self._schedule(due, "attempt", lead["Id"], n=made + 1)

    def _attempt(self, lead: dict, at: datetime, owner: str, n: int) -> None:
        """The rep's n-th attempt on a lead that never answers: a call (no one picks up) or an
        e-mail (no reply); the first is its first response, and a sequence e-mails it once."""
        kind = "Call" if n % 2 else "Email"
        self.store.create(
            "Task",
            {
                "WhoId": lead["Id"],
                "OwnerId": owner,
                "Subject": f"{kind} attempt {n}: {lead.get('Name')}",
                "Type": kind,
                "TaskSubtype": kind,
                "Status": "Completed",
                "CompletedDateTime": at,
                "ActivityDate": at.date().isoformat(),
                "CallDurationInSeconds": float(self.recycle_rng.randint(15, 40)) if kind == "Call" else None,
            },
            now=at,
            user_id=owner,
        )
        made, first = self.unresponsive[lead["Id"]]
        self.unresponsive[lead["Id"]] = [made + 1, first or format_datetime(at)]
        if n == 1:
            self.touched.add(lead["Id"])  # its first touch (Lead SLA Monitor stamps the field)
            after = timedelta(minutes=self.recycle_rng.uniform(30, 240))
            self._schedule(at + after, "sequence", lead["Id"], rng="recycling")
        self._plan_attempt(lead, at)

    def _rejection(self) -> tuple[str, str]:
        """(Status, Rejection_Reason__c) of a rejection: a reason from the lead-quality mix, Recycled
        for the reasons that send it back to Marketing, else Disqualified."""
        reason = self.rng.choices(
            [r for r, _ in MQL_REJECTION_REASONS], [w for _, w in MQL_REJECTION_REASONS]
        )[0]
        return ("Recycled" if reason in RECYCLE_REASONS else "Disqualified"), reason

    def _reject(self, lead: dict, at: datetime, status: str, reason: str, user_id: str | None) -> None:
        """Reject the lead with a signed-off reason; a share of recycled ones is re-engaged later."""
        self.store.update(
            "Lead", lead["Id"], {"Status": status, "Rejection_Reason__c": reason}, now=at, user_id=user_id
        )
        if status == "Recycled" and lead["Id"] not in self.returned and self.rng.random() < RETURN_SHARE:
            rep = self._rep(lead.get("OwnerId") or "")
            due = _business_time(
                at + timedelta(days=self.rng.uniform(*RETURN_DAYS)), rep.tz if rep else TEAMS[0][1]
            )
            self.returning[lead["Id"]] = format_datetime(due)
            self._schedule(due, "return", lead["Id"])

    def _sequence_email(self, lead: dict, at: datetime, rng: random.Random | None = None) -> None:
        """A sequence step or a mass e-mail, logged by the integration user on the owner's name."""
        rng = rng or self.rng
        subtype = rng.choices([s for s, _ in SEQUENCE_SUBTYPES], [w for _, w in SEQUENCE_SUBTYPES])[0]
        subject = "Sequence step 1" if subtype == "Cadence" else "Newsletter"
        self.store.create(
            "Task",
            {
                "WhoId": lead["Id"],
                "OwnerId": lead.get("OwnerId"),
                "Subject": f"{subject}: {lead.get('Name')}",
                "Type": "Email",
                "TaskSubtype": subtype,
                "Status": "Completed",
                "CompletedDateTime": at,
                "ActivityDate": at.date().isoformat(),
            },
            now=at,
            user_id=self.store.integration_user_id,
        )

    def _activity(
        self, lead: dict, at: datetime, owner: str, kind: str, rng: random.Random | None = None
    ) -> None:
        if kind == "Meeting":
            start = at + timedelta(days=1)
            self.store.create(
                "Event",
                {
                    "WhoId": lead["Id"],
                    "OwnerId": owner,
                    "Subject": f"Discovery meeting with {lead.get('Company')}",
                    "Type": "Meeting",
                    "EventSubtype": "Event",
                    "StartDateTime": start,
                    "EndDateTime": start + timedelta(minutes=30),
                    "DurationInMinutes": 30.0,
                },
                now=at,
                user_id=owner,
            )
            return
        self.store.create(
            "Task",
            {
                "WhoId": lead["Id"],
                "OwnerId": owner,
                "Subject": f"{kind}: {lead.get('Name')}",
                "Type": kind,
                "TaskSubtype": kind,
                "Status": "Completed",
                "CompletedDateTime": at,
                "ActivityDate": at.date().isoformat(),
                "CallDurationInSeconds": float((rng or self.rng).randint(30, 900))
                if kind == "Call"
                else None,
            },
            now=at,
            user_id=owner,
        )

    def _handle(self, ev: _Event) -> None:
        lead = self.store.get("Lead", ev.record_id)
        if lead.get("IsDeleted") or lead.get("IsConverted"):
            return
        if ev.kind.startswith("desk_"):
            self._handle_desk(ev, lead)
            return
        owner = lead.get("OwnerId") or ""
        at = ev.at
        untouched = lead.get("Status") == "SAL" and lead["Id"] not in self.touched
        if ev.kind == "assign" and lead.get("Status") == "MQL":
            if self.routing == "leadsla" and not _user_owned(lead):
                self.waiting.add(lead["Id"])  # back in a queue before its review: waits for an owner
                return
            if self._rejected_at_mql(lead, at):
                return
            lead = self.store.update("Lead", lead["Id"], {"Status": "SAL", "SAL_Date__c": at}, now=at)
            self._plan_accepted(lead, at)
        elif ev.kind == "reassign" and untouched:
            rep = self._rep(owner)
            team = rep.team if rep else TEAMS[0][0]
            others = [r for r in self.reps if r.team == team and not r.out_of_office]
            new_owner = self.rng.choice(others)
            lead = self.store.update(
                "Lead", lead["Id"], {"OwnerId": new_owner.id}, now=at, user_id=self.managers[team]
            )
            self._plan(lead, at)
        elif ev.kind == "touch" and untouched:
            self._activity(lead, at, owner, self.rng.choice(["Call", "Email", "Email"]))
            self.touched.add(lead["Id"])
            self._plan(lead, at)
        elif ev.kind == "qualify" and lead.get("Status") == "SAL":
            self._activity(lead, at, owner, self.rng.choice(["Call", "Email"]))
            roll = self.rng.random()
            if roll < 0.40:
                lead = self.store.update(
                    "Lead", lead["Id"], {"Status": "SQL", "SQL_Date__c": at}, now=at, user_id=owner
                )
                self._activity(lead, at, owner, "Meeting")
                self._plan(lead, at)
            elif roll < 0.65:
                self._reject(lead, at, "Recycled", self.rng.choice(RECYCLE_REASONS), owner)
            else:
                self._reject(lead, at, "Disqualified", self.rng.choice(DISQUALIFY_REASONS), owner)
        elif ev.kind == "unlogged" and untouched:
            # Worked on a call nobody logged (qualified), or rejected by the manager: no task.
            if self.rng.random() < UNLOGGED_QUALIFIED:
                lead = self.store.update(
                    "Lead", lead["Id"], {"Status": "SQL", "SQL_Date__c": at}, now=at, user_id=owner
                )
                self._plan(lead, at)
            else:
                rep = self._rep(owner)
                manager = self.managers[rep.team] if rep else self.vps["sales"]
                self._reject(lead, at, *self._rejection(), manager)
        elif ev.kind == "nurture" and untouched:
            lead = self.store.update("Lead", lead["Id"], {"Status": NURTURE}, now=at, user_id=owner)
            self._plan(lead, at)
        elif ev.kind == "resume" and lead.get("Status") == NURTURE:
            lead = self.store.update("Lead", lead["Id"], {"Status": "SAL"}, now=at, user_id=owner)
            self._plan(lead, at)
        elif ev.kind == "sequence" and lead.get("Status") == "SAL":
            self._sequence_email(lead, at, self.recycle_rng if ev.data.get("rng") == "recycling" else None)
        elif ev.kind in ("attempt", "give_up") and lead["Id"] in self.unresponsive:
            self._work_unresponsive(ev, lead, owner)
        elif ev.kind == "manual_owner":
            self.manual_owner_due.pop(lead["Id"], None)
            if lead.get("Status") == "MQL" and not _user_owned(lead):
                self._assign_by_hand(lead, at)
        elif ev.kind == "return":
            self.returning.pop(lead["Id"], None)
            if lead.get("Status") != "Recycled":
                return
            # Marketing re-engages it: a new MQL (its earlier cycle's dates and reason cleared, so
            # the new cycle's read as the data-quality checks expect), reviewed and accepted again.
            self.returned.add(lead["Id"])
            self.touched.discard(lead["Id"])
            lead = self.store.update(
                "Lead",
                lead["Id"],
                {
                    "Status": "MQL",
                    "MQL_Date__c": at,
                    "SAL_Date__c": None,
                    "SQL_Date__c": None,
                    "Rejection_Reason__c": None,
                },
                now=at,
                user_id=self.vps["marketing"],
            )
            self._plan(lead, at)
        elif ev.kind == "convert" and lead.get("Status") == "SQL":
            if self.rng.random() < 0.6:
                opp = self.store.create(
                    "Opportunity",
                    {
                        "Name": f"{lead.get('Company')} - New Business",
                        "AccountId": self.rng.choice(self.accounts),
                        # The AE of the converting SDR's team (none in orgs saved before the AEs).
                        "OwnerId": self._converted_owner(owner),
                        "StageName": "Qualification",
                        "CloseDate": (at + timedelta(days=45)).date(),
                        "Amount": float(self.rng.randrange(5_000, 150_000, 500)),
                        "LeadSource": lead.get("LeadSource"),
                    },
                    now=at,
                    user_id=owner,
                )
                self.store.update(
                    "Lead",
                    lead["Id"],
                    {
                        "Status": "Converted",
                        "IsConverted": True,
                        "ConvertedOpportunityId": opp["Id"],
                        "ConvertedDate": at.date(),
                    },
                    now=at,
                    user_id=owner,
                    system=True,
                )
                self._schedule(at + timedelta(days=2 + self.rng.random() * 10), "stage", opp["Id"])
            else:
                self._reject(lead, at, "Recycled", "No budget", owner)

    def _converted_owner(self, sdr: str) -> str:
        """Who owns the Opportunity an SDR converts: the AE of the SDR's team (else the SDR)."""
        rep = self._rep(sdr)
        return self.aes.get(rep.team, sdr) if rep else sdr

    def _work_unresponsive(self, ev: _Event, lead: dict, owner: str) -> None:
        """An unresponsive lead's attempt or its rep giving up: only while it is in SAL (Lead SLA
        Monitor or a person may have moved it), and only the attempt due next (a reassigned lead's
        earlier plan is stale)."""
        if lead.get("Status") != "SAL":
            self.unresponsive.pop(lead["Id"], None)
            return
        made, _first = self.unresponsive[lead["Id"]]
        if ev.kind == "attempt" and ev.data.get("n") == made + 1:
            self._attempt(lead, ev.at, owner, made + 1)
        elif ev.kind == "give_up" and made >= UNRESPONSIVE_ATTEMPTS:
            self.unresponsive.pop(lead["Id"])
            self.store.update(
                "Lead",
                lead["Id"],
                {"Status": "Recycled", "Rejection_Reason__c": NO_RESPONSE},
                now=ev.at,
                user_id=owner,
            )

    def _rejected_at_mql(self, lead: dict, at: datetime) -> bool:
        """Sales reviews the MQL: most are accepted (SAL), a share by source is rejected with a reason
        (Disqualified, or Recycled back to Marketing for nurture). Returns whether it was rejected."""
        if self.rng.random() >= MQL_REJECTION_RATE.get(lead.get("LeadSource") or "", 0.15):
            return False
        self._reject(lead, at, *self._rejection(), lead.get("OwnerId") or None)
        return True

    def _next_stage(self, stage: str | None, ae: bool = False) -> str:
        """The stage an opportunity moves to next: along OPPORTUNITY_PATH, closing early one time in
        five; after negotiation it closes (won 45%). An AE pipeline deal (`ae`, its own draws) closes
        after its proposal (won AE_WON_SHARE), early one time in ten."""
        if ae:
            rng = self.ae_rng
            if stage == "Proposal/Price Quote" or rng.random() < 0.1:
                return "Closed Won" if rng.random() < AE_WON_SHARE else "Closed Lost"
            return (
                OPPORTUNITY_PATH[OPPORTUNITY_PATH.index(stage) + 1]
                if stage in OPPORTUNITY_PATH
                else "Needs Analysis"
            )
        path = OPPORTUNITY_PATH
        current = path.index(stage) if stage in path else -1
        if current >= len(path) - 1 or (current >= 0 and self.rng.random() < 0.2):
            return "Closed Won" if self.rng.random() < 0.45 else "Closed Lost"
        return path[current + 1]

    def _stage_due(self, owner_id: str | None, stage: str | None, at: datetime, ae: bool = False) -> datetime:
        """When the opportunity in `stage` moves on. After the demo the AE sends the proposal within
        the 3 business days of the demo-to-proposal SLA most of the time, and late about one time in
        eight; other stages take days to two weeks. An AE pipeline deal (`ae`, its own draws): late
        AE_LATE_SHARE of the time, its demo in AE_DEMO_HOURS business hours, closed in AE_CLOSE_DAYS."""
        rep = self._rep(owner_id or "")
        tz = rep.tz if rep else self.ae_tz.get(owner_id or "", TEAMS[0][1])
        if ae:
            rng = self.ae_rng
            if stage == "Demo Completed":
                late = rng.random() < AE_LATE_SHARE
                hours = rng.uniform(*(AE_LATE_HOURS if late else AE_PROPOSAL_HOURS))
            elif stage == "Proposal/Price Quote":
                return _business_time(at + timedelta(days=rng.uniform(*AE_CLOSE_DAYS)), tz)
            else:
                hours = rng.uniform(*AE_DEMO_HOURS)
            return _add_business_hours(at, hours, tz, (9, 17))
        if stage == "Demo Completed":
            hours = self.rng.uniform(2, 22) if self.rng.random() < 0.88 else self.rng.uniform(25, 40)
            return _add_business_hours(at, hours, tz, (9, 17))
        return at + timedelta(days=2 + self.rng.random() * 10)

    def _plan_customer_success(self, opp: dict, at: datetime, rng: random.Random | None = None) -> None:
        """A won deal's kickoff and onboarding, unless already done (a restart re-plans them). With
        `rng` (an AE deal's, ae_rng): CS_LATE_SHARE and ONBOARDING_LATE_SHARE late."""
        if rng is not None:
            if not opp.get("CS_Kickoff_Date__c"):
                late = rng.random() < CS_LATE_SHARE
                hours = rng.uniform(*(CS_LATE_HOURS if late else CS_KICKOFF_HOURS))
                self._schedule(_add_business_hours(at, hours, CS_TZ, CS_HOURS), "kickoff", opp["Id"])
            elif not opp.get("Onboarding_Complete__c"):
                late = rng.random() < ONBOARDING_LATE_SHARE
                days = rng.uniform(*(ONBOARDING_LATE_DAYS if late else ONBOARDING_DAYS))
                self._schedule(_business_time(at + timedelta(days=days), CS_TZ), "onboarded", opp["Id"])
            return
        if not opp.get("CS_Kickoff_Date__c"):
            # CS books the kickoff within the 2 business days of the closed-won -> kickoff SLA
            # mostly; about one deal in ten waits longer (a busy week, a customer slow to reply).
            hours = self.rng.uniform(1, 14) if self.rng.random() < 0.9 else self.rng.uniform(17, 30)
            self._schedule(_add_business_hours(at, hours, CS_TZ, CS_HOURS), "kickoff", opp["Id"])
        elif not opp.get("Onboarding_Complete__c"):
            # Onboarding has 14 calendar days; most finish in 5-13, about one in six runs over.
            days = self.rng.uniform(5, 13) if self.rng.random() < 0.84 else self.rng.uniform(14.5, 20)
            self._schedule(_business_time(at + timedelta(days=days), CS_TZ), "onboarded", opp["Id"])

    def _cs_user(self, opp: dict) -> str:
        """Who acts for Customer Success on this deal: the account's CS owner, else VP RevOps."""
        account = self.store.get("Account", opp["AccountId"]) if opp.get("AccountId") else {}
        return account.get("CS_Owner__c") or self.vps["revops"]

    def _handle_opportunity(self, ev: _Event) -> None:
        opp = self.store.get("Opportunity", ev.record_id)
        if opp.get("IsDeleted"):
            return
        ae = opp["Id"] in self.ae_deals  # the AEs' own deal: its draws come from ae_rng
        if ev.kind == "kickoff":
            if opp.get("StageName") == "Closed Won" and not opp.get("CS_Kickoff_Date__c"):
                opp = self.store.update(
                    "Opportunity",
                    opp["Id"],
                    {"CS_Kickoff_Date__c": ev.at.date()},
                    now=ev.at,
                    user_id=self._cs_user(opp),
                )
                self._plan_customer_success(opp, ev.at, self.ae_rng if ae else None)
            return
        if ev.kind == "onboarded":
            if opp.get("CS_Kickoff_Date__c") and not opp.get("Onboarding_Complete__c"):
                self.store.update(
                    "Opportunity",
                    opp["Id"],
                    {"Onboarding_Complete__c": True},
                    now=ev.at,
                    user_id=self._cs_user(opp),
                )
            return
        if opp.get("IsClosed"):
            return
        stage = self._next_stage(opp.get("StageName"), ae)
        opp = self.store.update(
            "Opportunity", opp["Id"], {"StageName": stage}, now=ev.at, user_id=opp.get("OwnerId")
        )
        if stage == "Closed Won":
            self._plan_customer_success(opp, ev.at, self.ae_rng if ae else None)
        elif not stage.startswith("Closed"):
            self._schedule(self._stage_due(_paced_by(opp, ae), stage, ev.at, ae), "stage", opp["Id"])

    def _assign_by_hand(self, lead: dict, at: datetime) -> None:
        """Nobody routed it (no territory covers its country): the Americas team's manager gives
        it to one of the team's available reps, and Sales reviews it as usual."""
        team = QUEUE_TEAMS[0]
        reps = [r for r in self.reps if r.team == team and not r.out_of_office]
        owner = self.routing_rng.choice(reps)
        lead = self.store.update(
            "Lead", lead["Id"], {"OwnerId": owner.id}, now=at, user_id=self.managers[team]
        )
        self.waiting.discard(lead["Id"])
        self._plan(lead, at)

    def _check_queue(self, at: datetime) -> None:
        """Leads a queue held that a user owns now (the lead_routing DAG, a manager) or that left
        MQL go on as usual; the others wait on. Reads only the leads changed since the last look."""
        if self.waiting:
            changed = sorted(
                (
                    lead
                    for lead in self.store.scan("Lead", low=self.queue_checked)
                    if lead["Id"] in self.waiting
                ),
                key=lambda lead: lead["Id"],
            )
            for lead in changed:
                if _user_owned(lead) or lead.get("Status") != "MQL":
                    self.waiting.discard(lead["Id"])
                    self._plan(lead, at)
        self.queue_checked = format_datetime(at)

    def _rebalance(self, at: datetime) -> int:
        """The assignment rule's sweep: stale untouched SAL leads owned by a team's rep or manager go
        to the team's next available rep (round robin), changed by the integration user. Each lead
        is moved at most once (a locked lead put back by the monitor is not fought over again).
        Deterministic: depends only on the org's state, which the seed decides. Returns how many
        leads moved."""
        team_of = {r.id: r.team for r in self.reps} | {m: t for t, m in self.managers.items()}
        stale = sorted(
            (
                lead
                for lead in self.store.scan("Lead")
                if lead.get("Status") == "SAL"
                and lead["Id"] not in self.touched
                and lead["Id"] not in self.rebalanced
                and lead.get("OwnerId") in team_of
                and lead.get("SAL_Date__c")
                and parse_datetime(lead["SAL_Date__c"]) <= at - STALE_AFTER
            ),
            key=lambda lead: (parse_datetime(lead["SAL_Date__c"]), lead["Id"]),
        )
        moved: dict[str, int] = {}
        for lead in stale:
            team = team_of[lead["OwnerId"]]
            reps = [
                r for r in self.reps if r.team == team and not r.out_of_office and r.id != lead["OwnerId"]
            ]
            if moved.get(team, 0) >= REBALANCE_MAX or not reps:
                continue
            turn = self.rebalance_turns.get(team, 0)
            self.rebalance_turns[team] = turn + 1
            new_owner = reps[turn % len(reps)]
            lead = self.store.update(
                "Lead", lead["Id"], {"OwnerId": new_owner.id}, now=at, user_id=self.store.integration_user_id
            )
            self.rebalanced.add(lead["Id"])
            moved[team] = moved.get(team, 0) + 1
            self._plan(lead, at)
        return sum(moved.values())

    def advance(self, until: datetime) -> int:
        """Simulate every whole minute up to `until`; returns how many ticks ran."""
        ticks = 0
        while self.clock + TICK <= until:
            self.clock += TICK
            ticks += 1
            for index, (_team, tz, _c, _l) in enumerate(TEAMS):
                # Poisson arrivals for this minute.
                expected = self._arrival_rate(tz, self.clock) / 60.0
                if self.rng.random() < expected:
                    self._new_lead(index, self.clock - timedelta(seconds=self.rng.randint(0, 59)))
            if self.desk:
                self._desk_arrivals(self.clock)
            if self.aes:
                self._ae_arrivals(self.clock)
            while self.events and self.events[0].at <= self.clock:
                ev = heapq.heappop(self.events)
                if ev.kind in ("stage", "kickoff", "onboarded"):
                    self._handle_opportunity(ev)
                else:
                    self._handle(ev)
            since_midnight = self.clock - self.clock.replace(hour=0, minute=0)
            if self.routing == "leadsla" and since_midnight % QUEUE_RECHECK == timedelta(0):
                self._check_queue(self.clock)
            if since_midnight % REBALANCE_EVERY == timedelta(0):
                self._rebalance(self.clock)
        if ticks:
            self._save()
        return ticks


def _new_person(fake: Faker, taken: set[str]) -> tuple[str, str]:
    """A first and last name nobody in the org has yet (names double as e-mail addresses, and
    locales seeded alike draw the same names), drawn from the seeded Faker: deterministic."""
    while True:
        first, last = fake.first_name(), fake.last_name()
        if f"{first} {last}" not in taken:
            taken.add(f"{first} {last}")
            return first, last


def _paced_by(opp: dict, ae: bool) -> str | None:
    """Whose hours an opportunity's next stage is timed in: an AE pipeline deal's owner's; a converted
    lead's deal the converting SDR's (its creator), as before it went to an AE, so the org's draws
    come at the instants they always came."""
    return opp.get("OwnerId") if ae else opp.get("CreatedById") or opp.get("OwnerId")


def _user_owned(lead: dict) -> bool:
    """Whether a user (not a queue, not nobody) owns the lead."""
    return (lead.get("OwnerId") or "").startswith(_USER_PREFIX)


def _minute(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def _website(company: str) -> str:
    """An account's Website, from its name alone: https://www.<name's words joined by ->.example."""
    return f"https://www.{'-'.join(re.findall(r'[a-z0-9]+', company.lower()))}.example"


def _website_domain(website: str) -> str:
    """The e-mail domain of a Website: its host without `www.` (https://www.acme.example -> acme.example)."""
    host = re.sub(r"^[a-z]+://", "", website.strip().lower()).split("/")[0]
    return host.removeprefix("www.")


def _business_time(at: datetime, tz: str) -> datetime:
    """Reps work 08:00-18:00 local on weekdays: push `at` into the next working moment."""
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    while local.weekday() >= 5 or not 8 <= local.hour < 18:
        if local.weekday() < 5 and local.hour < 8:
            local = local.replace(hour=8, minute=local.minute % 30)
        else:
            local = (local + timedelta(days=1)).replace(hour=8, minute=local.minute % 30)
    return local.astimezone(UTC)


def _add_business_hours(at: datetime, hours: float, tz: str, day: tuple[int, int]) -> datetime:
    """`at` plus `hours` of working time on weekdays between day[0]:00 and day[1]:00 local (holidays
    ignored: an approximation of the policy's calendars, enough to land before or after a target)."""
    zone = ZoneInfo(tz)
    local, left = at.astimezone(zone), timedelta(hours=hours)
    while True:
        opens = local.replace(hour=day[0], minute=0, second=0, microsecond=0)
        closes = local.replace(hour=day[1], minute=0, second=0, microsecond=0)
        if local.weekday() >= 5 or local >= closes:
            local = opens + timedelta(days=1)
            continue
        local = max(local, opens)
        if local + left <= closes:
            return (local + left).astimezone(UTC)
        left -= closes - local
        local = opens + timedelta(days=1)


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


def run(
    data_dir: Path,
    speed: float = 1.0,
    seed: int = 7,
    backlog_hours: float = 48.0,
    for_hours: float | None = None,
    start: datetime | None = None,
    poll_s: float = 1.0,
    routing: str = "org",
    desk: bool = False,
) -> DemoOrg:
    """Seed the org if new (with `backlog_hours` of history before now), then keep it moving.

    Args:
        speed: simulated seconds per wall-clock second (1 = real time).
        for_hours: stop after this many simulated hours (default: run until interrupted).
        start: simulated "now" for a new org (tests); a restarted org continues from its clock.
        routing: `org` or `leadsla` (see DemoOrg). A new `leadsla` org routes from "now" on: its
            backlog was assigned by the org's own rule, as before routing went live.
        desk: add the follow-the-sun demo-request desk (see DemoOrg); its showcase follows the live
            start of this run (a restarted org's too).
    """
    store = OrgStore(Path(data_dir) / "org.sqlite3")
    try:
        fresh = store.get_meta("demo_state") is None
        now = start or datetime.now(UTC)
        first = now - timedelta(hours=backlog_hours if fresh else 0)
        org = DemoOrg(
            store, seed=seed, start=first, routing=routing, routing_from=now, desk=desk, live_from=now
        )
        if fresh and backlog_hours:
            org.advance(first + timedelta(hours=backlog_hours))
        elif not fresh and speed <= 1.0:
            # Real time: the org was quiet while the demo was down. Never write back-dated records,
            # an incremental sync that already passed that time would never see them.
            org.clock = max(org.clock, datetime.now(UTC).replace(second=0, microsecond=0))
            org.live_from = org.clock
        sim_start, wall_start = org.clock, time.monotonic()
        stop_at = sim_start + timedelta(hours=for_hours) if for_hours is not None else None
        while True:
            target = sim_start + timedelta(seconds=(time.monotonic() - wall_start) * speed)
            if stop_at is None:
                # A live demo never writes ahead of the wall clock: records stamped in the future
                # are rejected by the data-quality gate, and rightly so. Faster only catches up.
                target = min(target, datetime.now(UTC))
            if stop_at is not None and target >= stop_at:
                org.advance(stop_at)
                return org
            org.advance(target)
            time.sleep(poll_s)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="the sandbox API's data directory")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backlog-hours", type=float, default=48.0, help="history to create for a new org")
    parser.add_argument("--for-hours", type=float, help="stop after this many simulated hours")
    parser.add_argument("--start", type=parse_datetime, help="simulated now for a new org (ISO datetime)")
    parser.add_argument(
        "--routing",
        choices=ROUTING_MODES,
        default="org",
        help="org: the org's own rule assigns new leads; leadsla: Americas and EMEA leads wait in the "
        "Lead Intake queue for the lead_routing DAG (an org keeps leadsla once it has it)",
    )
    parser.add_argument(
        "--desk",
        action="store_true",
        help="add the follow-the-sun demo-request desk: demo requests and their alerts at any hour "
        "(an org keeps its desk once it has one)",
    )
    args = parser.parse_args(argv)
    if args.speed <= 0:
        parser.error("--speed must be positive")
    print(
        f"demo org in {args.data.resolve()} (speed x{args.speed}, seed {args.seed}, routing {args.routing}"
        f"{', follow-the-sun desk' if args.desk else ''}); "
        "Ctrl-C stops",
        flush=True,
    )
    try:
        org = run(
            args.data,
            speed=args.speed,
            seed=args.seed,
            backlog_hours=args.backlog_hours,
            for_hours=args.for_hours,
            start=args.start,
            routing=args.routing,
            desk=args.desk,
        )
        print(f"simulated up to {format_datetime(org.clock)}", flush=True)
    except RoutingModeError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
