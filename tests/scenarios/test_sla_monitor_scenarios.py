"""Three go-live scenarios end to end through the real `sla_monitor` DAG (`dag.test()`), on both
shipped policies: a lead qualified without a task (handed on: no breach, no escalation), a lead
worked only by mass and sequence e-mails (it still breaches and is escalated in the CRM), and a
recycled lead back in SAL (two clocks, each with its own alerts).

The scenarios' own stories (`leadsla.scenarios`) are written into a SQLite store and the same rep,
manager and leads into the Salesforce stand-in (its ids replace the scenarios'); Airflow runs in a
subprocess with time-machine at each run's time, at every instant the three scenarios look at,
plus one run a minute after the leads arrive. Slack and SMTP are the local stand-ins.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from leadsla.scenarios.run import scenario_named
from leadsla.scenarios.setting import Setting, lead_id
from leadsla.scenarios.story import Frames
from leadsla.store import open_store, schema
from tests.notify_fixtures import MANAGER, REP, slack_connection, smtp_connection
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)
from tests.scenarios.policies import SHIPPED, shipped

ROOT = Path(__file__).resolve().parents[2]
END_TO_END = ("qualified_without_a_task", "automated_email_does_not_stop", "recycled_and_back")
VP_EMAILS = {"vp.sales@example.com", "vp.marketing@example.com", "vp.revops@example.com"}

_RUN = r"""
import datetime as dt, json, sys
import time_machine
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(sys.argv[1]).dags["sla_monitor"]
out = []
for stamp in json.loads(sys.argv[2]):
    at = dt.datetime.fromisoformat(stamp)
    with time_machine.travel(at, tick=True):
        run = dag.test(run_after=at)
        out.append({"at": stamp, "state": str(run.state),
                    "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}})
print("RESULT " + json.dumps(out))
"""


def _own_airflow(airflow_env: dict[str, str], home: Path) -> dict[str, str]:
    """The session's migrated Airflow, copied to `home`: this test's runs (the same run times for
    each policy) never meet another test's."""
    home.mkdir()
    shutil.copy(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db", home / "airflow.db")
    return airflow_env | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }


def _run_sla_monitor(env: dict[str, str], times: list[dt.datetime]) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(ROOT / "dags"), json.dumps([t.isoformat() for t in times])],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"dag.test() failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def _merged(frames: list[Frames]) -> Frames:
    def join(name: str, key: str | None) -> pd.DataFrame:
        out = pd.concat([getattr(f, name) for f in frames], ignore_index=True)
        return out.drop_duplicates(key) if key else out

    return Frames(
        records=join("records", "record_id"),
        field_history=join("field_history", None),
        activities=join("activities", "activity_id"),
        users=join("users", "user_id"),
        queues=join("queues", "queue_id"),
    )


def _rows(frame: pd.DataFrame) -> list[dict]:
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for row in rows:
        for key, value in row.items():
            if isinstance(value, pd.Timestamp):
                row[key] = value.to_pydatetime()
    return rows


def _seed_store(url: str, frames: Frames, seeded_at: dt.datetime) -> None:
    engine = open_store(url)
    with engine.begin() as conn:
        conn.execute(
            schema.users.insert(), [r | {"fields": {}, "synced_at": seeded_at} for r in _rows(frames.users)]
        )
        conn.execute(
            schema.records.insert(),
            [r | {"modified_at": seeded_at, "synced_at": seeded_at} for r in _rows(frames.records)],
        )
        conn.execute(
            schema.field_history.insert(),
            [r | {"history_id": f"017SCN{n:09d}AAA"} for n, r in enumerate(_rows(frames.field_history), 1)],
        )
        if len(frames.activities):
            conn.execute(
                schema.activities.insert(),
                [r | {"synced_at": r["created_at"]} for r in _rows(frames.activities)],
            )
        if len(frames.queues):
            conn.execute(schema.queues.insert(), [r | {"synced_at": seeded_at} for r in _rows(frames.queues)])
    engine.dispose()


def _seed_crm(sb, frames: Frames, cast, seeded_at: dt.datetime) -> dict[str, str]:
    """The rep, their manager and the leads in the Salesforce stand-in; scenario id -> CRM id."""
    people = {}
    for person in (cast.manager, cast.rep):
        first, last = person.name.split(" ", 1)
        (people[person.user_id],) = sb.seed(
            "User",
            [
                {
                    "FirstName": first,
                    "LastName": last,
                    "Email": person.email,
                    "Username": person.email,
                    "IsActive": True,
                    "TimeZoneSidKey": person.timezone,
                    "ManagerId": people.get(person.manager_id or ""),
                }
            ],
        )
    leads = _rows(frames.records)
    crm_ids = sb.seed(
        "Lead",
        [
            {
                "FirstName": "Ada",
                "LastName": lead["record_id"],
                "Company": lead["company"],
                "Status": lead["status"],
                "LeadSource": lead["lead_source"],
                "OwnerId": people[lead["owner_id"]],
                "CreatedDate": seeded_at,
                "SystemModstamp": seeded_at,
                "LastModifiedDate": seeded_at,
            }
            for lead in leads
        ],
    )
    return people | {lead["record_id"]: crm_id for lead, crm_id in zip(leads, crm_ids, strict=True)}


def _read(engine: sa.Engine, table: sa.Table, *where) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(table).where(*where)).all()


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
@pytest.mark.parametrize("policy_name", list(SHIPPED))
def test_three_scenarios_through_sla_monitor(policy_name, salesforce_sandbox, airflow_env, tmp_path):  # noqa: F811
    from sandbox.slack_api import SlackSandbox
    from sandbox.smtp_sink import SmtpSink

    policy = shipped(policy_name)
    cases = {name: scenario_named(name).build(policy) for name in END_TO_END}
    story = _merged([case.frames for case in cases.values()])
    arrivals = story.field_history["changed_at"].min().to_pydatetime()
    seeded_at = arrivals - dt.timedelta(hours=1)
    cast = Setting.of(policy).cast
    ids = _seed_crm(salesforce_sandbox, story, cast, seeded_at)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    _seed_store(store_url, story.with_ids(ids), seeded_at)
    times = sorted(
        {arrivals + dt.timedelta(minutes=1), *(t for case in cases.values() for t in case.moments)}
    )

    slack = SlackSandbox(data_dir=tmp_path / "slack", per_channel_interval=0.0)
    slack.add_users([REP, MANAGER])
    for channel in ("#sales-leadership", "#marketing-leadership", "#revops", "#sdr-east"):
        slack.add_channel(channel, channel[1:])
    with slack, SmtpSink(tmp_path / "mail") as sink:
        env = dict(
            _own_airflow(airflow_env, tmp_path / "airflow_home"),
            LEADSLA_STORE_URL=store_url,
            REQUESTS_CA_BUNDLE=str(salesforce_sandbox.ca_path),
            AIRFLOW_CONN_SALESFORCE_DEFAULT=salesforce_sandbox.connection_json(),
            AIRFLOW_CONN_SLACK_API_DEFAULT=slack_connection(slack.base_url),
            AIRFLOW_CONN_SMTP_DEFAULT=smtp_connection(sink.port),
            LEADSLA_POLICY_PATH=str(SHIPPED[policy_name]),
            LEADSLA_INSTANCE_URL="https://acme.my.salesforce.com",
        )
        runs = _run_sla_monitor(env, times)
        mail_to = [m["To"] for m in sink.messages()]
    assert [r["at"] for r in runs] == [t.isoformat() for t in times]
    assert all(r["state"].endswith("success") for r in runs), runs

    engine = open_store(store_url)
    clocks, outbox, audit = schema.clocks, schema.outbox, schema.audit

    # A lead qualified on a call nobody logged: handed on when it left SAL, never breached or escalated.
    (qualified,) = [ids[r] for r in cases["qualified_without_a_task"].frames.records["record_id"]]
    (clock,) = _read(engine, clocks, clocks.c.record_id == qualified, clocks.c.sla_id == "sales_touch")
    assert (clock.state, clock.breached_at) == ("handed_on", None)
    stops = _read(engine, audit, audit.c.record_id == qualified, audit.c.event == "clock_stop")
    assert [(s.detail["outcome"], s.detail["state"]) for s in stops] == [("handed_on", "handed_on")]
    assert _read(engine, outbox, outbox.c.record_id == qualified) == []
    escalated = audit.c.event.in_(["escalation", "reassignment"])
    assert _read(engine, audit, audit.c.record_id == qualified, escalated) == []
    assert salesforce_sandbox.get("Lead", qualified)["OwnerId"] == ids[cast.rep.user_id]

    # Mass and sequence e-mails in the rep's name: the clock still breaches, the lead is escalated.
    # Lead 1 got only mass and sequence e-mails; lead 3 (the control) the rep's own call.
    sequenced, worked = ids[lead_id("AUTOML", 1)], ids[lead_id("AUTOML", 3)]
    (clock,) = _read(engine, clocks, clocks.c.record_id == sequenced, clocks.c.sla_id == "sales_touch")
    assert clock.state == "breached" and clock.breached_at is not None
    events = {a.event for a in _read(engine, audit, audit.c.record_id == sequenced)}
    assert {
        "clock_start",
        "checkpoint_due",
        "message_queued",
        "escalation",
        "reassignment",
        "lock_set",
    } <= events
    lead = salesforce_sandbox.get("Lead", sequenced)
    assert lead["OwnerId"] == ids[cast.manager.user_id] and lead["SLA_Lock_Until__c"]
    breach_rows = _read(engine, outbox, outbox.c.record_id == sequenced, outbox.c.checkpoint == "breach")
    if policy.sla("sales_touch").laddered:  # the escalation ladder: VPs get a daily digest instead
        assert not VP_EMAILS & {r.recipient for r in breach_rows}
    else:  # seed 000 (ladder: flat): every breach e-mails the three VPs
        assert VP_EMAILS <= {r.recipient for r in breach_rows if r.channel == "email"}
        assert VP_EMAILS <= set(mail_to)
    (clock,) = _read(engine, clocks, clocks.c.record_id == worked, clocks.c.sla_id == "sales_touch")
    assert clock.state == "met"  # the control: the rep's own call

    # Recycled and back in SAL: two clocks, each with its own alerts (distinct outbox keys).
    (recycled,) = [ids[r] for r in cases["recycled_and_back"].frames.records["record_id"]]
    two = _read(engine, clocks, clocks.c.record_id == recycled, clocks.c.sla_id == "sales_touch")
    assert sorted(c.state for c in two) == ["handed_on", "running"]
    keys: dict[dt.datetime, set[str]] = {}
    for row in _read(engine, outbox, outbox.c.record_id == recycled, outbox.c.sla_id == "sales_touch"):
        keys.setdefault(row.clock_start, set()).add(row.idempotency_key)
    assert set(keys) == {c.clock_start for c in two}
    first, second = keys.values()
    assert first and second and not first & second
    engine.dispose()
