"""The escalation ladder through sla_monitor's evaluate and deliver steps (`run_monitor`,
`deliver_due`) with the shipped (laddered) policy, on both store backends, delivered through the
Slack stand-in and the SMTP sink.

One rep lets three leads breach on a Tuesday afternoon: each breach tells the rep and the manager
at once (rule ``breach``), the third also the director (``repeat``); the team's day is all
breaches, so the VPs get the capacity alert (``systemic``); no VP gets a breach message. The next
morning at 08:00 New York each VP gets ONE e-mail listing the day's breaches (``digest``). Reruns
and repeated deliveries send nothing twice; every message's audit entry names its rule. Every
message carries the lead's triage context (score, expected deal value, source, campaign, the rep's
open clocks), "not set" where the CRM holds nothing, and a campaign's markup reaches nobody."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from leadsla.notify.delivery import deliver_due
from leadsla.policy import load_policy
from leadsla.store import schema
from leadsla.store.audit import AuditContext
from leadsla.tasks.monitor import run_monitor
from tests.notify_fixtures import FALLBACK_CHANNEL, MANAGER, REP

pytest_plugins = ["tests.notify_fixtures"]

POLICY = load_policy()  # the shipped policy: the escalation ladder
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="evaluate", try_number=1)
SAL_AT = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)  # Tuesday 10:00 New York
REP_ID, MANAGER_ID, DIRECTOR_ID = "005000000000001AAA", "005000000000002AAA", "005000000000003AAA"
DIRECTOR = {"email": "dora.director@example.com", "name": "dora", "real_name": "Dora Director"}
VPS = {"vp.sales@example.com", "vp.marketing@example.com", "vp.revops@example.com"}
URL = "https://acme.my.salesforce.com"
#: Lead 0 has a score and a campaign whose text tries to ping a channel; the others have neither.
CAMPAIGN = "Spring <!channel> *Webinar*"


def seed(engine) -> list[str]:
    seeded = SAL_AT - dt.timedelta(hours=1)
    people = [
        (DIRECTOR_ID, DIRECTOR, None),
        (MANAGER_ID, MANAGER, DIRECTOR_ID),
        (REP_ID, REP, MANAGER_ID),
    ]
    ids = [f"00Q{i:015d}" for i in range(3)]
    with engine.begin() as conn:
        conn.execute(
            schema.users.insert(),
            [
                {
                    "user_id": uid,
                    "name": who["real_name"],
                    "email": who["email"],
                    "manager_id": manager,
                    "team": "sdr_east",
                    "timezone": "America/New_York",
                    "fields": {},
                    "synced_at": seeded,
                }
                for uid, who, manager in people
            ],
        )
        conn.execute(
            schema.records.insert(),
            [
                {
                    "object_type": "Lead",
                    "record_id": rid,
                    "name": f"Lead {i} <!here>",
                    "company": "Co",
                    "status": "SAL",
                    "owner_id": REP_ID,
                    "lead_source": "Other",  # the standard tier: 4 business hours
                    "created_at": seeded,
                    "modified_at": seeded,
                    "fields": {"Status": "SAL", "OwnerId": REP_ID, "LeadSource": "Other"}
                    | ({"Lead_Score__c": 87.0, "Campaign__c": CAMPAIGN} if i == 0 else {}),
                    "synced_at": seeded,
                }
                for i, rid in enumerate(ids)
            ],
        )
        conn.execute(
            schema.field_history.insert(),
            [
                {
                    "history_id": f"017{i:015d}",
                    "object_type": "Lead",
                    "record_id": rid,
                    "field": "Status",
                    "old_value": "MQL",
                    "new_value": "SAL",
                    "changed_by": REP_ID,
                    "changed_at": SAL_AT + dt.timedelta(minutes=i),
                }
                for i, rid in enumerate(ids)
            ],
        )
    return ids


def queued(engine) -> list[dict]:
    a = schema.audit
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.record_id, a.c.checkpoint, a.c.event, a.c.detail)
            .where(a.c.event.in_(["message_queued", "capacity_alert"]))
            .order_by(a.c.audit_id)
        ).all()
    return [{"record_id": r[0], "checkpoint": r[1], "event": r[2], **dict(r[3])} for r in rows]


def test_the_ladder_through_the_monitor_and_delivery(store, slack_api, smtp_sink) -> None:
    slack_api.add_users([DIRECTOR])
    for channel in ("#sales-leadership", "#marketing-leadership", "#revops", "#sdr-east"):
        slack_api.add_channel(channel, channel[1:])
    ids = seed(store)
    breach_at = SAL_AT + dt.timedelta(hours=4, minutes=4)  # all three breached (14:01-14:03 NY)
    run_monitor(store, breach_at, CTX, policy=POLICY, url=URL)
    entries = [e for e in queued(store) if e["checkpoint"] == "breach"]
    told = {(e["record_id"], e["recipient"], e["channel"]): e["ladder_rule"] for e in entries}
    for rid in ids:
        for person in (REP["email"], MANAGER["email"]):
            assert told[(rid, person, "email")] == told[(rid, person, "slack")] == "breach"
    # Only the rep's third breach in 30 days tells the director, saying why.
    assert {(r, ch) for (r, who, ch), rule in told.items() if who == DIRECTOR["email"]} == {
        (ids[2], "email"),
        (ids[2], "slack"),
    }
    director = next(e for e in entries if e["recipient"] == DIRECTOR["email"])
    assert director["ladder_rule"] == "repeat"
    assert director["ladder_why"] == "the rep's 3rd breach across all SLAs in 30 days"
    assert not any(who in VPS for (_, who, _) in told)  # no VP hears of each breach
    capacity = [e for e in queued(store) if e["event"] == "capacity_alert"]
    assert {e["recipient"] for e in capacity if e["channel"] == "email"} == VPS
    assert {e["ladder_rule"] for e in capacity} == {"systemic"}
    assert run_monitor(store, breach_at + dt.timedelta(minutes=1), CTX, policy=POLICY, url=URL)["queued"] == 0

    # The next morning: nothing before 08:00 New York, then one digest e-mail per VP.
    assert (
        run_monitor(store, dt.datetime(2026, 11, 18, 12, 59, tzinfo=dt.UTC), CTX, policy=POLICY, url=URL)[
            "capacity_alerts"
        ]
        == 0
    )
    morning = dt.datetime(2026, 11, 18, 13, 0, tzinfo=dt.UTC)
    summary = run_monitor(store, morning, CTX, policy=POLICY, url=URL)
    assert summary["capacity_alerts"] == 3  # the notices this run queued: the three digests
    digests = [e for e in queued(store) if e["checkpoint"] and e["checkpoint"].startswith("digest:")]
    assert {(e["recipient"], e["channel"], e["ladder_rule"], e["breaches"]) for e in digests} == {
        (vp, "email", "digest", 3) for vp in VPS
    }
    assert (
        run_monitor(store, morning + dt.timedelta(minutes=5), CTX, policy=POLICY, url=URL)["capacity_alerts"]
        == 0
    )

    summary = deliver_due(store, morning + dt.timedelta(minutes=6), CTX, budget=dt.timedelta(seconds=20))
    assert summary["failed"] == 0
    assert deliver_due(store, morning + dt.timedelta(minutes=8), CTX)["claimed"] == 0  # nothing twice
    mails = smtp_sink.messages()
    to_vps = [m for m in mails if m["To"] in VPS]
    assert sorted(m["To"] for m in to_vps if m["Subject"].startswith("Breach digest")) == sorted(VPS)
    # What a VP got this day: the capacity alert and the digest, each once per VP; no breach e-mail.
    assert sorted(m["Subject"].split(":")[0] for m in to_vps) == sorted(
        ["Breach digest"] * 3 + ["[CRITICAL] Capacity alert"] * 3
    )
    digest = next(m for m in to_vps if m["Subject"].startswith("Breach digest"))
    text = digest.get_body(preferencelist=("plain",)).get_content()
    assert "Lead 2 <!here>" in text and text.count("Sales touched lead") == 3
    to_director = [m for m in mails if m["To"] == DIRECTOR["email"]]
    assert len(to_director) == 1
    body = to_director[0].get_body(preferencelist=("plain",)).get_content()
    assert "because it is the rep's 3rd breach across all SLAs in 30 days" in body
    assert FALLBACK_CHANNEL not in {m.get("channel") for m in slack_api.messages()}

    # The context reaches every message: the manager's breach e-mails (text and HTML) and Slack DMs...
    to_manager = {
        m.get_body(preferencelist=("plain",)).get_content().split("Lead:")[1].split("\n")[0].strip(): m
        for m in mails
        if m["To"] == MANAGER["email"] and "SLA breached" in m["Subject"]
    }
    scored = to_manager["Lead 0 <!here>"]
    text = scored.get_body(preferencelist=("plain",)).get_content()
    for line in (
        "Score:             87",
        "Deal value:        $25,000 (estimated: a typical deal)",
        "Source:            Other",
        f"Campaign:          {CAMPAIGN}",
        "Rep's open clocks: 3",
    ):
        assert line in text, line
    html = scored.get_body(preferencelist=("html",)).get_content()
    assert "<td>Spring &lt;!channel&gt; *Webinar*</td>" in html and "<!channel>" not in html
    bare = to_manager["Lead 1 <!here>"].get_body(preferencelist=("plain",)).get_content()
    assert "Score:             not set" in bare and "Campaign:          not set" in bare
    assert "None" not in bare and "nan" not in bare
    dms = [json.dumps(m["blocks"]) for m in slack_api.messages() if "Lead 0" in json.dumps(m["blocks"])]
    assert dms and all("*Score*\\n87" in b and "*Campaign*\\nSpring &lt;!channel&gt;" in b for b in dms)
    assert not any("<!channel>" in b for b in dms)
    # ... and each line of the VPs' digest.
    digest_text = digest.get_body(preferencelist=("plain",)).get_content()
    assert digest_text.count("rep's open clocks 3") == 3
    assert "score 87 · deal value $25,000 (estimated: a typical deal) · source Other" in digest_text
    assert digest_text.count("score not set") == 2
