"""The incremental monitor (`run_monitor` mode auto/incremental) against a full evaluation, on both
store backends: two stores side by side fed the same mirror rows over a simulated day end with the
same clock rows, outbox rows, audit entries and handled checkpoints; a changed record is
re-evaluated, a clock reaching a checkpoint with nothing landed is found, a policy change and every
N runs bring a full reconcile, and a corrupted clock row is found by it, corrected and reported by
sla_health."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from leadsla.engine import MOVING_COLUMNS, as_of
from leadsla.health import reconcile as reconcile_check
from leadsla.notify.outbox import handled_checkpoints
from leadsla.paths import config_dir
from leadsla.policy import load_policy
from leadsla.store import open_store, schema
from leadsla.store.audit import AuditContext
from leadsla.store.clocks import OPEN, STORE_COLUMNS
from leadsla.tasks import evaluation
from leadsla.tasks.monitor import run_monitor
from tests.conftest import _new_postgres_url

URL = "https://acme.my.salesforce.com"
POLICY = load_policy(str(config_dir() / "sla_policy.flat.yaml"))
SAL_AT = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)  # Tuesday 10:00 New York
REP = "005000000000001AAA"
LEADS = [f"00Q0000000000000{i:02d}" for i in range(1, 6)]
LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: The demo day: the simulated org's clock at its end, runs from a day before.
DAY_END = dt.datetime(2026, 11, 18, 12, 0, tzinfo=dt.UTC)  # Wednesday 07:00 New York
DAY_START = DAY_END - dt.timedelta(days=1)
#: Mirror tables in landing order, with the instant a row "happens" (None: at the start).
LANDING = (
    ("users", None),
    ("queues", None),
    ("records", "created_at"),
    ("field_history", "changed_at"),
    ("activities", "created_at"),
)


def ctx(run: str) -> AuditContext:
    return AuditContext(dag_id="sla_monitor", run_id=run, task_id="evaluate", try_number=1)


@pytest.fixture
def second_url(store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Another fresh store on the same backend as `store_url`."""
    if store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'second.db'}"
    return _new_postgres_url(request.getfixturevalue("postgres_server"))


# --- a small org: one rep, five leads accepted on Tuesday 10:00 New York ------------------------------


def seed(engine: sa.Engine, landed_at: dt.datetime | None = LONG_AGO, sal_at: dt.datetime = SAL_AT) -> None:
    seeded = sal_at - dt.timedelta(hours=1)
    user = {
        "user_id": REP,
        "name": "Rita Rep",
        "email": "rita@example.com",
        "manager_id": None,
        "team": "sdr_east",
        "timezone": "America/New_York",
        "fields": {},
        "synced_at": seeded,
        "landed_at": landed_at,
    }
    records = [
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
            "landed_at": landed_at,
        }
        for rid in LEADS
    ]
    history = [
        {
            "history_id": f"017{i:015d}",
            "object_type": "Lead",
            "record_id": rid,
            "field": "Status",
            "old_value": "MQL",
            "new_value": "SAL",
            "changed_by": REP,
            "changed_at": sal_at,
            "landed_at": landed_at,
        }
        for i, rid in enumerate(LEADS)
    ]
    with engine.begin() as conn:
        conn.execute(schema.users.insert(), [user])
        conn.execute(schema.records.insert(), records)
        conn.execute(schema.field_history.insert(), history)


def call(engine: sa.Engine, record_id: str, at: dt.datetime, n: int = 0) -> None:
    """The rep calls the lead: a completed Task lands now."""
    with engine.begin() as conn:
        conn.execute(
            schema.activities.insert(),
            [
                {
                    "activity_id": f"00T{n:015d}",
                    "kind": "Task",
                    "who_id": record_id,
                    "owner_id": REP,
                    "type": "Call",
                    "subtype": "Task",
                    "created_at": at,
                    "created_by": REP,
                    "status": "Completed",
                    "completed_at": at,
                    "synced_at": at,
                    "landed_at": dt.datetime.now(dt.UTC),
                }
            ],
        )


