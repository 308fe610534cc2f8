"""Schema version 7: the War Room's MQL cohort is read from one index at a million leads.

The records index on (object_type, created_at, record_id) also carries the cohort's status,
rejection reason and deleted flag (ix_records_cohort, replacing the unnamed one): PostgreSQL read
the leads created in a range from the table's rows, scattered over it, or hash-joined the whole
table (`war_room.queries._cohort_changes`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadsla.store.revisions import index

revision = "0007"
down_revision = "0006"

COHORT = "ix_records_cohort"
COHORT_COLUMNS = ("object_type", "created_at", "record_id", "status", "rejection_reason", "is_deleted")


def upgrade() -> None:
    bind = op.get_bind()
    for existing in sa.inspect(bind).get_indexes("records"):
        if existing["column_names"] == ["object_type", "created_at", "record_id"]:
            op.drop_index(existing["name"], table_name="records")
    if not any(ix["name"] == COHORT for ix in sa.inspect(bind).get_indexes("records")):
        index("records", *COHORT_COLUMNS, name=COHORT).create(bind)
