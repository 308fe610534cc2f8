"""The audit trail's guards, checked and re-asserted every time the store opens.

- `audit` is append-only: UPDATE and DELETE are refused (row triggers) and, on PostgreSQL, so is
  TRUNCATE (a statement trigger: row triggers never see it). On SQLite a DELETE trigger also
  turns off the "truncate optimisation", so DELETE without WHERE is refused too.
- every new audit row carries its chain hashes (so a writer that bypasses `store.audit` fails
  loudly instead of leaving an unchained entry; a CHECK constraint on PostgreSQL, added NOT VALID
  so it never scans the table).
- the chain head (`audit_chain`) is never deleted or truncated, and an update may only move it
  forward (more entries, a later head; its genesis fixed).

`assert_guards` reads the catalog (sqlite_master; pg_trigger, pg_proc, pg_constraint) and
(re)creates only what is missing, disabled or altered, so an open costs one or two catalog reads
and takes no table lock when all is in place. PostgreSQL triggers are ENABLE ALWAYS, so a session
in `session_replication_role = replica` still fires them. What a superuser or the tables' owner
can still do (drop a guard and tamper before the next open) the hash chain detects
(`store.chain.verify_store`).
"""

from __future__ import annotations

import re

import sqlalchemy as sa

_APPEND_ONLY = "'audit is append-only'"
_CHAINED = "'audit entries are chained: append them through leadsla.store.audit'"
_FORWARD = "'the audit chain head is never deleted and only moves forward'"

#: SQLite: trigger name -> its CREATE statement exactly as sqlite_master keeps it.
SQLITE_TRIGGERS = {
    "audit_no_update": "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
    f"BEGIN SELECT RAISE(ABORT, {_APPEND_ONLY}); END",
    "audit_no_delete": "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
    f"BEGIN SELECT RAISE(ABORT, {_APPEND_ONLY}); END",
    "audit_chained": "CREATE TRIGGER audit_chained BEFORE INSERT ON audit "
    "WHEN NEW.prev_hash IS NULL OR NEW.entry_hash IS NULL "
    f"BEGIN SELECT RAISE(ABORT, {_CHAINED}); END",
    "audit_chain_no_delete": "CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain "
    f"BEGIN SELECT RAISE(ABORT, {_FORWARD}); END",
    "audit_chain_forward": "CREATE TRIGGER audit_chain_forward BEFORE UPDATE ON audit_chain "
    "WHEN NEW.chain_id IS NOT OLD.chain_id OR NEW.genesis_hash IS NOT OLD.genesis_hash "
    "OR NEW.started_at IS NOT OLD.started_at OR NEW.backfilled IS NOT OLD.backfilled "
    "OR NEW.entries <= OLD.entries OR NEW.head_audit_id <= OLD.head_audit_id "
    f"BEGIN SELECT RAISE(ABORT, {_FORWARD}); END",
}

#: PostgreSQL: function name -> its body (pg_proc.prosrc keeps it verbatim).
PG_FUNCTIONS = {
    "leadsla_audit_append_only": f" BEGIN RAISE EXCEPTION {_APPEND_ONLY}; END; ",
    "leadsla_audit_chain_guard": " BEGIN IF TG_OP = 'UPDATE' THEN IF NEW.chain_id = OLD.chain_id "
    "AND NEW.genesis_hash = OLD.genesis_hash AND NEW.started_at = OLD.started_at "
    "AND NEW.backfilled = OLD.backfilled AND NEW.entries > OLD.entries "
    "AND (OLD.head_audit_id IS NULL OR NEW.head_audit_id > OLD.head_audit_id) THEN RETURN NEW; END IF; "
    f"END IF; RAISE EXCEPTION {_FORWARD}; END; ",
}

_ROW, _BEFORE, _DELETE, _UPDATE, _TRUNCATE = 1, 2, 8, 16, 32  # pg_trigger.tgtype bits

