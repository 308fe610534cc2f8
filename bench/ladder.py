"""VP messages per week before (seed 000, `ladder: flat`) and after (the escalation ladder) on the
demo org's backlog: seed a new demo org with its history (two weeks by default), back-fill the
store through the Salesforce stand-in (crm_sync's tasks), evaluate every clock once, then ask the
monitor's own decisions who each breach in the history tells (`decisions.ladder.asks` resolved
through `decisions.recipients`) under the shipped policy and under the same policy made flat
(`policy.seed000`), and step leadership's daily digest (`decide_breach_digests`) through every
morning of the history.

A VP message is one to a VP contact's address or to a CRM user at the top of the ManagerId
chain (in the demo the director of every rep is the VP Sales, so repeat-offender messages
count). Capacity alerts (the systemic rung) are the same in both modes and are not counted.
Nothing is sent; everything lives in a temp folder. Prints one JSON line (logs go to stderr).

    python bench/ladder.py [--backlog-hours H]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))


def main() -> int:
    from sandbox.devstack import DEMO_BACKLOG_HOURS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog-hours", type=float, default=DEMO_BACKLOG_HOURS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="leadsla-ladder-bench-"))
    os.environ["AIRFLOW_HOME"] = str(root / "airflow")
    os.environ["LEADSLA_STORE_URL"] = f"sqlite:///{root / 'store.db'}"
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    with contextlib.redirect_stdout(sys.stderr):
        from leadsla.store import open_store
        from leadsla.tasks import sync
        from sandbox import salesforce_api
        from sandbox.simulate import run

        run(root / "salesforce", backlog_hours=args.backlog_hours, for_hours=0, start=now)
        api = salesforce_api.start(root / "salesforce")
        try:
            os.environ["REQUESTS_CA_BUNDLE"] = str(api.ca_path)
            os.environ["AIRFLOW_CONN_SALESFORCE_DEFAULT"] = api.connection_json()
            for group in ("org", "leads"):
                sync.run_group(group)
        finally:
            api.stop()
        engine = open_store()
        out = vp_mails(engine, now, args.backlog_hours)
        engine.dispose()
    print(json.dumps(out))
    return 0


def vp_mails(engine, now: dt.datetime, backlog_hours: float) -> dict:
    """VP messages for the breaches of the store's last `backlog_hours` (module docstring): seed 000
    against the ladder, under the shipped policy; also used by bench/demo_reports.py."""
    import pandas as pd

    from leadsla.decisions.cells import cell_text
    from leadsla.decisions.keys import normalise_recipient
    from leadsla.decisions.ladder import DIGEST_SOURCE, BreachBook, asks, decide_breach_digests
    from leadsla.decisions.recipients import Directory
    from leadsla.engine import evaluate
    from leadsla.policy import DEFAULT_POLICY_PATH, PolicyError, policy_from_dict, seed000
    from leadsla.store.mirror import load_frames
    from leadsla.yaml_file import read_yaml_file

    with engine.connect() as conn:
        frames = load_frames(conn)
    raw = read_yaml_file(DEFAULT_POLICY_PATH, PolicyError, "the SLA policy")
    ladder = policy_from_dict(raw, "ladder")
    flat = policy_from_dict(seed000(raw), "seed000")
    clocks = evaluate(
        records=frames["records"],
        field_history=frames["field_history"],
        activities=frames["activities"],
        users=frames["users"],
        policy=ladder,
        now=now,
    ).clocks
    users = frames["users"]
    # Leadership in the CRM: the top of the ManagerId chain (no manager of their own). In the
    # demo the reps' managers report to the VP Sales, so the director a repeat reaches is a VP.
    vp_users = {
        normalise_recipient(str(u["email"]))
        for u in users.to_dict("records")
        if cell_text(u.get("email")) and not cell_text(u.get("manager_id"))
    }
    vps = vp_users | {
        normalise_recipient(a) for c in ladder.contacts.values() for a in (c.email, c.slack) if a
    }
    breached = clocks[clocks["breached_at"].notna()]
    since = now - dt.timedelta(hours=backlog_hours)
    breached = breached[pd.to_datetime(breached["breached_at"], utc=True) >= pd.Timestamp(since)]

    def per_breach(policy) -> dict[str, int]:
        directory, book = Directory(policy, users, frames["queues"]), BreachBook.of(clocks)
        counts = {"email": 0, "slack": 0}
        for clock in breached.to_dict("records"):
            sla = policy.sla(str(clock["sla_id"]))
            for ask in asks(sla, sla.breach.as_checkpoint(), clock, book):
                people = directory.resolve(
                    ask.role, cell_text(clock["owner_id"]), cell_text(clock["team"]), sla.team
                )
                for person in people:
                    for channel in ask.channels:
                        address = person.address(channel)
                        if address and normalise_recipient(address) in vps:
                            counts[channel] = counts.get(channel, 0) + 1
        return counts

    before, after = per_breach(flat), per_breach(ladder)
    directory = Directory(ladder, users, frames["queues"])
    handled: set = set()
    digests = {"email": 0, "slack": 0}
    at = since.replace(minute=0)
    while at <= now:  # every hour of the history, as the monitor's runs would see it
        for notice in decide_breach_digests(clocks, frames["records"], directory, at, handled):
            handled.add((DIGEST_SOURCE, None, notice.opened_at, notice.checkpoint))
            for channel, _ in notice.recipients:
                digests[channel] = digests.get(channel, 0) + 1
        at += dt.timedelta(hours=1)
    weeks = backlog_hours / (24 * 7)
    out = {
        "backlog_hours": backlog_hours,
        "breaches": len(breached),
        "vp_mails_seed000": before["email"],
        "vp_mails_ladder": after["email"] + digests["email"],
        "vp_messages_seed000": sum(before.values()),
        "vp_messages_ladder": sum(after.values()) + sum(digests.values()),
        "vp_digests": sum(digests.values()),
        "vp_at_once_ladder": sum(after.values()),
        "critical_breaches": int(breached["critical"].eq(True).sum()),
        "vp_mails_per_week_seed000": round(before["email"] / weeks, 1),
        "vp_mails_per_week_ladder": round((after["email"] + digests["email"]) / weeks, 1),
    }
    out["ok"] = out["vp_mails_ladder"] < out["vp_mails_seed000"] or out["breaches"] == 0
    return out


if __name__ == "__main__":
    sys.exit(main())
