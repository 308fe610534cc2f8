"""Bring the store's schema to this code's head revision, safely under concurrency; refuse a
store that is newer than the code.

The schema's history is a chain of Alembic revisions (`store.revisions`), applied from the code:
no alembic.ini or env.py, so it works the same from a wheel. `upgrade(engine)` is called by
`open_store` and `leadsla store upgrade`. In one transaction it takes a lock (PostgreSQL advisory
lock; SQLite's write lock, which `BEGIN IMMEDIATE` takes at the start), so parallel tasks starting
together upgrade once and the others find the head, then:

- an empty database is created from `schema.metadata` and stamped at the head (the comparison
  test proves every revision from the first release arrives at the same schema);
- a store of the releases before Alembic (schema version N in `schema_meta`, no revision table)
  is adopted: whatever version 1 gained after its first release is added where missing
  (`revisions.legacy`: those stores differ in shape), it is stamped at revision N and upgraded;
- a store at an older revision runs the pending revisions;
- a store at a revision this code does not know (written by a newer release) is refused with one
  line, before anything is written.

Every open also re-asserts the audit trail's guards (`store.guards`: a dropped or disabled trigger
is put back). Each upgrade appends a row to `schema_meta` with the head's number, so a release
from before Alembic refuses a store that a newer one has moved on, and the first row still says
when the store was created.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from leadsla.errors import StoreConfigError
from leadsla.store import chain, guards, revisions
from leadsla.store.revisions import legacy
from leadsla.store.schema import metadata, schema_meta

log = logging.getLogger(__name__)

_PG_LOCK_KEY = 0x1EAD51A  # arbitrary, constant: "lead sla"
#: Where the store records its revision (not Alembic's default `alembic_version`, which Airflow's
#: own metadata database uses: a store sharing a PostgreSQL database with it must not mix them).
VERSION_TABLE = "store_revision"
#: Alembic's `op` is one module-level proxy: two threads of one process upgrading two stores at
#: once would swap it under each other.
_OPERATIONS = threading.Lock()


@dataclass(frozen=True)
class Applied:
    """What one upgrade did: the revision the store is now at and how it got there."""

    revision: str
    #: (revision, its summary) for each revision run, oldest first.
    ran: list[tuple[str, str]] = field(default_factory=list)
    #: the store was empty and is created at the head.
    created: bool = False
    #: the hand-written schema version it carried before Alembic, when it was adopted now.
    adopted_from: int | None = None

    @property
    def version(self) -> int:
        return int(self.revision)


@dataclass(frozen=True)
class Status:
    """Where a store stands: its revision (None: empty), the head, and what is pending."""

    current: str | None
    head: str
    pending: list[str]
    #: the hand-written version it carries when not yet adopted (no revision table).
    legacy_version: int | None = None


@functools.cache
def script_directory() -> ScriptDirectory:
    """The revisions shipped inside the package (`store/revisions/versions`)."""
    here = Path(revisions.__file__).parent
    return ScriptDirectory(str(here), version_locations=[str(here / "versions")])


def head() -> str:
    return script_directory().get_current_head()


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(s.revision for s in script_directory().walk_revisions())


def _summary(script) -> str:  # noqa: ANN001 (alembic's Script)
    """The revision's docstring up to its first full stop, semicolon or parenthesis, on one line."""
    text = re.split(r"\. |; | \(", " ".join((script.doc or "").split()), maxsplit=1)[0].rstrip(".")
    return text if len(text) <= 110 else text[:109] + "…"