def clock_rows(engine: sa.Engine, without: tuple[str, ...] = ()) -> list[tuple]:
    c = schema.clocks
    cols = [c.c[k] for k in STORE_COLUMNS if k not in without]
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(*cols)))


@pytest.fixture(autouse=True)
def no_landing_overlap(monkeypatch) -> None:
    """What landed during the previous run counts as new, and no more: rows land seconds apart here."""
    monkeypatch.setattr(evaluation, "LANDING_OVERLAP", dt.timedelta(0))


def test_a_changed_record_is_re_evaluated_and_nothing_else(store) -> None:
    seed(store)
    first = run_monitor(store, SAL_AT + dt.timedelta(minutes=1), ctx("r1"), policy=POLICY, url=URL)
    assert first["mode"] == "full"  # nothing to build on yet
    quiet = run_monitor(store, SAL_AT + dt.timedelta(minutes=2), ctx("r2"), policy=POLICY, url=URL)
    # Nothing landed and no clock is due a change (its elapsed time moves, but a stored row holds
    # it as of its evaluation): nothing is re-evaluated, in business hours too.
    assert quiet["mode"] == "incremental" and quiet["records_evaluated"] == 0
    call(store, LEADS[0], SAL_AT + dt.timedelta(minutes=2, seconds=30))
    touched = run_monitor(store, SAL_AT + dt.timedelta(minutes=3), ctx("r3"), policy=POLICY, url=URL)
    assert touched["mode"] == "incremental" and touched["records_evaluated"] == 1
    with store.connect() as conn:
        state = conn.execute(
            sa.select(schema.clocks.c.state, schema.clocks.c.next_change_at).where(
                schema.clocks.c.record_id == LEADS[0]
            )
        ).one()
    assert state.state == "met" and state.next_change_at is None  # a met clock waits for its record
    after = run_monitor(store, SAL_AT + dt.timedelta(minutes=4), ctx("r4"), policy=POLICY, url=URL)
    assert after["records_evaluated"] == 0  # the met lead is no longer looked at, nor the others


def test_a_clock_reaching_its_checkpoint_with_nothing_landed_is_found(store) -> None:
    # Accepted at 16:00 New York, an hour before closing: one of the two hours to the warning used.
    seed(store, sal_at=dt.datetime(2026, 11, 17, 21, 0, tzinfo=dt.UTC))
    evening = dt.datetime(2026, 11, 17, 23, 0, tzinfo=dt.UTC)  # 18:00 New York: closed
    run_monitor(store, evening, ctx("r1"), policy=POLICY, url=URL)
    closed = run_monitor(store, evening + dt.timedelta(minutes=1), ctx("r2"), policy=POLICY, url=URL)
    assert closed["mode"] == "incremental" and closed["records_evaluated"] == 0  # nothing moves at night
    opening = dt.datetime(2026, 11, 18, 14, 0, tzinfo=dt.UTC)  # Wednesday 09:00 New York
    with store.connect() as conn:
        due = set(conn.execute(sa.select(schema.clocks.c.next_change_at).distinct()).scalars())
    assert due == {opening + dt.timedelta(hours=1)}  # the warning: the opening itself changes nothing
    # An hour after the opening the warning is reached: found with nothing landed, and queued.
    later = run_monitor(store, opening + dt.timedelta(hours=1, minutes=5), ctx("r3"), policy=POLICY, url=URL)
    assert later["mode"] == "incremental" and later["records_evaluated"] == 5
    assert later["due"] == 5 and later["queued"] > 0
    with store.connect() as conn:
        handled = handled_checkpoints(conn)
    assert {(h[1], h[3]) for h in handled} == {(rid, "warning") for rid in LEADS}
    again = run_monitor(store, opening + dt.timedelta(hours=1, minutes=6), ctx("r4"), policy=POLICY, url=URL)
    assert again["due"] == 0 and again["queued"] == 0  # handled, by key


