"""`dag.test()` of sla_monitor's evaluation: a reconcile above LEADSLA_SHARD_ABOVE fans out into
mapped `evaluate_shard` tasks merged by `evaluate`; below it `evaluate_shard` is skipped and
`evaluate` does it all. The CRM write-back and delivery tasks are marked done (other tests run them).

Airflow runs in a subprocess with its own temp AIRFLOW_HOME (the `airflow_env` fixture); the store
holds the demo org's day, evaluated in-process first as earlier runs would have.
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
from leadsla.tasks.monitor import run_monitor
from tests.integration.test_incremental_monitor import DAY_END, URL, ctx, demo_mirror, land  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]

_RUN = r"""
import datetime as dt, json, os, sys
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(sys.argv[1]).dags["sla_monitor"]
out = []
for at, above in ((sys.argv[2], "1"), (sys.argv[3], "1000000")):
    os.environ["LEADSLA_SHARD_ABOVE"] = above
    run = dag.test(run_after=dt.datetime.fromisoformat(at), mark_success_pattern="escalate|stamp|deliver")
    tis = run.get_task_instances()
    ours = [ti for ti in tis if ti.task_id in ("shards", "evaluate_shard", "evaluate")]
    sizes = {f"{ti.task_id}[{ti.map_index}]": len(json.dumps(
        ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index))) for ti in ours
        if str(ti.state).endswith("success")}
    out.append({"state": str(run.state), "run_id": run.run_id, "xcom_bytes": sizes,
                "tasks": sorted([ti.task_id, ti.map_index, str(ti.state)] for ti in tis)})
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.xdist_group("airflow")
def test_a_reconcile_above_the_threshold_runs_in_mapped_shards(demo_mirror, airflow_env, tmp_path) -> None:  # noqa: F811
    from sandbox.devstack import write_demo_policy

    rows, policy = demo_mirror
    policy_path = write_demo_policy(tmp_path / "sla_policy.yaml")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_store(url)
    first = DAY_END - dt.timedelta(hours=6)
    land([engine], rows, None, first)
    run_monitor(engine, first, ctx("first"), policy=policy, url=URL)  # full: the first run
    land([engine], rows, first, DAY_END)
    run_monitor(engine, DAY_END - dt.timedelta(minutes=2), ctx("second"), policy=policy, url=URL)
    reconcile, after = DAY_END, DAY_END + dt.timedelta(minutes=1)

    env = dict(
        airflow_env,
        LEADSLA_STORE_URL=url,
        LEADSLA_POLICY_PATH=str(policy_path),
        LEADSLA_RECONCILE_EVERY="1",  # the run after an incremental one reconciles
        LEADSLA_INSTANCE_URL=URL,
    )
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(ROOT / "dags"), reconcile.isoformat(), after.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"dag.test() failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    sharded, alone = json.loads(lines[-1][len("RESULT ") :])

    assert sharded["state"].endswith("success"), sharded
    mapped = [t for t in sharded["tasks"] if t[0] == "evaluate_shard"]
    assert len(mapped) >= 2 and all(t[2].endswith("success") for t in mapped), sharded["tasks"]
    assert [t[1] for t in mapped] == list(range(len(mapped)))
    others = {t[0]: t[2] for t in sharded["tasks"] if t[0] != "evaluate_shard"}
    assert all(state.endswith("success") for state in others.values()), others
    # What goes through XCom stays small: the shards' ranges and counts, never their rows.
    assert max(sharded["xcom_bytes"].values()) < 4096, sharded["xcom_bytes"]

    assert alone["state"].endswith("success"), alone
    states = {t[0]: t[2] for t in alone["tasks"]}
    assert states["evaluate_shard"].endswith("skipped") and states["evaluate"].endswith("success"), alone

    with engine.connect() as conn:
        evaluations = conn.execute(
            sa.select(schema.evaluations.c.run_id, schema.evaluations.c.mode).order_by(
                schema.evaluations.c.evaluation_id
            )
        ).all()
        reconciles = conn.execute(
            sa.select(schema.reconciles.c.run_id, schema.reconciles.c.differences)
        ).all()
        staged = conn.execute(sa.select(schema.evaluation_shards.c.run_id).distinct()).scalars().all()
    assert [tuple(e) for e in evaluations[-2:]] == [
        (sharded["run_id"], "full"),
        (alone["run_id"], "incremental"),
    ]
    assert [tuple(r) for r in reconciles] == [(sharded["run_id"], 0)]  # the incremental state held
    assert staged == [sharded["run_id"]]  # kept until another sharded run writes
    engine.dispose()