def _context(
    conn: sa.Connection, ran: list[tuple[str, str]] | None = None, destination: str = "head"
) -> MigrationContext:
    """A migration context on `conn` whose `run_migrations` goes to `destination`, noting each
    revision run in `ran`."""
    script = script_directory()

    def upgrade_steps(heads, _ctx):  # noqa: ANN001, ANN202 (alembic's callback)
        return script._upgrade_revs(destination, heads)

    def applied(*, ctx, step, heads, run_args) -> None:  # noqa: ANN001
        if ran is not None and not step.is_stamp:
            ran.append((step.up_revision_id, _summary(step.up_revision)))

    return MigrationContext.configure(
        connection=conn,
        opts={
            "script": script,
            "fn": upgrade_steps,
            "version_table": VERSION_TABLE,
            "on_version_apply": [applied],
        },
    )


def _legacy_version(conn: sa.Connection) -> int | None:
    """The hand-written schema version `schema_meta` records, or None."""
    if not sa.inspect(conn).has_table(schema_meta.name):
        return None
    return conn.execute(sa.select(sa.func.max(schema_meta.c.version))).scalar()


def status(conn: sa.Connection) -> Status:
    """Where the store stands (reads only).

    Raises:
        StoreConfigError: the store is at a revision this code does not know.
    """
    target = head()
    current, legacy_version = _current(conn)
    if current is None and legacy_version is None:
        pending = [s.revision for s in script_directory().walk_revisions()]
    else:
        pending = [s.revision for s in script_directory().iterate_revisions(target, current)]
    return Status(current, target, pending[::-1], legacy_version)


def _current(conn: sa.Connection) -> tuple[str | None, int | None]:
    """(revision, hand-written version when not yet adopted); refuses a newer store."""
    known, target = _known(), head()
    if sa.inspect(conn).has_table(VERSION_TABLE):  # read directly: a context would log on every open
        heads = tuple(conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalars())
        unknown = [h for h in heads if h not in known]
        if unknown or len(heads) > 1:
            raise _newer(", ".join(heads), target)
        if heads:
            return heads[0], None
    version = _legacy_version(conn)
    if version is None:
        return None, None
    if f"{version:04d}" not in known:
        raise _newer(f"schema version {version}", target)
    return f"{version:04d}", version


def _newer(found: str, target: str) -> StoreConfigError:
    return StoreConfigError(
        f"the store is at {found}, which this code does not know (its newest revision is {target}): "
        "upgrade leadsla to the release that wrote it before running against this store"
    )


def current_version(conn: sa.Connection) -> int | None:
    """The store's revision as a number (the schema version), or None for an empty database."""
    current, _ = _current(conn)
    return None if current is None else int(current)


def apply(engine: sa.Engine) -> Applied:
    """Bring the store to the head revision (module docstring); returns what was done.

    Raises:
        StoreConfigError: the store was written by a newer version of this project.
    """
    target = head()
    ran: list[tuple[str, str]] = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        current, legacy_version = _current(conn)
        if current == target and legacy_version is None:
            restored = guards.assert_guards(conn)
            if restored:
                log.warning("audit trail guards were missing or altered and are put back: %s", restored)
            return Applied(target)
        ctx = _context(conn, ran)
        with _OPERATIONS, Operations.context(ctx):
            if current is None:
                metadata.create_all(conn, checkfirst=True)
                chain.start(conn, dt.datetime.now(dt.UTC))
                ctx.stamp(script_directory(), target)
            else:
                if legacy_version is not None:
                    added = legacy.version_1_additions()
                    if added:
                        log.log(
                            logging.INFO if legacy_version == 1 else logging.WARNING,
                            "schema version %d store lacked version 1's %s",
                            legacy_version,
                            added,
                        )
                    ctx.stamp(script_directory(), current)
                ctx.run_migrations()
        guards.assert_guards(conn)
        conn.execute(schema_meta.insert().values(version=int(target), upgraded_at=dt.datetime.now(dt.UTC)))
    for revision, summary in ran:
        log.info("store upgraded to revision %s: %s", revision, summary)
    return Applied(target, ran, created=current is None, adopted_from=legacy_version)


def upgrade(engine: sa.Engine) -> int:
    """`apply`, returning the schema version now in place (the head revision's number)."""
    return apply(engine).version