def test_horizon_takes_clocks_due_within_it(store) -> None:
    seed(store, sal_at=dt.datetime(2026, 11, 17, 21, 0, tzinfo=dt.UTC))
    evening = dt.datetime(2026, 11, 17, 23, 0, tzinfo=dt.UTC)
    run_monitor(store, evening, ctx("r1"), policy=POLICY, url=URL)
    warning = dt.datetime(2026, 11, 18, 15, 0, tzinfo=dt.UTC)  # an hour after Wednesday's opening
    before = warning - dt.timedelta(minutes=3)
    narrow = run_monitor(store, before, ctx("r2"), policy=POLICY, url=URL, horizon=dt.timedelta(0))
    wide = run_monitor(store, before, ctx("r3"), policy=POLICY, url=URL, horizon=dt.timedelta(minutes=5))
    assert narrow["records_evaluated"] == 0 and wide["records_evaluated"] == 5


def test_a_policy_change_and_every_n_runs_bring_a_full_reconcile(store) -> None:
    seed(store)
    at = SAL_AT + dt.timedelta(minutes=1)
    modes = [
        run_monitor(
            store, at + dt.timedelta(minutes=i), ctx(f"r{i}"), policy=POLICY, url=URL, reconcile_every=3
        )["mode"]
        for i in range(7)
    ]
    assert modes == [
        "full",
        "incremental",
        "incremental",
        "incremental",
        "full",
        "incremental",
        "incremental",
    ]
    changed = POLICY.model_copy(update={"version": f"{POLICY.version}-b"})
    summary = run_monitor(store, at + dt.timedelta(minutes=8), ctx("r8"), policy=changed, url=URL)
    assert summary["mode"] == "full"
    with store.connect() as conn:
        reasons = (
            conn.execute(sa.select(schema.reconciles.c.reason).order_by(schema.reconciles.c.reconcile_id))
            .scalars()
            .all()
        )
        versions = set(conn.execute(sa.select(schema.clocks.c.policy_version)).scalars())
    assert reasons == ["every_n_runs", "policy_changed"]
    assert versions == {changed.version}  # the change re-evaluated every clock
    assert run_monitor(store, at + dt.timedelta(minutes=9), ctx("r9"), policy=changed, url=URL)["mode"] == (
        "incremental"
    )


def test_a_corrupted_clock_row_is_found_by_the_reconcile_corrected_and_reported(store) -> None:
    seed(store)
    evening = dt.datetime(2026, 11, 17, 23, 0, tzinfo=dt.UTC)
    call(store, LEADS[1], SAL_AT + dt.timedelta(minutes=20))
    run_monitor(store, evening, ctx("r1"), policy=POLICY, url=URL)
    good = clock_rows(store, without=("evaluated_at",))
    with store.begin() as conn:  # a met clock nobody re-evaluates: only a reconcile can see it
        conn.execute(
            schema.clocks.update()
            .where(schema.clocks.c.record_id == LEADS[1])
            .values(elapsed_seconds=7, colour="red")
        )
    quiet = run_monitor(store, evening + dt.timedelta(minutes=1), ctx("r2"), policy=POLICY, url=URL)
    assert quiet["mode"] == "incremental" and clock_rows(store, without=("evaluated_at",)) != good
    full = run_monitor(
        store, evening + dt.timedelta(minutes=2), ctx("r3"), policy=POLICY, url=URL, mode="full"
    )
    assert full["mode"] == "full" and full["reconcile_differences"] == 1
    assert clock_rows(store, without=("evaluated_at",)) == good  # corrected
    with store.connect() as conn:
        findings = reconcile_check.check(conn, evening + dt.timedelta(hours=1), POLICY, {})
    assert [(f.check, f.severity, f.record_ids) for f in findings] == [
        ("incremental_drift", "warning", [LEADS[1]])
    ]
    assert "1 clocks" in findings[0].summary


