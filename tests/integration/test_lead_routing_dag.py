"""`dag.test()` of lead_routing against the local Salesforce API, in route and in watch mode.

Airflow runs in a subprocess with its own temp AIRFLOW_HOME (the `airflow_env` fixture); the store
is synced in-process first, as crm_sync would have. What a user sees afterwards: the CRM record's
owner and Routing_Reason__c, the audit entry naming the Airflow run, the unowned-lead alerts queued.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from leadsla.store import schema
from tests.routing_fixtures import POLICY_FILE, Org
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[2]

_RUN = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(sys.argv[1]).dags["lead_routing"]
run = dag.test()
print("RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id,
      "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


def _dag_test(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(ROOT / "dags")], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"dag.test() failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture
def org(salesforce_sandbox, tmp_path):  # noqa: F811
    made = Org(salesforce_sandbox, tmp_path)
    yield made
    made.engine.dispose()


def _env(airflow_env: dict[str, str], org: Org, **extra: str) -> dict[str, str]:
    return dict(
        airflow_env,
        LEADSLA_STORE_URL=str(org.engine.url),
        REQUESTS_CA_BUNDLE=str(org.sb.ca_path),
        AIRFLOW_CONN_SALESFORCE_DEFAULT=org.sb.connection_json(),
        **extra,
    )


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_lead_routing_dag_routes_with_the_reason_on_the_record_and_alerts_on_the_unowned(
    org, airflow_env
) -> None:
    routed, customer = org.leads(org._lead("Una", "US"), org._lead("Jo", "US", Email="jo@globex.example"))
    (nowhere,) = org.leads(
        org._lead("Zed", "ZA", CreatedDate=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    )
    org.resync()
    result = _dag_test(_env(airflow_env, org))
    assert result["state"].endswith("success"), result
    assert result["tasks"] == {"route": "success", "alert_unowned": "success"}

    record = org.sb.get("Lead", customer)
    assert record["OwnerId"] == org.olga
    assert record["Routing_Reason__c"] == "account_owner: Globex Corporation (customer)"
    assert org.sb.get("Lead", routed)["OwnerId"] in {org.ann, org.cat}
    assert "round robin" in org.sb.get("Lead", routed)["Routing_Reason__c"]
    entries = {e.record_id: e for e in org.audit("routing")}
    assert set(entries) == {routed, customer}
    assert (entries[customer].dag_id, entries[customer].run_id) == ("lead_routing", result["run_id"])
    assert entries[customer].task_id == "route"
    alerts = org.audit("unowned_alert_queued")
    assert {e.record_id for e in alerts} == {nowhere}
    assert {e.task_id for e in alerts} == {"alert_unowned"}
    with org.engine.connect() as conn:
        pending = conn.execute(
            sa.select(schema.outbox.c.recipient).where(schema.outbox.c.status == "pending")
        ).scalars()
        assert set(pending) == {"vp.revops@example.com", "#revops"}


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_lead_routing_dag_in_watch_mode_assigns_nothing(org, airflow_env, tmp_path) -> None:
    (tmp_path / "watch.yaml").write_text(
        POLICY_FILE.read_text().replace("  mode: route\n", "  mode: watch\n")
    )
    (waiting,) = org.leads(
        org._lead("Queued", "US", CreatedDate=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    )
    (wrong,) = org.leads(org._lead("Wrong", "US", OwnerId=org.eve))
    org.resync()
    result = _dag_test(_env(airflow_env, org, LEADSLA_POLICY_PATH=str(tmp_path / "watch.yaml")))
    assert result["state"].endswith("success"), result
    assert org.sb.get("Lead", waiting)["OwnerId"] == org.intake
    assert not org.sb.get("Lead", waiting).get("Routing_Reason__c")
    assert org.audit("routing") == [] and org.audit("crm_write") == []
    assert {e.record_id for e in org.audit("misrouted_lead")} == {wrong}
    assert {e.record_id for e in org.audit("unowned_alert_queued")} == {waiting}
