"""Schema version 10: `evaluation_shards`, where a sharded full evaluation's shard tasks stage their
parts for the task that merges them (`leadsla.store.staging`). A new table only."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadsla.store.revisions import UTC, frozen_metadata

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    md = frozen_metadata()
    sa.Table(
        "evaluation_shards",
        md,
        sa.Column("run_id", sa.String(250), primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        sa.Column("shards", sa.Integer, nullable=False),
        sa.Column("evaluated_at", UTC, nullable=False),
        sa.Column("staged_at", UTC, nullable=False),
        sa.Column("part", sa.LargeBinary, nullable=False),
    )
    md.create_all(op.get_bind(), checkfirst=True)