def test_a_reconcile_counts_an_open_clocks_kept_row_as_of_its_evaluation_and_finds_a_wrong_one(store) -> None:
    seed(store)
    run_monitor(store, SAL_AT + dt.timedelta(minutes=1), ctx("r1"), policy=POLICY, url=URL)
    quiet = run_monitor(store, SAL_AT + dt.timedelta(minutes=30), ctx("r2"), policy=POLICY, url=URL)
    assert quiet["records_evaluated"] == 0  # the five running rows stay as of the first run
    # 39 open minutes later their stored elapsed times are 39 minutes behind: no difference.
    settled = run_monitor(
        store, SAL_AT + dt.timedelta(minutes=40), ctx("r3"), policy=POLICY, url=URL, mode="full"
    )
    assert settled["reconcile_differences"] == 0
    good = clock_rows(store, without=("evaluated_at",))
    c = schema.clocks
    with store.begin() as conn:  # open clocks nobody re-evaluates until their warning
        deadline = conn.execute(sa.select(c.c.deadline).where(c.c.record_id == LEADS[1])).scalar_one()
        conn.execute(  # a deadline an hour late
            c.update().where(c.c.record_id == LEADS[1]).values(deadline=deadline + dt.timedelta(hours=1))
        )
        conn.execute(  # a wrong elapsed time (and remaining time: the projection derives the percent)
            c.update()
            .where(c.c.record_id == LEADS[2])
            .values(elapsed_seconds=c.c.elapsed_seconds + 600, remaining_seconds=c.c.remaining_seconds - 600)
        )
        conn.execute(c.update().where(c.c.record_id == LEADS[3]).values(colour="yellow"))
    found = run_monitor(
        store, SAL_AT + dt.timedelta(minutes=50), ctx("r4"), policy=POLICY, url=URL, mode="full"
    )
    assert found["reconcile_differences"] == 3
    with store.connect() as conn:
        sample = (
            conn.execute(
                sa.select(schema.reconciles.c.detail).order_by(schema.reconciles.c.reconcile_id.desc())
            )
            .scalars()
            .first()["sample"]
        )
    assert sorted((d["record_id"], d["columns"]) for d in sample) == [
        (LEADS[1], ["deadline"]),
        (LEADS[2], ["elapsed_seconds", "remaining_seconds", "percent_elapsed"]),
        (LEADS[3], ["colour"]),
    ]
    assert clock_rows(store, without=("evaluated_at",)) != good  # corrected, and moved on 10 minutes


def test_a_retried_write_doubles_nothing(store) -> None:
    seed(store)
    at = SAL_AT + dt.timedelta(hours=2, minutes=5)  # the warning is due
    run_monitor(store, SAL_AT + dt.timedelta(minutes=1), ctx("r1"), policy=POLICY, url=URL)
    first = run_monitor(store, at, ctx("r2"), policy=POLICY, url=URL)
    retried = run_monitor(store, at, ctx("r2"), policy=POLICY, url=URL)
    assert first["due"] == 5 and retried["due"] == 0 and retried["queued"] == 0
    with store.connect() as conn:
        audit = schema.audit
        due = conn.execute(
            sa.select(audit.c.record_id, audit.c.checkpoint, sa.func.count())
            .where(audit.c.event == "checkpoint_due")
            .group_by(audit.c.record_id, audit.c.checkpoint)
        ).all()
    assert due and all(n == 1 for *_, n in due)


