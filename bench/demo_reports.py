"""The demo's first start, as `make run` does it, and the four reports it e-mails: seed a new demo
org with its backlog, back-fill the store through the Salesforce stand-in (crm_sync's tasks), run
the first evaluation (sla_monitor's), then build each report for the period `make run` asks for.

Goal: seeding + first sync + first evaluation well under 2-3 minutes, every report with figures
(non-zero counts), and a rebuild of each report byte-identical. Each report lists the SLAs it has
a section for (`handoffs_in_report`); `vp_mails_seed000` and `vp_mails_ladder` are the e-mails the
VPs got for the history's breaches, every breach told at once (seed 000) against the escalation
ladder's rungs and daily digests (`bench/ladder.py`). Everything lives in a temp folder; nothing is
sent. Prints one JSON line (logs go to stderr).

    python bench/demo_reports.py [--backlog-hours H]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def figures(report) -> dict:
    """A few headline numbers of a report, to show it is not empty, and the SLA ids that have a
    section in it (`handoffs_in_report`)."""
    return {
        **_figures(report),
        "handoffs_in_report": [s.handoff.sla_id for s in report.context.get("sections", [])],
        # Each section's decided clocks and breaches: a handoff with a section but no clock shows here.
        "handoff_decided_breaches": {
            s.handoff.sla_id: [s.decided, s.breaches] for s in report.context.get("sections", [])
        },
    }


def _figures(report) -> dict:
    c = report.context
    if report.name == "weekly":
        return {
            "handoffs": c["handoffs"],
            "violations": c["violations"],
            "revenue_affected": c["revenue"]["amount"],
        }
    if report.name == "feedback":
        return {
            "mqls": c["mqls"],
            "rejects": int(sum(r["rejects"] for r in c["reasons"])),
            "campaigns": len(c["campaigns"]),
        }
    if report.name == "monthly":
        return {"mqls": c["funnel"][0]["leads"], "red_flags_raised": sum(f.raised for f in c["flags"])}
    return {
        "clocks": int(c["targets"][0]["clocks"]) if c["targets"] else 0,
        "recommendation": c["what_if"]["recommendation"].split(":")[0],
    }


def main() -> int:
    from sandbox.devstack import DEMO_BACKLOG_HOURS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog-hours", type=float, default=DEMO_BACKLOG_HOURS)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="leadsla-demo-bench-"))
    os.environ["AIRFLOW_HOME"] = str(root / "airflow")
    os.environ["LEADSLA_STORE_URL"] = f"sqlite:///{root / 'store.db'}"
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    out: dict = {"backlog_hours": args.backlog_hours}
    with contextlib.redirect_stdout(sys.stderr):
        from leadsla.reports.run import build_for
        from leadsla.reports.schedule import report_schedule
        from leadsla.store import open_store
        from leadsla.store.audit import AuditContext
        from leadsla.tasks import sync
        from leadsla.tasks.monitor import run_monitor
        from sandbox import salesforce_api
        from sandbox.devstack import _store_ready, demo_report_periods
        from sandbox.simulate import run

        t0 = time.perf_counter()
        run(root / "salesforce", backlog_hours=args.backlog_hours, for_hours=0, start=now)
        out["seed_s"] = round(time.perf_counter() - t0, 1)
        api = salesforce_api.start(root / "salesforce")
        try:
            os.environ["REQUESTS_CA_BUNDLE"] = str(api.ca_path)
            os.environ["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = api.connection_json()
            t0 = time.perf_counter()
            synced = [sync.run_group(group) for group in ("org", "leads")]
            out["first_sync_s"] = round(time.perf_counter() - t0, 1)
            out["records_synced"] = sum(s.get("records_changed", 0) for s in synced)
        finally:
            api.stop()
        engine = open_store()
        t0 = time.perf_counter()
        summary = run_monitor(
            engine, now, AuditContext(dag_id="sla_monitor", run_id="bench", task_id="evaluate", try_number=1)
        )
        out["first_evaluation_s"] = round(time.perf_counter() - t0, 1)
        out["clocks"], out["messages_queued"] = summary["clocks"], summary["queued"]
        out["first_start_s"] = round(out["seed_s"] + out["first_sync_s"] + out["first_evaluation_s"], 1)
        periods = demo_report_periods(_store_ready(engine), now, report_schedule("weekly")[1])
        reports, identical = {}, True
        for name, label in periods.items():
            t0 = time.perf_counter()
            report, _ = build_for(name, at=now, period=label, engine=engine)
            seconds = round(time.perf_counter() - t0, 1)
            again, _ = build_for(name, at=now, period=label, engine=engine)
            identical &= (report.html("data"), report.csvs, report.images) == (
                again.html("data"),
                again.csvs,
                again.images,
            )
            reports[name] = {"period": report.period.title, "build_s": seconds, **figures(report)}
        # Who the demo history's breaches told among the VPs: seed 000 against the ladder.
        sys.path.insert(0, str(ROOT / "bench"))
        from ladder import vp_mails

        ladder = vp_mails(engine, now, args.backlog_hours)
        out |= {key: ladder[key] for key in ("vp_mails_seed000", "vp_mails_ladder")}
        engine.dispose()
    out["reports"] = reports
    out["rebuild_identical"] = identical
    out["ok"] = bool(
        out["first_start_s"] < 180
        and identical
        and all(v for r in reports.values() for k, v in r.items() if k in ("handoffs", "mqls", "clocks"))
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
