"""Benchmark the CRM sync against the local Salesforce API; prints ONE JSON line.

Starts the sandbox API in-process, seeds 100,000 Leads with a Status history row and a Task each
(through the sandbox's Python data API, not HTTP), then runs in child processes (so the sync's
peak RSS is its own, not the server's): a backfill of both object groups, idle cycles, and a cycle
after 100 Leads changed. Figures: backfill_leads, backfill_s, backfill_peak_rss_mb,
idle_cycle_api_calls (the every-minute cycle with nothing changed; goal <= 4),
changed_cycle_api_calls (100 changed leads), lost_records (org rows missing from the store).

Usage: python bench/sync.py [--leads N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def _child(group: str, store_url: str, force: bool) -> None:
    """One sync cycle of `group` in this process; prints its summary and timing as JSON."""
    from leadsla.crm import mapping, sync
    from leadsla.crm.salesforce import SalesforceClient
    from leadsla.store import open_store

    engine = open_store(store_url)
    started = time.perf_counter()
    summary = sync.sync_group(SalesforceClient(), engine, mapping.load(), group, force=force)
    seconds = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**summary.to_xcom(), "seconds": seconds, "rss_mb": rss_mb}))


def _cycle(env: dict[str, str], group: str, store_url: str, force: bool = True) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", group, "--store", store_url] + (["--force"] if force else []),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"sync cycle {group} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _seed(store, leads: int, t0: dt.datetime) -> list[str]:
    batch = 10_000
    ids: list[str] = []
    for start in range(0, leads, batch):
        n = min(batch, leads - start)
        stamps = [t0 + dt.timedelta(seconds=start + i) for i in range(n)]
        new = store.bulk_insert(
            "Lead",
            [
                {
                    "LastName": f"Lead {start + i}",
                    "Company": f"Company {start + i}",
                    "Status": "SAL",
                    "Email": f"lead{start + i}@example.com",
                    "LeadSource": "Web",
                    "MQL_Date__c": stamps[i],
                    "CreatedDate": stamps[i],
                    "SystemModstamp": stamps[i],
                }
                for i in range(n)
            ],
        )
        store.bulk_insert(
            "LeadHistory",
            [
                {
                    "LeadId": lid,
                    "Field": "Status",
                    "OldValue": "MQL",
                    "NewValue": "SAL",
                    "CreatedDate": stamps[i] + dt.timedelta(minutes=5),
                }
                for i, lid in enumerate(new)
            ],
        )
        store.bulk_insert(
            "Task",
            [
                {
                    "WhoId": lid,
                    "Subject": "Call",
                    "Type": "Call",
                    "TaskSubtype": "Call",
                    "Status": "Completed",
                    "CreatedDate": stamps[i] + dt.timedelta(minutes=10),
                    "SystemModstamp": stamps[i] + dt.timedelta(minutes=10),
                }
                for i, lid in enumerate(new)
            ],
        )
        ids += new
    return ids


def _lost(store, engine) -> int:
    import sqlalchemy as sa

    from leadsla.store import schema

    with engine.connect() as conn:
        leads = set(
            conn.execute(
                sa.select(schema.records.c.record_id).where(
                    schema.records.c.object_type == "Lead", schema.records.c.is_deleted.is_(False)
                )
            ).scalars()
        )
        history = set(conn.execute(sa.select(schema.field_history.c.history_id)).scalars())
        tasks = set(
            conn.execute(
                sa.select(schema.activities.c.activity_id).where(
                    schema.activities.c.kind == "Task", schema.activities.c.is_deleted.is_(False)
                )
            ).scalars()
        )
    lost = sum(1 for r in store.scan("Lead") if r["Id"] not in leads)
    lost += sum(
        1
        for r in store.scan("LeadHistory")
        if r["Id"] not in history and r["Field"] in ("created", "Status", "OwnerId", "Owner")
    )
    lost += sum(1 for r in store.scan("Task") if r["Id"] not in tasks)
    return lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--idle-cycles", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--store")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.store, args.force)
        return 0

    from leadsla.store import open_store
    from sandbox import salesforce_api

    work = Path(tempfile.mkdtemp(prefix="leadsla-bench-sync-"))
    running = salesforce_api.start(work / "salesforce", daily_limit=10_000_000)
    try:
        t0 = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        ids = _seed(running.store, args.leads, t0)
        store_url = f"sqlite:///{work / 'store.db'}"
        env = dict(
            os.environ,
            REQUESTS_CA_BUNDLE=str(running.ca_path),
            AIRFLOW_CONN_SALESFORCE_DEFAULT=running.connection_json(),
            PYTHONPATH=str(ROOT / "include"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
        )

        backfill = _cycle(env, "leads", store_url)
        peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        _cycle(env, "org", store_url)
        idle = [_cycle(env, "leads", store_url, force=False) for _ in range(args.idle_cycles)]
        org_idle = _cycle(env, "org", store_url, force=False)  # not due within 15 min: no calls

        now = dt.datetime.now(dt.UTC)
        for n, lead_id in enumerate(ids[:100]):
            running.store.update("Lead", lead_id, {"Status": "SQL"}, now=now + dt.timedelta(milliseconds=n))
        changed = _cycle(env, "leads", store_url, force=False)

        engine = open_store(store_url)
        lost = _lost(running.store, engine)
        engine.dispose()
        print(
            json.dumps(
                {
                    "backfill_leads": backfill["objects"]["Lead"],
                    "backfill_rows": sum(backfill["objects"].values()),
                    "backfill_s": round(backfill["seconds"], 1),
                    "backfill_peak_rss_mb": round(peak_rss, 1),
                    "idle_cycle_api_calls": max(c["api_calls"] for c in idle) + org_idle["api_calls"],
                    "changed_cycle_api_calls": changed["api_calls"],
                    "changed_cycle_records": changed["records_changed"],
                    "lost_records": lost,
                }
            )
        )
    finally:
        running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
