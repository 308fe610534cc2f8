"""War Room response times with 100,000 leads in the store (goal: under a second).

Seeds a SQLite store with `tests.reports_data.generate(N)` (12 reps in three teams, ~85k clocks,
~280k Status changes, ~185k audit rows; the seeded file is reused between runs unless --fresh),
then drives the FastAPI app with a token minted by Airflow's auth manager (TestClient, in-process)
and prints ONE JSON line:

- page_cold_*: the page for a filter set not seen before (every range figure computed from the store)
- page_warm_*: the same filter set again within the range-figure TTL (live panel still recomputed)
- drilldown_*: the records behind a figure (after the page, as a reader clicks through)
- timeline_*: a lead's "why" timeline
- page_cold_cpu_p50_s: CPU time of the process per cold page (wall time minus waiting for a core)

Usage: python bench/war_room.py [--leads 100000] [--fresh]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--fresh", action="store_true", help="seed again even if the seeded file exists")
    args = ap.parse_args()
    # Airflow and its auth manager print to stdout (log lines, generated passwords): send fd 1 to
    # stderr for the run and keep the real stdout for the one JSON line.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    home = Path(tempfile.mkdtemp(prefix="leadsla-bench-airflow-"))
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
    from tests.reports_data import generate

    from leadsla.store import open_store
    from leadsla.war_room.app import auth_manager, create_app

    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    db = Path(tempfile.gettempdir()) / f"leadsla-bench-war-room-{args.leads}.db"
    seed_s = 0.0
    if args.fresh or not db.exists():
        for f in db.parent.glob(db.name + "*"):
            f.unlink()
        t0 = time.perf_counter()
        engine = open_store(f"sqlite:///{db}")
        generate(args.leads).write(engine)
        seed_s = round(time.perf_counter() - t0, 1)
    else:
        engine = open_store(f"sqlite:///{db}")
    now = dt.datetime(2027, 1, 29, 15, tzinfo=dt.UTC)  # generate()'s default "now": start + 120 days
    client = TestClient(create_app(engine=engine, clock=lambda: now))
    client.cookies.set(
        "_token", auth_manager().generate_jwt(SimpleAuthManagerUser(username="bench", role="ADMIN"))
    )

    cpu: dict[str, list[float]] = {}

    def timed(path: str, **params: str) -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        r = client.get(path, params=params)
        elapsed = time.perf_counter() - t0
        cpu.setdefault(path, []).append(time.process_time() - c0)
        assert r.status_code == 200, (path, params, r.status_code, r.text[:300])
        return elapsed

    timed("/")  # warm imports, templates, SQLite page cache
    cpu.clear()
    cold = [timed("/", end=(now.date() - dt.timedelta(days=d)).isoformat()) for d in range(1, 11)]
    cold_cpu = cpu.pop("/")
    warm = [timed("/") for _ in range(10)]
    figures = [
        "team_violated:sdr_west",
        "rep_violated:Dee East",
        "funnel:SQL",
        "reason:No budget",
        "open:green",
        "overall_violated",
        "breaches_today",
        "funnel:MQL",
    ]
    drill = [timed("/drill", figure=fig) for fig in figures * 2]
    leads = [f"00Q{i:015d}" for i in range(0, args.leads, max(1, args.leads // 20))]
    timeline = [timed(f"/lead/{lead}") for lead in leads]
    print(
        json.dumps(
            {
                "leads": args.leads,
                "seed_s": seed_s,
                "page_cold_p50_s": _p(cold, 0.5),
                "page_cold_p95_s": _p(cold, 0.95),
                "page_warm_p50_s": _p(warm, 0.5),
                "page_warm_p95_s": _p(warm, 0.95),
                "drilldown_p50_s": _p(drill, 0.5),
                "drilldown_p95_s": _p(drill, 0.95),
                "timeline_p50_s": _p(timeline, 0.5),
                "timeline_p95_s": _p(timeline, 0.95),
                "page_cold_mean_s": round(statistics.mean(cold), 4),
                # CPU seconds of this process (all its threads) per cold page: what the page costs, apart
                # from waiting for a core on a shared machine.
                "page_cold_cpu_p50_s": _p(cold_cpu, 0.5),
                "goal_s": 1.0,
            }
        ),
        file=out,
        flush=True,
    )


if __name__ == "__main__":
    main()
