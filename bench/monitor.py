"""The monitor's evaluate-and-enqueue step (`leadsla.tasks.monitor.run_monitor`) on the demo org's
first start: seed a new demo org with its backlog (two weeks by default), back-fill the store
through the Salesforce stand-in (crm_sync's tasks), then time the first evaluation (every clock
new, the backlog's due checkpoints queued) and steady-state runs one minute apart with nothing new
synced (the median of --steady runs; incremental, as sla_monitor runs them, the backlog having
landed an hour before), then --steady incremental runs each after 100 records landed anew
(`incremental_100_changed_s`) and --steady full evaluations (`full_run_s`, each a reconcile:
`reconcile_differences` must be 0).

Goals: steady_run_s well under 2 s, first_run_s a few seconds: a checkpoint cannot be sent before
the monitor has queued it, so this time is part of every alert's latency. Everything lives in a
temp folder; nothing is sent. Prints one JSON line (logs go to stderr).

    python bench/monitor.py [--backlog-hours H] [--steady N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def main() -> int:
    from sandbox.devstack import DEMO_BACKLOG_HOURS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog-hours", type=float, default=DEMO_BACKLOG_HOURS)
    parser.add_argument("--steady", type=int, default=5, help="steady-state runs to time (median reported)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="leadsla-monitor-bench-"))
    os.environ["AIRFLOW_HOME"] = str(root / "airflow")
    os.environ["LEADSLA_STORE_URL"] = f"sqlite:///{root / 'store.db'}"
    os.environ.setdefault("LEADSLA_INSTANCE_URL", "https://bench.my.salesforce.com")
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    out: dict = {"backlog_hours": args.backlog_hours}
    with contextlib.redirect_stdout(sys.stderr):
        import sqlalchemy as sa

        from leadsla.policy import load_policy
        from leadsla.store import open_store, schema
        from leadsla.store.audit import AuditContext
        from leadsla.tasks import sync
        from leadsla.tasks.monitor import run_monitor
        from sandbox import salesforce_api
        from sandbox.simulate import run

        run(root / "salesforce", backlog_hours=args.backlog_hours, for_hours=0, start=now)
        api = salesforce_api.start(root / "salesforce")
        try:
            os.environ["REQUESTS_CA_BUNDLE"] = str(api.ca_path)
            os.environ["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = api.connection_json()
            synced = [sync.run_group(group) for group in ("org", "leads")]
        finally:
            api.stop()
        out["records_synced"] = sum(s.get("records_changed", 0) for s in synced)
        engine = open_store()
        with engine.connect() as conn:
            out["records"] = conn.execute(sa.select(sa.func.count()).select_from(schema.records)).scalar_one()

        def timed(at: dt.datetime, run_id: str, mode: str = "auto") -> tuple[float, dict]:
            # Each Airflow task loads the policy afresh, so the timing includes it.
            t0 = time.perf_counter()
            summary = run_monitor(
                engine,
                at,
                AuditContext(dag_id="sla_monitor", run_id=run_id, task_id="evaluate", try_number=1),
                policy=load_policy(),
                mode=mode,
            )
            return time.perf_counter() - t0, summary

        first_s, first = timed(now, "bench_first")
        with engine.begin() as conn:  # steady state: the backlog landed an hour ago, not seconds ago
            for table in (schema.records, schema.field_history, schema.activities, schema.users):
                conn.execute(table.update().values(landed_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
        steady = [timed(now + dt.timedelta(minutes=i), f"bench_{i}") for i in range(1, args.steady + 1)]
        with engine.connect() as conn:
            ids = sorted(conn.execute(sa.select(schema.records.c.record_id)).scalars())
        changed = []
        for i in range(1, args.steady + 1):
            with engine.begin() as conn:  # 100 records land anew (as a sync would stamp them)
                batch = ids[i * 100 : (i + 1) * 100]
                conn.execute(
                    schema.records.update()
                    .where(schema.records.c.record_id.in_(batch))
                    .values(landed_at=dt.datetime.now(dt.UTC))
                )
            changed.append(timed(now + dt.timedelta(minutes=args.steady + i), f"bench_changed_{i}"))
        full = [
            timed(now + dt.timedelta(minutes=2 * args.steady + i), f"bench_full_{i}", mode="full")
            for i in range(1, args.steady + 1)
        ]
        engine.dispose()
    out["clocks"] = first["clocks"]
    out["first_run_s"] = round(first_s, 2)
    out["first_queued"] = first["queued"]
    out["steady_run_s"] = round(statistics.median(s for s, _ in steady), 2)
    out["steady_run_max_s"] = round(max(s for s, _ in steady), 2)
    out["steady_clocks_written"] = max(s["clocks_written"] for _, s in steady)
    out["steady_mode"] = steady[-1][1]["mode"]
    out["steady_records_evaluated"] = statistics.median(s["records_evaluated"] for _, s in steady)
    out["incremental_100_changed_s"] = round(statistics.median(s for s, _ in changed), 2)
    out["changed_records_evaluated"] = statistics.median(s["records_evaluated"] for _, s in changed)
    out["full_run_s"] = round(statistics.median(s for s, _ in full), 2)
    out["reconcile_differences"] = max(s["reconcile_differences"] for _, s in full)
    out["ok"] = bool(out["steady_run_s"] < 2 and out["first_run_s"] < 10)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
