"""The store on both backends: schema creation, upserts, watermarks, the append-only audit trail,
UTC instants, and clear errors for bad configuration."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from leadsla.errors import StoreConfigError
from leadsla.store import open_store, resolve_url, watermarks
from leadsla.store.audit import AuditContext, record, record_many
from leadsla.store.migrations import current_version, upgrade
from leadsla.store.schema import SCHEMA_VERSION, audit, metadata, records
from leadsla.store.upsert import insert_new, upsert

T0 = dt.datetime(2026, 3, 8, 6, 59, tzinfo=dt.UTC)


def lead(record_id: str, status: str = "MQL", **extra) -> dict:
    return {
        "object_type": "Lead",
        "record_id": record_id,
        "name": extra.pop("name", "Ada Lovelace"),
        "status": status,
        "fields": {"Id": record_id, "Status": status},
        "synced_at": T0,
        "modified_at": extra.pop("modified_at", T0),
        **extra,
    }


def test_schema_is_created_with_every_table_and_version(store: sa.Engine) -> None:
    names = set(sa.inspect(store).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= names
    with store.connect() as conn:
        assert current_version(conn) == SCHEMA_VERSION


def test_upgrade_is_idempotent(store: sa.Engine) -> None:
    assert upgrade(store) == SCHEMA_VERSION
    assert upgrade(store) == SCHEMA_VERSION
    with store.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM schema_meta")).scalar() == 1


@pytest.mark.parametrize("from_version", [1, 2, 3, 5])
def test_an_older_store_gains_what_later_versions_add(store: sa.Engine, from_version: int) -> None:
    v1_covering = [
        "sla_id",
        "clock_start",
        "record_id",
        "accountable_owner_id",
        "accountable_team",
        "stopped_at",
        "breached_at",
        "elapsed_seconds",
    ]
    dropped = [("crm_mapping_checks", "stamp_fields")] if from_version <= 3 else []
    if from_version <= 2:
        dropped += [("crm_mapping_checks", "lifecycle_digest"), ("crm_mapping_checks", "drift")]
    if from_version == 1:
        dropped += [("activities", "created_by"), ("activities", "status"), ("activities", "completed_at")]
    with store.begin() as conn:  # the store as that version left it
        for table, column in dropped:
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        if from_version <= 2:
            conn.exec_driver_sql("DROP TABLE config_snapshots")
            conn.exec_driver_sql("DROP INDEX ix_clocks_judged")
            conn.exec_driver_sql(f"CREATE INDEX ix_clocks_v1_covering ON clocks ({', '.join(v1_covering)})")
        # Before version 6 the War Room's cohort index had no name and fewer columns.
        conn.exec_driver_sql("DROP INDEX ix_records_cohort")
        conn.exec_driver_sql(
            "CREATE INDEX ix_records_v5_created ON records (object_type, created_at, record_id)"
        )
        conn.exec_driver_sql("DROP TABLE store_revision")  # the releases before Alembic had none
        conn.exec_driver_sql("DELETE FROM schema_meta")
        conn.execute(
            sa.insert(sa.table("schema_meta", sa.column("version"), sa.column("upgraded_at"))).values(
                version=from_version, upgraded_at=T0
            )
        )
    assert upgrade(store) == SCHEMA_VERSION
    inspector = sa.inspect(store)
    assert {"created_by", "status", "completed_at"} <= {
        c["name"] for c in inspector.get_columns("activities")
    }
    assert {"lifecycle_digest", "drift", "stamp_fields"} <= {
        c["name"] for c in inspector.get_columns("crm_mapping_checks")
    }
    assert "config_snapshots" in inspector.get_table_names()
    indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("clocks")}
    assert "ix_clocks_v1_covering" not in indexes
    assert indexes["ix_clocks_judged"] == [*v1_covering, "state"]
    indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("records")}
    assert "ix_records_v5_created" not in indexes
    assert indexes["ix_records_cohort"] == [
        "object_type",
        "created_at",
        "record_id",
        "status",
        "rejection_reason",
        "is_deleted",
    ]


def test_upsert_inserts_then_updates_on_the_key(store: sa.Engine) -> None:
    with store.begin() as conn:
        assert upsert(conn, records, [lead("00Q000000000001AAA"), lead("00Q000000000002AAA")]) == 2
    with store.begin() as conn:
        upsert(conn, records, [lead("00Q000000000001AAA", status="SAL", name="Ada L.")])
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(records.c.record_id, records.c.status, records.c.name).order_by(records.c.record_id)
        ).all()
    assert rows == [("00Q000000000001AAA", "SAL", "Ada L."), ("00Q000000000002AAA", "MQL", "Ada Lovelace")]


def test_upsert_handles_more_rows_than_one_batch(store: sa.Engine) -> None:
    rows = [lead(f"00Q{i:015d}") for i in range(1234)]
    with store.begin() as conn:
        upsert(conn, records, rows)
        upsert(conn, records, [dict(r, status="SAL") for r in rows])
    with store.connect() as conn:
        counts = dict(
            conn.execute(sa.select(records.c.status, sa.func.count()).group_by(records.c.status)).all()
        )
    assert counts == {"SAL": 1234}


def test_insert_new_never_changes_an_existing_row(store: sa.Engine) -> None:
    with store.begin() as conn:
        assert insert_new(conn, records, [lead("00Q000000000001AAA")], key=["object_type", "record_id"]) == 1
        assert (
            insert_new(
                conn, records, [lead("00Q000000000001AAA", status="SAL")], key=["object_type", "record_id"]
            )
            == 0
        )
        assert conn.execute(sa.select(records.c.status)).scalar() == "MQL"


def test_instants_come_back_aware_utc_and_naive_is_refused(store: sa.Engine) -> None:
    new_york = dt.timezone(dt.timedelta(hours=-5))
    with store.begin() as conn:
        upsert(
            conn,
            records,
            [lead("00Q000000000001AAA", modified_at=dt.datetime(2026, 1, 2, 9, 0, tzinfo=new_york))],
        )
    with store.connect() as conn:
        got = conn.execute(sa.select(records.c.modified_at)).scalar()
    assert got == dt.datetime(2026, 1, 2, 14, 0, tzinfo=dt.UTC)
    assert got.utcoffset() == dt.timedelta(0)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), store.begin() as conn:
        upsert(conn, records, [lead("00Q000000000003AAA", modified_at=dt.datetime(2026, 1, 2, 9, 0))])


def test_watermark_only_moves_forward(store: sa.Engine) -> None:
    with store.begin() as conn:
        assert watermarks.read(conn, "Lead") is None
        watermarks.advance(conn, "Lead", T0)
        watermarks.advance(conn, "Lead", T0 - dt.timedelta(hours=1))
        assert watermarks.read(conn, "Lead") == T0


def test_watermark_is_not_committed_with_a_failed_batch(store: sa.Engine) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        upsert(conn, records, [lead("00Q000000000001AAA")])
        watermarks.advance(conn, "Lead", T0)
        raise RuntimeError("batch failed before commit")
    with store.connect() as conn:
        assert watermarks.read(conn, "Lead") is None
        assert conn.execute(sa.select(sa.func.count()).select_from(records)).scalar() == 0


def test_audit_records_the_task_run_and_is_append_only(store: sa.Engine) -> None:
    ctx = AuditContext(dag_id="sla_monitor", run_id="scheduled__2026-03-08", task_id="escalate", try_number=2)
    with store.begin() as conn:
        record(
            conn,
            "escalation",
            at=T0,
            context=ctx,
            record_id="00Q000000000001AAA",
            sla_id="sales_touched_lead",
            detail={"action": "reassign", "to": "005000000000001AAA"},
        )
    with store.connect() as conn:
        row = conn.execute(sa.select(audit)).mappings().one()
    assert (row["dag_id"], row["run_id"], row["task_id"], row["try_number"]) == (
        "sla_monitor",
        "scheduled__2026-03-08",
        "escalate",
        2,
    )
    assert row["detail"] == {"action": "reassign", "to": "005000000000001AAA"}
    assert row["at"] == T0
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.begin() as conn:
        conn.execute(audit.update().values(event="clock_stop"))
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.begin() as conn:
        conn.execute(audit.delete())
    with store.connect() as conn:
        assert conn.execute(sa.select(audit.c.event)).scalar() == "escalation"


def test_audit_refuses_unknown_events(store: sa.Engine) -> None:
    with pytest.raises(ValueError, match="unknown audit event 'escalaton'"), store.begin() as conn:
        record_many(conn, [{"event": "escalaton", "at": T0}], context=AuditContext())


def test_audit_context_from_a_task_context() -> None:
    class TI:
        dag_id, run_id, task_id, try_number = "crm_sync", "manual__1", "load", 1

    assert AuditContext.from_task_context({"ti": TI()}) == AuditContext("crm_sync", "manual__1", "load", 1)


def test_parallel_writers_do_not_fail(store: sa.Engine) -> None:
    """Parallel tasks write at once: SQLite's busy timeout and write lock queue them."""
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            engine = open_store(store.url.render_as_string(hide_password=False))
            for i in range(20):
                with engine.begin() as conn:
                    upsert(conn, records, [lead(f"00Q{n:03d}{i:012d}")])
                    conn.execute(sa.select(sa.func.count()).select_from(records)).scalar()
            engine.dispose()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(records)).scalar() == 80


