"""lead_recycling's read and decision on a large org: N leads in SAL (default 100,000) with 0-4
attempts each a day and a half apart (about 1.8 per lead), a share of them (--silent) worked three
times without an answer long enough ago, plus as many recycled leads without a re-engagement
date (never read). Times `disposition.book.candidates` on a SQLite store and
`decisions.recycling.decide` on its frames (the median of --runs), with the attempts already
stamped (a steady run: nothing to write but the due leads' recommendations).

Goal: read_s + decide_s well inside the DAG's 15-minute rhythm (a few seconds). Everything lives
in a temp folder; nothing is sent. Prints one JSON line (logs go to stderr).

    python bench/recycling.py [--leads N] [--silent SHARE] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--silent", type=float, default=0.01, help="share of leads due for recycling")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import numpy as np

    from leadsla.decisions.recipients import Directory
    from leadsla.decisions.recycling import decide
    from leadsla.disposition.book import candidates
    from leadsla.policy import load_policy
    from leadsla.store import open_store, schema

    policy = load_policy()
    rng = np.random.default_rng(7)
    now = dt.datetime(2026, 12, 21, 15, tzinfo=dt.UTC)
    root = Path(tempfile.mkdtemp(prefix="leadsla-recycling-bench-"))
    engine = open_store(f"sqlite:///{root / 'store.db'}")
    n = args.leads
    users = [
        {
            "user_id": f"005U{i:014d}",
            "name": f"Rep {i}",
            "email": f"rep{i}@bench.example",
            "manager_id": "005M00000000000000",
            "team": "SDR Americas",
            "timezone": "America/New_York",
            "is_active": True,
            "synced_at": now,
            "fields": {},
        }
        for i in range(40)
    ]
    records, history, activities = [], [], []
    for i in range(n):
        rid, owner = f"00Q{i:015d}", users[i % 40]["user_id"]
        silent = rng.random() < args.silent
        sal = now - dt.timedelta(days=float(rng.uniform(12, 20) if silent else rng.uniform(0, 6)))
        attempts = 3 if silent else int(rng.integers(0, 5))
        records.append(
            {
                "object_type": "Lead",
                "record_id": rid,
                "name": f"Lead {i}",
                "status": "SAL",
                "owner_id": owner,
                "created_at": sal - dt.timedelta(hours=1),
                "is_deleted": False,
                "fields": {
                    "Contact_Attempts__c": sum(
                        sal + dt.timedelta(days=0.1 + 1.5 * k) <= now for k in range(attempts)
                    )
                },
                "synced_at": now,
            }
        )
        history.append(
            {
                "history_id": f"017{i:015d}",
                "object_type": "Lead",
                "record_id": rid,
                "field": "Status",
                "old_value": "MQL",
                "new_value": "SAL",
                "changed_at": sal,
                "changed_by": owner,
                "synced_at": now,
            }
        )
        for k in range(attempts):
            at = sal + dt.timedelta(days=0.1 + 1.5 * k)
            activities.append(
                {
                    "activity_id": f"00T{len(activities):015d}",
                    "kind": "Task",
                    "who_id": rid,
                    "owner_id": owner,
                    "type": "Email" if k % 2 else "Call",
                    "subtype": "Call",
                    "created_at": at,
                    "created_by": owner,
                    "status": "Completed",
                    "completed_at": at,
                    "is_deleted": False,
                    "synced_at": now,
                }
            )
    old = [
        {**r, "record_id": f"00R{i:015d}", "status": "Recycled", "fields": {}} for i, r in enumerate(records)
    ]
    with engine.begin() as conn:
        for table, rows in (
            (schema.users, users),
            (schema.records, records + old),
            (schema.field_history, history),
            (schema.activities, activities),
        ):
            for start in range(0, len(rows), 5000):
                conn.execute(table.insert(), rows[start : start + 5000])
    reads, decisions = [], []
    plan = None
    for _ in range(args.runs):
        t0 = time.perf_counter()
        with engine.connect() as conn:
            frames = candidates(conn, policy, "Re_Engagement_Date__c")
        t1 = time.perf_counter()
        plan = decide(
            frames["records"],
            frames["field_history"],
            frames["activities"],
            frames["users"],
            policy,
            now,
            directory=Directory(policy, frames["users"], frames["queues"]),
            instance_url="https://bench.my.salesforce.com",
        )
        reads.append(t1 - t0)
        decisions.append(time.perf_counter() - t1)
    engine.dispose()
    print(
        json.dumps(
            {
                "sal_leads": n,
                "recycled_leads_not_read": len(old),
                "activities": len(activities),
                "read_s": round(statistics.median(reads), 3),
                "decide_s": round(statistics.median(decisions), 3),
                "due": len(plan.due),
                "attempts_changed": len(plan.attempts),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
