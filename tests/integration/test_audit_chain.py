"""The tamper-evident audit trail on both backends: every entry chained to the one before by its
hash, appends serialised so parallel writers never fork the chain, `verify` naming the first
edited, deleted, inserted or moved entry (in the store, in a period, in an export offline), the
guards re-asserted on every open, the health check's alert, and the upgrade that hashes entries
written before the chain existed."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from leadsla.cli import main
from leadsla.health import audit_chain as health_check
from leadsla.store import chain, chain_verify, guards, open_store
from leadsla.store.audit import AuditContext, record, record_many
from leadsla.store.connection import READ_ONLY
from leadsla.store.migrations import current_version, upgrade
from leadsla.store.schema import SCHEMA_VERSION, audit, audit_chain

T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
CTX = AuditContext(dag_id="sla_monitor", run_id="scheduled__2026-11-02", task_id="evaluate", try_number=1)


def write_trail(engine: sa.Engine, batches: int = 3, size: int = 4) -> None:
    """`batches` transactions of `size` entries, an hour apart: ids 1..batches*size."""
    for b in range(batches):
        with engine.begin() as conn:
            record_many(
                conn,
                [
                    {
                        "event": "message_queued",
                        "at": T0 + dt.timedelta(hours=b, minutes=i),
                        "object_type": "Lead",
                        "record_id": f"00Q{b:03d}{i:012d}",
                        "checkpoint": "warn_50",
                        "actor": "rule:sales_touch",
                        "detail": {"channel": "slack", "n": b * size + i, "share": 0.5, "to": ["U1", None]},
                    }
                    for i in range(size)
                ],
                context=CTX,
            )


def rows(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(audit).order_by(audit.c.audit_id)).mappings()]


def lift_guards(conn: sa.Connection) -> None:
    if conn.dialect.name == "sqlite":
        for name in guards.SQLITE_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for name, (table, *_) in guards.PG_TRIGGERS.items():
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        conn.exec_driver_sql(f"ALTER TABLE audit DROP CONSTRAINT IF EXISTS {guards.PG_CHECK[0]}")


def tamper(engine: sa.Engine, change: Callable[[sa.Connection], object]) -> None:
    """As someone with the store owner's rights: lift every guard, then change the trail (the
    guards stay lifted until the store is next opened)."""
    with engine.begin() as conn:
        lift_guards(conn)
        change(conn)


def sql(*statements: str) -> Callable[[sa.Connection], None]:
    def run(conn: sa.Connection) -> None:
        for statement in statements:
            conn.exec_driver_sql(statement)

    return run


def broken(engine: sa.Engine, **kw) -> chain_verify.Break:
    verdict = chain_verify.verify_store(engine, **kw)
    assert verdict.broken is not None, verdict.line()
    return verdict.broken


# --- the chain -----------------------------------------------------------------------------------


def test_each_entry_carries_the_hash_of_the_one_before_and_the_head_the_newest(store: sa.Engine) -> None:
    write_trail(store)
    trail = rows(store)
    with store.connect() as conn:
        head = conn.execute(sa.select(audit_chain)).one()
    assert trail[0]["prev_hash"] == head.genesis_hash
    for before, entry in zip(trail, trail[1:], strict=False):
        assert entry["prev_hash"] == before["entry_hash"]
    for entry in trail:
        assert entry["entry_hash"] == chain.entry_hash(entry["prev_hash"], entry)
    assert (head.entries, head.head_audit_id, head.head_hash) == (12, 12, trail[-1]["entry_hash"])
    verdict = chain_verify.verify_store(store)
    assert (verdict.broken, verdict.entries, verdict.first_id, verdict.last_id) == (None, 12, 1, 12)
    assert f"anchor 12:{trail[-1]['entry_hash']}" in verdict.line()


def test_the_hash_covers_every_field_and_nothing_else_changes_it() -> None:
    entry = {
        "at": T0,
        "recorded_at": T0,
        "event": "escalation",
        "record_id": "00Q1",
        "detail": {"b": 1, "a": [1.5, None]},
        "try_number": 2,
    }
    digest = chain.entry_hash("0" * 64, entry)
    same = dict(
        entry, detail={"a": [1.5, None], "b": 1}, at=T0.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    )
    assert chain.entry_hash("0" * 64, same) == digest  # key order and the zone an instant is given in
    assert chain.entry_hash("1" * 64, entry) != digest
    for name, value in [
        *((f, "changed") for f in chain.TEXT_FIELDS),
        *((f, T0 + dt.timedelta(microseconds=1)) for f in chain.TIME_FIELDS),
        ("try_number", 3),
        ("detail", {"b": 1, "a": [1.5]}),
    ]:
        assert chain.entry_hash("0" * 64, dict(entry, **{name: value})) != digest, name
    with pytest.raises(ValueError, match="aware datetime"):
        chain.entry_hash("0" * 64, dict(entry, at=dt.datetime(2026, 11, 2, 9)))


def test_parallel_writers_never_fork_the_chain(store: sa.Engine) -> None:
    """Eight writers, each in its own engine, append 15 transactions of 1-3 entries at once (some
    rolled back): one chain in audit_id order, every committed entry in it."""
    url = store.url.render_as_string(hide_password=False)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        engine = open_store(url)
        try:
            barrier.wait()
            for i in range(15):
                try:
                    with engine.begin() as conn:
                        entries = [
                            {"event": "sync", "at": T0, "actor": f"w{n}", "detail": {"i": i, "k": k}}
                            for k in range(1 + i % 3)
                        ]
                        record_many(conn, entries, context=CTX)
                        if i % 7 == 6:
                            raise RuntimeError("rolled back")
                except RuntimeError:
                    pass
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    committed = 8 * sum(1 + i % 3 for i in range(15) if i % 7 != 6)
    verdict = chain_verify.verify_store(store)
    assert (verdict.broken, verdict.entries) == (None, committed)
    trail = rows(store)
    assert [r["recorded_at"] for r in trail] == sorted(r["recorded_at"] for r in trail)


def test_a_connection_that_cannot_hold_the_lock_cannot_append(store: sa.Engine) -> None:
    """An autocommit connection (PostgreSQL) would unlock the head before the entries commit:
    refused. A read-only SQLite connection (`store.connection.read_only`: query_only) cannot write."""
    if store.dialect.name == "sqlite":
        with store.execution_options(**{READ_ONLY: True}).connect() as conn:
            with pytest.raises(sa.exc.OperationalError, match="readonly database"):
                record(conn, "sync", at=T0, context=CTX)
    else:
        with store.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            with pytest.raises(chain.AuditChainError, match="write transaction"):
                record(conn, "sync", at=T0, context=CTX)
    assert chain_verify.verify_store(store).entries == 0


# --- tampering, named ----------------------------------------------------------------------------


def _move(conn: sa.Connection, old: int, new: int) -> None:
    conn.execute(audit.update().where(audit.c.audit_id == old).values(audit_id=new))


def _swap(a: int, b: int) -> Callable[[sa.Connection], None]:
    def run(conn: sa.Connection) -> None:
        _move(conn, a, 1000)
        _move(conn, b, a)
        _move(conn, 1000, b)

    return run


def _rewrite_5(conn: sa.Connection) -> None:
    """Change entry 5 and give it the hash its new content would have (the algorithm is public)."""
    entry = dict(conn.execute(sa.select(audit).where(audit.c.audit_id == 5)).mappings().one(), actor="nobody")
    digest = chain.entry_hash(entry["prev_hash"], entry)
    conn.execute(audit.update().where(audit.c.audit_id == 5).values(actor="nobody", entry_hash=digest))


def _insert_chained_6(conn: sa.Connection) -> None:
    """Make room after entry 5 and put a forged entry there, properly chained to entry 5."""
    for rid in range(12, 5, -1):
        _move(conn, rid, rid + 100)
    prev = conn.execute(sa.select(audit.c.entry_hash).where(audit.c.audit_id == 5)).scalar_one()
    forged = {"event": "escalation", "at": T0, "recorded_at": T0, "detail": {"forged": True}}
    conn.execute(
        audit.insert().values(audit_id=6, prev_hash=prev, entry_hash=chain.entry_hash(prev, forged), **forged)
    )


def _insert_loose_13(conn: sa.Connection) -> None:
    conn.execute(
        audit.insert().values(
            audit_id=13,
            event="sync",
            at=T0,
            recorded_at=T0,
            detail={},
            prev_hash="f" * 64,
            entry_hash="e" * 64,
        )
    )


def _append_after_head(conn: sa.Connection) -> None:
    """An entry chained onto the newest one, without moving the head."""
    prev = conn.execute(sa.select(audit.c.entry_hash).where(audit.c.audit_id == 12)).scalar_one()
    forged = {"event": "sync", "at": T0, "recorded_at": T0, "detail": {}}
    conn.execute(
        audit.insert().values(
            audit_id=13, prev_hash=prev, entry_hash=chain.entry_hash(prev, forged), **forged
        )
    )


def _truncate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("DELETE FROM audit" if conn.dialect.name == "sqlite" else "TRUNCATE audit")


CASES = {
    # name: (change, first broken entry, kind, words in the reason)
    "detail edited": (
        sql('UPDATE audit SET detail = \'{"channel": "email"}\' WHERE audit_id = 5'),
        5,
        "edited",
        "",
    ),
    "event edited": (sql("UPDATE audit SET event = 'message_sent' WHERE audit_id = 1"), 1, "edited", ""),
    "time edited": (
        lambda c: c.execute(audit.update().where(audit.c.audit_id == 9).values(at=T0 - dt.timedelta(days=1))),
        9,
        "edited",
        "",
    ),
    "hash edited": (sql(f"UPDATE audit SET entry_hash = '{'0' * 64}' WHERE audit_id = 7"), 7, "edited", ""),
    "rewritten with its own hash": (_rewrite_5, 6, "deleted", "#5 was rewritten"),
    "middle deleted": (sql("DELETE FROM audit WHERE audit_id = 5"), 6, "deleted", "after #4"),
    "first deleted": (sql("DELETE FROM audit WHERE audit_id = 1"), 2, "deleted", "after the chain's start"),
    "newest deleted": (sql("DELETE FROM audit WHERE audit_id >= 11"), 12, "deleted", "ends at #10"),
    "truncated": (_truncate, 12, "truncated", "every entry was deleted"),
    "head deleted": (sql("DELETE FROM audit_chain"), None, "truncated", "head (audit_chain) is missing"),
    "head count changed": (sql("UPDATE audit_chain SET entries = 13"), None, "edited", "counts 13"),
    "inserted, chained": (_insert_chained_6, 6, "inserted", "#106 follows #5 directly"),
    "inserted, loose": (_insert_loose_13, 13, "inserted", "not in the chain"),
    "inserted without hashes": (
        lambda c: c.execute(audit.insert().values(event="sync", at=T0, recorded_at=T0, detail={})),
        13,
        "inserted",
        "no chain hash",
    ),
    "appended after the head": (_append_after_head, 13, "inserted", "its head is #12"),
    "two swapped": (_swap(5, 6), 5, "reordered", "follows #6"),
    "first moved to the end": (lambda c: _move(c, 1, 50), 2, "reordered", "follows #50"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_verify_names_the_first_broken_entry(store: sa.Engine, case: str) -> None:
    change, first, kind, words = CASES[case]
    write_trail(store)
    assert chain_verify.verify_store(store).broken is None
    tamper(store, change)
    found = broken(store)
    assert (found.audit_id, found.kind) == (first, kind), found
    assert words in found.reason


def test_a_rewritten_and_reheaded_chain_fails_against_an_anchor(store: sa.Engine) -> None:
    """Someone who empties the trail and resets the head to the genesis leaves a consistent,
    empty chain; the anchor copied out earlier (a verify line, the health log) shows it."""
    write_trail(store)
    intact = chain_verify.verify_store(store)
    anchor = (intact.last_id, intact.last_hash)
    tamper(store, _truncate)
    tamper(
        store,
        sql(
            "UPDATE audit_chain SET entries = 0, head_audit_id = NULL, head_hash = genesis_hash, "
            "backfilled = 0"
        ),
    )
    assert chain_verify.verify_store(store).broken is None  # consistent on its own
    found = chain_verify.verify_store(store, anchors=[anchor]).broken
    assert found is not None and (found.audit_id, found.kind) == (12, "deleted")
    assert (
        main(["audit", "verify", "--store", store.url.render_as_string(False), "--anchor", f"12:{anchor[1]}"])
        == 1
    )


def test_a_period_is_verified_from_the_entry_before_it(store: sa.Engine) -> None:
    write_trail(store)  # batch b's entries are at T0 + b hours
    second_hour = {"start": T0 + dt.timedelta(hours=1), "end": T0 + dt.timedelta(hours=2)}
    verdict = chain_verify.verify_store(store, **second_hour)
    assert (verdict.broken, verdict.first_id, verdict.last_id) == (None, 5, 8)
    tamper(store, sql("UPDATE audit SET actor = 'x' WHERE audit_id = 11"))
    assert chain_verify.verify_store(store, **second_hour).broken is None  # outside the period
    assert broken(store).audit_id == 11
    tamper(store, sql("DELETE FROM audit WHERE audit_id = 5"))  # the period's first entry
    found = broken(store, **second_hour)
    assert (found.audit_id, found.kind) == (6, "deleted")


# --- the guards ----------------------------------------------------------------------------------


REFUSED = [
    ("UPDATE audit SET event = 'sync'", "append-only"),
    ("DELETE FROM audit", "append-only"),
    ("DELETE FROM audit_chain", "never deleted"),
    ("UPDATE audit_chain SET entries = entries - 1", "only moves forward"),
    ("UPDATE audit_chain SET head_hash = genesis_hash", "only moves forward"),
    ("UPDATE audit_chain SET genesis_hash = head_hash, entries = entries + 1, head_audit_id = 99", "forward"),
]
PG_REFUSED = [("TRUNCATE audit", "append-only"), ("TRUNCATE audit_chain", "never deleted")]


def test_the_guards_refuse_changes_and_unchained_entries(store: sa.Engine) -> None:
    write_trail(store, batches=1)
    refused = REFUSED + (PG_REFUSED if store.dialect.name == "postgresql" else [])
    for statement, words in refused:
        with pytest.raises(sa.exc.DatabaseError, match=words), store.begin() as conn:
            conn.exec_driver_sql(statement)
    with pytest.raises(sa.exc.DatabaseError, match="chained"), store.begin() as conn:
        conn.execute(audit.insert().values(event="sync", at=T0, recorded_at=T0, detail={}))
    assert chain_verify.verify_store(store).entries == 4


def _lift_every_way(conn: sa.Connection) -> None:
    """Drop some guards, disable or hollow out the others."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER audit_no_update")
        conn.exec_driver_sql("DROP TRIGGER audit_chained")
        conn.exec_driver_sql("DROP TRIGGER audit_no_delete")
        conn.exec_driver_sql(
            "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit WHEN 0 BEGIN SELECT 1; END"
        )
        conn.exec_driver_sql("DROP TRIGGER audit_chain_no_delete")
    else:
        conn.exec_driver_sql("ALTER TABLE audit DISABLE TRIGGER audit_append_only")
        conn.exec_driver_sql("DROP TRIGGER audit_no_truncate ON audit")
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION leadsla_audit_chain_guard() RETURNS trigger AS $$ "
            "BEGIN RETURN NEW; END; $$ LANGUAGE plpgsql"
        )
        conn.exec_driver_sql("ALTER TABLE audit DROP CONSTRAINT audit_chained")
        conn.exec_driver_sql("ALTER TABLE audit ADD CONSTRAINT audit_chained CHECK (true) NOT VALID")


