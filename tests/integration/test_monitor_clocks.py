"""How the monitor keeps the `clocks` table (`run_monitor` on both store backends): a clock is
written when it is new or changed, a run that changes nothing writes nothing, a replay of an old
run never overwrites what a later run wrote, and each clock's start and stop are audited once."""

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
REP = "005000000000001AAA"
LEADS = ["00Q000000000000001", "00Q000000000000002"]
URL = "https://acme.my.salesforce.com"


def seed(engine) -> None:
    seeded = SAL_AT - dt.timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(
            schema.users.insert(),
            [
                {
                    "user_id": REP,
                    "name": "Rita Rep",
                    "email": "rita@example.com",
                    "manager_id": None,
                    "team": "sdr_east",
                    "timezone": "America/New_York",
                    "fields": {},
                    "synced_at": seeded,
                }
            ],
        )
        conn.execute(
            schema.records.insert(),
            [
                {
                    "object_type": "Lead",
                    "record_id": rid,
                    "name": f"Lead {rid[-1]}",
                    "company": "Co",
                    "status": "SAL",
                    "owner_id": REP,
                    "lead_source": "Web",
                    "created_at": seeded,
                    "modified_at": seeded,
                    "fields": {"Status": "SAL", "OwnerId": REP},
                    "synced_at": seeded,
                }
                for rid in LEADS
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
                for i, rid in enumerate(LEADS)
            ],
        )


def touch(engine, record_id: str, at: dt.datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.activities.insert().values(
                activity_id="00T000000000000001",
                kind="Task",
                who_id=record_id,
                owner_id=REP,
                type="Call",
                subtype="Call",
                created_at=at,
                is_deleted=False,
                synced_at=at,
            )
        )


def clocks(engine) -> dict[str, tuple]:
    c = schema.clocks
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.c.record_id, c.c.state, c.c.elapsed_seconds, c.c.evaluated_at)).all()
    return {r.record_id: (r.state, r.elapsed_seconds, r.evaluated_at) for r in rows}


def events(engine) -> list[tuple[str, str]]:
    a = schema.audit
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(a.c.event, a.c.record_id).where(a.c.event.in_(["clock_start", "clock_stop"]))
        ).all()
    return sorted((r.event, r.record_id) for r in rows)


def test_only_new_or_changed_clocks_are_written_and_an_old_replay_keeps_the_newer_row(store) -> None:
    seed(store)
    t1 = SAL_AT + dt.timedelta(minutes=30)
    assert run_monitor(store, t1, CTX, policy=POLICY, url=URL)["clocks_written"] == 2
    assert events(store) == [("clock_start", LEADS[0]), ("clock_start", LEADS[1])]
    assert (
        run_monitor(store, t1, CTX, policy=POLICY, url=URL)["clocks_written"] == 0
    )  # a rerun: nothing changed

    touch(store, LEADS[0], SAL_AT + dt.timedelta(minutes=45))  # lead 1 worked: its clock stops
    t2 = SAL_AT + dt.timedelta(hours=1)
    summary = run_monitor(store, t2, CTX, policy=POLICY, url=URL)
    assert summary["clocks_written"] == 2 and summary["clock_events"] == 1  # lead 2 ran on; lead 1 stopped
    after_t2 = clocks(store)
    assert after_t2[LEADS[0]] == ("met", 45 * 60, t2) and after_t2[LEADS[1]] == ("running", 3600, t2)

    # The stopped clock reads the same later: only the running one is rewritten.
    t3 = t2 + dt.timedelta(minutes=10)
    assert run_monitor(store, t3, CTX, policy=POLICY, url=URL)["clocks_written"] == 1
    assert clocks(store)[LEADS[0]] == ("met", 45 * 60, t2)
    assert clocks(store)[LEADS[1]] == ("running", 70 * 60, t3)

    # A replay of the first run sees lead 1 still running; the rows written after it stand.
    assert run_monitor(store, t1, CTX, policy=POLICY, url=URL)["clocks_written"] == 0
    assert clocks(store)[LEADS[1]] == ("running", 70 * 60, t3)
    assert clocks(store)[LEADS[0]] == ("met", 45 * 60, t2)
    assert events(store) == [("clock_start", LEADS[0]), ("clock_start", LEADS[1]), ("clock_stop", LEADS[0])]


