"""Alarm fatigue through the monitor itself (`run_monitor`, flat policy): eight leads of one rep
go SAL together; at the 2 h warning each person gets five messages per channel and one digest;
at the breach every clock of the team's day breached, so leadership gets one capacity alert per
channel and the individual VP breach messages are rolled up. A rerun changes nothing."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from leadsla.paths import config_dir
from leadsla.policy import load_policy
from leadsla.store import schema
from leadsla.store.audit import AuditContext
from leadsla.tasks.monitor import run_monitor

POLICY = load_policy(str(config_dir() / "sla_policy.flat.yaml"))
CTX = AuditContext(dag_id="sla_monitor", run_id="manual__1", task_id="evaluate", try_number=1)
SAL_AT = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)  # Tuesday 10:00 New York
REP, MANAGER = "005000000000001AAA", "005000000000002AAA"
URL = "https://acme.my.salesforce.com"


def seed(engine, leads: int = 8) -> None:
    seeded = SAL_AT - dt.timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(
            schema.users.insert(),
            [
                {
                    "user_id": MANAGER,
                    "name": "Max Manager",
                    "email": "max@example.com",
                    "manager_id": None,
                    "team": "sdr_east",
                    "timezone": "America/New_York",
                    "fields": {},
                    "synced_at": seeded,
                },
                {
                    "user_id": REP,
                    "name": "Rita Rep",
                    "email": "rita@example.com",
                    "manager_id": MANAGER,
                    "team": "sdr_east",
                    "timezone": "America/New_York",
                    "fields": {},
                    "synced_at": seeded,
                },
            ],
        )
        ids = [f"00Q{i:015d}" for i in range(leads)]
        conn.execute(
            schema.records.insert(),
            [
                {
                    "object_type": "Lead",
                    "record_id": rid,
                    "name": f"Lead {rid[-2:]}",
                    "company": "Co",
                    "status": "SAL",
                    "owner_id": REP,
                    "lead_source": "Web",
                    "created_at": seeded,
                    "modified_at": seeded,
                    "fields": {"Status": "SAL", "OwnerId": REP},
                    "synced_at": seeded,
                }
                for rid in ids
            ],
        )
        conn.execute(
            schema.field_history.insert(),
            [
                {
                    "history_id": f"017{i:015d}",
                    "object_type": "Lead",
                    "record_id": rid,
                    "field": "Status",
                    "old_value": "MQL",
                    "new_value": "SAL",
                    "changed_by": REP,
                    "changed_at": SAL_AT,
                }
                for i, rid in enumerate(ids)
            ],
        )


def by_status(engine, checkpoint: str) -> dict[tuple[str, str, str], int]:
    o = schema.outbox
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(o.c.recipient, o.c.channel, o.c.status, sa.func.count())
            .where(o.c.checkpoint == checkpoint)
            .group_by(o.c.recipient, o.c.channel, o.c.status)
        ).all()
    return {(r[0], r[1], r[2]): r[3] for r in rows}


def test_digest_and_capacity_roll_up_through_the_monitor(store) -> None:
    seed(store)
    warn_at = SAL_AT + dt.timedelta(hours=2)
    summary = run_monitor(store, warn_at, CTX, policy=POLICY, url=URL)
    assert summary["queued"] == 8 * 2 * 2 and summary["digests"] == 4  # rep + manager, e-mail + Slack
    warnings = by_status(store, "warning")
    for person in ("rita@example.com", "max@example.com"):
        for channel in ("email", "slack"):
            assert (
                warnings[(person, channel, "pending")] == 5 and warnings[(person, channel, "digested")] == 3
            )
    assert sum(by_status(store, "digest").values()) == 4
    assert run_monitor(store, warn_at, CTX, policy=POLICY, url=URL)["digests"] == 0  # a rerun: nothing new

    breach_at = SAL_AT + dt.timedelta(hours=4, minutes=1)
    summary = run_monitor(store, breach_at, CTX, policy=POLICY, url=URL)
    assert summary["capacity_alerts"] == 6  # 3 VPs x (e-mail + their Slack channel)
    assert summary["rolled_up"] == 8 * 6  # every VP breach message of the team's day
    breaches = by_status(store, "breach")
    assert breaches[("rita@example.com", "email", "pending")] == 8  # the rep still hears of each breach
    assert not any(s == "pending" for (r, _, s) in breaches if r.startswith("vp."))
    assert sum(by_status(store, "capacity").values()) == 6
    again = run_monitor(store, breach_at + dt.timedelta(minutes=1), CTX, policy=POLICY, url=URL)
    assert again["capacity_alerts"] == 0 and again["rolled_up"] == 0