def test_a_new_sqlite_store_opens_while_another_connection_holds_its_lock(tmp_path) -> None:
    """Two tasks opening a new store together: SQLite answers the switch to WAL with "database is
    locked" at once, without waiting, while the other holds a lock; the open waits instead."""
    import sqlite3
    import time

    path = tmp_path / "store.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other_task (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # the other task is writing, before the file is in WAL mode
    released = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    released.start()
    began = time.monotonic()
    try:
        engine = open_store(f"sqlite:///{path}")
    finally:
        released.join()
        holder.close()
    waited = time.monotonic() - began
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert current_version(conn) == SCHEMA_VERSION
    engine.dispose()
    assert waited >= 0.4  # it waited for the lock rather than failing or going around it


# --- configuration errors: one clear sentence -------------------------------------------------


def test_default_url_is_a_sqlite_file_under_airflow_home(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LEADSLA_STORE_URL", raising=False)
    assert resolve_url() == f"sqlite:///{tmp_path / 'home' / 'leadsla_store.db'}"


def test_airflow_connection_supplies_the_url(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LEADSLA_STORE",
        f'{{"conn_type": "generic", "extra": {{"url": "sqlite:///{tmp_path}/from_conn.db"}}}}',
    )
    assert resolve_url() == f"sqlite:///{tmp_path}/from_conn.db"


def test_airflow_postgres_connection_becomes_a_psycopg_url(monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_LEADSLA_STORE",
        '{"conn_type": "postgres", "host": "db.internal", "login": "sla", "password": "pw", '
        '"port": 5433, "schema": "leadsla"}',
    )
    assert resolve_url() == "postgresql+psycopg://sla:pw@db.internal:5433/leadsla"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a SQLAlchemy URL"),
        ("mysql://u@h/db", "uses backend 'mysql'"),
        ("sqlite://", "names no file"),
        ("sqlite:////proc/leadsla/store.db", "cannot create the store folder /proc/leadsla"),
    ],
)
def test_bad_urls_get_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message):
        resolve_url(url)


def test_password_never_appears_in_errors() -> None:
    with pytest.raises(StoreConfigError) as info:
        open_store("postgresql://sla:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


def test_unwritable_airflow_home_is_one_line_from_the_cli(tmp_path) -> None:
    home = tmp_path / "ro"
    home.mkdir()
    home.chmod(0o500)
    env = {"AIRFLOW_HOME": str(home / "sub"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "leadsla.cli", "store"], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode == 0:  # root ignores directory permissions; use a path that can't exist
        env["AIRFLOW_HOME"] = "/proc/leadsla-home"
        proc = subprocess.run(
            [sys.executable, "-m", "leadsla.cli", "store"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("leadsla: error: cannot create the store folder")
    assert "Traceback" not in proc.stderr
