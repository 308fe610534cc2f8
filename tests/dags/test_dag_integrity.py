"""DAG integrity: every DAG file imports cleanly and follows the house rules (STYLE.md).

The rules are checked by `dag_rule_violations` and `heavy_top_level_imports`; the last tests
prove those checks catch a DAG that breaks them, so a green run here means something.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
#: All a DAG file may import at module level: the DAG-authoring API and constants (the assets, the
#: report DAGs' builder, the failure notifier: each one's own top level is airflow.sdk and
#: constants, tests/dags/test_failure_alerts.py). Anything else costs time on every parse; it
#: belongs inside a task body (the providers' notifiers inside the failure notifier's `notify`).
TOP_LEVEL_ALLOWED = (
    "__future__",
    "datetime",
    "airflow.sdk",
    "leadsla.tasks.assets",
    "leadsla.tasks.reports",
    "leadsla.tasks.failure_alerts",
)


def load_dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


def dag_rule_violations(dag) -> list[str]:
    """What a DAG breaks of the house rules, as readable strings (empty when it is fine)."""
    problems = []
    if not (dag.doc_md or "").strip():
        problems.append("no doc_md")
    if not dag.tags:
        problems.append("no tags")
    if dag.catchup:
        problems.append("catchup is on")
    if dag.start_date is None:
        problems.append("no start_date")
    for task in dag.tasks:
        if (task.owner or "airflow") == "airflow":
            problems.append(f"task {task.task_id} has no owner")
        if (task.retries or 0) < 2:
            problems.append(f"task {task.task_id} has retries={task.retries}, needs >= 2")
    return problems


def heavy_top_level_imports(path: Path) -> list[str]:
    """Module-level imports in a DAG file beyond `TOP_LEVEL_ALLOWED` (inside functions is fine)."""
    found = []
    for node in ast.parse(path.read_text()).body:
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [
            f"{path.name}:{node.lineno} imports {n}"
            for n in names
            if not any(n == a or n.startswith(a + ".") for a in TOP_LEVEL_ALLOWED)
        ]
    return found


def start_date_problems(path: Path) -> list[str]:
    """start_dates that are computed at parse time (now(), today()...) or not spelled in UTC.

    Checked in the source because Airflow converts every parsed start_date to UTC.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.keyword) and node.arg == "start_date"):
            continue
        where = f"{path.name}:{node.value.lineno}"
        parts = list(ast.walk(node.value))
        for call in parts:
            func = getattr(call, "func", None)
            name = getattr(func, "attr", None) or getattr(func, "id", None)
            if name in {"now", "today", "utcnow", "days_ago"}:
                found.append(f"{where} start_date calls {name}()")
        words = {
            getattr(n, "attr", None) or getattr(n, "id", None) or getattr(n, "value", None) for n in parts
        }
        if not words & {"UTC", "utc"}:
            found.append(f"{where} start_date is not in UTC")
    return found


DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="module")
def dagbag():
    return load_dagbag(DAGS)


def test_dagbag_has_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}


def test_one_dag_per_file_named_after_its_dag_id(dagbag) -> None:
    by_file = {}
    for dag in dagbag.dags.values():
        by_file.setdefault(Path(dag.fileloc).stem, []).append(dag.dag_id)
    assert by_file == {p.stem: [p.stem] for p in DAG_FILES}


def test_every_dag_follows_the_house_rules(dagbag) -> None:
    assert {d.dag_id: dag_rule_violations(d) for d in dagbag.dags.values()} == {
        d.dag_id: [] for d in dagbag.dags.values()
    }


def test_start_dates_are_fixed_and_utc() -> None:
    assert [found for path in DAG_FILES for found in start_date_problems(path)] == []


def test_no_heavy_imports_at_module_top_level() -> None:
    assert [found for path in DAG_FILES for found in heavy_top_level_imports(path)] == []


# --- the checks above can fail ----------------------------------------------------------------

BAD_DAG = """
from __future__ import annotations
import datetime as dt
import pandas
from airflow.sdk import dag, task

@dag(schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
     catchup=True)
def moving():
    pass

moving()

@dag(schedule=None, start_date=dt.datetime(2026, 1, 1), catchup=True)
def sloppy():
    @task
    def work():
        return 1
    work()

sloppy()
"""

MOVING = (
    "from airflow.sdk import dag\nimport pendulum\n@dag(start_date=pendulum.now('UTC'))\n"
    "def m():\n    pass\nm()\n"
)


def test_the_checks_catch_a_dag_that_breaks_the_rules(tmp_path: Path) -> None:
    path = tmp_path / "sloppy.py"
    path.write_text(textwrap.dedent(BAD_DAG))
    bag = load_dagbag(tmp_path)
    assert bag.import_errors == {}
    problems = dag_rule_violations(bag.dags["sloppy"])
    assert "no doc_md" in problems and "no tags" in problems and "catchup is on" in problems
    assert "task work has no owner" in problems
    assert "task work has retries=0, needs >= 2" in problems
    assert heavy_top_level_imports(path) == ["sloppy.py:4 imports pandas"]
    assert start_date_problems(path) == [
        "sloppy.py:7 start_date is not in UTC",
        "sloppy.py:14 start_date is not in UTC",
    ]
    (tmp_path / "m.py").write_text(MOVING)
    assert start_date_problems(tmp_path / "m.py") == ["m.py:3 start_date calls now()"]


def test_import_errors_are_reported(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("from airflow.sdk import dag\nraise RuntimeError('boom')\n")
    (errors,) = load_dagbag(tmp_path).import_errors.items()
    assert errors[0].endswith("broken.py") and "boom" in errors[1]
