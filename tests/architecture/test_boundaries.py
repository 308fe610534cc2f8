"""The architecture as the import graph and the outbox's one writer, checked by tools so it cannot rot.

- The import-linter contracts in pyproject.toml hold (layers, a pure SLA core and decisions,
  Airflow only at the edges, no cycles) and catch planted violations.
- No private name (`_name`) is imported or reached into from another module.
- Only `leadsla.notify.outbox` writes the outbox: statically (no other module calls insert,
  update or delete on the table) and at run time (tests/outbox_writers.py watches the whole
  session; the test here plants a rogue writer to show the watch works).
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.outbox_writers import WRITER, OutboxWriters

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "include" / "leadsla"
SOURCES = [PACKAGE, ROOT / "include" / "sandbox", ROOT / "dags", ROOT / "plugins"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(include: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(include)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(config), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=include.parent,
        timeout=300,
    )


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT / "include", ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_import_contracts_catch_planted_violations(tmp_path: Path) -> None:
    include = tmp_path / "include"
    shutil.copytree(PACKAGE, include / "leadsla", ignore=shutil.ignore_patterns("__pycache__"))
    plant = {
        "decisions/plan.py": "import leadsla.store.schema  # a decision reading the store\n",
        "engine.py": "import airflow.sdk  # the core importing Airflow\n",
        "notify/payloads.py": "import leadsla.notify.render  # render imports payloads: a cycle\n",
        "store/mirror.py": "import leadsla.tasks.context  # the domain importing the entry points\n",
    }
    for name, line in plant.items():
        path = include / "leadsla" / name
        path.write_text(path.read_text() + line)
    result = lint_imports(include, ROOT / "pyproject.toml")
    report = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "Contracts: 1 kept, 3 broken." in report  # Airflow-at-the-edges has nothing planted
    for expected in (
        "leadsla.decisions is not allowed to import leadsla.store: "
        "- leadsla.decisions.plan -> leadsla.store.schema",
        "leadsla.store is not allowed to import leadsla.tasks: "
        "- leadsla.store.mirror -> leadsla.tasks.context",
        "leadsla.engine is not allowed to import airflow",
        "No cycles are allowed in leadsla.notify. It could be made acyclic by removing 1 dependency: "
        "- .payloads -> .render",
    ):
        assert expected in report, expected


# --- private names ------------------------------------------------------------------------------


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_name_crossings(source: str, where: str) -> list[str]:
    """`from leadsla.x import _name`, and `module._name` on an imported project module."""
    found: list[str] = []
    tree = ast.parse(source)
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("leadsla", "sandbox"):
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{where}:{node.lineno} imports {node.module}.{alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("leadsla", "sandbox"):
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name):
            if node.value.id in modules:
                found.append(f"{where}:{node.lineno} reaches into {node.value.id}.{node.attr}")
    return found


def _python_files() -> list[Path]:
    return sorted(p for root in SOURCES for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_private_name_crosses_a_module() -> None:
    found = [
        hit
        for path in _python_files()
        for hit in private_name_crossings(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []


def test_the_private_name_check_can_fail() -> None:
    source = (
        "from leadsla.notify.messages import _jinja, one_line\n"
        "from leadsla import alerts\n"
        "alerts._ts(1)\n"
        "one_line.__doc__\n"
    )
    assert private_name_crossings(source, "x.py") == [
        "x.py:1 imports leadsla.notify.messages._jinja",
        "x.py:3 reaches into alerts._ts",
    ]


# --- the outbox's one writer --------------------------------------------------------------------

_WRITES = {"insert", "update", "delete", "insert_new", "upsert"}


def outbox_writes(source: str, where: str) -> list[str]:
    """Calls that insert, update or delete the outbox table, however it is named in the module."""
    tree = ast.parse(source)
    bound: set[str] = set()

    def is_outbox(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and node.attr == "outbox":
            return True  # schema.outbox
        return isinstance(node, ast.Name) and node.id in bound

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "leadsla.store.schema":
            bound |= {a.asname or a.name for a in node.names if a.name == "outbox"}
    for node in ast.walk(tree):  # aliases: x = schema.outbox; a, b = schema.outbox, schema.users
        if isinstance(node, ast.Assign):
            pairs = [(node.targets[0], node.value)]
            if isinstance(node.targets[0], ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs = list(zip(node.targets[0].elts, node.value.elts, strict=False))
            bound |= {t.id for t, v in pairs if isinstance(t, ast.Name) and is_outbox(v)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in _WRITES:
            continue
        on_table = isinstance(func, ast.Attribute) and is_outbox(func.value)
        with_table = any(is_outbox(arg) for arg in node.args)
        if on_table or with_table:
            found.append((node.lineno, f"{where}:{node.lineno} {name}"))
    return [hit for _, hit in sorted(found)]


def test_no_module_but_the_outbox_module_writes_the_outbox() -> None:
    writer = PACKAGE / "notify" / "outbox.py"
    found = [
        hit
        for path in _python_files()
        if path != writer
        for hit in outbox_writes(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []
    assert outbox_writes(writer.read_text(), "outbox.py"), "the check sees the writer's own writes"


def test_the_static_outbox_check_can_fail() -> None:
    source = (
        "from leadsla.store import schema\n"
        "from leadsla.store.schema import outbox as box\n"
        "o, u = schema.outbox, schema.users\n"
        "conn.execute(o.update().values(status='x'))\n"
        "conn.execute(box.insert())\n"
        "insert_new(conn, schema.outbox, rows)\n"
        "conn.execute(sa.select(o.c.status))\n"
        "conn.execute(u.update())\n"
    )
    assert outbox_writes(source, "x.py") == ["x.py:4 update", "x.py:5 insert", "x.py:6 insert_new"]


def test_at_run_time_only_the_outbox_module_writes_it_and_a_rogue_writer_is_seen(
    store, session_outbox_writers
) -> None:
    """Every kind of write the outbox module makes, watched; then a planted writer elsewhere."""
    from leadsla.decisions.plan import Message, Notice, Plan
    from leadsla.notify import outbox
    from leadsla.store.audit import AuditContext
    from tests.notify_fixtures import CLOCK_START, alert_payload

    now = dt.datetime(2026, 3, 9, 16, 0, tzinfo=dt.UTC)
    ctx = AuditContext(dag_id="t", run_id="r", task_id="t", try_number=1)
    watch = OutboxWriters()
    watch.install()
    try:
        message = Message(
            "mql_to_sal",
            "00Q000000000000001",
            CLOCK_START,
            "warn_50",
            "rita@example.com",
            "email",
            alert_payload(),
        )
        notice = Notice("health", "digest", now, "digest", (("slack", "C0REVOPS001"),), "t", "warning")
        with store.begin() as conn:
            outbox.apply(conn, Plan(messages=[message], notices=[notice]), now, ctx)
            [row, other] = outbox.claim(conn, now, dt.timedelta(seconds=30), 10)
            outbox.mark_delivered(conn, row, "ts-1", now, ctx)
            outbox.mark_failed(conn, other, "boom", now + dt.timedelta(minutes=1), now, ctx)
        assert set(watch.seen) == {WRITER}, watch.seen
        rogue = "conn.execute(schema.outbox.update().values(status='delivered'))"
        with store.begin() as conn:
            from leadsla.store import schema

            exec(rogue, {"__name__": "leadsla.escalation.rogue", "conn": conn, "schema": schema})
        assert watch.intruders == {"leadsla.escalation.rogue": "UPDATE outbox SET"}
        assert session_outbox_writers.intruders.get("leadsla.escalation.rogue") == "UPDATE outbox SET"
    finally:
        watch.remove()
        session_outbox_writers.seen.pop("leadsla.escalation.rogue", None)  # the plant, not an intruder


@pytest.mark.parametrize(
    "statement",
    ["INSERT INTO outbox (a) VALUES (1)", 'UPDATE "outbox" SET a=1', "DELETE FROM outbox WHERE 1"],
)
def test_the_runtime_watch_recognises_every_write(statement: str) -> None:
    from tests.outbox_writers import _WRITE

    assert _WRITE.match(statement)
    assert not _WRITE.match("SELECT * FROM outbox") and not _WRITE.match("UPDATE outbox_archive SET a=1")
