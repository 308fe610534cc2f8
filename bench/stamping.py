"""SLA stamping through the local Salesforce API: 100,000 watched leads, 5,000 changing in a minute.

Seeds the Salesforce stand-in with N accepted (SAL) leads whose SLA fields already show their clock
at minute T (as an earlier stamp run left them), lands them in a fresh store as crm_sync would (the
landing code, without the hours of HTTP a backfill takes; users through the API), and runs the
sales_touch SLA as one real hour so colours move with the clock to the minute: at T+1 `--changing`
leads (5,000 by default: half turn yellow at 75 %, half breach) change and every other lead stays
as it was. Then, as sla_monitor's evaluate and stamp tasks would:

- T: evaluate and stamp (the seed matches the clocks: `baseline_writes` should be 0);
- T+1: evaluate, then the timed stamp run: `changed` records written, `api_calls` (goal: at most
  ceil(changed / 200) + 2), `stamp_s`;
- crm_sync's leads group through the API (our stamps come back), evaluate and stamp T+1 again:
  `sync_loops` counts each way our stamps could re-trigger work (the sync counting them as changed,
  so publishing the CRM asset; a clock they changed; a stamp they caused) - goal 0;
- T+2: nothing changes colour or state: `idle_minute_api_calls` (goal 0);
- `wrong_values`: leads whose SLA fields in the stand-in differ from their clock in the store.

`stamp_s` is the timed run's wall time, `stamp_cpu_s` the CPU this process spent in it (the
stand-in answers in this process, so its share of each call is in both); `load_1m` is the machine's
load when the bench started (on a shared machine wall times stretch with it).

Prints one JSON line (logs go to stderr). Usage: python bench/stamping.py [--leads N] [--changing M]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

HOUR = 3600
REPS = 20
VERSION = "2026.11-tiered"


def _policy(folder: Path) -> Path:
    """The shipped policy with sales_touch as one real hour (colours follow the wall clock)."""
    from leadsla.paths import config_dir

    raw = yaml.safe_load((config_dir() / "sla_policy.yaml").read_text(encoding="utf-8"))
    touch = next(s for s in raw["slas"] if s["id"] == "sales_touch")
    touch["tiers"] = [{"id": "hour", "default": True, "target": {"duration": "1h", "time": "calendar"}}]
    path = folder / "sla_policy.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _accepted_at(i: int, changing: int, t: dt.datetime) -> dt.datetime:
    """Lead i's SAL instant: the first half of the changing ones turn yellow between T and T+1
    (74.2 % -> 75.8 %), the second half breach (99.2 % -> 100.8 %); the rest are 5 to 40 minutes
    in at T and stay green through T+2."""
    if i < changing // 2:
        return t - dt.timedelta(seconds=2670)
    if i < changing:
        return t - dt.timedelta(seconds=3570)
    return t - dt.timedelta(seconds=300 + (i * 7) % 2100)


def _fields_at(sal: dt.datetime, t: dt.datetime, owner: str) -> dict:
    """The SLA fields the lead's clock has at T (one real hour from SAL)."""
    elapsed = (t - sal).total_seconds()
    over = elapsed > HOUR
    due = sal + dt.timedelta(seconds=HOUR)
    return {
        "SLA_Due__c": due,
        "SLA_Colour__c": "red" if over else "yellow" if round(elapsed / HOUR * 100, 2) >= 75 else "green",
        "SLA_State__c": "breached" if over else "running",
        "SLA_Breach__c": over,
        "SLA_Breached_At__c": due if over else None,
        "SLA_Accountable_Owner__c": owner,
        "SLA_Policy_Version__c": VERSION,
    }


