"""Shared War Room test set-up: Airflow's auth manager ready to mint and check tokens (a fixed JWT
secret, the revoked-token table in the test's Airflow database), a small hand-built org and the
same org with routing's audit entries and unowned leads."""

from __future__ import annotations

import datetime as dt
import os

from tests.reports_data import Builder, t

JWT_SECRET = "war-room-tests-" + "s" * 64
NOW = t("2026-11-20 15:00")  # a Friday; America/New_York is UTC-5


def prepare_airflow_auth() -> None:
    """Make the simple auth manager usable in-process: fixed secret, revoked-token table."""
    os.environ["AIRFLOW__API_AUTH__JWT_SECRET"] = JWT_SECRET
    from airflow import settings
    from airflow.models.revoked_token import RevokedToken

    if settings.engine is None:
        settings.configure_orm()
    RevokedToken.__table__.create(settings.engine, checkfirst=True)


def mint_token(username: str = "vera") -> str:
    """A UI token for `username`, signed by the configured auth manager."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    from leadsla.war_room.app import auth_manager

    return auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role="ADMIN"))


def org() -> Builder:
    """Two teams. In the range 2026-11-01..2026-11-10 (local): team A: L1 met (Rita), L2 violated
    (Rita, rejected "No budget"), L3 violated and still untouched (Rob); team B: L4 met (Sam, source
    Webinar). Funnel of that range: MQL L1-L4, SAL L1 L3 L4, SQL L1.
    Live at NOW: open clocks green L9, yellow L6, red (breached, untouched) L3 L5 L7 L8; breaches
    today L5 (Rita), L7 (Rob), L8 (Rita) -> team A: 3 breaches across both its reps: systemic.
    L9 named <script>alert(1)</script>, with a full audit trail (start, pause, checkpoint, message,
    escalation, reassignment) from Airflow task runs.
    """
    b = Builder().user("R1", "Rita", "A").user("R2", "Rob", "A").user("R3", "Sam", "B")
    b.user("M1", "Vera VP", "leadership", role="VP Sales")
    day = {"L1": "2026-11-02", "L2": "2026-11-03", "L3": "2026-11-04", "L4": "2026-11-05"}
    b.lead(
        "L1",
        owner="R1",
        source="Web",
        stages={"MQL": t("2026-11-02 09:00"), "SAL": t("2026-11-02 10:00"), "SQL": t("2026-11-06 10:00")},
    )
    b.lead(
        "L2",
        owner="R1",
        source="Web",
        reason="No budget",
        stages={"MQL": t("2026-11-03 09:00"), "Recycled": t("2026-11-05 10:00")},
    )
    b.lead(
        "L3", owner="R2", source="Web", stages={"MQL": t("2026-11-04 09:00"), "SAL": t("2026-11-04 10:00")}
    )
    b.lead(
        "L4",
        owner="R3",
        source="Webinar",
        stages={"MQL": t("2026-11-05 09:00"), "SAL": t("2026-11-05 10:00")},
    )
    b.clock(
        "L1",
        t(day["L1"] + " 15:00"),
        target_h=4,
        elapsed_h=1,
        owner="R1",
        team="A",
        stopped_at=t(day["L1"] + " 16:00"),
    )
    b.clock(
        "L2",
        t(day["L2"] + " 15:00"),
        target_h=4,
        elapsed_h=6,
        owner="R1",
        team="A",
        stopped_at=t(day["L2"] + " 23:00"),
        breached_at=t(day["L2"] + " 19:00"),
    )
    b.clock(
        "L3",
        t(day["L3"] + " 15:00"),
        target_h=4,
        elapsed_h=3.9,
        owner="R2",
        team="A",
        breached_at=t(day["L3"] + " 19:00"),
    )
    b.clock(
        "L4",
        t(day["L4"] + " 15:00"),
        target_h=4,
        elapsed_h=2,
        owner="R3",
        team="B",
        stopped_at=t(day["L4"] + " 17:00"),
    )
    for lid, owner, source in (
        ("L5", "R1", "Web"),
        ("L6", "R2", "Web"),
        ("L7", "R2", "Chat"),
        ("L8", "R1", "Web"),
    ):
        b.lead(lid, owner=owner, source=source, stages={"MQL": t("2026-11-20 08:00")})
    b.clock(
        "L5",
        t("2026-11-20 09:00"),
        target_h=4,
        elapsed_h=3.9,
        owner="R1",
        team="A",
        breached_at=t("2026-11-20 13:00"),
        now=NOW,
    )
    b.clock("L6", t("2026-11-20 12:00"), target_h=4, elapsed_h=3.2, owner="R2", team="A", now=NOW)
    b.clock(
        "L7",
        t("2026-11-20 09:30"),
        target_h=4,
        elapsed_h=3.9,
        owner="R2",
        team="A",
        breached_at=t("2026-11-20 13:30"),
        now=NOW,
    )
    b.clock(
        "L8",
        t("2026-11-20 10:00"),
        target_h=4,
        elapsed_h=3.9,
        owner="R1",
        team="A",
        breached_at=t("2026-11-20 14:00"),
        now=NOW,
    )
    b.lead(
        "L9",
        owner="R3",
        source="Chat",
        name="<script>alert(1)</script>",
        stages={"MQL": t("2026-11-20 10:00")},
    )
    start = t("2026-11-20 10:00")
    b.clock("L9", start, target_h=4, elapsed_h=1.5, owner="R3", team="B", now=NOW)
    b.clocks[-1].update(
        next_checkpoint="half", next_checkpoint_at=start + dt.timedelta(hours=2)
    )  # breached ones: none
    run = "scheduled__2026-11-20T10:00:00+00:00"
    ctx = {"dag_id": "sla_monitor", "task_id": "evaluate", "try_number": 1}
    b.event("clock_start", start, "L9", clock_start=start, actor="sales_touch.start.mql", run_id=run, **ctx)
    b.event(
        "clock_pause",
        t("2026-11-20 11:00"),
        "L9",
        clock_start=start,
        actor="sales_touch.pause.out_of_hours",
        run_id="scheduled__2026-11-20T11:00:00+00:00",
        **ctx,
    )
    b.event(
        "checkpoint_due",
        t("2026-11-20 12:00"),
        "L9",
        clock_start=start,
        checkpoint="warn_50",
        actor="sales_touch.checkpoint.warn_50",
        run_id="scheduled__2026-11-20T12:00:00+00:00",
        **ctx,
    )
    b.event(
        "message_sent",
        t("2026-11-20 12:01"),
        "L9",
        clock_start=start,
        checkpoint="warn_50",
        actor="sales_touch.checkpoint.warn_50",
        detail={"channel": "slack"},
        dag_id="sla_monitor",
        run_id="scheduled__2026-11-20T12:00:00+00:00",
        task_id="deliver",
        try_number=2,
    )
    b.event(
        "escalation",
        t("2026-11-20 14:00"),
        "L9",
        clock_start=start,
        checkpoint="breach",
        actor="sales_touch.breach",
        detail={"reassign_to": "Breached SLA"},
        dag_id="sla_monitor",
        run_id="scheduled__2026-11-20T14:00:00+00:00",
        task_id="escalate",
        try_number=1,
    )
    b.event(
        "reassignment",
        t("2026-11-20 14:00"),
        "L9",
        clock_start=start,
        actor="sales_touch.breach.reassign",
        detail={"from": "R3", "to": "M1"},
        dag_id="sla_monitor",
        run_id="scheduled__2026-11-20T14:00:00+00:00",
        task_id="escalate",
        try_number=1,
    )
    return b


REASON = "territory americas, round robin in sdr_east <script>alert(2)</script>"
ROUTE_RUN = "scheduled__2026-11-20T13:00:00+00:00"
UNOWNED_SINCE = "2026-11-20T12:00:00+00:00"
#: The unowned-lead alert's recipients: each queued row is audited (team manager and RevOps, 2 channels).
RECIPIENTS = 4


def routed_org() -> Builder:
    """`org()` and: RT1 routed from the Lead Intake queue to Rita by the americas territory
    (the reason holds a script tag); UQ1 in the Lead Intake queue since 12:00, alerted at 12:02 and
    reminded at 13:02 (each alert one audit row per recipient); UX1 owned by Xavier, inactive,
    since 14:00; RT2, Sam's, found mis-routed (with Sam, then with Rob)."""
    b = org().user("X1", "Xavier Gone", "SDR East")
    b.users[-1]["is_active"] = False
    b.lead("RT1", owner="R1", name="Routed Lead", stages={"MQL": t("2026-11-20 13:00")})
    b.leads[-1]["fields"] = {
        "Routing_Reason__c": REASON,
        "Routing_Rule__c": "territory:americas",
        "Routing_Policy_Version__c": "2026.11-tiered",
    }
    b.lead("UQ1", owner="Q1", name="Waiting Lead", stages={"MQL": t("2026-11-20 12:00")})
    b.lead("UX1", owner="X1", name="Orphan Lead", stages={"MQL": t("2026-11-20 14:00")})
    b.lead("RT2", owner="R3", name="Elsewhere Lead", stages={"MQL": t("2026-11-20 09:00")})
    routing = {"sla_id": None, "actor": "routing", "dag_id": "lead_routing", "try_number": 1}
    b.event(
        "routing",
        t("2026-11-20 13:01"),
        "RT1",
        run_id=ROUTE_RUN,
        task_id="route",
        detail={
            "owner": "R1",
            "from_owner": "Q1",
            "team": "sdr_east",
            "rule": "territory:americas",
            "reason": REASON,
            "policy_version": "2026.11-tiered",
        },
        **routing,
    )
    for reminder, at in ((0, "2026-11-20 12:02"), (1, "2026-11-20 13:02")):
        for _ in range(RECIPIENTS):
            b.event(
                "unowned_alert_queued",
                t(at),
                "UQ1",
                run_id=f"scheduled__{at[:10]}T{at[11:]}:00+00:00",
                task_id="alert_unowned",
                detail={
                    "record_id": "UQ1",
                    "owner": "Q1",
                    "team": None,
                    "since": UNOWNED_SINCE,
                    "reminder": reminder,
                    "why": "no territory matches",
                    "policy_version": "2026.11-tiered",
                },
                **routing,
            )
    for owner, at, copies in (("R3", "2026-11-20 10:00", RECIPIENTS), ("R2", "2026-11-20 11:00", 2)):
        for _ in range(copies):
            b.event(
                "misrouted_lead",
                t(at),
                "RT2",
                run_id=f"scheduled__{at[:10]}T{at[11:]}:00+00:00",
                task_id="route",
                detail={
                    "record_id": "RT2",
                    "owner": owner,
                    "rule": "territory:emea",
                    "why": "owner outside sdr_emea",
                },
                **routing,
            )
    return b