def test_more_changed_records_than_a_range_holds_are_evaluated_a_range_at_a_time(store, second_url) -> None:
    """An incremental run re-evaluates its records in one go, so when more changed than a full
    run's range holds (a users' sync, a bulk update) it runs as a full one, a range at a time:
    memory stays bounded, the result is the incremental run's, and the reconcile says why."""
    twin = open_store(second_url)
    at = SAL_AT + dt.timedelta(minutes=1)
    for engine in (store, twin):
        seed(engine)
        run_monitor(engine, at, ctx("r1"), policy=POLICY, url=URL)
    for n, rid in enumerate(LEADS[:3]):
        for engine in (store, twin):
            call(engine, rid, at + dt.timedelta(seconds=10 + n), n)
    later = at + dt.timedelta(minutes=1)
    ranged = run_monitor(store, later, ctx("r2"), policy=POLICY, url=URL, mode="incremental", chunk_records=2)
    alone = run_monitor(twin, later, ctx("r2"), policy=POLICY, url=URL, mode="incremental", chunk_records=3)
    assert alone["mode"] == "incremental" and alone["records_evaluated"] == 3  # three fit one range
    assert ranged["mode"] == "full" and ranged["reconcile_differences"] == 0
    assert snapshot(store, POLICY, later) == snapshot(twin, POLICY, later)  # clocks, outbox, audit
    # The same decisions; a full run also rewrites the open clocks' moving columns (clocks_written).
    how = ("mode", "records_evaluated", "reconcile_differences", "clocks_written")
    assert {k: v for k, v in ranged.items() if k not in how} == {
        k: v for k, v in alone.items() if k not in how
    }
    with store.connect() as conn:
        reasons = conn.execute(sa.select(schema.reconciles.c.reason)).scalars().all()
    assert reasons == ["many_changed"]
    twin.dispose()


# --- the demo org over a simulated day, incremental beside full -------------------------------------


@pytest.fixture(scope="module")
def demo_mirror(tmp_path_factory: pytest.TempPathFactory):
    """The demo org with 30 hours of history up to DAY_END, synced through the Salesforce stand-in:
    every mirror row (to land over the day) and the demo policy."""
    from sandbox.simulate import run
    from tests.sandbox_fixtures import synced_evaluation

    root = tmp_path_factory.mktemp("demo-day")
    org = run(root / "salesforce", backlog_hours=30, for_hours=0, start=DAY_END)
    _, policy, _ = synced_evaluation(root, org)
    source = open_store(f"sqlite:///{root / 'store.db'}")
    rows = {}
    with source.connect() as conn:
        for table, _ in LANDING:
            rows[table] = [dict(r) for r in conn.execute(sa.select(schema.metadata.tables[table])).mappings()]
    source.dispose()
    return rows, policy


def land(engines: list[sa.Engine], rows: dict, after: dt.datetime | None, upto: dt.datetime) -> None:
    """The mirror rows that happened in (after, upto] land in every store, stamped now."""
    wall = dt.datetime.now(dt.UTC)
    for table, when in LANDING:
        batch = [
            {**r, "landed_at": wall} if "landed_at" in r else r
            for r in rows[table]
            if (after is None or (when is not None and r[when] is not None and r[when] > after))
            and (when is None or r[when] is None or r[when] <= upto)
        ]
        if batch:
            for engine in engines:
                with engine.begin() as conn:
                    conn.execute(schema.metadata.tables[table].insert(), batch)


def clocks_at(engine: sa.Engine, policy, at: dt.datetime) -> list[tuple]:
    """The clock rows as they stand at `at`: an open clock's moving columns projected from its
    `evaluated_at` (`engine.as_of`), and its `evaluated_at` left out (a full run re-evaluates it
    every run, an incremental one when it is due); an ended clock's row exactly as stored. A clock
    gone stale (no longer given by its record) keeps its last values, which no reader shows: its
    moving columns and `evaluated_at` (the instant of the stale mark) are left out too."""
    frame = pd.DataFrame(clock_rows(engine), columns=STORE_COLUMNS)
    if frame.empty:
        return []
    stale = frame["stale_since"].notna()
    frame = pd.concat([as_of(frame[~stale], policy, at), frame[stale]]).sort_index()
    frame["evaluated_at"] = frame["evaluated_at"].where(~frame["state"].isin(OPEN) & ~stale, None)
    for column in MOVING_COLUMNS:
        frame[column] = frame[column].astype(object).where(~stale, None)
    return sorted(tuple(None if pd.isna(v) else v for v in row) for row in frame.itertuples(index=False))


