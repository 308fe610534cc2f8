"""The issue's end-to-end story: five simulated hours of `sla_monitor` runs with `dag.test()`.

A lead goes SAL at 10:00 New York (flat policy: 4 business hours, 2 h warning, breach at target +
1 min). Its SLA fields in the CRM follow the clock: green and due at 14:00 through the warning,
yellow from 13:00 (75 %), red and breached from 14:01, still charged to the rep after the
escalation moved it to her manager and locked it. Airflow runs in a subprocess with a temp
AIRFLOW_HOME (absolute SQLite URL, examples off, `airflow db migrate` once per session) and
time-machine moved to each run's time; Salesforce, Slack and SMTP are the local stand-ins in this
process, reached through AIRFLOW_CONN_* JSON. The store is seeded directly (the CRM sync has its
own dag.test; what it would land, the test writes); the Salesforce sandbox holds the same lead and
users, so the escalation's and the stamps' write-back is real.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsla.store import open_store, schema
from tests.notify_fixtures import MANAGER, REP, slack_connection, smtp_connection
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
DAY = dt.date(2026, 11, 17)  # a Tuesday; New York is on EST (UTC-5)
SAL_AT = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)  # 10:00 New York
DUE_AT = dt.datetime(2026, 11, 17, 19, 0, tzinfo=dt.UTC)  # 14:00 New York: 4 business hours later
RUN_TIMES = [SAL_AT + dt.timedelta(minutes=m) for m in (0, 60, 120, 180, 240, 241, 300)]
VP_EMAILS = {"vp.sales@example.com", "vp.marketing@example.com", "vp.revops@example.com"}

_RUN = r"""
import datetime as dt, json, sys, time
import time_machine
from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
dag = DagBag(sys.argv[1]).dags["sla_monitor"]
out = []
if sys.argv[3] == "run":
    for stamp in json.loads(sys.argv[2]):
        at = dt.datetime.fromisoformat(stamp)
        with time_machine.travel(at, tick=True):
            run = dag.test(run_after=at)
            tasks = {ti.task_id: [str(ti.state), ti.try_number] for ti in run.get_task_instances()}
            out.append({"at": stamp, "state": str(run.state), "tasks": tasks})
else:  # "clear": a real Airflow clear of every run, each run then driven again as dag.test() does
    from airflow import settings
    from airflow.models.taskinstance import clear_task_instances
    from airflow.models.xcom import XComModel
    from airflow.sdk import timezone
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import DagRunState, State, TaskInstanceState
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    session = settings.Session()
    runs = [(r.run_id, r.run_after) for r in session.query(DagRun).filter(DagRun.dag_id == "sla_monitor")
            .order_by(DagRun.run_after)]
    for run_id, run_after in runs:
        dr = session.query(DagRun).filter(DagRun.dag_id == "sla_monitor", DagRun.run_id == run_id).one()
        with time_machine.travel(run_after, tick=True):
            clear_task_instances(dr.get_task_instances(session=session), session,
                                 dag_run_state=DagRunState.QUEUED)
            session.commit()
            dr.dag = scheduler_dag
            dr.set_state(DagRunState.RUNNING)
            session.commit()
            while dr.state == DagRunState.RUNNING:  # the loop of airflow.sdk.definitions.dag.DAG.test()
                session.expire_all()
                schedulable, _ = dr.update_state(session=session)
                for ti in schedulable:
                    if ti.state != TaskInstanceState.UP_FOR_RESCHEDULE:
                        ti.try_number += 1
                    ti.state = TaskInstanceState.SCHEDULED
                    ti.scheduled_dttm = timezone.utcnow()
                session.commit()
                tis = dr.get_task_instances(session=session)
                scheduled = [ti for ti in tis if ti.state == TaskInstanceState.SCHEDULED]
                if not scheduled and any(ti.state not in State.finished for ti in tis):
                    time.sleep(1)
                for ti in scheduled:
                    _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
            summary = session.query(XComModel.value).filter(
                XComModel.dag_id == "sla_monitor", XComModel.run_id == run_id,
                XComModel.task_id == "evaluate", XComModel.key == "return_value").scalar()
            out.append({"at": run_after.isoformat(), "state": str(dr.state),
                        "evaluate": json.loads(summary) if isinstance(summary, str) else summary,
                        "tasks": {ti.task_id: [str(ti.state), ti.try_number]
                                  for ti in dr.get_task_instances(session=session)}})
