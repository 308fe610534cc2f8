"""Schema version 5: the audit trail is a hash chain (`store.chain`): each entry's previous and
own hash, the chain's head (audit_chain), and every entry already written hashed in audit_id
order from a genesis hash.

The guard against UPDATE of audit rows is lifted for the hashing, inside the upgrade's one
transaction; `store.guards.assert_guards` puts it back before that transaction commits. The hashing
reuses `store.chain.start`, which reads and writes through the live schema's `audit` and
`audit_chain` tables: a later revision that adds a NOT NULL column to either must give it a server
default (or change this revision to frozen tables).
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from alembic import op

from leadsla.store import chain, guards
from leadsla.store.revisions import UTC, add_missing_columns, frozen_metadata

revision = "0005"
down_revision = "0004"

log = logging.getLogger("leadsla.store.migrations")


def upgrade() -> None:
    bind = op.get_bind()
    add_missing_columns(
        "audit", [sa.Column("prev_hash", sa.String(64)), sa.Column("entry_hash", sa.String(64))]
    )
    md = frozen_metadata()
    sa.Table(
        "audit_chain",
        md,
        sa.Column("chain_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("genesis_hash", sa.String(64), nullable=False),
        sa.Column("started_at", UTC, nullable=False),
        sa.Column("backfilled", sa.Integer, nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("head_audit_id", sa.Integer),
        sa.Column("head_hash", sa.String(64), nullable=False),
    )
    md.create_all(bind, checkfirst=True)
    guards.lift_update_guards(bind)
    hashed = chain.start(bind, dt.datetime.now(dt.UTC))
    log.info("audit chain started: %d existing entries hashed", hashed)
