"""Schema version 3, for the configuration check: the mapping check keeps the org's picklist
drift and the lifecycle it compared with; accepted configurations are kept (config_snapshots);
the judged-clocks index covers `state` (named ix_clocks_judged, replacing version 1's unnamed one).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadsla.store.revisions import UTC, add_missing_columns, frozen_metadata, index

revision = "0003"
down_revision = "0002"

JUDGED = "ix_clocks_judged"
JUDGED_COLUMNS = (
    "sla_id",
    "clock_start",
    "record_id",
    "accountable_owner_id",
    "accountable_team",
    "stopped_at",
    "breached_at",
    "elapsed_seconds",
    "state",
)


def upgrade() -> None:
    bind = op.get_bind()
    add_missing_columns(
        "crm_mapping_checks",
        [sa.Column("lifecycle_digest", sa.String(64)), sa.Column("drift", sa.JSON(none_as_null=True))],
    )
    md = frozen_metadata()
    sa.Table(
        "config_snapshots",
        md,
        sa.Column("snapshot_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("files", sa.JSON, nullable=False),
        sa.Column("accepted_at", UTC, nullable=False),
        sa.Column("dag_id", sa.String(250)),
        sa.Column("run_id", sa.String(250)),
        sa.Column("task_id", sa.String(250)),
        sa.Column("try_number", sa.Integer),
        sa.Index(None, "digest"),
    )
    md.create_all(bind, checkfirst=True)
    for existing in sa.inspect(bind).get_indexes("clocks"):
        columns = existing["column_names"]
        if columns[:3] == ["sla_id", "clock_start", "record_id"] and existing["name"] != JUDGED:
            op.drop_index(existing["name"], table_name="clocks")
    if not any(ix["name"] == JUDGED for ix in sa.inspect(bind).get_indexes("clocks")):
        index("clocks", *JUDGED_COLUMNS, name=JUDGED).create(bind)
