"""Schema version 11: field history is found by record id alone.

A full evaluation reads the mirror a range of record ids at a time (`store.mirror.key_ranges`).
The history's record index leads with `object_type`, so a range of record ids was a sequential
scan of the whole table for every range (3,000,000 rows, 21 times, at a million leads);
(record_id, changed_at) makes it one index range scan, and serves a lead's changes since an
instant (`escalation.locks`) as well.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadsla.store.revisions import index

revision = "0011"
down_revision = "0010"

COLUMNS = ("record_id", "changed_at")


def upgrade() -> None:
    bind = op.get_bind()
    made = index("field_history", *COLUMNS)
    if not any(ix["name"] == made.name for ix in sa.inspect(bind).get_indexes("field_history")):
        made.create(bind)