print("RESULT " + json.dumps(out))
"""


def _runs(env: dict[str, str], times: list[dt.datetime], mode: str = "run") -> list[dict]:
    done = subprocess.run(
        [PYTHON, "-c", _RUN, str(ROOT / "dags"), json.dumps([t.isoformat() for t in times]), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"dag.test() failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    runs = json.loads(lines[-1][len("RESULT ") :])
    for run in runs:
        assert run["state"].endswith("success"), run
    return runs


def _seed(sb, store_url: str) -> dict[str, str]:
    seeded_at = dt.datetime(2026, 11, 17, 14, 0, tzinfo=dt.UTC)
    manager_id, rep_id = sb.seed(
        "User",
        [
            {
                "FirstName": "Max",
                "LastName": "Manager",
                "Email": MANAGER["email"],
                "Username": "max@example.com",
                "IsActive": True,
                "TimeZoneSidKey": "America/New_York",
            },
            {
                "FirstName": "Rita",
                "LastName": "Rep",
                "Email": REP["email"],
                "Username": "rita@example.com",
                "IsActive": True,
                "TimeZoneSidKey": "America/New_York",
            },
        ],
    )
    (lead_id,) = sb.seed(
        "Lead",
        [
            {
                "FirstName": "Ada",
                "LastName": "Lovelace",
                "Company": "Analytical Engines",
                "Status": "SAL",
                "LeadSource": "Web",
                "OwnerId": rep_id,
                "CreatedDate": seeded_at,
                "SystemModstamp": seeded_at,
                "LastModifiedDate": seeded_at,
            }
        ],
    )
    engine = open_store(store_url)
    with engine.begin() as conn:
        conn.execute(
            schema.users.insert(),
            [
                {
                    "user_id": manager_id,
                    "name": "Max Manager",
                    "email": MANAGER["email"],
                    "manager_id": None,
                    "team": "sdr_east",
                    "timezone": "America/New_York",
                    "fields": {},
                    "synced_at": seeded_at,
                },
                {
                    "user_id": rep_id,
                    "name": "Rita Rep",
                    "email": REP["email"],
                    "manager_id": manager_id,
                    "team": "sdr_east",
                    "timezone": "America/New_York",
                    "fields": {},
                    "synced_at": seeded_at,
                },
            ],
        )
        conn.execute(
            schema.records.insert(),
            [
                {
                    "object_type": "Lead",
                    "record_id": lead_id,
                    "name": "Ada Lovelace",
                    "company": "Analytical Engines",
                    "status": "SAL",
                    "owner_id": rep_id,
                    "lead_source": "Web",
                    "created_at": seeded_at,
                    "modified_at": seeded_at,
                    "fields": {"Status": "SAL", "OwnerId": rep_id},
                    "synced_at": seeded_at,
                }
            ],
        )
        conn.execute(
            schema.field_history.insert(),
            [
                {
                    "history_id": "017000000000001AAA",
                    "object_type": "Lead",
                    "record_id": lead_id,
                    "field": "Status",
                    "old_value": "MQL",
                    "new_value": "SAL",
                    "changed_by": rep_id,
                    "changed_at": SAL_AT,
                }
            ],
        )
    engine.dispose()
    return {"lead": lead_id, "rep": rep_id, "manager": manager_id}


def _land_reassignment(sb, store_url: str, ids: dict[str, str]) -> None:
    """The escalation's owner change as crm_sync lands it: the LeadHistory row of the move (the
    engine follows owners through history, and charges the breach to the owner at the breach)."""
    engine = open_store(store_url)
    with engine.begin() as conn:
        [moved_at] = conn.execute(
            sa.select(schema.audit.c.at).where(schema.audit.c.event == "reassignment")
        ).scalars()
        conn.execute(
            schema.field_history.insert().values(
                history_id="017000000000002AAA",
                object_type="Lead",
                record_id=ids["lead"],
                field="OwnerId",
                old_value=ids["rep"],
                new_value=ids["manager"],
                changed_by=sb.store.integration_user_id,
                changed_at=moved_at,
            )
        )
    engine.dispose()


def _sla_fields(sb, lead: str) -> dict:
    """The lead's SLA fields in the CRM (the stand-in), as a rep's list view would show them."""
    from leadsla.crm.landing import parse_datetime

    record = sb.get("Lead", lead)
    return {
        "due": parse_datetime(record.get("SLA_Due__c")),
        "colour": record.get("SLA_Colour__c"),
        "state": record.get("SLA_State__c"),
        "breach": record.get("SLA_Breach__c"),
        "breached_at": parse_datetime(record.get("SLA_Breached_At__c")),
        "accountable": record.get("SLA_Accountable_Owner__c"),
        "owner": record.get("OwnerId"),
        "locked": bool(record.get("SLA_Lock_Until__c")),
        "version": record.get("SLA_Policy_Version__c"),
        "first_response": record.get("First_Response_Date__c"),
    }


def _snapshot(engine: sa.Engine, slack, sink) -> dict:
    with engine.connect() as conn:
        outbox = sorted(
            tuple(r)
            for r in conn.execute(
                sa.select(
                    schema.outbox.c.idempotency_key, schema.outbox.c.status, schema.outbox.c.external_id
                )
            )
        )
        audit = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.audit)
            .where(schema.audit.c.event != "crm_write_conflict")
        ).scalar()
    return {"outbox": outbox, "audit": audit, "slack": len(slack.messages()), "mail": len(sink.messages())}


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_five_hours_of_a_lead_nobody_touches(salesforce_sandbox, airflow_env, tmp_path):  # noqa: F811
    from sandbox.slack_api import SlackSandbox
    from sandbox.smtp_sink import SmtpSink

    sb = salesforce_sandbox
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    ids = _seed(sb, store_url)
    slack = SlackSandbox(data_dir=tmp_path / "slack", per_channel_interval=0.0)
    slack.add_users([REP, MANAGER])
    for channel in ("#sales-leadership", "#marketing-leadership", "#revops", "#sdr-east"):
        slack.add_channel(channel, channel[1:])
    with slack, SmtpSink(tmp_path / "mail") as sink:
        env = dict(
            airflow_env,
            LEADSLA_STORE_URL=store_url,
            REQUESTS_CA_BUNDLE=str(sb.ca_path),
            AIRFLOW_CONN_SALESFORCE_DEFAULT=sb.connection_json(),
            AIRFLOW_CONN_SLACK_API_DEFAULT=slack_connection(slack.base_url),
            AIRFLOW_CONN_SMTP_DEFAULT=smtp_connection(sink.port),
            LEADSLA_POLICY_PATH=str(ROOT / "include/config/sla_policy.flat.yaml"),
            LEADSLA_INSTANCE_URL="https://acme.my.salesforce.com",
        )

        _runs(env, RUN_TIMES[:3])  # 10:00, 11:00, 12:00: the 2 h warning is due at 12:00
        mail_to = [m["To"] for m in sink.messages()]
        assert sorted(mail_to) == sorted([REP["email"], MANAGER["email"]]), mail_to
        assert all("2 hours remain" in m.get_body(("plain",)).get_content() for m in sink.messages())
        dms = [m for m in slack.messages() if m["channel"].startswith("D")]
        assert len(dms) == 2, slack.messages()
        # At the warning the record shows the clock the rep was warned about: running, green (the
        # War Room turns yellow at 75 %), due at 14:00 New York, hers.
        fields = _sla_fields(sb, ids["lead"])
        assert fields == {
            "due": DUE_AT,
            "colour": "green",
            "state": "running",
            "breach": False,
            "breached_at": None,
            "accountable": ids["rep"],
            "owner": ids["rep"],
            "locked": False,
            "version": "2026.11-flat",
            "first_response": None,
        }

        _runs(env, RUN_TIMES[3:4])  # 13:00: three of the four hours gone, no CRM change
        assert _sla_fields(sb, ids["lead"]) == {**fields, "colour": "yellow"}

        _runs(env, RUN_TIMES[4:6])  # 14:00, 14:01 (breach)
        lead = sb.get("Lead", ids["lead"])
        assert lead["OwnerId"] == ids["manager"]
        assert lead["SLA_Lock_Until__c"], lead
        # Breached, red, reassigned to the manager and locked: the breach stays the rep's.
        breached = {
            **fields,
            "colour": "red",
            "state": "breached",
            "breach": True,
            "breached_at": DUE_AT,
            "owner": ids["manager"],
            "locked": True,
        }
        assert _sla_fields(sb, ids["lead"]) == breached
        _land_reassignment(sb, store_url, ids)  # what crm_sync brings back from the CRM
        _runs(env, RUN_TIMES[6:])  # 15:00: the lock holds, nothing on the record changes
        assert _sla_fields(sb, ids["lead"]) == breached
        vp_mail = [m for m in sink.messages() if m["To"] in VP_EMAILS]
        assert {m["To"] for m in vp_mail} == VP_EMAILS and len(vp_mail) == 3
        assert all(m["X-Priority"].startswith("1") for m in vp_mail)
        engine = open_store(store_url)
        with engine.connect() as conn:
            events = [
                r.event
                for r in conn.execute(
                    sa.select(schema.audit.c.event).where(schema.audit.c.record_id == ids["lead"])
                )
            ]
            stored = conn.execute(
                sa.select(schema.records.c.owner_id, schema.records.c.lock_until).where(
                    schema.records.c.record_id == ids["lead"]
                )
            ).one()
            contexts = conn.execute(
                sa.select(schema.audit.c.dag_id, schema.audit.c.task_id, schema.audit.c.try_number).where(
                    schema.audit.c.event == "reassignment"
                )
            ).all()
            [reassigned_at] = conn.execute(
                sa.select(schema.audit.c.at).where(schema.audit.c.event == "reassignment")
            ).scalars()
        # The lock runs 24 h from the reassignment (the run after the breach), not from the breach.
        assert reassigned_at > SAL_AT + dt.timedelta(hours=4)
        assert stored.owner_id == ids["manager"] and stored.lock_until == reassigned_at + dt.timedelta(
            hours=24
        )
        assert {
            "clock_start",
            "checkpoint_due",
            "message_queued",
            "message_sent",
            "escalation",
            "reassignment",
            "lock_set",
            "crm_write",
        } <= set(events)
        assert contexts == [("sla_monitor", "escalate", 1)]
        with engine.connect() as conn:
            stamps = conn.execute(
                sa.select(schema.audit.c.at, schema.audit.c.task_id, schema.audit.c.detail)
                .where(schema.audit.c.event == "crm_write", schema.audit.c.actor == "sla_stamping")
                .order_by(schema.audit.c.audit_id)
            ).all()
        # Stamped at 10:00 (everything), 13:00 (the colour), 14:01 (the breach): the minute it
        # happened, by the stamp task, and nothing in the runs where nothing changed.
        # (the write-back audits a write at the wall clock, here the run's time moving on)
        assert [(s.at.replace(second=0, microsecond=0), s.task_id) for s in stamps] == [
            (RUN_TIMES[0], "stamp"),
            (RUN_TIMES[3], "stamp"),
            (RUN_TIMES[5], "stamp"),
        ]
        assert stamps[1].detail == {"fields": {"SLA_Colour__c": "yellow"}}

        before = _snapshot(engine, slack, sink)
        cleared = _runs(env, RUN_TIMES, "clear")  # every run cleared (Airflow's clear) and run again
        assert [r["at"] for r in cleared] == [t.isoformat() for t in RUN_TIMES]
        # Every task ran again; the shards of a full evaluation are skipped below the threshold.
        assert all(
            (state, try_number) == ("skipped", 0) if task == "evaluate_shard" else try_number == 2
            for r in cleared
            for task, (state, try_number) in r["tasks"].items()
        ), cleared
        assert _snapshot(engine, slack, sink) == before  # nothing new reached Slack or the SMTP sink
        with engine.connect() as conn:
            second = [
                r.event
                for r in conn.execute(sa.select(schema.audit.c.event).where(schema.audit.c.try_number == 2))
            ]
        # Each cleared run evaluated again at its own time: the same clocks, every due checkpoint
        # found already handled, so it queued nothing and wrote nothing to the audit trail.
        assert all(r["evaluate"]["clocks"] == 1 and r["evaluate"]["queued"] == 0 for r in cleared), cleared
        assert sum(r["evaluate"]["breaches"] for r in cleared) == 0 and second == []
        engine.dispose()
