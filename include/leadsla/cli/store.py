"""`leadsla store`: create or upgrade the store and say where it is and what it holds;
`leadsla store upgrade [--check]`: apply the schema revisions it lacks, or only say which."""

from __future__ import annotations

import argparse

import sqlalchemy as sa

_URL_HELP = "SQLAlchemy URL of the store (overrides the usual resolution)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "store",
        help="create or upgrade the store and print its location, schema version and row counts",
        description="Open the store (LEADSLA_STORE_URL, the leadsla_store connection, or "
        "$AIRFLOW_HOME/leadsla_store.db), create or upgrade its schema, and print a summary.",
    )
    parser.add_argument("--url", help=_URL_HELP)
    parser.set_defaults(handler=run)
    actions = parser.add_subparsers(dest="store_action", metavar="ACTION")
    upgrade = actions.add_parser(
        "upgrade",
        help="apply the schema revisions the store lacks and print each (--check: only say which)",
        description="Bring the store's schema to this release's head revision, under the same lock "
        "the DAGs take when they open it, and print what was done. Exit 2 when the store is at a "
        "revision newer than this release.",
    )
    upgrade.add_argument("--url", dest="upgrade_url", metavar="URL", help=_URL_HELP)
    upgrade.add_argument(
        "--check",
        action="store_true",
        help="change nothing: print the store's revision and the head; exit 1 when revisions are pending",
    )
    upgrade.set_defaults(handler=run_upgrade)


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


def run_upgrade(args: argparse.Namespace) -> int:
    from leadsla.store import migrations, open_store
    from leadsla.store.connection import database_errors, read_only

    engine = open_store(args.upgrade_url or args.url, upgrade=False)
    try:
        print(f"store: {engine.url.render_as_string(hide_password=True)}")
        with database_errors(engine):
            if args.check:
                with read_only(engine) as conn:
                    status = migrations.status(conn)
                return _print_status(status)
            applied = migrations.apply(engine)
    finally:
        engine.dispose()
    if applied.created:
        print(f"created at revision {applied.revision} (the head)")
    if applied.adopted_from is not None:
        print(
            f"adopted: schema version {applied.adopted_from} from before revisions, "
            f"stamped at revision {applied.adopted_from:04d}"
        )
    for revision, summary in applied.ran:
        print(f"applied {revision}: {summary}")
    if not (applied.created or applied.ran):
        print(f"at the head revision {applied.revision}: nothing to apply")
    else:
        print(f"now at the head revision {applied.revision}")
    return 0


def _print_status(status) -> int:  # noqa: ANN001 (migrations.Status)
    if status.current is None:
        current = "none (an empty database: the next open creates it at the head)"
    elif status.legacy_version is not None:
        current = f"{status.current} (schema version {status.legacy_version}, from before revisions)"
    else:
        current = status.current
    print(f"revision: {current}")
    print(f"head: {status.head}")
    if status.legacy_version is not None or status.pending:
        pending = ", ".join(status.pending) or "none (stamp only)"
        print(f"pending: {pending}: run `leadsla store upgrade`")
        return 1
    print("up to date")
    return 0