def _seed_org(store, leads: int, changing: int, t: dt.datetime) -> None:
    reps = store.bulk_insert(
        "User",
        [
            {
                "FirstName": "Rep",
                "LastName": str(n),
                "Email": f"rep{n}@example.com",
                "Username": f"rep{n}@x.com",
                "IsActive": True,
                "TimeZoneSidKey": "America/New_York",
                "Team__c": "SDR Americas",
            }
            for n in range(REPS)
        ],
    )
    landed = t - dt.timedelta(hours=1)  # before the sync's overlap window
    batch = 10_000
    for start in range(0, leads, batch):
        rows, history = [], []
        for i in range(start, min(leads, start + batch)):
            sal, owner = _accepted_at(i, changing, t), reps[i % REPS]
            rows.append(
                {
                    "LastName": f"Lead {i}",
                    "Company": f"Company {i}",
                    "Status": "SAL",
                    "LeadSource": "Web",
                    "OwnerId": owner,
                    "CreatedDate": sal - dt.timedelta(minutes=5),
                    "SystemModstamp": landed,
                    "LastModifiedDate": landed,
                    **_fields_at(sal, t, owner),
                }
            )
        ids = store.bulk_insert("Lead", rows)
        for lead_id, row in zip(ids, rows, strict=True):
            sal = row["CreatedDate"] + dt.timedelta(minutes=5)
            history.append(
                {
                    "LeadId": lead_id,
                    "Field": "Status",
                    "OldValue": "MQL",
                    "NewValue": "SAL",
                    "CreatedDate": sal,
                    "CreatedById": row["OwnerId"],
                }
            )
        store.bulk_insert("LeadHistory", history)


def _land(org, engine, mapping, t: dt.datetime) -> None:
    """The org's leads and their history in the store exactly as crm_sync lands them, and the
    watermarks at T (crm_sync has read everything up to then)."""
    from leadsla.crm import landing
    from leadsla.store import schema, watermarks
    from leadsla.store.upsert import upsert

    now = dt.datetime.now(dt.UTC)
    for name, table in (("Lead", schema.records), ("LeadHistory", schema.field_history)):
        obj = mapping.objects[name]
        rows = [landing.store_row(obj, raw, synced_at=now) for raw in org.scan(name)]
        with engine.begin() as conn:
            upsert(conn, table, rows)
    with engine.begin() as conn:
        for name in mapping.groups["leads"].objects:
            watermarks.advance(conn, name, t)


def _evaluate(engine, policy, at: dt.datetime) -> dict:
    """sla_monitor's evaluate as far as the clocks: the engine at `at`, new and changed clocks stored."""
    from leadsla.engine import evaluate
    from leadsla.store.audit import AuditContext
    from leadsla.store.clocks import persist_clocks, record_evaluation
    from leadsla.store.mirror import load_frames

    with engine.begin() as conn:
        frames = load_frames(conn)
        evaluation = evaluate(
            records=frames["records"],
            field_history=frames["field_history"],
            activities=frames["activities"],
            users=frames["users"],
            policy=policy,
            now=at,
        )
        counts = persist_clocks(conn, evaluation.clock_rows(), at, AuditContext(task_id="evaluate"))
        record_evaluation(
            conn, now=at, read_at=dt.datetime.now(dt.UTC), clocks=len(evaluation.clocks), run_id=None
        )
    return counts