def write_routed_org(engine) -> None:
    """`routed_org()` into the store, with the Lead Intake queue (Q1) its leads name."""
    from leadsla.store import schema

    routed_org().write(engine)
    with engine.begin() as conn:
        conn.execute(schema.queues.insert(), [{"queue_id": "Q1", "name": "Lead Intake", "synced_at": NOW}])


def opportunity(
    b: Builder,
    record_id: str,
    *,
    owner: str | None,
    stage: str,
    amount: float | None,
    name: str | None = None,
    account: str | None = "ACC1",
) -> Builder:
    """An Opportunity row (its Amount in `fields`, as the sync keeps it; none when `amount` is None)."""
    created = t("2026-10-01 12:00")
    b.leads.append(
        {
            "object_type": "Opportunity",
            "record_id": record_id,
            "name": name or f"Deal {record_id}",
            "company": None,
            "status": stage,
            "owner_id": owner,
            "lead_source": "Web",
            "account_id": account,
            "is_deleted": False,
            "created_at": created,
            "modified_at": created,
            "fields": {} if amount is None else {"Amount": amount},
            "synced_at": created,
        }
    )
    return b


def handoff_clock(b: Builder, sla_id: str, record_id: str, start: dt.datetime, **kw) -> Builder:
    """`Builder.clock` for an Opportunity handoff's SLA (`sla_id`)."""
    b.clock(record_id, start, **kw)
    b.clocks[-1].update(sla_id=sla_id, object_type="Opportunity")
    return b


