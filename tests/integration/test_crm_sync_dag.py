"""`dag.test()` of crm_sync against the local Salesforce API: tasks, store, asset event only on change.

Airflow runs in a subprocess with its own temp AIRFLOW_HOME (absolute SQLite URL, examples off,
`airflow db migrate` once per session), so this test never touches a developer's Airflow and does
not depend on which Airflow configuration the test process imported first.
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
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

_RUN = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.models.asset import AssetEvent
from airflow.utils.session import create_session
dag = DagBag(sys.argv[1]).dags["crm_sync"]
run = dag.test()
with create_session() as session:
    # This run's own asset events (other tests' runs share the metadata database).
    events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id).count()
print("RESULT " + json.dumps({"state": str(run.state), "events": events,
      "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


def _dag_test(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [PYTHON, "-c", _RUN, str(ROOT / "dags")], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"dag.test() failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_crm_sync_dag_runs_and_emits_the_asset_only_on_change(salesforce_sandbox, airflow_env, tmp_path):  # noqa: F811
    sb = salesforce_sandbox
    t0 = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ids = sb.seed(
        "Lead",
        [
            {"LastName": f"L{i}", "Company": "Acme", "Status": "MQL", "CreatedDate": t0, "SystemModstamp": t0}
            for i in range(12)
        ],
    )
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    env = dict(
        airflow_env,
        LEADSLA_STORE_URL=store_url,
        REQUESTS_CA_BUNDLE=str(sb.ca_path),
        AIRFLOW_CONN_SALESFORCE_DEFAULT=sb.connection_json(),
    )

    first = _dag_test(env)
    assert first["state"].endswith("success"), first
    assert first["tasks"]["publish"].endswith("success"), first
    assert first["events"] == 1
    # The quarantine replay runs inside report: a run's tail is one task start shorter.
    assert set(first["tasks"]) == {
        "check_mapping",
        "sync_leads",
        "sync_org",
        "commit_replay",
        "report",
        "publish",
    }
    engine = open_store(store_url)
    with engine.connect() as conn:
        stored = {r.record_id for r in conn.execute(sa.select(schema.records.c.record_id))}
        runs = conn.execute(sa.select(schema.sync_runs.c.group_name, schema.sync_runs.c.status)).all()
    assert set(ids) <= stored
    assert ("leads", "success") in runs

    second = _dag_test(env)  # nothing changed: publish skips, no new asset event
    assert second["tasks"]["publish"].endswith("skipped"), second
    assert second["tasks"]["sync_org"].endswith("success"), second
    assert second["events"] == 0
    with engine.connect() as conn:
        last = conn.execute(
            sa.select(schema.sync_runs)
            .where(schema.sync_runs.c.group_name == "leads")
            .order_by(schema.sync_runs.c.sync_id.desc())
        ).first()
    assert last.records_changed == 0 and last.api_calls == 4

    # the org's allowance is spent: the sync ends skipped (not failed), the watermark stays
    sb.create("Lead", {"LastName": "late", "Company": "Acme", "Status": "MQL"})
    sb.inject_fault("REQUEST_LIMIT_EXCEEDED", endpoint="query", times=None)
    third = _dag_test(env)
    assert third["tasks"]["sync_leads"].endswith("skipped"), third
    assert third["tasks"]["report"].endswith("success"), third
    assert third["tasks"]["publish"].endswith("skipped"), third
    with engine.connect() as conn:
        statuses = [
            r.status
            for r in conn.execute(
                sa.select(schema.sync_runs.c.status)
                .where(schema.sync_runs.c.group_name == "leads")
                .order_by(schema.sync_runs.c.sync_id)
            )
        ]
    assert statuses[-1] == "limited"
    engine.dispose()