#: PostgreSQL: trigger name -> (table, tgtype, function, the timing and events to create it with).
PG_TRIGGERS = {
    "audit_append_only": (
        "audit",
        _ROW | _BEFORE | _UPDATE | _DELETE,
        "leadsla_audit_append_only",
        "BEFORE UPDATE OR DELETE",
    ),
    "audit_no_truncate": ("audit", _BEFORE | _TRUNCATE, "leadsla_audit_append_only", "BEFORE TRUNCATE"),
    "audit_chain_guard": (
        "audit_chain",
        _ROW | _BEFORE | _UPDATE | _DELETE,
        "leadsla_audit_chain_guard",
        "BEFORE UPDATE OR DELETE",
    ),
    "audit_chain_no_truncate": (
        "audit_chain",
        _BEFORE | _TRUNCATE,
        "leadsla_audit_chain_guard",
        "BEFORE TRUNCATE",
    ),
}
PG_CHECK = ("audit_chained", "prev_hash IS NOT NULL AND entry_hash IS NOT NULL")


def assert_guards(conn: sa.Connection) -> list[str]:
    """Put back every guard that is missing, disabled or altered; returns their names (logged by
    the caller: a guard that had to be put back on a store that had it is itself a finding)."""
    if conn.dialect.name == "sqlite":
        return _assert_sqlite(conn)
    return _assert_postgres(conn)


def lift_update_guards(conn: sa.Connection) -> None:
    """Drop the guards against UPDATE of audit rows, for the upgrade that hashes existing entries
    (`store.chain.start`) in the same transaction; `assert_guards` puts them back after it."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_no_update")
    else:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_append_only ON audit")


def _assert_sqlite(conn: sa.Connection) -> list[str]:
    have = dict(
        conn.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master "
            "WHERE type = 'trigger' AND tbl_name IN ('audit', 'audit_chain')"
        ).all()
    )
    fixed = []
    for name, create in SQLITE_TRIGGERS.items():
        if have.get(name) == create:
            continue
        if name in have:
            conn.exec_driver_sql(f'DROP TRIGGER "{name}"')
        conn.exec_driver_sql(create)
        fixed.append(name)
    return fixed


def _squeeze(expression: str) -> str:
    return re.sub(r"[\s()]", "", expression).lower()


def _assert_postgres(conn: sa.Connection) -> list[str]:
    fixed = []
    bodies = dict(
        conn.exec_driver_sql(
            "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = current_schema()::regnamespace "
            "AND proname IN ('leadsla_audit_append_only', 'leadsla_audit_chain_guard')"
        ).all()
    )
    for name, body in PG_FUNCTIONS.items():
        if bodies.get(name) != body:
            conn.exec_driver_sql(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $${body}$$ LANGUAGE plpgsql"
            )
            fixed.append(name)
    triggers = {
        row.tgname: row
        for row in conn.exec_driver_sql(
            "SELECT t.tgname, c.relname, t.tgtype, t.tgenabled, p.proname, t.tgqual IS NULL AS plain "
            "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE t.tgrelid IN ('audit'::regclass, 'audit_chain'::regclass) AND NOT t.tgisinternal"
        )
    }
    for name, (table, tgtype, function, when) in PG_TRIGGERS.items():
        row = triggers.get(name)
        shape = None if row is None else (row.relname, row.tgtype, row.proname, row.plain)
        if shape == (table, tgtype, function, True):
            if row.tgenabled != "A":
                conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")
                fixed.append(name)
            continue
        if row is not None:
            conn.exec_driver_sql(f"DROP TRIGGER {name} ON {row.relname}")
        level = "ROW" if tgtype & _ROW else "STATEMENT"
        conn.exec_driver_sql(
            f"CREATE TRIGGER {name} {when} ON {table} FOR EACH {level} EXECUTE FUNCTION {function}()"
        )
        conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")
        fixed.append(name)
    name, expression = PG_CHECK
    checks = dict(
        conn.exec_driver_sql(
            "SELECT conname, pg_get_expr(conbin, conrelid) FROM pg_constraint "
            "WHERE conrelid = 'audit'::regclass AND contype = 'c'"
        ).all()
    )
    if _squeeze(checks.get(name) or "") != _squeeze(expression):
        if name in checks:
            conn.exec_driver_sql(f"ALTER TABLE audit DROP CONSTRAINT {name}")
        conn.exec_driver_sql(f"ALTER TABLE audit ADD CONSTRAINT {name} CHECK ({expression}) NOT VALID")
        fixed.append(name)
    return fixed