def handoff_org() -> Builder:
    """`org()` (sales_touch, team A and B) and `with_handoffs`."""
    return with_handoffs(org())


def with_handoffs(b: Builder) -> Builder:
    """`b` and the AE and CS handoffs, on Opportunities of the account ACC1 (Acme Corp):

    - Account Executives: Ava (A1, reports to Vera). demo_to_proposal: O1 (50,000) open yellow;
      O2 (12,000) met in the range 2026-11-01..10; O3 (no Amount) violated in the range, still
      untouched (open red).
    - Customer Success: Carmen (C0, manager, reports to Vera) and Omar (C1, reports to Carmen).
      cs_kickoff: O4 (30,000) breached today, held by the Customer Success queue (Q2), answered
      for by Omar; O5 held by the queue since it started (no owner team: counts for CS), open
      green; O6 met in the range (Omar); O7 violated in the range while the queue held it.
    """
    b.user("A1", "Ava AE", "Account Executives", role="AE", manager_id="M1")
    b.user("C0", "Carmen Success", "Customer Success", role="CS Manager", manager_id="M1")
    b.user("C1", "Omar Onboard", "Customer Success", role="CSM", manager_id="C0")
    b.queue("Q2", "Customer Success")
    b.leads.append(
        {
            "object_type": "Account",
            "record_id": "ACC1",
            "name": "Acme Corp",
            "owner_id": "M1",
            "is_deleted": False,
            "fields": {},
            "synced_at": t("2026-10-01 12:00"),
        }
    )
    opportunity(b, "O1", owner="A1", stage="Demo Completed", amount=50000, name="Acme - New Business")
    opportunity(b, "O2", owner="A1", stage="Proposal/Price Quote", amount=12000)
    opportunity(b, "O3", owner="A1", stage="Demo Completed", amount=None)
    opportunity(b, "O4", owner="Q2", stage="Closed Won", amount=30000)
    opportunity(b, "O5", owner="Q2", stage="Closed Won", amount=8000)
    opportunity(b, "O6", owner="C1", stage="Closed Won", amount=20000)
    opportunity(b, "O7", owner="Q2", stage="Closed Won", amount=9000)
    b.history.append(
        {
            "history_id": "HO1",
            "object_type": "Opportunity",
            "record_id": "O1",
            "field": "StageName",
            "old_value": "Needs Analysis",
            "new_value": "Demo Completed",
            "changed_by": "A1",
            "changed_at": t("2026-11-18 15:00"),
        }
    )
    b.history.append(
        {
            "history_id": "HO6",
            "object_type": "Opportunity",
            "record_id": "O6",
            "field": "CS_Kickoff_Date__c",
            "old_value": None,
            "new_value": "2026-11-03",
            "changed_by": "C1",
            "changed_at": t("2026-11-03 15:00"),
        }
    )
    ae = {"target_h": 24, "owner": "A1", "team": "Account Executives"}
    handoff_clock(b, "demo_to_proposal", "O1", t("2026-11-18 15:00"), elapsed_h=20, now=NOW, **ae)
    handoff_clock(b, "demo_to_proposal", "O2", t("2026-11-03 15:00"), elapsed_h=8, **ae)
    b.clocks[-1].update(state="met", stopped_at=t("2026-11-04 15:00"), colour="green")
    handoff_clock(
        b,
        "demo_to_proposal",
        "O3",
        t("2026-11-05 15:00"),
        elapsed_h=24,
        breached_at=t("2026-11-09 15:00"),
        **ae,
    )
    cs = {"target_h": 16}
    handoff_clock(
        b,
        "cs_kickoff",
        "O4",
        t("2026-11-18 15:00"),
        elapsed_h=16,
        owner="Q2",
        team=None,
        accountable="C1",
        accountable_team="Customer Success",
        breached_at=t("2026-11-20 13:00"),
        now=NOW,
        **cs,
    )
    handoff_clock(
        b, "cs_kickoff", "O5", t("2026-11-19 15:00"), elapsed_h=2, owner="Q2", team=None, now=NOW, **cs
    )
    handoff_clock(
        b,
        "cs_kickoff",
        "O6",
        t("2026-11-02 15:00"),
        elapsed_h=5,
        owner="C1",
        team="Customer Success",
        stopped_at=t("2026-11-03 15:00"),
        **cs,
    )
    handoff_clock(
        b,
        "cs_kickoff",
        "O7",
        t("2026-11-04 15:00"),
        elapsed_h=17,
        owner="Q2",
        team=None,
        stopped_at=t("2026-11-09 15:00"),
        breached_at=t("2026-11-06 15:00"),
        **cs,
    )
    return b