def _wrong_values(org, engine) -> int:
    """Leads whose SLA fields in the stand-in differ from their clock in the store (checked here
    from the clock's columns, not through the stamping code)."""
    import sqlalchemy as sa

    from leadsla.crm.landing import parse_datetime
    from leadsla.store import schema

    c = schema.clocks
    with engine.connect() as conn:
        clocks = {row.record_id: row for row in conn.execute(sa.select(c).where(c.c.object_type == "Lead"))}
    words = {"running": "running", "breached": "breached", "paused": "paused"}
    wrong = 0
    for lead in org.scan("Lead"):
        clock = clocks.get(lead["Id"])
        if clock is None:
            wrong += 1
            continue
        expected = {
            "SLA_Due__c": clock.deadline,
            "SLA_Colour__c": clock.colour,
            "SLA_State__c": words.get(clock.state, clock.state),
            "SLA_Breach__c": clock.breached_at is not None,
            "SLA_Breached_At__c": clock.breached_at,
            "SLA_Accountable_Owner__c": clock.accountable_owner_id,
            "SLA_Policy_Version__c": clock.policy_version,
        }
        for api, want in expected.items():
            have = lead.get(api)
            if isinstance(want, dt.datetime):
                have = parse_datetime(have)
                want = want.replace(microsecond=0)
            if have != want:
                wrong += 1
                break
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--changing", type=int, default=5_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="leadsla-stamping-bench-"))
    os.environ["AIRFLOW_HOME"] = str(root / "airflow")
    out: dict = {"leads": args.leads, "load_1m": round(os.getloadavg()[0], 1)}
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        from leadsla.configuration import check_files
        from leadsla.crm import sync
        from leadsla.crm.salesforce import SalesforceClient
        from leadsla.store import open_store
        from leadsla.store.audit import AuditContext
        from leadsla.tasks.monitor import run_stamping
        from sandbox import salesforce_api

        configuration = check_files(policy=_policy(root)).raise_for_problems()
        mapping, policy = configuration.mapping, configuration.policy
        t = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=2)
        api = salesforce_api.start(root / "salesforce", daily_limit=10_000_000)
        try:
            os.environ["REQUESTS_CA_BUNDLE"] = str(api.ca_path)
            os.environ["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = api.connection_json()
            _seed_org(api.store, args.leads, args.changing, t)
            engine = open_store(f"sqlite:///{root / 'store.db'}")
            client = SalesforceClient()
            sync.check_mapping(
                client, engine, mapping, dt.datetime.now(dt.UTC), lifecycle=configuration.lifecycle
            )
            sync.sync_group(client, engine, mapping, "org", force=True)
            _land(api.store, engine, mapping, t)
            out["setup_s"] = round(time.perf_counter() - started, 1)

            def stamp(at: dt.datetime, run: str) -> dict:
                context = AuditContext(dag_id="sla_monitor", run_id=run, task_id="stamp", try_number=1)
                return run_stamping(engine, at, context, client=client, configuration=configuration)

            _evaluate(engine, policy, t)
            out["baseline_writes"] = stamp(t, "bench_t0")["written"]

            minute = t + dt.timedelta(minutes=1)
            _evaluate(engine, policy, minute)
            used = api.state.api_used
            t0, cpu0 = time.perf_counter(), time.process_time()
            stamped = stamp(minute, "bench_t1")
            out["stamp_s"] = round(time.perf_counter() - t0, 2)
            out["stamp_cpu_s"] = round(time.process_time() - cpu0, 2)
            out["changed"] = stamped["written"]
            out["api_calls"] = api.state.api_used - used
            out["api_calls_goal"] = math.ceil(out["changed"] / 200) + 2
            out["fields"] = stamped["fields"]

            echoed = sync.sync_group(client, engine, mapping, "leads", force=True)
            again = _evaluate(engine, policy, minute)
            restamped = stamp(minute, "bench_t1_after_sync")
            out["echoes"] = next(o.echoes for o in echoed.objects if o.object == "Lead")
            out["sync_loops"] = (
                int(echoed.records_changed > 0)
                + int(again["clocks_written"] > 0)
                + int(restamped["api_calls"] > 0)
            )

            idle = t + dt.timedelta(minutes=2)
            _evaluate(engine, policy, idle)
            used = api.state.api_used
            stamp(idle, "bench_t2")
            out["idle_minute_api_calls"] = api.state.api_used - used
            out["wrong_values"] = _wrong_values(api.store, engine)
            engine.dispose()
        finally:
            api.stop()
    out["total_s"] = round(time.perf_counter() - started, 1)
    out["ok"] = bool(
        out["changed"] == args.changing
        and out["api_calls"] <= out["api_calls_goal"]
        and out["idle_minute_api_calls"] == 0
        and out["wrong_values"] == 0
        and out["sync_loops"] == 0
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
