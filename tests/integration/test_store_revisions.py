"""The store's schema under Alembic, on both backends: every revision from the first release
arrives at schema.py exactly (so a schema change without a revision fails here), a store made by
the first release (its schema vendored from git history, filled in every table) upgrades to the
head with every row kept, stores of each hand-written version are adopted, parallel opens upgrade
once, and a store newer than the code is refused with one line."""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings
import zipfile

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from leadsla.cli import main
from leadsla.errors import StoreConfigError
from leadsla.store import chain_verify, guards, migrations, open_store
from leadsla.store.connection import create_engine
from leadsla.store.schema import SCHEMA_VERSION, activities, audit_chain, clocks, metadata, schema_meta
from tests.conftest import _new_postgres_url
from tests.fixtures import first_release_store

ROWS = 40


@pytest.fixture
def other_url(store_url: str, tmp_path, request: pytest.FixtureRequest) -> str:
    """A second empty database on the same backend as `store_url`."""
    if store_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'other.db'}"
    return _new_postgres_url(request.getfixturevalue("postgres_server"))


def drift(engine: sa.Engine, target: sa.MetaData = metadata) -> list:
    """Alembic's autogenerate comparison of the database with `target` (schema.py): what a
    revision would have to change; [] when they agree."""
    with engine.connect() as conn, warnings.catch_warnings():
        # PostgreSQL: alembic hands a reflected index's dialect_options back as an argument
        warnings.filterwarnings("ignore", "Can't validate argument 'dialect_options'")
        ctx = MigrationContext.configure(
            conn,
            opts={
                "include_name": lambda name, kind, _: (
                    not (kind == "table" and name == migrations.VERSION_TABLE)
                )
            },
        )
        return compare_metadata(ctx, target)


def reflected(engine: sa.Engine) -> dict:
    """Every table's columns (by name: a revision adds its columns at the end), keys and indexes
    (with their dialect options: the partial index's WHERE) as the database reports them."""
    inspector = sa.inspect(engine)
    shape = {}
    for name in inspector.get_table_names():
        columns = sorted(
            (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
            for c in inspector.get_columns(name)
        )
        indexes = sorted(
            (ix["name"], tuple(ix["column_names"]), bool(ix["unique"]), _options(ix))
            for ix in inspector.get_indexes(name)
        )
        uniques = sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(name))
        shape[name] = (columns, indexes, inspector.get_pk_constraint(name)["constrained_columns"], uniques)
    return shape


def _options(index: dict) -> str:
    return repr(sorted((k, str(v)) for k, v in (index.get("dialect_options") or {}).items()))


def run_revisions(engine: sa.Engine, destination: str = "head") -> None:
    """Run the revisions from where the store is (a hand-versioned store: its version) to
    `destination`, through Alembic alone (no create_all, no adoption)."""
    with engine.begin() as conn:
        ctx = migrations._context(conn, destination=destination)
        with Operations.context(ctx):
            _, legacy = migrations._current(conn)
            if legacy is not None:
                ctx.stamp(migrations.script_directory(), f"{legacy:04d}")
            ctx.run_migrations()
        if destination in ("head", migrations.head()):  # as an open would; before 0005, the old guards
            guards.assert_guards(conn)