def snapshot(engine: sa.Engine, policy, at: dt.datetime) -> dict[str, list]:
    """What a run leaves behind: clock rows (as of `at`, `clocks_at`), outbox rows, audit entries,
    handled checkpoints."""
    o, a, h = schema.outbox, schema.audit, schema.handled_checkpoints
    outbox_cols = [c for c in o.c if c.name != "outbox_id"]
    audit_cols = [
        a.c[k]
        for k in (
            "event",
            "at",
            "object_type",
            "record_id",
            "sla_id",
            "clock_start",
            "checkpoint",
            "policy_version",
            "actor",
            "detail",
            "run_id",
        )
    ]
    with engine.connect() as conn:
        return {
            "clocks": clocks_at(engine, policy, at),
            "outbox": sorted(repr(tuple(r)) for r in conn.execute(sa.select(*outbox_cols))),
            "audit": sorted(repr(tuple(r)) for r in conn.execute(sa.select(*audit_cols))),
            "handled": sorted(tuple(r) for r in conn.execute(sa.select(h))),
        }


def day_times() -> list[dt.datetime]:
    """Minute by minute across New York's opening (13:40-14:40 UTC), every 30 minutes otherwise."""
    times, t = [], DAY_START
    while t <= DAY_END:
        times.append(t)
        minute = dt.time(13, 40) <= t.time() < dt.time(14, 40)
        t += dt.timedelta(
            minutes=1 if minute else 10 if dt.time(13, 10) <= t.time() < dt.time(13, 40) else 30
        )
    return times


