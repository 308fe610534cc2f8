"""The project's own store: schema, connection, repositories, audit trail and outbox.

SQLAlchemy 2 Core only. SQLite (WAL) by default, PostgreSQL when the `leadsla_store` connection
says so. Never imports Airflow at module level; `store.connection.url_from_airflow` reads the
connection lazily inside a task.
"""

from __future__ import annotations

from leadsla.store.connection import open_store, resolve_url
from leadsla.store.schema import SCHEMA_VERSION, metadata

__all__ = ["SCHEMA_VERSION", "metadata", "open_store", "resolve_url"]
