"""`make run`'s demo is alive at any hour: started on a Sunday night or a weekday evening, when every
SDR team is closed, the follow-the-sun demo-request desk still gives a newcomer a warning, a breach
and an escalation within ten minutes.

Each case seeds the demo org as `make run` does (leadsla routing, the desk, a backlog before the
start), then drives it minute by minute from the start with the production steps: crm_sync's
`run_group` through the Salesforce stand-in, sla_monitor's evaluate (`run_monitor`), escalate
(`run_escalation`, its write-back to the stand-in) and deliver (`deliver_due`, to the Slack stand-in
and the SMTP sink), with `make run`'s demo policy. time-machine holds the wall clock at the simulated
minute, so the stand-in's own writes and the sync's watermarks agree with the simulator's clock.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
import time_machine

from leadsla.store import schema
from sandbox import simulate
from sandbox.sf_store import OrgStore

#: When SDR Americas, EMEA and APAC are all closed: a Sunday 03:00 UTC (Saturday night in New York,
#: Sunday afternoon in Sydney) and a Wednesday 23:00 UTC (18:00 New York, 23:00 London; Sydney is
#: at 10:00 on Thursday: open, but its leads' reps are not the desk's).
STARTS = {
    "sunday-0300": dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC),
    "wednesday-2300": dt.datetime(2026, 11, 25, 23, 0, tzinfo=dt.UTC),
}
BACKLOG = dt.timedelta(hours=6)
WINDOW_MINUTES = 10


def _drive(root: Path, start: dt.datetime) -> dict:
    """Seed the org up to `start`, then run sync -> evaluate -> escalate -> deliver every simulated
    minute for WINDOW_MINUTES. Returns what the store and the stand-ins hold afterwards."""
    from leadsla.crm.salesforce import SalesforceClient
    from leadsla.notify.delivery import deliver_due
    from leadsla.store import open_store
    from leadsla.store.audit import AuditContext
    from leadsla.tasks.monitor import run_escalation, run_monitor
    from leadsla.tasks.sync import run_group
    from sandbox import salesforce_api
    from sandbox.devstack import write_demo_policy
    from sandbox.slack_api import SlackSandbox
    from sandbox.slack_seed import write_seed
    from sandbox.smtp_sink import SmtpSink
    from tests.notify_fixtures import slack_connection, smtp_connection

    org_db = root / "salesforce" / "org.sqlite3"
    store = OrgStore(org_db)
    org = simulate.DemoOrg(
        store,
        seed=7,
        start=start - BACKLOG,
        routing="leadsla",
        routing_from=start,
        desk=True,
        live_from=start,
    )
    org.advance(start)
    policy_path = write_demo_policy(root / "sla_policy.yaml")
    api = salesforce_api.start(root / "salesforce")  # its certificate made at the real time
    sink = SmtpSink(root / "mail")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEADSLA_POLICY_PATH", str(policy_path))
        write_seed(root / "slack", org_db=org_db, desk=True)
        slack = SlackSandbox(data_dir=root / "slack", per_channel_interval=0.0)
        mp.setenv("REQUESTS_CA_BUNDLE", str(api.ca_path))
        mp.setenv("AIRFLOW_CONN_SALESFORCE_DEFAULT", api.connection_json())
        mp.setenv("LEADSLA_STORE_URL", f"sqlite:///{root / 'store.db'}")
        try:
            with slack, sink:
                mp.setenv("AIRFLOW_CONN_SLACK_API_DEFAULT", slack_connection(slack.base_url))
                mp.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp_connection(sink.port))
                engine = open_store()
                for minute in range(WINDOW_MINUTES + 1):
                    now = start + dt.timedelta(minutes=minute)
                    with time_machine.travel(now, tick=True):
                        org.advance(now)
                        synced = [run_group(group) for group in ("org", "leads")]
                        assert all(s["status"] in ("success", "not_due") for s in synced), synced
                        context = AuditContext(dag_id="sla_monitor", run_id=f"m{minute}", try_number=1)
                        run_monitor(engine, now, context, url="https://sandbox.example")
                        run_escalation(engine, now, context, client=SalesforceClient(timeout=10))
                        deliver_due(engine, now, context)
                with engine.connect() as conn:
                    outbox = [dict(r) for r in conn.execute(sa.select(schema.outbox)).mappings()]
                    audit = [dict(r) for r in conn.execute(sa.select(schema.audit)).mappings()]
                engine.dispose()
                slack_messages = slack.messages()
                mails = sink.messages()
        finally:
            api.stop()
    desk = {u["Id"] for u in store.scan("User") if u.get("Team__c") == simulate.DESK_TEAM}
    leads = {lead["Id"]: lead for lead in store.scan("Lead")}
    store.close()
    return {
        "outbox": outbox,
        "audit": audit,
        "slack": slack_messages,
        "mails": mails,
        "desk": desk,
        "leads": leads,
        "desk_leads": set(org.desk_leads),
    }


@pytest.fixture(scope="module", params=sorted(STARTS))
def demo(request, tmp_path_factory):
    start = STARTS[request.param]
    return start, _drive(tmp_path_factory.mktemp(request.param), start)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def test_a_warning_a_breach_and_an_escalation_arrive_within_ten_minutes(demo) -> None:
    start, found = demo
    end = start + dt.timedelta(minutes=WINDOW_MINUTES)
    # Clocks that started live (not the backlog's), on the desk's leads.
    live = [
        r
        for r in found["outbox"]
        if r["record_id"] in found["desk_leads"]
        and _utc(r["clock_start"]) >= start
        and r["sla_id"] == "sales_touch"
    ]
    sent = {
        (r["checkpoint"], r["channel"]): _utc(r["delivered_at"])
        for r in sorted(live, key=lambda r: r["delivered_at"] or end, reverse=True)
        if r["status"] == "delivered" and r["delivered_at"] is not None
    }
    warnings = [r for r in live if r["checkpoint"] == "warning" and r["channel"] in ("slack", "email")]
    breaches = [r for r in live if r["checkpoint"] == "breach" and r["channel"] in ("slack", "email")]
    actions = [r for r in live if r["checkpoint"] == "breach" and r["channel"] == "crm"]
    assert warnings and breaches and actions, {(r["checkpoint"], r["channel"], r["status"]) for r in live}
    for rows in (warnings, breaches, actions):
        first = min(rows, key=lambda r: _utc(r["created_at"]))
        assert start < _utc(first["created_at"]) <= end
        assert first["status"] in ("delivered", "sent"), first
    # Queued and sent inside the window: the warning to the desk rep and their manager, the breach
    # at once (the demo_request tier is critical: quiet hours do not hold it) to the VPs too.
    assert {("warning", "slack"), ("warning", "email"), ("breach", "slack"), ("breach", "email")} <= set(sent)
    assert all(start < at <= end for at in sent.values())
    recipients = {r["recipient"] for r in breaches if r["status"] == "delivered"}
    assert {"vp.sales@example.com", "vp.marketing@example.com", "vp.revops@example.com"} <= recipients
    # The escalation was performed in the CRM: the lead moved to the desk's manager, audited, in time.
    moved = [
        e
        for e in found["audit"]
        if e["event"] == "reassignment" and e["record_id"] in found["desk_leads"] and _utc(e["at"]) <= end
    ]
    assert moved, sorted({e["event"] for e in found["audit"]})
    for entry in moved:
        lead = found["leads"][entry["record_id"]]
        assert lead["OwnerId"] in found["desk"] and lead["OwnerId"] == entry["detail"]["to"]
    # Both stand-ins got them: Slack posts and e-mails naming a desk lead.
    names = {
        found["leads"][i]["LastName"] for i in found["desk_leads"] if i in {r["record_id"] for r in live}
    }
    posts = [str(m.get("text", "")) for m in found["slack"]]
    subjects = [str(m["Subject"]) for m in found["mails"]]
    for said in ("SLA warning", "SLA breached"):
        assert any(said in text and any(n in text for n in names) for text in posts), said
        assert any(said in text and any(n in text for n in names) for text in subjects), said


def test_only_the_desk_is_alive_then(demo) -> None:
    """No SDR clock that starts then reaches a checkpoint within ten minutes (the teams are closed, or
    APAC's targets are hours long): every live alert is the desk's, so the test is about the desk."""
    start, found = demo
    live = [
        r
        for r in found["outbox"]
        if r["sla_id"] == "sales_touch" and r["clock_start"] is not None and _utc(r["clock_start"]) >= start
    ]
    assert live and all(r["record_id"] in found["desk_leads"] for r in live)
