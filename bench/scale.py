"""The monitor, the War Room and the store at a million leads (goals: steady run <= 2 s, full
reconcile <= 60 s, peak RSS <= 2,048 MB, incremental = full, War Room cold page < 1 s).

Builds once and caches (`bench/scale_store.py`: an embedded PostgreSQL data folder and a SQLite
file under ~/.cache/leadsla/scale-<schema version>-<generator version>) a store of 1,000,000
leads, ~3,000,000 history rows, 500,000 activities and 50,000 open clocks; then, on a fresh copy
of it per backend (a PostgreSQL database made from the built one as template; a copy of the file),
runs each step in its own process, so one step's memory never hides another's:

- steady: `--runs` monitor runs one minute apart, `--changed` open leads touched between runs as
  the CRM sync lands them (the record upserted with a new modstamp, a Call by its owner upserted
  into activities); the median run;
- full: a full reconcile after them (with the incremental monitor: its full evaluation, and the
  number of clocks where the incremental state differs from it);
- war_room: the War Room's landing page, cold (a filter set not seen before: 10 end dates), as
  `bench/war_room.py` measures it, over the PostgreSQL store.

Prints ONE JSON line: leads, open_clocks, steady_run_s, full_reconcile_s, peak_rss_mb (the largest
of the steps' own peak RSS), incremental_vs_full_diff (null when the monitor has no incremental
mode: every run is a full one), war_room_cold_p95_s, steady_run_s_sqlite, monitor_mode, and each
step's figures. Logs go to stderr.

    python bench/scale.py [--leads 1000000] [--runs 10] [--changed 100] [--skip-sqlite]
                          [--steps steady,full,war_room]

`--steps full --runs 0 --skip-sqlite` times the full reconcile alone (no steady runs before it).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import inspect
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT), str(ROOT / "bench")]

import scale_store  # noqa: E402  (bench/ on the path above)

#: The run's copy of the built PostgreSQL store (LEADSLA_SCALE_RUN_DB: another name, for a second
#: benchmark on the same machine not to drop the copy the first is measuring).
RUN_DB = os.environ.get("LEADSLA_SCALE_RUN_DB", "leadsla_scale_run")
STEPS = ("steady", "full", "war_room")
OPEN_STATES = ("running", "paused", "breached")


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 3)


def _peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --- the monitor, whichever modes it has ----------------------------------------------------------


class Monitor:
    """The monitor's entry points as this benchmark drives them: `steady` (a run every minute),
    `full` (a full reconcile) and `diff` (incremental vs full, None without an incremental mode).

    Today's `tasks.monitor.run_monitor` evaluates everything on every run: steady and full are the
    same call. An incremental monitor is picked up when `run_monitor` takes a `mode` argument
    ("incremental" / "full"; a full run's summary reporting `incremental_vs_full_diff`), or when
    `tasks.monitor` offers `run_incremental` / `run_full_reconcile`.
    """

    def __init__(self) -> None:
        from leadsla.tasks import monitor

        self.module = monitor
        self.has_mode = "mode" in inspect.signature(monitor.run_monitor).parameters
        self.incremental = self.has_mode or hasattr(monitor, "run_incremental")
        self.name = "incremental" if self.incremental else "status_quo"

    def steady(self, engine, at, context, policy) -> dict:
        if self.has_mode:
            return self.module.run_monitor(engine, at, context, policy=policy, mode="incremental")
        if hasattr(self.module, "run_incremental"):
            return self.module.run_incremental(engine, at, context, policy=policy)
        return self.module.run_monitor(engine, at, context, policy=policy)

    def full(self, engine, at, context, policy) -> dict:
        if self.has_mode:
            return self.module.run_monitor(engine, at, context, policy=policy, mode="full")
        if hasattr(self.module, "run_full_reconcile"):
            return self.module.run_full_reconcile(engine, at, context, policy=policy)
        return self.module.run_monitor(engine, at, context, policy=policy)

    @staticmethod
    def diff(summary: dict) -> int | None:
        for key in ("reconcile_differences", "incremental_vs_full_diff", "differences"):
            if key in summary:
                value = summary[key]
                return len(value) if isinstance(value, list | dict) else int(value)
        return None


def touch_as_sync(engine, leads: list[tuple[str, str]], at: dt.datetime) -> None:
    """Land what a sync would for `leads` (record id, owner): each record upserted with a modstamp
    of `at` - 30 s, and a completed Call by its owner then (`store.upsert`, one transaction)."""
    import sqlalchemy as sa

    from leadsla.store import schema
    from leadsla.store.upsert import upsert

    synced_at = dt.datetime.now(dt.UTC)
    touched = at - dt.timedelta(seconds=30)
    stamp = touched.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    records = schema.records
    ids = [rid for rid, _ in leads]
    with engine.begin() as conn:
        rows = [
            dict(row)
            for row in conn.execute(
                sa.select(records).where(records.c.object_type == "Lead", records.c.record_id.in_(ids))
            ).mappings()
        ]
        for row in rows:
            row.update(
                modified_at=touched, synced_at=synced_at, fields={**row["fields"], "SystemModstamp": stamp}
            )
            if "landed_at" in records.c:  # the incremental monitor's mark of what landed when
                row["landed_at"] = synced_at
        upsert(conn, records, rows)
        upsert(
            conn,
            schema.activities,
            [
                {
                    "activity_id": "00T9" + rid[4:],
                    "kind": "Task",
                    "who_id": rid,
                    "what_id": None,
                    "owner_id": owner,
                    "type": "Call",
                    "subtype": "Call",
                    "subject": "Call",
                    "created_at": touched,
                    "created_by": owner,
                    "status": "Completed",
                    "completed_at": touched,
                    "is_deleted": False,
                    "synced_at": synced_at,
                    **({"landed_at": synced_at} if "landed_at" in schema.activities.c else {}),
                }
                for rid, owner in leads
            ],
        )


def _context(run_id: str):
    from leadsla.store.audit import AuditContext

    return AuditContext(dag_id="sla_monitor", run_id=run_id, task_id="evaluate", try_number=1)


def step_monitor(url: str, policy_path: Path, runs: int, changed: int, full: bool) -> dict:
    """The steady runs (and, with `full`, the full reconcile after them) on the store at `url`."""
    import sqlalchemy as sa

    from leadsla.policy import load_policy
    from leadsla.store import open_store, schema

    os.environ.setdefault("LEADSLA_INSTANCE_URL", "https://scale.my.salesforce.com")
    engine = open_store(url)
    policy = load_policy(policy_path)
    monitor = Monitor()
    clocks = schema.clocks
    with engine.connect() as conn:
        open_leads = conn.execute(
            sa.select(clocks.c.record_id, clocks.c.owner_id)
            .where(clocks.c.sla_id == "sales_touch", clocks.c.state.in_(OPEN_STATES))
            .order_by(clocks.c.record_id)
            .limit(runs * changed)
        ).all()
    out: dict = {"monitor_mode": monitor.name}
    steady, written = [], []
    for i in range(runs):
        at = scale_store.NOW + dt.timedelta(minutes=i + 1)
        touch_as_sync(engine, [tuple(r) for r in open_leads[i * changed : (i + 1) * changed]], at)
        t0 = time.perf_counter()
        summary = monitor.steady(engine, at, _context(f"scale_steady_{i}"), policy)
        steady.append(time.perf_counter() - t0)
        written.append(summary.get("clocks_written", 0))
        print(f"steady run {i + 1}/{runs}: {steady[-1]:.2f} s, {summary}", file=sys.stderr, flush=True)
    if steady:  # --runs 0: the full reconcile alone, its own peak RSS
        out.update(
            steady_run_s=round(statistics.median(steady), 3),
            steady_run_max_s=round(max(steady), 3),
            steady_clocks_written=written,
        )
    if full:
        at = scale_store.NOW + dt.timedelta(minutes=runs + 1)
        t0 = time.perf_counter()
        summary = monitor.full(engine, at, _context("scale_full"), policy)
        out["full_reconcile_s"] = round(time.perf_counter() - t0, 3)
        out["incremental_vs_full_diff"] = monitor.diff(summary)
        out["full_load_average"] = round(os.getloadavg()[0], 1)
        print(f"full reconcile: {out['full_reconcile_s']:.2f} s, {summary}", file=sys.stderr, flush=True)
    engine.dispose()
    return out


def step_war_room(url: str, policy_path: Path) -> dict:
    """The War Room's landing page over the store, cold (as `bench/war_room.py`), and warm."""
    home = Path(tempfile.mkdtemp(prefix="leadsla-scale-airflow-"))
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__API_AUTH__JWT_SECRET="bench-" + "x" * 64,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    import logging

    logging.disable(logging.WARNING)
    from airflow import settings
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken
    from fastapi.testclient import TestClient

    from leadsla.policy import load_policy
    from leadsla.store import open_store
    from leadsla.war_room.app import auth_manager, create_app

    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    engine = open_store(url)
    now = scale_store.NOW
    client = TestClient(create_app(engine=engine, clock=lambda: now, policy=load_policy(policy_path)))
    client.cookies.set(
        "_token", auth_manager().generate_jwt(SimpleAuthManagerUser(username="bench", role="ADMIN"))
    )

    cpu: list[float] = []

    def timed(**params: str) -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        r = client.get("/", params=params)
        assert r.status_code == 200, (params, r.status_code, r.text[:300])
        cpu.append(time.process_time() - c0)
        return time.perf_counter() - t0

    first = timed()  # imports, templates
    cpu.clear()
    cold = [timed(end=(now.date() - dt.timedelta(days=d)).isoformat()) for d in range(1, 11)]
    cold_cpu = list(cpu)
    # The 31 days to today: the range holding today's open clocks (a filter set not seen before).
    today = timed(start=(now.date() - dt.timedelta(days=30)).isoformat())
    warm = [timed() for _ in range(5)]
    engine.dispose()
    shutil.rmtree(home, ignore_errors=True)
    return {
        "war_room_first_s": round(first, 3),
        "war_room_cold_p50_s": _p(cold, 0.5),
        "war_room_cold_p95_s": _p(cold, 0.95),
        # CPU seconds of this process per cold page: its cost apart from waiting for a core.
        "war_room_cold_cpu_p50_s": _p(cold_cpu, 0.5),
        "war_room_cold_to_today_s": round(today, 3),
        "war_room_warm_p50_s": _p(warm, 0.5),
        "load_average": round(os.getloadavg()[0], 1),
    }


def run_step(step: str, url: str, policy_path: Path, args: argparse.Namespace) -> dict:
    """Run one step in a child process; its figures and its own peak RSS."""
    command = [
        sys.executable,
        __file__,
        "--step",
        step,
        "--url",
        url,
        "--policy",
        str(policy_path),
        "--runs",
        str(args.runs),
        "--changed",
        str(args.changed),
    ]
    if args.no_full:
        command.append("--no-full")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"step {step} on {url.split(':')[0]} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fresh_copies(server, folder: Path, sqlite: bool = True) -> tuple[str, str]:
    """A PostgreSQL database and (unless not `sqlite`) a SQLite file copied from the built store,
    for this run to change."""
    server.psql(f"DROP DATABASE IF EXISTS {RUN_DB};")
    server.psql(f"CREATE DATABASE {RUN_DB} TEMPLATE {scale_store.BUILT_DB};")
    run_db = folder / "run.db"
    if sqlite:
        for f in folder.glob("run.db*"):
            f.unlink()
        shutil.copy(folder / "scale.db", run_db)
    return scale_store.pg_url(server, RUN_DB), f"sqlite:///{run_db}"


def open_clocks(url: str) -> int:
    import sqlalchemy as sa

    from leadsla.store import open_store, schema

    engine = open_store(url)
    with engine.connect() as conn:
        count = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.clocks)
            .where(schema.clocks.c.state.in_(OPEN_STATES))
        ).scalar_one()
    engine.dispose()
    return count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument(
        "--runs", type=int, default=10, help="steady monitor runs (the median is reported; 0: none)"
    )
    ap.add_argument("--changed", type=int, default=100, help="records the sync changes between runs")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--skip-sqlite", action="store_true", help="no steady runs on SQLite")
    ap.add_argument("--no-full", action="store_true", help="no full reconcile after the steady runs")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--policy", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:  # a child: one step, one JSON line
        with contextlib.redirect_stdout(sys.stderr):
            if args.step == "war_room":
                out = step_war_room(args.url, Path(args.policy))
            else:
                out = step_monitor(args.url, Path(args.policy), args.runs, args.changed, args.step == "full")
        print(json.dumps({**out, "peak_rss_mb": _peak_rss_mb()}), flush=True)
        return 0

    with contextlib.redirect_stdout(sys.stderr):
        built = scale_store.build(args.leads, log=lambda m: print(m, file=sys.stderr, flush=True))
        folder = scale_store.store_dir(args.leads)
        server = scale_store.postgres(folder)
        pg, sqlite = fresh_copies(server, folder, sqlite=not args.skip_sqlite and "steady" in args.steps)
    policy_path = folder / "sla_policy.yaml"
    steps = args.steps.split(",")
    out: dict = {"leads": args.leads, "open_clocks": open_clocks(pg)}
    rss: dict[str, float] = {}
    if "steady" in steps or "full" in steps:
        step = "full" if "full" in steps and not args.no_full else "steady"
        figures = run_step(step, pg, policy_path, args)
        rss["monitor"] = figures.pop("peak_rss_mb")
        out.update(figures)
    if "war_room" in steps:
        figures = run_step("war_room", pg, policy_path, args)
        rss["war_room"] = figures.pop("peak_rss_mb")
        out.update(figures)
    if not args.skip_sqlite and "steady" in steps:
        figures = run_step("steady", sqlite, policy_path, args)
        rss["monitor_sqlite"] = figures.pop("peak_rss_mb")
        out["steady_run_s_sqlite"] = figures["steady_run_s"]
    out["peak_rss_mb"] = max(rss.values()) if rss else None
    out["peak_rss_mb_by_step"] = rss
    out["build"] = built
    out["goals"] = {
        "steady_run_s": 2,
        "full_reconcile_s": 60,
        "peak_rss_mb": 2048,
        "incremental_vs_full_diff": 0,
        "war_room_cold_p95_s": 1,
    }
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
