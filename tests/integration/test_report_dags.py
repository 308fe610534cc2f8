"""`dag.test()` of the report DAGs: the scheduled run e-mails the last full period before its time,
the `period` param e-mails the one asked for (a current one up to the run's time, titled so); a
run before the CRM mirror is synced past the period fails with a clear message (Airflow retries
it), a second run of the same period sends nothing, and `resend` sends it again.

Airflow runs in a subprocess with its own temp AIRFLOW_HOME (see `airflow_env`); the store is a
seeded SQLite file and `smtp_default` points at the SMTP sink.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsla.store import open_store, schema
from tests.notify_fixtures import smtp_connection, smtp_sink  # noqa: F401 - fixture
from tests.reports_data import generate, synced

ROOT = Path(__file__).resolve().parents[2]

_RUN = r"""
import datetime as dt, json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(sys.argv[1]).dags[sys.argv[2]]
if len(sys.argv) > 5:  # dag.test() waits out a retry_delay in real time: one try is enough here
    for t in dag.tasks:
        t.retries = int(sys.argv[5])
run = dag.test(run_after=dt.datetime.fromisoformat(sys.argv[3]), run_conf=json.loads(sys.argv[4]))
print("RESULT " + json.dumps({"state": str(run.state),
      "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


def _dag_test(
    env: dict[str, str], dag_id: str, run_after: dt.datetime, conf: dict, *, retries: int | None = None
) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(ROOT / "dags"), dag_id, run_after.isoformat(), json.dumps(conf)]
        + ([str(retries)] if retries is not None else []),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"dag.test() failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return dict(json.loads(lines[-1][len("RESULT ") :]), output=done.stdout + done.stderr)


def _mails(sink) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(Path(sink.directory).glob("*.eml"))
    ]


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_report_dags_mail_the_default_or_the_asked_period(airflow_env, smtp_sink, tmp_path):  # noqa: F811
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_store(store_url)
    generate(300).write(engine)  # October 2026 to January 2027
    synced(engine, dt.datetime(2026, 11, 18, 12, 58, tzinfo=dt.UTC))  # before both runs, after W46
    engine.dispose()
    env = dict(
        airflow_env, LEADSLA_STORE_URL=store_url, AIRFLOW_CONN_SMTP_DEFAULT=smtp_connection(smtp_sink.port)
    )

    # The scheduled Monday run: the last full week. Then the same DAG asked for the week it runs in.
    monday = dt.datetime(2026, 11, 16, 13, tzinfo=dt.UTC)
    assert _dag_test(env, "sla_reports_weekly", monday, {})["state"].endswith("success")
    asked = _dag_test(env, "sla_reports_weekly", monday + dt.timedelta(days=2), {"period": "2026-W47"})
    assert asked["state"].endswith("success"), asked
    subjects = sorted(
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
        for p in Path(smtp_sink.directory).glob("*.eml")
    )
    # 13:00 UTC on Wednesday 18 Nov is 08:00 in New York (leadership's timezone).
    assert subjects == ["Weekly SLA summary 2026-W46", "Weekly SLA summary 2026-W47 to 18 Nov 08:00"]


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_report_waits_for_the_sync_then_is_sent_once_unless_resent(airflow_env, smtp_sink, tmp_path):  # noqa: F811
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_store(store_url)
    generate(200).write(engine)
    env = dict(
        airflow_env, LEADSLA_STORE_URL=store_url, AIRFLOW_CONN_SMTP_DEFAULT=smtp_connection(smtp_sink.port)
    )
    monday = dt.datetime(2026, 11, 16, 13, tzinfo=dt.UTC)

    # Before any CRM sync (a fresh `make run`): the task fails, saying why, and nothing is sent.
    early = _dag_test(env, "sla_reports_feedback", monday, {}, retries=0)
    assert early["tasks"]["send"].endswith("failed"), early["tasks"]
    assert "CRM mirror not synced past 2026-11-16T05:00+00:00 (end of 2026-W46) yet" in early["output"]
    assert "last successful sync of every object group started: never" in early["output"]
    assert _mails(smtp_sink) == []

    synced(engine, monday + dt.timedelta(minutes=40))  # the first sync lands; the next try finds it
    # (a new run: dag.test() cannot re-run the same run id; it covers the same default period)
    assert _dag_test(env, "sla_reports_feedback", monday + dt.timedelta(minutes=45), {})["state"].endswith(
        "success"
    )
    (first,) = _mails(smtp_sink)
    assert first["Subject"] == "Lead feedback digest 2026-W46"

    # The same period again (a manual trigger): the run succeeds, sends nothing and audits the skip.
    again = _dag_test(env, "sla_reports_feedback", monday + dt.timedelta(hours=2), {"period": "2026-W46"})
    assert again["state"].endswith("success") and len(_mails(smtp_sink)) == 1
    assert "already sent at" in again["output"]

    resent = _dag_test(
        env, "sla_reports_feedback", monday + dt.timedelta(hours=3), {"period": "2026-W46", "resend": True}
    )
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
        (event, "sla_reports_feedback", "send", "2026-W46", first["Message-ID"])
        for event in ("report_sent", "report_skipped", "report_sent")
    ]
    assert all(r.try_number >= 1 for r in rows) and rows[2].detail["resend"] is True


def test_report_dags_retry_for_an_hour_and_take_a_resend_param():
    from airflow.dag_processing.dagbag import DagBag

    dags = DagBag(dag_folder=str(ROOT / "dags")).dags
    for name in ("weekly", "feedback", "monthly", "quarterly"):
        dag = dags[f"sla_reports_{name}"]
        (task,) = dag.tasks
        assert task.retries * task.retry_delay >= dt.timedelta(hours=1) and task.retry_delay <= dt.timedelta(
            minutes=5
        )
        assert dag.params["resend"] is False and dag.params.get_param("resend").schema["type"] == "boolean"
