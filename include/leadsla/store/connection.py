"""Where the store lives and how to open it.

Resolution order for the URL: an explicit argument, then the `LEADSLA_STORE_URL` environment
variable, then the Airflow connection `leadsla_store` (read lazily, only when Airflow is
importable), then a SQLite file under $AIRFLOW_HOME. A bad URL or an unwritable folder raises
`StoreConfigError` with one sentence saying what and how to fix it; a URL in it is redacted on its
text before any parsing (`redact_url`: a password holding `@` never shows, whole or in part).

Only a connection that does not exist means SQLite. A lookup that fails (the API server or a
secrets backend erring, access denied) raises `StoreConfigError`: falling back there would let
each worker write a store of its own. The Task SDK answers "not found" for those failures too
(`_get_connection` skips a backend that errs), so a "not found" is checked once more, backend by
backend, before it is believed (`_lookup_failure`).

Read paths (the War Room, the audit timeline and export, the reports' reads) open `read_only`
connections: they never take the SQLite write lock and cannot write.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from leadsla.errors import StoreConfigError

STORE_CONN_ID = "leadsla_store"
DEFAULT_SQLITE_NAME = "leadsla_store.db"
SUPPORTED_BACKENDS = ("sqlite", "postgresql")
#: SQLite waits this long for a competing writer before "database is locked" (parallel tasks).
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_sqlite_url(airflow_home: str | None = None) -> str:
    """The SQLite file under $AIRFLOW_HOME (default ~/airflow), as Airflow itself does."""
    home = Path(airflow_home or os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow")
    return f"sqlite:///{(home / DEFAULT_SQLITE_NAME).resolve()}"


def url_from_airflow_connection(conn_id: str = STORE_CONN_ID) -> str | None:
    """The store URL held by an Airflow connection, or None when there is no such connection.

    The connection may carry the whole SQLAlchemy URL in its extra as ``{"url": ...}``, or be an
    ordinary postgres/sqlite connection whose fields make the URL.
    """
    conn = _connection(conn_id)
    if conn is None:
        return None
    extra = conn.extra_dejson or {}
    if extra.get("url"):
        return str(extra["url"])
    conn_type = (conn.conn_type or "").lower()
    if conn_type in {"postgres", "postgresql"}:
        url = sa.URL.create(
            "postgresql+psycopg",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or None,
            port=conn.port or None,
            database=conn.schema or None,
        )
        return url.render_as_string(hide_password=False)
    if conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    raise StoreConfigError(
        f"the Airflow connection {conn_id!r} has type {conn_type!r} and no extra 'url': use a "
        'postgres connection, or put a SQLAlchemy URL in its extra as {"url": "..."}'
    )


def _connection(conn_id: str):
    """The Airflow connection `conn_id`; None when Airflow is absent or no backend has it.

    Raises:
        StoreConfigError: the lookup failed (module docstring), or the environment variable holding
            the connection cannot be read.
    """
    env_name = f"AIRFLOW_CONN_{conn_id.upper()}"
    try:
        from airflow.sdk import Connection  # noqa: F401  (import checks Airflow is present)
        from airflow.sdk.bases.hook import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        failure = _lookup_failure(conn_id)
    except Exception as exc:  # denied, or an error the SDK passed on
        failure = _one_line(exc)
    if failure is None:
        return None
    if os.environ.get(env_name):
        raise StoreConfigError(
            f"the Airflow connection {conn_id!r} in {env_name} could not be read: give it as JSON, e.g. "
            '\'{"conn_type": "generic", "extra": {"url": "postgresql+psycopg://user:pw@host/db"}}\''
        ) from None
    raise StoreConfigError(
        f"looking up the Airflow connection {conn_id!r} failed ({failure}); the store is not opened "
        "(no fallback to a local SQLite file): fix the connection lookup and retry"
    ) from None


def _lookup_failure(conn_id: str) -> str | None:
    """Why the secrets backends could not say whether `conn_id` exists, or None when each of them
    answered that it does not. Asks the same backends as the Task SDK, in its order, but lets
    their errors through; the Execution API backend (a worker's) is asked over the supervisor's
    channel, whose answer tells "not found" from an API server error."""
    from airflow.sdk.execution_time.secrets.execution_api import ExecutionAPISecretsBackend
    from airflow.sdk.execution_time.supervisor import ensure_secrets_backend_loaded

    try:
        backends = ensure_secrets_backend_loaded()
    except Exception as exc:
        return f"the secrets backends could not be loaded: {_one_line(exc)}"
    for backend in backends:
        name = type(backend).__name__
        try:
            if isinstance(backend, ExecutionAPISecretsBackend):
                problem = _execution_api_failure(conn_id)
                if problem is not None:
                    return f"{name}: {problem}"
            elif backend.get_connection(conn_id=conn_id) is not None:
                return f"{name} found it on a second look: the first lookup failed"
        except Exception as exc:
            return f"{name}: {_one_line(exc)}"
    return None


def _execution_api_failure(conn_id: str) -> str | None:
    """None when the API server answers that `conn_id` does not exist; else what went wrong."""
    from airflow.sdk.exceptions import ErrorType
    from airflow.sdk.execution_time.comms import ErrorResponse, GetConnection
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    answer = SUPERVISOR_COMMS.send(GetConnection(conn_id=conn_id))  # an error answer raises
    if isinstance(answer, ErrorResponse):
        if answer.error == ErrorType.CONNECTION_NOT_FOUND:
            return None
        return f"the API server answered {answer.error.value}"
    return None if answer is None else "the API server found it on a second look: the first lookup failed"


def _one_line(exc: BaseException) -> str:
    """`Type: first line` of an exception, short, for a one-line error."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def resolve_url(url: str | None = None) -> str:
    """The store URL to use, validated (see the module docstring for the order).

    Raises:
        StoreConfigError: the URL is malformed, names an unsupported backend, or its SQLite
            folder cannot be created or written.
    """
    chosen = url or os.environ.get("LEADSLA_STORE_URL") or url_from_airflow_connection()
    chosen = chosen or default_sqlite_url()
    shown = redact_url(chosen)  # before parsing: a parser that misreads the URL must not show it
    if not chosen.startswith("sqlite") and chosen.partition("?")[0].count("@") > 1:
        # A parser reads `user:p@ss@host` as password `p` at host `ss@host`: refuse, never guess.
        raise StoreConfigError(
            f"store URL {shown!r}: its user name or password holds an '@': percent-encode it as %40 "
            "(or give the password in the connection's password field)"
        )
    try:
        parsed = make_url(chosen)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StoreConfigError(
            f"store URL {shown!r} is not a SQLAlchemy URL: use e.g. "
            "'sqlite:////abs/path/leadsla.db' or 'postgresql+psycopg://user:pw@host:5432/db' "
            f"(set in the {STORE_CONN_ID!r} connection or LEADSLA_STORE_URL)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise StoreConfigError(
            f"store URL {shown!r} uses backend {backend!r}: the store supports "
            f"{' and '.join(SUPPORTED_BACKENDS)} only"
        )
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is what we ship
    if backend == "sqlite":
        _check_sqlite_path(parsed.database, shown)
    return parsed.render_as_string(hide_password=False)


def _check_sqlite_path(database: str | None, shown: str) -> None:
    if not database or database == ":memory:":
        raise StoreConfigError(
            f"store URL {shown!r} names no file: the store must outlive one process, give a path "
            "such as sqlite:////abs/path/leadsla.db"
        )
    folder = Path(database).expanduser().resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreConfigError(
            f"cannot create the store folder {folder} ({exc.strerror}): set AIRFLOW_HOME or the "
            f"{STORE_CONN_ID!r} connection to a writable place"
        ) from None
    if not os.access(folder, os.W_OK):
        raise StoreConfigError(
            f"the store folder {folder} is not writable: set AIRFLOW_HOME or the "
            f"{STORE_CONN_ID!r} connection to a writable place"
        )


#: `scheme://` and the user info: everything up to the URL's last `@` (greedy), so a password
#: holding `@`, `:` or `/` is covered whole.
_USER_INFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user_info>.*)@", re.S)
#: A password given as a query parameter (libpq and psycopg accept `?password=`).
_PASSWORD_PARAM = re.compile(r"(?i)([?&]password=)[^&]*")


