"""Benchmark the SLA engine: N open clocks over five calendars with holidays, evaluated at one `now`.

Builds store-shaped frames (records, field_history with one SAL per lead, users on five teams
with five calendars, no activities so every clock is open) under the shipped policy (Sales
Touched Lead: three checkpoints - 50 %, 80 %, breach), times `leadsla.engine.evaluate`, and
times the obvious per-clock loop over the scalar calendar API on a sample, scaled. Prints one
JSON line: clocks, wall_s, cpu_s, clocks_per_s, naive_clocks_per_s, speedup_vs_naive, peak_rss_mb.

To compare two versions of the engine, measure them side by side: the script puts its own tree's
include/ first on sys.path, so run each tree's copy of this file (e.g. a copy of main's bench/ and
include/ against a worktree's), alternating runs, at least three each, and compare the medians.
On the shared 2-core machine cpu_s is the steadier figure; note `uptime`'s load with the result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "include"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from leadsla.engine import evaluate  # noqa: E402
from leadsla.policy import load_policy  # noqa: E402

TEAMS = ["sdr_east", "sdr_west", "sdr_emea", "sdr_dach", "sdr_apac"]
LEAD_TYPES = ["Other", "Content Download", "Webinar", "Demo Request", "Other", "Other"]


def build(n: int, now: dt.datetime, seed: int = 42) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_users = 500
    users = pd.DataFrame(
        {
            "user_id": [f"005U{i:06d}" for i in range(n_users)],
            "manager_id": [f"005M{i % 10:06d}" for i in range(n_users)],
            "team": [TEAMS[i % len(TEAMS)] for i in range(n_users)],
            "timezone": "America/New_York",
            "is_active": True,
        }
    )
    record_ids = np.array([f"00Q{i:015d}" for i in range(n)], dtype=object)
    owners = users["user_id"].to_numpy(dtype=object)[rng.integers(0, n_users, n)]
    # Starts in the last 10 days (all before now), so clocks span weekends, holidays and states.
    now_s = int(now.timestamp())
    starts = now_s - rng.integers(60, 10 * 86400, n)
    changed_at = pd.Series(pd.to_datetime(starts, unit="s", utc=True))
    records = pd.DataFrame(
        {
            "object_type": "Lead",
            "record_id": record_ids,
            "status": "SAL",
            "owner_id": owners,
            "lead_source": "Partner",
            "lead_type": np.array(LEAD_TYPES, dtype=object)[rng.integers(0, len(LEAD_TYPES), n)],
            "account_tier": "SMB",
            "country": "US",
            "created_at": changed_at,
        }
    )
    field_history = pd.DataFrame(
        {
            "object_type": "Lead",
            "record_id": record_ids,
            "field": "Status",
            "old_value": "MQL",
            "new_value": "SAL",
            "changed_at": changed_at,
            "changed_by": "005SYSTEM",
        }
    )
    activities = pd.DataFrame(
        {
            c: pd.Series(dtype=object)
            for c in ["activity_id", "kind", "who_id", "what_id", "owner_id", "type", "subtype", "created_at"]
        }
    )
    activities["created_at"] = pd.to_datetime(activities["created_at"], utc=True)
    return {"records": records, "field_history": field_history, "activities": activities, "users": users}


def naive(policy, frames: dict[str, pd.DataFrame], now: dt.datetime, sample: int) -> float:
    """The obvious loop: per clock, scalar elapsed/deadline and one scalar call per checkpoint."""
    sla = policy.sla("sales_touch")
    team_of = dict(zip(frames["users"]["user_id"], frames["users"]["team"], strict=True))
    rows = frames["records"].head(sample)
    starts = frames["field_history"]["changed_at"].head(sample)
    t0 = time.perf_counter()
    out = []
    for rec, start in zip(rows.itertuples(index=False), starts, strict=True):
        start = start.to_pydatetime()
        tier = next(
            t for t in sla.tiers if t.default or all(getattr(rec, k) in v for k, v in (t.when or {}).items())
        )
        cal_name = (
            "24x7" if tier.target.time == "calendar" else policy.team_calendar(team_of.get(rec.owner_id))
        )
        cal = policy.calendar(cal_name)
        target = tier.target.seconds
        elapsed = cal.elapsed(start, now).total_seconds()
        deadline = cal.deadline(start, target)
        reached = [cal.deadline(start, cp.offset_seconds(target)) <= now for cp in sla.all_checkpoints()]
        state = "breached" if elapsed > target else "running"
        out.append((elapsed, deadline, reached, state))
    return sample / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clocks", type=int, default=1_000_000)
    parser.add_argument("--naive-sample", type=int, default=2000)
    args = parser.parse_args()
    now = dt.datetime(2026, 11, 30, 15, 30, tzinfo=dt.UTC)  # the Monday after Thanksgiving
    policy = load_policy()
    frames = build(args.clocks, now)
    # Warm the calendars' year tables (a long-running scheduler keeps them between runs).
    for name in policy.calendar_names:
        policy.calendar(name).elapsed(now - dt.timedelta(days=30), now + dt.timedelta(days=30))
    t0, c0 = time.perf_counter(), time.process_time()
    result = evaluate(policy=policy, now=now, **frames)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert len(result.clocks) == args.clocks, len(result.clocks)
    naive_rate = naive(policy, frames, now, min(args.naive_sample, args.clocks))
    rate = args.clocks / wall
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "clocks": args.clocks,
                "wall_s": round(wall, 3),
                "cpu_s": round(cpu, 3),  # wall >> cpu means the shared machine was busy
                "clocks_per_s": round(rate),
                "naive_clocks_per_s": round(naive_rate),
                "speedup_vs_naive": round(rate / naive_rate, 1),
                "peak_rss_mb": round(peak_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
