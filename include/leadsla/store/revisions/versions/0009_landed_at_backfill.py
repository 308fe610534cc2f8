"""Schema version 9: mirror rows from before the incremental monitor get a landing instant.

Revision 0008 added `landed_at` empty on existing rows, and an empty one means "landed without
saying when" (always re-evaluated): on a store upgraded with rows in it, every incremental run
re-evaluated the whole mirror, run after run (1,000,067 records a run at a million leads). Their
landing instant is their last sync (`synced_at`; a history row's change, which is when it can
have landed at the earliest), so an upgraded store's next runs take only what lands after. Data
only: the columns and indexes are 0008's.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadsla.store.revisions import UTC, frozen_metadata

revision = "0009"
down_revision = "0008"

#: Each mirror table the engine reads, and the column saying when its row last came from the CRM.
LANDED_FROM = {
    "records": "synced_at",
    "field_history": "changed_at",
    "activities": "synced_at",
    "users": "synced_at",
}


def upgrade() -> None:
    bind = op.get_bind()
    md = frozen_metadata()
    for name, source in LANDED_FROM.items():
        table = sa.Table(name, md, sa.Column("landed_at", UTC), sa.Column(source, UTC))
        bind.execute(
            table.update()
            .where(table.c.landed_at.is_(None), table.c[source].is_not(None))
            .values(landed_at=table.c[source])
        )