def test_every_open_puts_back_a_lifted_guard(store: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    write_trail(store, batches=1)
    with store.begin() as conn:
        _lift_every_way(conn)
    with store.begin() as conn:  # lifted: the changes go through
        conn.exec_driver_sql("UPDATE audit SET actor = 'x' WHERE audit_id = 4")
    with caplog.at_level(logging.WARNING, logger="leadsla.store.migrations"):
        reopened = open_store(store.url.render_as_string(hide_password=False))
    try:
        assert "guards were missing or altered" in caplog.text
        refused = REFUSED + (PG_REFUSED if store.dialect.name == "postgresql" else [])
        for statement, words in refused:
            with pytest.raises(sa.exc.DatabaseError, match=words), reopened.begin() as conn:
                conn.exec_driver_sql(statement)
        with pytest.raises(sa.exc.DatabaseError, match="chained"), reopened.begin() as conn:
            conn.execute(audit.insert().values(event="sync", at=T0, recorded_at=T0, detail={}))
        assert broken(reopened).audit_id == 4  # what was done while they were lifted shows
        with reopened.begin() as conn:
            assert guards.assert_guards(conn) == []  # in place: nothing to do on the next open
    finally:
        reopened.dispose()


@pytest.mark.postgres
def test_postgres_guards_fire_even_for_a_replica_session(postgres_server) -> None:
    """ENABLE ALWAYS: `session_replication_role = replica` (which silences ordinary triggers)
    does not lift them."""
    from tests.conftest import _new_postgres_url

    engine = open_store(_new_postgres_url(postgres_server))
    try:
        write_trail(engine, batches=1)
        for statement in ("DELETE FROM audit", "TRUNCATE audit", "DELETE FROM audit_chain"):
            with (
                pytest.raises(sa.exc.DatabaseError, match="append-only|never deleted"),
                engine.begin() as conn,
            ):
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
                conn.exec_driver_sql(statement)
        assert chain_verify.verify_store(engine).entries == 4
    finally:
        engine.dispose()


# --- upgrading a store written before the chain -------------------------------------------------


def _as_version_3(engine: sa.Engine, entries: list[dict]) -> None:
    """The store as version 3 left it: no chain columns or head, its own append-only triggers,
    and `entries` written straight into the table."""
    with engine.begin() as conn:
        lift_guards(conn)
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(guards.SQLITE_TRIGGERS["audit_no_update"])
            conn.exec_driver_sql(guards.SQLITE_TRIGGERS["audit_no_delete"])
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
                "FOR EACH ROW EXECUTE FUNCTION leadsla_audit_append_only()"
            )
        conn.exec_driver_sql("DROP TABLE audit_chain")
        conn.exec_driver_sql("ALTER TABLE audit DROP COLUMN prev_hash")
        conn.exec_driver_sql("ALTER TABLE audit DROP COLUMN entry_hash")
        conn.execute(audit.insert(), entries)  # only the columns version 3 had
        conn.exec_driver_sql("DROP TABLE store_revision")  # the releases before Alembic had none
        conn.exec_driver_sql("DELETE FROM schema_meta")
        conn.execute(
            sa.insert(sa.table("schema_meta", sa.column("version"), sa.column("upgraded_at"))).values(
                version=3, upgraded_at=T0
            )
        )