def as_hand_versioned(engine: sa.Engine, version: int) -> None:
    """The store as the releases before Alembic left it at `version`: no revision table, that
    version the newest in schema_meta."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {migrations.VERSION_TABLE}")
        conn.execute(schema_meta.insert().values(version=version, upgraded_at=first_release_store.T0))


# --- the revisions are schema.py ----------------------------------------------------------------


def test_every_revision_from_an_empty_database_arrives_at_schema_py(store_url: str, other_url: str) -> None:
    through_revisions, from_schema = create_engine(store_url), open_store(other_url)
    try:
        run_revisions(through_revisions)
        assert drift(through_revisions) == []
        assert drift(from_schema) == []
        assert reflected(through_revisions) == reflected(from_schema)
        with through_revisions.connect() as conn:
            assert migrations.status(conn).pending == []
    finally:
        through_revisions.dispose()
        from_schema.dispose()


def test_the_comparison_sees_a_schema_change_without_a_revision(tmp_path) -> None:
    """Planted: schema.py gains a column, an index and a table that no revision makes."""
    engine = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        changed = sa.MetaData(naming_convention=metadata.naming_convention)
        for table in metadata.sorted_tables:
            table.to_metadata(changed)
        changed.tables["records"].append_column(sa.Column("region", sa.String(40)))
        sa.Index("ix_clocks_team_state", changed.tables["clocks"].c.team, changed.tables["clocks"].c.state)
        sa.Table("forecasts", changed, sa.Column("forecast_id", sa.Integer, primary_key=True))
        kinds = sorted(d[0] for d in drift(engine, changed))
        assert kinds == ["add_column", "add_index", "add_table"]
    finally:
        engine.dispose()


def test_schema_version_is_the_head_of_a_single_chain_of_numbered_revisions() -> None:
    script = migrations.script_directory()
    chain = [s for s in script.walk_revisions()][::-1]
    assert [s.revision for s in chain] == [f"{n:04d}" for n in range(1, len(chain) + 1)]
    assert [s.down_revision for s in chain] == [None, *(s.revision for s in chain[:-1])]
    assert script.get_heads() == [f"{SCHEMA_VERSION:04d}"] == [migrations.head()]


def test_the_revisions_run_from_the_built_wheel(tmp_path) -> None:
    """Installed from the wheel (no checkout, no alembic.ini), the package finds its revisions and
    upgrades a first-release store."""
    from tests.unit.test_packaging import _copy_project, build_wheel

    wheel = build_wheel(_copy_project(tmp_path / "repo"), tmp_path / "wheel")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    store = tmp_path / "store.db"
    first_release_store.create(create_engine(f"sqlite:///{store}"), 3)
    script = (
        "import sys; from leadsla.cli import main; from leadsla.store import migrations; "
        "print(migrations.__file__); sys.exit(main(['store', 'upgrade', '--url', sys.argv[1]]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, f"sqlite:///{store}"],
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(tmp_path / "site" / "leadsla" / "store" / "migrations.py")
    assert lines[-1] == f"now at the head revision {SCHEMA_VERSION:04d}"


# --- a store made by the first release ----------------------------------------------------------


def test_a_first_release_store_upgrades_to_the_head_with_every_row(store_url: str, other_url: str) -> None:
    written = first_release_store.create(create_engine(store_url), ROWS)
    assert sum(written.values()) == ROWS * 11 and len(written) == 11  # every first-release table
    before = first_release_store.snapshot(create_engine(store_url))
    engine = open_store(store_url)
    fresh = open_store(other_url)
    try:
        after = first_release_store.snapshot(engine)
        assert {k: len(v) for k, v in after.items()} == written
        assert first_release_store.rows_lost(before, after) == 0 and after == before
        edited = {name: [(*rows[0][:-1], "edited"), *rows[2:]] for name, rows in after.items()}
        assert first_release_store.rows_lost(before, edited) == 2 * len(written)  # the count can fail
        assert drift(engine) == []
        assert reflected(engine) == reflected(fresh)
        with engine.connect() as conn:
            assert migrations.current_version(conn) == SCHEMA_VERSION
            assert (
                conn.execute(sa.select(sa.func.count()).where(clocks.c.critical.is_(False))).scalar() == ROWS
            )
            head = conn.execute(sa.select(audit_chain)).one()
            versions = (
                conn.execute(sa.select(schema_meta.c.version).order_by(schema_meta.c.id)).scalars().all()
            )
        assert versions == [1, SCHEMA_VERSION]  # the first row still says when the store was made
        assert (head.backfilled, head.entries) == (ROWS, ROWS)
        verdict = chain_verify.verify_store(engine)
        assert (verdict.broken, verdict.entries) == (None, ROWS)
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("UPDATE audit SET actor = 'x'")
        with engine.begin() as conn:
            assert guards.assert_guards(conn) == []
    finally:
        engine.dispose()
        fresh.dispose()


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_a_store_of_each_hand_written_version_is_adopted(store_url: str, version: int) -> None:
    engine = create_engine(store_url)
    first_release_store.create(engine, ROWS)
    run_revisions(engine, f"{version:04d}")
    as_hand_versioned(engine, version)
    before = first_release_store.snapshot(engine)
    with engine.connect() as conn:
        assert migrations.status(conn).legacy_version == version
    applied = migrations.apply(engine)
    try:
        assert applied.adopted_from == version
        assert [r for r, _ in applied.ran] == [f"{n:04d}" for n in range(version + 1, SCHEMA_VERSION + 1)]
        assert first_release_store.snapshot(engine) == before
        assert drift(engine) == []
        assert chain_verify.verify_store(engine).broken is None
    finally:
        engine.dispose()


def test_a_first_release_store_moved_to_version_2_by_hand_gains_what_version_1_added(store_url: str) -> None:
    """The releases before Alembic moved a first-release store to version 2 adding only the
    activities columns: clocks never got their accountable owner or checkpoint columns, nor the
    War Room's indexes (the old version 3 step then failed on the missing columns)."""
    engine = create_engine(store_url)
    first_release_store.create(engine, ROWS)
    with engine.begin() as conn:  # what that release's version 2 step did: ADD COLUMN, typed from schema.py
        for name in ("created_by", "status", "completed_at"):
            type_sql = activities.c[name].type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f'ALTER TABLE activities ADD COLUMN "{name}" {type_sql}')
        conn.execute(schema_meta.insert().values(version=2, upgraded_at=first_release_store.T0))
    before = first_release_store.snapshot(engine)
    try:
        assert migrations.apply(engine).adopted_from == 2
        assert first_release_store.snapshot(engine) == before
        assert drift(engine) == []
        names = {c["name"] for c in sa.inspect(engine).get_columns("clocks")}
        assert {"accountable_owner_id", "critical", "next_checkpoint_at"} <= names
        assert "ix_clocks_judged" in {ix["name"] for ix in sa.inspect(engine).get_indexes("clocks")}
    finally:
        engine.dispose()


