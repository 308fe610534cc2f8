"""Schema version 6: Change Data Capture's bookkeeping: the replay id crm_sync has landed per
channel (crm_stream_replay) and how crm_sync hears of changes, streaming or polling, since when and
why (crm_stream_status)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadsla.store.revisions import UTC, frozen_metadata

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    md = frozen_metadata()
    sa.Table(
        "crm_stream_replay",
        md,
        sa.Column("channel", sa.String(120), primary_key=True),
        sa.Column("replay_id", sa.BigInteger, nullable=False),
        sa.Column("committed_at", UTC, nullable=False),
        sa.Column("run_id", sa.String(250)),
    )
    sa.Table(
        "crm_stream_status",
        md,
        sa.Column("stream", sa.String(40), primary_key=True),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("since", UTC, nullable=False),
        sa.Column("reason", sa.String(300)),
        sa.Column("heartbeat_at", UTC),
        sa.Column("safety_net_at", UTC),
    )
    md.create_all(op.get_bind(), checkfirst=True)
