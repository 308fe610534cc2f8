"""`leadsla store`: create or upgrade the store and say where it is and what it holds."""

from __future__ import annotations

import argparse

import sqlalchemy as sa


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "store",
        help="create or upgrade the store and print its location, schema version and row counts",
        description="Open the store (LEADSLA_STORE_URL, the leadsla_store connection, or "
        "$AIRFLOW_HOME/leadsla_store.db), create or upgrade its schema, and print a summary.",
    )
    parser.add_argument("--url", help="SQLAlchemy URL of the store (overrides the usual resolution)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from leadsla.store import open_store
    from leadsla.store.migrations import current_version
    from leadsla.store.schema import metadata

    engine = open_store(args.url)
    try:
        with engine.connect() as conn:
            print(f"store: {engine.url.render_as_string(hide_password=True)}")
            print(f"schema version: {current_version(conn)}")
            for table in metadata.sorted_tables:
                count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                print(f"  {table.name:<16} {count:>10,}")
    finally:
        engine.dispose()
    return 0
