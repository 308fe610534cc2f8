"""`dag.test()` of the report DAGs (`wait_for_data >> send`): the scheduled run e-mails the last full
period before its time, the `period` param e-mails the one asked for (a current one up to the
run's time, titled so); a run before the CRM mirror is synced past the period waits in its sensor
(up for reschedule, not a failed try) and sends once the sync lands, or fails by the sensor's
timeout and sends nothing; a second run of the same period sends nothing, and `resend` sends it
again.

Airflow runs in a subprocess with its own temp AIRFLOW_HOME (see `airflow_env`); the store is a
seeded SQLite file and `smtp_default` points at the SMTP sink. The sensor's poke interval and
timeout are shortened for the test (dag.test() waits them out in real time).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsla.store import open_store, schema
from tests.notify_fixtures import smtp_connection, smtp_sink  # noqa: F401 - fixture
from tests.reports_data import generate, synced

ROOT = Path(__file__).resolve().parents[2]
REPORTS = ("weekly", "feedback", "monthly", "quarterly")
MONDAY = dt.datetime(2026, 11, 16, 13, tzinfo=dt.UTC)  # 08:00 in New York: the weekly runs for 2026-W46

_RUN = r"""
import datetime as dt, json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.models.taskreschedule import TaskReschedule
from airflow.utils.session import create_session
dag = DagBag(sys.argv[1]).dags[sys.argv[2]]
sensor = dag.get_task("wait_for_data")
sensor.poke_interval, sensor.timeout = (float(x) for x in sys.argv[5].split(","))
run = dag.test(run_after=dt.datetime.fromisoformat(sys.argv[3]), run_conf=json.loads(sys.argv[4]))
tis = run.get_task_instances()
with create_session() as session:
    reschedules = session.query(TaskReschedule).filter(
        TaskReschedule.ti_id.in_([ti.id for ti in tis if ti.task_id == "wait_for_data"])
    ).count()
print("RESULT " + json.dumps({"state": str(run.state), "reschedules": reschedules,
      "tasks": {ti.task_id: str(ti.state) for ti in tis},
      "tries": {ti.task_id: ti.try_number for ti in tis}}))
"""


def _start(env: dict[str, str], dag_id: str, run_after: dt.datetime, conf: dict, *, wait: str = "1,120"):
    """dag.test() of `dag_id` in a subprocess; `wait` is the sensor's "poke_interval,timeout" in s."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _RUN,
            str(ROOT / "dags"),
            dag_id,
            run_after.isoformat(),
            json.dumps(conf),
            wait,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _result(proc: subprocess.Popen) -> dict:
    output, _ = proc.communicate(timeout=300)
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"dag.test() failed:\n{output[-6000:]}"
    return dict(json.loads(lines[-1][len("RESULT ") :]), output=output)


def _dag_test(env: dict[str, str], dag_id: str, run_after: dt.datetime, conf: dict, **kw) -> dict:
    return _result(_start(env, dag_id, run_after, conf, **kw))


def _sensor_state(env: dict[str, str], dag_id: str, run_after: dt.datetime) -> str | None:
    """The wait_for_data task's state in the Airflow metadata DB (the dag.test() run's id)."""
    db = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        row = conn.execute(
            "SELECT state FROM task_instance WHERE dag_id = ? AND task_id = 'wait_for_data' AND run_id = ?",
            (dag_id, f"manual__{run_after.isoformat()}"),
        ).fetchone()
    return row[0] if row else None


def _mails(sink) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(Path(sink.directory).glob("*.eml"))
    ]