def test_upgrade_hashes_the_entries_written_before_the_chain(store: sa.Engine) -> None:
    old = [
        {
            "at": T0 + dt.timedelta(minutes=i),
            "recorded_at": T0 + dt.timedelta(minutes=i, seconds=3),
            "event": "clock_start" if i % 2 else "message_sent",
            "record_id": f"00Q{i:015d}",
            "actor": "" if i == 3 else "rule:sales_touch",
            "detail": {"i": i, "note": "é =SUM(A1)", "x": [0.1, None]},
            "dag_id": "sla_monitor",
            "try_number": i % 3 or None,
        }
        for i in range(1, 2 * chain.PAGE + 8)  # more than two pages
    ]
    _as_version_3(store, old)
    columns = [audit.c[k] for k in old[0]]

    def written() -> list[dict]:
        with store.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(*columns).order_by(audit.c.audit_id)).mappings()]

    kept = written()
    assert upgrade(store) == SCHEMA_VERSION
    with store.connect() as conn:
        assert current_version(conn) == SCHEMA_VERSION
        head = conn.execute(sa.select(audit_chain)).one()
    assert (head.backfilled, head.entries, head.head_audit_id) == (len(old), len(old), len(old))
    assert written() == kept  # every row kept as it was
    with store.begin() as conn:
        record(conn, "sync", at=T0, context=CTX)
    verdict = chain_verify.verify_store(store)
    assert (verdict.broken, verdict.entries) == (None, len(old) + 1)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.begin() as conn:
        conn.exec_driver_sql("UPDATE audit SET actor = 'x'")


