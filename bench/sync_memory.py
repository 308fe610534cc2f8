"""The CRM sync's memory as the org grows: peak RSS of a first (full) sync of N leads.

For each size: a one-hour demo org (`sandbox.simulate`: its users, queues and accounts) with N
more leads bulk-inserted into the Salesforce stand-in (the demo org's reps, sources and
countries; created over the last 90 days), then crm_sync's own tasks (`tasks.sync.run_group`
"org" then "leads", through the stand-in's REST API and the quality gate) into an empty SQLite
store, in a child process whose peak RSS is reported. Bounded memory: the peak stays flat as N
grows (the sync holds one page at a time). Prints ONE JSON line:
{"sizes": [{"leads", "sync_s", "peak_rss_mb", "records_changed"}...], "rss_growth_mb_per_100k"}.

    python bench/sync_memory.py [--leads 20000,100000,200000]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include")]

#: A past weekday (the stand-in's quality gate refuses future timestamps).
START = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC)


def seed_org(root: Path, leads: int) -> None:
    """The demo org under `root`/salesforce with `leads` more leads."""
    from sandbox.sf_store import OrgStore
    from sandbox.simulate import run

    run(root / "salesforce", backlog_hours=1, for_hours=0, start=START)
    store = OrgStore(root / "salesforce" / "org.sqlite3")
    rng = random.Random(leads)
    reps = [
        (row[0], row[1])
        for row in store._db.execute(  # noqa: SLF001 - the stand-in's own file, seeding only
            "select id, json_extract(data, '$.Department') from records where object='User'"
            " and json_extract(data, '$.Title') = 'SDR'"
        )
    ]
    sources = [("Web", "Enterprise"), ("Webinar", "Mid-Market"), ("Content Download", "Inbound")]
    for first in range(0, leads, 20_000):
        rows = []
        for i in range(first, min(leads, first + 20_000)):
            owner, _team = reps[i % len(reps)]
            source, lead_type = sources[i % len(sources)]
            created = START - dt.timedelta(seconds=rng.uniform(3600, 90 * 86400))
            stamp = created.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
            rows.append(
                {
                    "FirstName": "Lead",
                    "LastName": f"Number {i}",
                    "Company": f"Company {i // 3}",
                    "Email": f"lead{i}@company{i // 3}.example",
                    "Status": "MQL",
                    "OwnerId": owner,
                    "LeadSource": source,
                    "Lead_Type__c": lead_type,
                    "Country": "US",
                    "MQL_Date__c": stamp,
                    "Account_Tier__c": "Tier 2",
                    "CreatedDate": stamp,
                    "SystemModstamp": stamp,
                }
            )
        store.bulk_insert("Lead", rows, now=START)
    store.close()


def child(root: Path) -> dict:
    """The sync into an empty store under `root` (in this process; the stand-in serves from the
    parent, whose connection the environment carries): its time and counts."""
    from leadsla.tasks import sync

    os.environ["AIRFLOW_HOME"] = str(root / "airflow")
    os.environ["LEADSLA_STORE_URL"] = f"sqlite:///{root / 'store.db'}"
    t0 = time.perf_counter()
    synced = [sync.run_group(group) for group in ("org", "leads")]
    elapsed = time.perf_counter() - t0
    if not all(s["status"] == "success" for s in synced):
        raise SystemExit(f"sync failed: {[s.get('message') for s in synced]}")
    return {"sync_s": round(elapsed, 1), "records_changed": sum(s["records_changed"] for s in synced)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leads", default="20000,100000,200000", help="comma-separated sizes")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        with contextlib.redirect_stdout(sys.stderr):
            out = child(Path(args.child))
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(out), flush=True)
        return 0
    sizes = []
    for leads in (int(n) for n in args.leads.split(",")):
        root = Path(tempfile.mkdtemp(prefix="leadsla-sync-memory-"))
        try:
            with contextlib.redirect_stdout(sys.stderr):
                seed_org(root, leads)
            from sandbox import salesforce_api

            api = salesforce_api.start(root / "salesforce")  # served from here: not the child's memory
            env = dict(
                os.environ,
                REQUESTS_CA_BUNDLE=str(api.ca_path),
                AIRFLOW_CONN_SALESFORCE_DEFAULT=api.connection_json(),
            )
            try:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(root)],
                    stdout=subprocess.PIPE,
                    text=True,
                    check=True,
                    env=env,
                )
            finally:
                api.stop()
            sizes.append({"leads": leads, **json.loads(done.stdout.strip().splitlines()[-1])})
            print(sizes[-1], file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    first, last = sizes[0], sizes[-1]
    growth = (
        round((last["peak_rss_mb"] - first["peak_rss_mb"]) / (last["leads"] - first["leads"]) * 100_000, 1)
        if last["leads"] != first["leads"]
        else None
    )
    print(json.dumps({"sizes": sizes, "rss_growth_mb_per_100k": growth}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