def test_incremental_equals_full_over_a_simulated_day(store, second_url, demo_mirror, monkeypatch) -> None:
    # What landed during the previous run counts as new, and no more: the test lands rows seconds apart.
    monkeypatch.setattr(evaluation, "LANDING_OVERLAP", dt.timedelta(0))
    rows, policy = demo_mirror
    full, incremental = store, open_store(second_url)
    try:
        previous = None
        evaluated = []
        for i, at in enumerate(day_times()):
            land([full, incremental], rows, previous, at)
            previous = at
            a = run_monitor(full, at, ctx(f"day_{i}"), policy=policy, url=URL, mode="full")
            b = run_monitor(incremental, at, ctx(f"day_{i}"), policy=policy, url=URL, reconcile_every=10**6)
            assert b["mode"] == ("full" if i == 0 else "incremental")
            # A full run rewrites every open clock whose elapsed time moved; an incremental one only
            # those due a change (the others' rows hold their values as of their evaluation).
            skip = {"mode", "records_evaluated", "reconcile_differences", "clocks_written"}
            assert {k: v for k, v in a.items() if k not in skip} == {
                k: v for k, v in b.items() if k not in skip
            }, at
            if i:
                evaluated.append(b["records_evaluated"])
            if i % 25 == 0:
                assert snapshot(full, policy, at) == snapshot(incremental, policy, at), at
        assert snapshot(full, policy, at) == snapshot(incremental, policy, at)
        last = snapshot(full, policy, at)
        assert last["outbox"] and last["audit"] and last["handled"]  # the day decided things
        with incremental.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(schema.records)).scalar_one()
        assert sorted(evaluated)[len(evaluated) // 2] < total / 4  # the median run looks at a fraction
        # A reconcile in chunks of 100 records: nothing to correct, and the same decisions as one chunk.
        a = run_monitor(full, DAY_END, ctx("check"), policy=policy, url=URL, mode="full")
        b = run_monitor(
            incremental, DAY_END, ctx("check"), policy=policy, url=URL, mode="full", chunk_records=100
        )
        assert b["reconcile_differences"] == 0
        assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}
        assert snapshot(full, policy, DAY_END) == snapshot(incremental, policy, DAY_END)
        with incremental.connect() as conn:
            detail = (
                conn.execute(
                    sa.select(schema.reconciles.c.detail).order_by(schema.reconciles.c.reconcile_id.desc())
                )
                .scalars()
                .first()
            )
        assert detail["chunks"] == -(-total // 100)
    finally:
        incremental.dispose()


# --- handled checkpoints: a keyed table, backfilled by the revision ------------------------------------


def test_the_revision_backfills_handled_checkpoints_from_the_outbox_and_the_audit_trail(
    store_url: str,
) -> None:
    from leadsla.store.audit import record_many
    from leadsla.store.connection import create_engine
    from tests.integration.test_store_revisions import run_revisions

    engine = create_engine(store_url)
    start = dt.datetime(2026, 11, 17, 15, 0, tzinfo=dt.UTC)
    day = dt.datetime(2026, 11, 17, 5, 0, tzinfo=dt.UTC)
    try:
        run_revisions(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                schema.outbox.insert(),
                [
                    {
                        "idempotency_key": f"k{i}",
                        "sla_id": sla,
                        "record_id": rid,
                        "clock_start": at,
                        "checkpoint": cp,
                        "recipient": "U1",
                        "channel": "slack",
                        "payload": {},
                        "status": status,
                        "created_at": start,
                        "not_before": start,
                    }
                    for i, (sla, rid, at, cp, status) in enumerate(
                        [
                            ("sales_touch", LEADS[0], start, "warning", "delivered"),
                            ("sales_touch", LEADS[0], start, "warning", "pending"),  # a second recipient
                            ("capacity", None, day, "capacity", "pending"),  # a notice about no record
                            ("routing", LEADS[2], None, "unowned", "pending"),  # no clock: not a checkpoint
                        ]
                    )
                ],
            )
            record_many(
                conn,
                [
                    {
                        "event": event,
                        "at": start,
                        "record_id": rid,
                        "sla_id": "sales_touch",
                        "clock_start": start,
                        "checkpoint": cp,
                        "detail": {},
                    }
                    for event, rid, cp in [
                        ("checkpoint_superseded", LEADS[1], "warning"),
                        ("checkpoint_due", LEADS[1], "breach"),
                        ("checkpoint_due", LEADS[0], "warning"),  # also queued: once
                        ("message_sent", LEADS[3], "warning"),  # not a handling
                    ]
                ],
                context=ctx("before"),
            )
        run_revisions(engine)
        with engine.connect() as conn:
            assert handled_checkpoints(conn) == {
                ("sales_touch", LEADS[0], start, "warning"),
                ("capacity", None, day, "capacity"),
                ("sales_touch", LEADS[1], start, "warning"),
                ("sales_touch", LEADS[1], start, "breach"),
            }
            assert handled_checkpoints(conn, [LEADS[1]], notices_since=day + dt.timedelta(hours=1)) == {
                ("sales_touch", LEADS[1], start, "warning"),
                ("sales_touch", LEADS[1], start, "breach"),
            }
    finally:
        engine.dispose()


def test_an_upgraded_stores_rows_count_as_landed_at_their_last_sync(store_url: str) -> None:
    """Rows from before the landing instant (empty after 0008) take their last sync as it (0009),
    so an upgraded store's incremental runs re-evaluate what lands after, not the whole mirror."""
    from leadsla.store.connection import create_engine
    from tests.integration.test_store_revisions import run_revisions

    engine = create_engine(store_url)
    try:
        run_revisions(engine, "0008")
        seed(engine, landed_at=None, sal_at=dt.datetime(2026, 11, 17, 21, 0, tzinfo=dt.UTC))
        run_revisions(engine)
        with engine.connect() as conn:
            for table in (schema.users, schema.records, schema.field_history):
                empty = sa.select(sa.func.count()).select_from(table).where(table.c.landed_at.is_(None))
                assert conn.execute(empty).scalar() == 0, table.name
        evening = dt.datetime(2026, 11, 17, 23, 0, tzinfo=dt.UTC)  # 18:00 New York: closed
        none = dt.timedelta(0)
        first = run_monitor(engine, evening, ctx("r1"), policy=POLICY, url=URL, horizon=none)
        later = evening + dt.timedelta(minutes=1)
        second = run_monitor(engine, later, ctx("r2"), policy=POLICY, url=URL, horizon=none)
        assert (first["mode"], first["clocks"]) == ("full", len(LEADS))
        assert (second["mode"], second["records_evaluated"]) == ("incremental", 0)
    finally:
        engine.dispose()