# --- exports, the CLI, the health check ---------------------------------------------------------


def _export(store: sa.Engine, tmp_path, name: str = "audit.csv", *, to: str = "2026-11-03") -> str:
    out = tmp_path / name
    url = store.url.render_as_string(hide_password=False)
    assert (
        main(["audit", "export", "--from", "2026-11-02", "--to", to, "--out", str(out), "--store", url]) == 0
    )
    return str(out)


def _lines(path: str) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return fh.read().splitlines(keepends=True)


def test_an_export_verifies_offline_and_shows_what_was_changed_in_it(store, tmp_path, capsys) -> None:
    write_trail(store)
    with store.begin() as conn:  # text a spreadsheet would take for a formula
        record(conn, "war_room_visit", at=T0 + dt.timedelta(hours=5), context=CTX, actor="=HYPERLINK(1)")
    path = _export(store, tmp_path)
    capsys.readouterr()
    assert main(["audit", "verify", "--file", path]) == 0
    out = capsys.readouterr().out
    assert "intact: 13 entries, #1 to #13;" in out
    store_line = chain_verify.verify_store(store).line()
    assert store_line.split("anchor ")[1] == out.split("anchor ")[1].strip()  # the same anchor
    lines = _lines(path)

    def verify_changed(changed: list[str]) -> str:
        (tmp_path / "changed.csv").write_text("".join(changed), encoding="utf-8")
        capsys.readouterr()
        assert main(["audit", "verify", "--file", str(tmp_path / "changed.csv")]) == 1
        return capsys.readouterr().out

    edited = lines.copy()
    edited[6] = edited[6].replace("rule:sales_touch", "rule:someone_else")
    assert "BROKEN at entry #6 (edited)" in verify_changed(edited)
    swapped = lines.copy()
    swapped[3], swapped[4] = swapped[4].replace("4,", "3,", 1), swapped[3].replace("3,", "4,", 1)
    assert "BROKEN at entry #3 (reordered)" in verify_changed(swapped)
    dropped = lines[:5] + lines[6:]
    capsys.readouterr()
    (tmp_path / "dropped.csv").write_text("".join(dropped), encoding="utf-8")
    assert main(["audit", "verify", "--file", str(tmp_path / "dropped.csv")]) == 0
    assert "(1 of them follow an entry that is not in the export" in capsys.readouterr().out  # said


