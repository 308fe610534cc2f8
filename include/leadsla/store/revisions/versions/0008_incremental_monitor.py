"""Schema version 8, for the incremental monitor: handled checkpoints in their own keyed table
(backfilled from the outbox and the audit trail, which the decisions used to scan every run), a
landing instant on every mirror row the engine reads, each clock's next change and staleness, and
how each evaluation ran (`evaluations.mode`, `policy_digest`) with the full reconciles' findings
(`reconciles`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadsla.store.revisions import UTC, add_missing_columns, create_missing_indexes, frozen_metadata, index

revision = "0008"
down_revision = "0007"

#: The mirror tables that get a landing instant (and its index).
LANDED = ("records", "field_history", "activities", "users")


def upgrade() -> None:
    bind = op.get_bind()
    for table in LANDED:
        add_missing_columns(table, [sa.Column("landed_at", UTC)])
    add_missing_columns("clocks", [sa.Column("next_change_at", UTC), sa.Column("stale_since", UTC)])
    add_missing_columns(
        "evaluations", [sa.Column("mode", sa.String(20)), sa.Column("policy_digest", sa.String(64))]
    )
    md = frozen_metadata()
    handled = sa.Table(
        "handled_checkpoints",
        md,
        sa.Column("record_id", sa.String(18), primary_key=True),
        sa.Column("sla_id", sa.String(80), primary_key=True),
        sa.Column("clock_start", UTC, primary_key=True),
        sa.Column("checkpoint", sa.String(80), primary_key=True),
        sa.Column("handled_at", UTC, nullable=False),
    )
    sa.Table(
        "reconciles",
        md,
        sa.Column("reconcile_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("evaluated_at", UTC, nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("clocks", sa.Integer, nullable=False),
        sa.Column("differences", sa.Integer, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("run_id", sa.String(250)),
        sa.Index(None, "evaluated_at"),
    )
    new = not sa.inspect(bind).has_table("handled_checkpoints")
    md.create_all(bind, checkfirst=True)
    create_missing_indexes(
        [index(t, "landed_at") for t in LANDED]
        + [index("records", "converted_opportunity_id"), index("clocks", "next_change_at")]
    )
    if new:
        _backfill_handled(bind, handled)


def _backfill_handled(bind: sa.Connection, handled: sa.Table) -> None:
    """Every checkpoint the outbox or the audit trail says was handled, at its first handling."""
    md = frozen_metadata()
    cols = ("sla_id", "record_id", "clock_start", "checkpoint")
    outbox = sa.Table("outbox", md, *(sa.Column(c, sa.String) for c in cols), sa.Column("created_at", UTC))
    audit = sa.Table(
        "audit",
        md,
        *(sa.Column(c, sa.String) for c in cols),
        sa.Column("at", UTC),
        sa.Column("event", sa.String),
    )
    both = sa.union_all(
        sa.select(*(outbox.c[c] for c in cols), outbox.c.created_at.label("at")).where(
            outbox.c.sla_id.is_not(None), outbox.c.clock_start.is_not(None)
        ),
        sa.select(*(audit.c[c] for c in cols), audit.c.at).where(
            audit.c.event.in_(["checkpoint_superseded", "checkpoint_due"]),
            audit.c.sla_id.is_not(None),
            audit.c.clock_start.is_not(None),
        ),
    ).subquery()
    record_id = sa.func.coalesce(both.c.record_id, "")
    first = sa.select(
        record_id, both.c.sla_id, both.c.clock_start, both.c.checkpoint, sa.func.min(both.c.at)
    ).group_by(record_id, both.c.sla_id, both.c.clock_start, both.c.checkpoint)
    bind.execute(
        handled.insert().from_select(
            ["record_id", "sla_id", "clock_start", "checkpoint", "handled_at"], first
        )
    )