# --- concurrency and refusal --------------------------------------------------------------------


def test_parallel_opens_upgrade_a_store_once(store_url: str) -> None:
    first_release_store.create(create_engine(store_url), ROWS)
    barrier, results, errors = threading.Barrier(4), [], []

    def open_it() -> None:
        engine = create_engine(store_url)
        try:
            barrier.wait()
            results.append(migrations.apply(engine))
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(len(r.ran) for r in results) == [0, 0, 0, SCHEMA_VERSION - 1]
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.select(schema_meta.c.version)).scalars().all()
            head = conn.execute(sa.select(audit_chain)).one()
        assert sorted(versions) == [1, SCHEMA_VERSION] and head.backfilled == ROWS
        assert chain_verify.verify_store(engine).entries == ROWS
    finally:
        engine.dispose()


def test_a_store_newer_than_the_code_is_refused_with_one_line(store_url: str, capsys) -> None:
    open_store(store_url).dispose()
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {migrations.VERSION_TABLE} SET version_num = '0099'")
    expected = "the store is at 0099, which this code does not know (its newest revision is "
    with pytest.raises(StoreConfigError, match=expected.replace("(", r"\(")):
        open_store(store_url)
    for argv in (
        ["store", "upgrade", "--url", store_url],
        ["store", "upgrade", "--check", "--url", store_url],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"leadsla: error: {expected}") and err.count("\n") == 1
    with engine.begin() as conn:  # nothing was written
        assert conn.execute(sa.select(sa.func.count()).select_from(schema_meta)).scalar() == 1
        conn.exec_driver_sql(f"DROP TABLE {migrations.VERSION_TABLE}")
        newer = SCHEMA_VERSION + 1
        conn.execute(schema_meta.insert().values(version=newer, upgraded_at=first_release_store.T0))
    with pytest.raises(
        StoreConfigError, match=f"the store is at schema version {newer}, which this code does not know"
    ):
        open_store(store_url)
    engine.dispose()


# --- the command --------------------------------------------------------------------------------


def test_store_upgrade_checks_applies_and_says_what_it_did(store_url: str, capsys) -> None:
    first_release_store.create(create_engine(store_url), ROWS)
    assert main(["store", "upgrade", "--check", "--url", store_url]) == 1
    out = capsys.readouterr().out
    head = f"{SCHEMA_VERSION:04d}"
    later = [f"{n:04d}" for n in range(2, SCHEMA_VERSION + 1)]
    assert f"revision: 0001 (schema version 1, from before revisions)\nhead: {head}\n" in out
    assert f"pending: {', '.join(later)}: run `leadsla store upgrade`" in out
    assert not sa.inspect(create_engine(store_url)).has_table(
        migrations.VERSION_TABLE
    )  # --check wrote nothing

    assert main(["store", "upgrade", "--url", store_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "adopted: schema version 1 from before revisions, stamped at revision 0001"
    assert [line.split(":")[0] for line in out[2 : 2 + len(later)]] == [f"applied {r}" for r in later]
    assert out[-1] == f"now at the head revision {head}"

    assert main(["store", "upgrade", "--url", store_url]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [f"at the head revision {head}: nothing to apply"]
    assert main(["store", "upgrade", "--check", "--url", store_url]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [f"revision: {head}", f"head: {head}", "up to date"]
