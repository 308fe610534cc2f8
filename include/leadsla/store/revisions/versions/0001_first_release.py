"""Schema version 1 as first released (f0887b3): the CRM mirror, watermarks, sync runs,
quarantine, clocks, outbox and the append-only audit trail.

Frozen here as that release created it. A store that already exists is stamped at a revision,
never re-created; this one runs only on an empty database (the comparison test's path), so a fresh
store made through every revision equals one made from schema.py.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadsla.store.revisions import UTC, frozen_metadata

revision = "0001"
down_revision = None


def _now(name: str) -> sa.Column:
    return sa.Column(name, UTC, nullable=False)


def tables() -> sa.MetaData:
    """The first release's tables."""
    md = frozen_metadata()
    sa.Table(
        "schema_meta",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        _now("upgraded_at"),
    )
    sa.Table(
        "records",
        md,
        sa.Column("object_type", sa.String(40), primary_key=True),
        sa.Column("record_id", sa.String(18), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("company", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("status", sa.String(80)),
        sa.Column("owner_id", sa.String(18)),
        sa.Column("lead_source", sa.String(120)),
        sa.Column("lead_type", sa.String(120)),
        sa.Column("account_tier", sa.String(40)),
        sa.Column("country", sa.String(80)),
        sa.Column("is_converted", sa.Boolean),
        sa.Column("converted_opportunity_id", sa.String(18)),
        sa.Column("account_id", sa.String(18)),
        sa.Column("is_won", sa.Boolean),
        sa.Column("rejection_reason", sa.String(255)),
        sa.Column("created_at", UTC),
        sa.Column("modified_at", UTC),
        sa.Column("lock_until", UTC),
        sa.Column("is_deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("fields", sa.JSON, nullable=False),
        _now("synced_at"),
        sa.Index(None, "object_type", "status"),
        sa.Index(None, "owner_id"),
        sa.Index(None, "modified_at"),
    )
    sa.Table(
        "field_history",
        md,
        sa.Column("history_id", sa.String(18), primary_key=True),
        sa.Column("object_type", sa.String(40), nullable=False),
        sa.Column("record_id", sa.String(18), nullable=False),
        sa.Column("field", sa.String(80), nullable=False),
        sa.Column("old_value", sa.Text),
        sa.Column("new_value", sa.Text),
        sa.Column("changed_by", sa.String(18)),
        _now("changed_at"),
        sa.Index(None, "object_type", "record_id", "changed_at"),
    )
    sa.Table(
        "activities",
        md,
        sa.Column("activity_id", sa.String(18), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("who_id", sa.String(18)),
        sa.Column("what_id", sa.String(18)),
        sa.Column("owner_id", sa.String(18)),
        sa.Column("type", sa.String(80)),
        sa.Column("subtype", sa.String(80)),
        sa.Column("subject", sa.Text),
        _now("created_at"),
        sa.Column("is_deleted", sa.Boolean, nullable=False, server_default=sa.false()),
        _now("synced_at"),
        sa.Index(None, "who_id", "created_at"),
        sa.Index(None, "what_id", "created_at"),
    )
    sa.Table(
        "users",
        md,
        sa.Column("user_id", sa.String(18), primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("manager_id", sa.String(18)),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("timezone", sa.String(64)),
        sa.Column("team", sa.String(80)),
        sa.Column("role", sa.String(80)),
        sa.Column("out_of_office", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("fields", sa.JSON, nullable=False),
        _now("synced_at"),
    )
    sa.Table(
        "queues",
        md,
        sa.Column("queue_id", sa.String(18), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("developer_name", sa.String(80)),
        _now("synced_at"),
    )
    sa.Table(
        "sync_watermarks",
        md,
        sa.Column("object_type", sa.String(60), primary_key=True),
        sa.Column("watermark", UTC, nullable=False),
        _now("updated_at"),
    )
    sa.Table(
        "sync_runs",
        md,
        sa.Column("sync_id", sa.Integer, primary_key=True, autoincrement=True),
        _now("started_at"),
        sa.Column("finished_at", UTC),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("api_calls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("records_changed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("api_remaining", sa.Integer),
        sa.Column("api_max", sa.Integer),
        sa.Column("detail", sa.JSON),
        sa.Column("run_id", sa.String(250)),
    )
    sa.Table(
        "quarantine",
        md,
        sa.Column("quarantine_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("object_type", sa.String(40), nullable=False),
        sa.Column("record_id", sa.String(40)),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        _now("first_seen_at"),
        _now("last_seen_at"),
        sa.Column("released_at", UTC),
        sa.Column("run_id", sa.String(250)),
        sa.Index(None, "object_type", "record_id"),
    )
    sa.Table(
        "clocks",
        md,
        sa.Column("sla_id", sa.String(80), primary_key=True),
        sa.Column("record_id", sa.String(18), primary_key=True),
        sa.Column("clock_start", UTC, primary_key=True),
        sa.Column("object_type", sa.String(40), nullable=False),
        sa.Column("policy_version", sa.String(40), nullable=False),
        sa.Column("tier", sa.String(80), nullable=False),
        sa.Column("calendar", sa.String(80), nullable=False),
        sa.Column("target_seconds", sa.Integer, nullable=False),
        sa.Column("owner_id", sa.String(18)),
        sa.Column("team", sa.String(80)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("elapsed_seconds", sa.Integer, nullable=False),
        sa.Column("remaining_seconds", sa.Integer, nullable=False),
        sa.Column("percent_elapsed", sa.Float, nullable=False),
        sa.Column("colour", sa.String(10), nullable=False),
        sa.Column("deadline", UTC),
        sa.Column("stopped_at", UTC),
        sa.Column("breached_at", UTC),
        _now("evaluated_at"),
        sa.Index(None, "state"),
        sa.Index(None, "owner_id", "state"),
    )
    sa.Table(
        "outbox",
        md,
        sa.Column("outbox_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("sla_id", sa.String(80)),
        sa.Column("record_id", sa.String(18)),
        sa.Column("clock_start", UTC),
        sa.Column("checkpoint", sa.String(80), nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _now("created_at"),
        _now("not_before"),
        sa.Column("claimed_until", UTC),
        sa.Column("delivered_at", UTC),
        sa.Column("external_id", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Index(None, "status", "not_before"),
    )
    sa.Table(
        "audit",
        md,
        sa.Column("audit_id", sa.Integer, primary_key=True, autoincrement=True),
        _now("at"),
        _now("recorded_at"),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("object_type", sa.String(40)),
        sa.Column("record_id", sa.String(18)),
        sa.Column("sla_id", sa.String(80)),
        sa.Column("clock_start", UTC),
        sa.Column("checkpoint", sa.String(80)),
        sa.Column("actor", sa.Text),
        sa.Column("policy_version", sa.String(40)),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("dag_id", sa.String(250)),
        sa.Column("run_id", sa.String(250)),
        sa.Column("task_id", sa.String(250)),
        sa.Column("try_number", sa.Integer),
        sa.Index(None, "record_id", "at"),
        sa.Index(None, "event", "at"),
    )
    return md


def upgrade() -> None:
    tables().create_all(op.get_bind(), checkfirst=True)