def test_every_evaluation_is_recorded_with_when_it_read_the_store(store) -> None:
    # The reports wait for an evaluation that read the store after the sync completing their period.
    seed(store)
    before = dt.datetime.now(dt.UTC)
    run_monitor(store, SAL_AT + dt.timedelta(minutes=30), CTX, policy=POLICY, url=URL)
    run_monitor(store, SAL_AT + dt.timedelta(minutes=31), CTX, policy=POLICY, url=URL)
    with store.connect() as conn:
        rows = conn.execute(sa.select(schema.evaluations).order_by(schema.evaluations.c.evaluation_id)).all()
    assert [(r.evaluated_at, r.clocks, r.run_id) for r in rows] == [
        (SAL_AT + dt.timedelta(minutes=30), 2, "manual__1"),
        (SAL_AT + dt.timedelta(minutes=31), 2, "manual__1"),
    ]
    assert before <= rows[0].read_at <= rows[1].read_at <= dt.datetime.now(dt.UTC)


def test_a_breach_escalated_to_the_manager_stays_accountable_to_the_rep(store) -> None:
    seed(store)
    manager = "005000000000009AAA"
    with store.begin() as conn:
        conn.execute(
            schema.users.insert(),
            [
                {
                    "user_id": manager,
                    "name": "Brandon Wells",
                    "email": "brandon@example.com",
                    "manager_id": None,
                    "team": "sdr_managers",
                    "timezone": "America/New_York",
                    "fields": {},
                    "synced_at": SAL_AT,
                }
            ],
        )
    breached = SAL_AT + dt.timedelta(hours=4, minutes=30)  # 4 business hours: due 14:00 New York
    run_monitor(store, breached, CTX, policy=POLICY, url=URL)
    moved = breached + dt.timedelta(minutes=1)  # the breach escalation reassigns lead 1 to the manager
    with store.begin() as conn:
        conn.execute(
            schema.field_history.insert().values(
                history_id="017000000000000099",
                object_type="Lead",
                record_id=LEADS[0],
                field="OwnerId",
                old_value=REP,
                new_value=manager,
                changed_by=manager,
                changed_at=moved,
            )
        )
        conn.execute(
            schema.records.update().where(schema.records.c.record_id == LEADS[0]).values(owner_id=manager)
        )
    run_monitor(store, moved + dt.timedelta(minutes=5), CTX, policy=POLICY, url=URL)
    c = schema.clocks
    with store.connect() as conn:
        rows = {
            r.record_id: r
            for r in conn.execute(
                sa.select(
                    c.c.record_id,
                    c.c.state,
                    c.c.owner_id,
                    c.c.team,
                    c.c.accountable_owner_id,
                    c.c.accountable_team,
                )
            )
        }
    assert rows[LEADS[0]].state == "breached"
    assert (rows[LEADS[0]].owner_id, rows[LEADS[0]].team) == (manager, "sdr_managers")
    assert (rows[LEADS[0]].accountable_owner_id, rows[LEADS[0]].accountable_team) == (REP, "sdr_east")
    assert (rows[LEADS[1]].owner_id, rows[LEADS[1]].accountable_owner_id) == (REP, REP)


def test_a_change_of_the_accountable_owner_alone_rewrites_the_row() -> None:
    from leadsla.engine import CLOCK_COLUMNS
    from leadsla.store.clocks import changed as _changed

    row = dict.fromkeys(CLOCK_COLUMNS, None) | {"accountable_owner_id": REP, "accountable_team": "sdr_east"}
    assert not _changed(row, dict(row))
    assert _changed(row, row | {"accountable_owner_id": "005000000000009AAA"})
    assert _changed(row, row | {"accountable_team": "sdr_managers"})
