"""Schema version 2: activities record who created them, a Task's status and completion time
(an automation user's activity is never a touch; a to-do is not one until it is done).

First, what version 1 gained after its first release and a store of it may lack
(`revisions.legacy`: new tables, clocks' accountable owner and checkpoint columns, sync_runs'
group, the War Room's indexes).
"""

from __future__ import annotations

import sqlalchemy as sa

from leadsla.store.revisions import UTC, add_missing_columns, legacy

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    legacy.version_1_additions()
    add_missing_columns(
        "activities",
        [
            sa.Column("created_by", sa.String(18)),
            sa.Column("status", sa.String(40)),
            sa.Column("completed_at", UTC),
        ],
    )