def redact_url(url: str) -> str:
    """The URL as an error line may show it: the user name kept, the password `***`.

    Worked on the text, before any parsing: a parser reads `user:p@ss@host` as password `p` at
    host `ss@host` (and shows `ss@host`), so the user info is everything up to the last `@`, and
    a `password=` query parameter is hidden too.
    """
    shown = _PASSWORD_PARAM.sub(r"\1***", url)
    found = _USER_INFO.match(shown)
    if not found:
        return shown
    user, has_password, _ = found["user_info"].partition(":")
    return f"{found['scheme']}{user}{':***' if has_password else ''}@{shown[found.end() :]}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 (DBAPI objects)
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    _switch_to_wal(cur)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _switch_to_wal(cur) -> None:  # noqa: ANN001 (a DBAPI cursor)
    """Put the database in WAL mode. SQLite answers "database is locked" to the switch at once,
    without its busy handler, while another connection holds a lock (two tasks opening a new store
    together), so the switch is retried for as long as the busy timeout would have waited."""
    if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.01
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def create_engine(url: str) -> sa.Engine:
    """An engine for a resolved URL; SQLite gets WAL and a busy timeout on every connection."""
    if make_url(url).get_backend_name() == "sqlite":
        engine = sa.create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, poolclass=sa.pool.NullPool
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take the write lock up front instead so
        # two writers queue on busy_timeout rather than failing to upgrade a read lock.
        sa.event.listen(engine, "begin", _begin_immediate)
        sa.event.listen(engine, "connect", _disable_pysqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True)