def test_an_export_of_part_of_the_trail_links_what_it_holds(store, tmp_path, capsys) -> None:
    write_trail(store)
    path = _export(store, tmp_path, to="2026-11-02T10:00")  # the first hour: entries 1-4
    capsys.readouterr()
    assert main(["audit", "verify", "--file", path]) == 0
    assert "intact: 4 entries, #1 to #4" in capsys.readouterr().out


def test_cli_verify_prints_one_line_and_exits_1_when_broken(store, capsys) -> None:
    write_trail(store)
    url = store.url.render_as_string(hide_password=False)
    assert main(["audit", "verify", "--store", url]) == 0
    assert capsys.readouterr().out.startswith("audit trail intact: 12 entries")
    tamper(store, sql("DELETE FROM audit WHERE audit_id = 5"))
    assert main(["audit", "verify", "--store", url, "--from", "2026-11-02", "--to", "2026-11-03"]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "BROKEN at entry #6 (deleted)" in out
    assert main(["audit", "verify", "--store", url, "--anchor", "12:nothex"]) == 2
    assert "is not ID:HASH" in capsys.readouterr().err


def test_health_check_alerts_on_a_broken_chain(store, caplog) -> None:
    write_trail(store)
    with caplog.at_level(logging.INFO, logger="leadsla.health.audit_chain"), store.connect() as conn:
        assert health_check.check(conn, T0, None, {}) == []
    assert "audit chain intact: 12 entries, anchor 12:" in caplog.text
    tamper(store, sql("UPDATE audit SET detail = '{}' WHERE audit_id = 3"))
    with store.connect() as conn:
        [finding] = health_check.check(conn, T0, None, {})
    assert (finding.check, finding.severity) == ("audit_chain_broken", "critical")
    assert "entry #3 (edited)" in finding.summary and "leadsla audit verify" in finding.how_to_fix
