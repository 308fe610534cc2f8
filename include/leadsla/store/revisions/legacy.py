"""What a store of schema version 1 may lack: the tables, columns and indexes added to schema.py
while SCHEMA_VERSION stayed 1 (f0887b3 to 79d47c3).

Version 1 stores come in every shape between the first release and the last version-1 commit:
the hand-written upgrade returned early at "version 1", and the later versions' `create_all` made
new tables but never added a column or an index to a table that existed. So a store created by
the first release and upgraded since lacks, for instance, `clocks.accountable_owner_id` at any
version. `version_1_additions` adds whatever of that is missing; revision 0002 runs it, and so
does the adoption of a hand-versioned store (`store.migrations`) before stamping, whatever its
version. Everything here is frozen as of 79d47c3.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadsla.store.revisions import (
    UTC,
    add_missing_columns,
    create_missing_indexes,
    frozen_metadata,
    index,
)

#: The clocks index covering the War Room's judged clocks as version 1 made it (unnamed); revision
#: 0003 replaces it with `ix_clocks_judged`, which adds `state`.
V1_JUDGED_COLUMNS = (
    "sla_id",
    "clock_start",
    "record_id",
    "accountable_owner_id",
    "accountable_team",
    "stopped_at",
    "breached_at",
    "elapsed_seconds",
)


def _now(name: str) -> sa.Column:
    return sa.Column(name, UTC, nullable=False)


def _new_tables() -> sa.MetaData:
    """The tables version 1 gained after its first release, as they were at 79d47c3."""
    md = frozen_metadata()
    sa.Table(
        "evaluations",
        md,
        sa.Column("evaluation_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("evaluated_at", UTC, nullable=False),
        sa.Column("read_at", UTC, nullable=False),
        sa.Column("clocks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("run_id", sa.String(250)),
        sa.Index(None, "read_at"),
    )
    sa.Table(
        "crm_mapping_checks",
        md,
        sa.Column("mapping_digest", sa.String(64), primary_key=True),
        _now("checked_at"),
        sa.Column("objects", sa.JSON, nullable=False),
    )
    sa.Table(
        "quality_runs",
        md,
        sa.Column("quality_run_id", sa.Integer, primary_key=True, autoincrement=True),
        _now("at"),
        sa.Column("object_type", sa.String(40), nullable=False),
        sa.Column("suite", sa.String(40), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("quarantined", sa.Integer, nullable=False),
        sa.Column("flagged", sa.Integer, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("incident", sa.String(120)),
        sa.Column("run_id", sa.String(250)),
        sa.Index(None, "suite", "at"),
    )
    sa.Table(
        "quality_flags",
        md,
        sa.Column("object_type", sa.String(40), primary_key=True),
        sa.Column("record_id", sa.String(18), primary_key=True),
        sa.Column("reasons", sa.JSON, nullable=False),
        _now("flagged_at"),
        sa.Column("run_id", sa.String(250)),
    )
    sa.Table(
        "health_findings",
        md,
        sa.Column("finding_id", sa.Integer, primary_key=True, autoincrement=True),
        _now("run_at"),
        sa.Column("check_name", sa.String(80), nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("record_ids", sa.JSON, nullable=False),
        sa.Column("how_to_fix", sa.Text, nullable=False),
        sa.Column("run_id", sa.String(250)),
        sa.Index(None, "run_at"),
    )
    return md


def _status_index() -> sa.Index:
    """field_history's partial index of Status changes (its where clause spelled as schema.py does)."""
    columns = ("object_type", "record_id", "changed_at", "field", "new_value", "old_value")
    holder = sa.Table("field_history", frozen_metadata(), *(sa.Column(c, sa.Text) for c in columns))
    status = holder.c.field == sa.literal_column("'Status'")
    return sa.Index(
        "ix_field_history_status",
        *(holder.c[c] for c in columns),
        sqlite_where=status,
        postgresql_where=status,
    )


def version_1_additions() -> list[str]:
    """Add what version 1 gained after its first release and the store lacks; returns what was
    added ("table", "table.column", index names), empty for a complete version-1 store."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    added = [t.name for t in _new_tables().sorted_tables if not inspector.has_table(t.name)]
    _new_tables().create_all(bind, checkfirst=True)
    columns = {
        "sync_runs": [sa.Column("group_name", sa.String(40))],
        "clocks": [
            sa.Column("accountable_owner_id", sa.String(18)),
            sa.Column("accountable_team", sa.String(80)),
            sa.Column("critical", sa.Boolean, nullable=False, server_default=sa.false()),
            sa.Column("next_checkpoint", sa.String(80)),
            sa.Column("next_checkpoint_at", UTC),
        ],
    }
    for table, wanted in columns.items():
        added += [f"{table}.{name}" for name in add_missing_columns(table, wanted)]
    added += create_missing_indexes(
        [
            index("records", "object_type", "created_at", "record_id"),
            index("records", "object_type", "lead_source"),
            index("field_history", "field", "new_value", "changed_at", "object_type", "record_id"),
            _status_index(),
            index("sync_runs", "group_name", "started_at"),
            index("clocks", "breached_at"),
            index("clocks", "record_id"),
        ]
    )
    if not _has_judged_index(bind):
        added += create_missing_indexes([index("clocks", *V1_JUDGED_COLUMNS)])
    return added


def _has_judged_index(bind: sa.Connection) -> bool:
    """Whether clocks has a covering index for the judged clocks (version 1's or ix_clocks_judged)."""
    return any(
        ix["column_names"][:3] == ["sla_id", "clock_start", "record_id"]
        for ix in sa.inspect(bind).get_indexes("clocks")
    )