#: Execution option of the connections `read_only` opens: on SQLite their transaction is a deferred
#: read transaction (a consistent snapshot under WAL) that neither takes nor waits for the write
#: lock, so a long read (the War Room's page, a streaming audit export) does not hold up the CRM sync.
READ_ONLY = "leadsla_read_only"


def read_only(engine: sa.Engine) -> sa.Connection:
    """A connection of `engine` that can only read, for the read paths (`with read_only(e) as conn`).

    SQLite: a deferred `BEGIN` instead of `BEGIN IMMEDIATE` (under WAL a reader sees one snapshot
    and never takes or waits for the write lock) and `PRAGMA query_only` (a write fails: "attempt
    to write a readonly database"). PostgreSQL: every transaction is `READ ONLY` (psycopg's
    `read_only`, set by SQLAlchemy's `postgresql_readonly`, reset when the connection returns to
    the pool).
    """
    options: dict = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["postgresql_readonly"] = True
    return engine.execution_options(**options).connect()


def _begin_immediate(conn: sa.Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("PRAGMA query_only=ON")
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _disable_pysqlite_begin(dbapi_conn, _record) -> None:  # noqa: ANN001
    dbapi_conn.isolation_level = None


def open_store(url: str | None = None, *, upgrade: bool = True) -> sa.Engine:
    """Resolve the URL, open an engine, and bring the schema up to date (idempotent).

    Raises:
        StoreConfigError: see `resolve_url`; also when the database cannot be reached, or the store
            is at a revision newer than this code (`store.migrations`).
    """
    from leadsla.store.migrations import upgrade as upgrade_schema

    engine = create_engine(resolve_url(url))
    if upgrade:
        try:
            with database_errors(engine):
                upgrade_schema(engine)
        except StoreConfigError:
            engine.dispose()
            raise
    return engine


@contextlib.contextmanager
def database_errors(engine: sa.Engine) -> Iterator[None]:
    """Turn a database error (unreachable, refused, or not a database: "file is not a database")
    into a one-line `StoreConfigError` naming the store, its password hidden."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        reason = (str(exc.orig).strip() or type(exc.orig).__name__) if exc.orig else str(exc)
        password = engine.url.password
        if password:
            reason = reason.replace(str(password), "***")
        shown = redact_url(engine.url.render_as_string(hide_password=False))
        raise StoreConfigError(f"cannot open the store at {shown!r}: {reason.splitlines()[0]}") from None
