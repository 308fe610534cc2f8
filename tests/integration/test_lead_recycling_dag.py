"""`dag.test()` of lead_recycling against the local Salesforce API, in auto mode.

Airflow runs in a subprocess with its own temp AIRFLOW_HOME (the `airflow_env` fixture); the store
is synced in-process first, as crm_sync would have. What a user sees afterwards: the lead Recycled
with its reason in the CRM, the audit entry naming the Airflow run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.recycling_fixtures import Org, policy_file
from tests.sandbox_fixtures import salesforce_sandbox  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[2]

_RUN = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(sys.argv[1]).dags["lead_recycling"]
run = dag.test()
print("RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id,
      "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


@pytest.fixture
def org(salesforce_sandbox, tmp_path):  # noqa: F811
    made = Org(salesforce_sandbox, tmp_path)
    yield made
    made.engine.dispose()


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_lead_recycling_dag_recycles_a_silent_lead_and_audits_the_run(org, airflow_env, tmp_path) -> None:
    silent = org.worked("Silent", 14)
    fresh = org.worked("Fresh", 1, attempts=1)
    org.resync()
    env = dict(
        airflow_env,
        LEADSLA_STORE_URL=str(org.engine.url),
        REQUESTS_CA_BUNDLE=str(org.sb.ca_path),
        AIRFLOW_CONN_SALESFORCE_DEFAULT=org.sb.connection_json(),
        LEADSLA_POLICY_PATH=str(policy_file(tmp_path, [org.bot], mode="auto")),
    )
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(ROOT / "dags")], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"dag.test() failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["state"].endswith("success") and result["tasks"] == {"recycle": "success"}, result
    record = org.sb.get("Lead", silent)
    assert (record["Status"], record["Rejection_Reason__c"]) == ("Recycled", "No Response")
    assert org.sb.get("Lead", fresh)["Status"] == "SAL"
    assert org.sb.get("Lead", fresh)["Contact_Attempts__c"] == 1
    (entry,) = org.audit("lead_recycled")
    assert (entry.record_id, entry.dag_id, entry.run_id, entry.task_id) == (
        silent,
        "lead_recycling",
        result["run_id"],
        "recycle",
    )
