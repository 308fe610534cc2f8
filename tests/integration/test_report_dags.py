"""`dag.test()` of the report DAGs: the scheduled run e-mails the last full period before its time,
the `period` param e-mails the one asked for (a current one up to the run's time, titled so).

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

from leadsla.store import open_store
from tests.notify_fixtures import smtp_connection, smtp_sink  # noqa: F401 - fixture
from tests.reports_data import generate

ROOT = Path(__file__).resolve().parents[2]

_RUN = r"""
import datetime as dt, json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(sys.argv[1]).dags[sys.argv[2]]
run = dag.test(run_after=dt.datetime.fromisoformat(sys.argv[3]), run_conf=json.loads(sys.argv[4]))
print("RESULT " + json.dumps({"state": str(run.state),
      "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


def _dag_test(env: dict[str, str], dag_id: str, run_after: dt.datetime, conf: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", _RUN, str(ROOT / "dags"), dag_id, run_after.isoformat(),
                           json.dumps(conf)], env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"dag.test() failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_report_dags_mail_the_default_or_the_asked_period(airflow_env, smtp_sink, tmp_path):  # noqa: F811
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_store(store_url)
    generate(300).write(engine)  # October 2026 to January 2027
    engine.dispose()
    env = dict(airflow_env, LEADSLA_STORE_URL=store_url, AIRFLOW_CONN_SMTP_DEFAULT=smtp_connection(smtp_sink.port))

    # The scheduled Monday run: the last full week. Then the same DAG asked for the week it runs in.
    monday = dt.datetime(2026, 11, 16, 13, tzinfo=dt.UTC)
    assert _dag_test(env, "sla_reports_weekly", monday, {})["state"].endswith("success")
    asked = _dag_test(env, "sla_reports_weekly", monday + dt.timedelta(days=2), {"period": "2026-W47"})
    assert asked["state"].endswith("success"), asked
    subjects = sorted(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
                      for p in Path(smtp_sink.directory).glob("*.eml"))
    # 13:00 UTC on Wednesday 18 Nov is 08:00 in New York (leadership's timezone).
    assert subjects == ["Weekly SLA summary 2026-W46", "Weekly SLA summary 2026-W47 to 18 Nov 08:00"]