def _env(airflow_env: dict[str, str], store_url: str, sink) -> dict[str, str]:
    return dict(
        airflow_env, LEADSLA_STORE_URL=store_url, AIRFLOW_CONN_SMTP_DEFAULT=smtp_connection(sink.port)
    )


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_report_dags_mail_the_default_or_the_asked_period(airflow_env, smtp_sink, tmp_path):  # noqa: F811
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_store(store_url)
    generate(300).write(engine)  # October 2026 to January 2027
    synced(engine, dt.datetime(2026, 11, 18, 12, 58, tzinfo=dt.UTC))  # before both runs, after W46
    engine.dispose()
    env = _env(airflow_env, store_url, smtp_sink)

    # The scheduled Monday run: the last full week. Then the same DAG asked for the week it runs in.
    first = _dag_test(env, "sla_reports_weekly", MONDAY, {})
    assert first["state"].endswith("success") and first["reschedules"] == 0, first["tasks"]
    asked = _dag_test(env, "sla_reports_weekly", MONDAY + dt.timedelta(days=2), {"period": "2026-W47"})
    assert asked["state"].endswith("success"), asked["tasks"]
    subjects = sorted(m["Subject"] for m in _mails(smtp_sink))
    # 13:00 UTC on Wednesday 18 Nov is 08:00 in New York (leadership's timezone).
    assert subjects == ["Weekly SLA summary 2026-W46", "Weekly SLA summary 2026-W47 to 18 Nov 08:00"]


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_report_waits_for_the_sync_then_is_sent_once_unless_resent(airflow_env, smtp_sink, tmp_path):  # noqa: F811
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_store(store_url)
    generate(200).write(engine)
    env = _env(airflow_env, store_url, smtp_sink)
    dag_id = "sla_reports_feedback"

    # Before any CRM sync (a fresh `make run`) and none coming: the sensor times out, nothing is sent.
    never = _dag_test(env, dag_id, MONDAY, {}, wait="1,3")
    assert never["tasks"] == {
        "wait_for_data": "failed",
        "send": "upstream_failed",
    }
    assert never["tries"]["wait_for_data"] == 1 and never["reschedules"] >= 1  # waited, no retry
    assert "CRM mirror not synced past 2026-11-16T05:00+00:00 (end of 2026-W46) yet" in never["output"]
    assert "last successful sync of every object group started: never" in never["output"]
    assert _mails(smtp_sink) == []

    # The next run waits in its sensor (up for reschedule) until the first sync lands, then sends.
    run_after = MONDAY + dt.timedelta(minutes=30)
    waiting = _start(env, dag_id, run_after, {})
    deadline = time.monotonic() + 240
    while _sensor_state(env, dag_id, run_after) != "up_for_reschedule":
        assert waiting.poll() is None and time.monotonic() < deadline, _result(waiting)
        time.sleep(0.5)
    assert _mails(smtp_sink) == []
    synced(engine, run_after + dt.timedelta(minutes=5))
    waited = _result(waiting)
    assert waited["tasks"] == {
        "wait_for_data": "success",
        "send": "success",
    }
    assert waited["tries"] == {"wait_for_data": 1, "send": 1} and waited["reschedules"] >= 1
    assert re.search(
        r"feedback report 2026-W46: CRM mirror not synced past .* the report waits", waited["output"]
    )
    (first,) = _mails(smtp_sink)
    assert first["Subject"] == "Lead feedback digest 2026-W46"

    # The same period again (a manual trigger): the run succeeds, sends nothing and audits the skip.
    again = _dag_test(env, dag_id, MONDAY + dt.timedelta(hours=2), {"period": "2026-W46"})
    assert again["state"].endswith("success") and again["reschedules"] == 0 and len(_mails(smtp_sink)) == 1
    assert "already sent at" in again["output"]

    resent = _dag_test(env, dag_id, MONDAY + dt.timedelta(hours=3), {"period": "2026-W46", "resend": True})
    assert resent["state"].endswith("success")
    mails = _mails(smtp_sink)
    assert len(mails) == 2 and mails[0]["Message-ID"] == mails[1]["Message-ID"] == first["Message-ID"]

    a = schema.audit
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.event, a.c.dag_id, a.c.task_id, a.c.try_number, a.c.detail)
            .where(a.c.event.in_(["report_sent", "report_skipped"]))
            .order_by(a.c.audit_id)
        ).all()
    engine.dispose()
    assert [(r.event, r.dag_id, r.task_id, r.detail["period"], r.detail["message_id"]) for r in rows] == [
        (event, dag_id, "send", "2026-W46", first["Message-ID"])
        for event in ("report_sent", "report_skipped", "report_sent")
    ]
    assert all(r.try_number >= 1 for r in rows) and rows[2].detail["resend"] is True


def test_report_dags_wait_in_a_sensor_and_retry_only_failures():
    from airflow.dag_processing.dagbag import DagBag

    from leadsla.reports.builders import KIND_OF_REPORT
    from leadsla.reports.period import parse
    from leadsla.tasks.reports import PERIOD_PARAMS

    dags = DagBag(dag_folder=str(ROOT / "dags")).dags
    for name in REPORTS:
        dag = dags[f"sla_reports_{name}"]
        sensor, send = dag.get_task("wait_for_data"), dag.get_task("send")
        assert set(dag.task_dict) == {"wait_for_data", "send"} and sensor.downstream_task_ids == {"send"}
        assert (sensor.mode, sensor.poke_interval, sensor.timeout, sensor.soft_fail) == (
            "reschedule",
            300,
            3600,
            False,
        )
        for task in (sensor, send):
            assert task.retries == 2 and task.retry_delay <= dt.timedelta(minutes=5)
        assert dag.params["resend"] is False and dag.params.get_param("resend").schema["type"] == "boolean"
        # The `period` param accepts exactly the labels the report's kind of period parses.
        pattern = dag.params.get_param("period").schema["pattern"]
        example = PERIOD_PARAMS[KIND_OF_REPORT[name]][1]
        assert re.fullmatch(pattern, "") and re.fullmatch(pattern, example)
        assert parse(KIND_OF_REPORT[name], example, "UTC").label == example
        others = [e for kind, (_, e) in PERIOD_PARAMS.items() if kind != KIND_OF_REPORT[name]]
        assert not any(re.fullmatch(pattern, e) for e in others)
