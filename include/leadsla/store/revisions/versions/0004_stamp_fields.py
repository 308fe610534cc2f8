"""Schema version 4: the mapping check keeps the SLA stamp fields as describe() reported them
(`stamp_fields`), for stamping's fitness check and the sync."""

from __future__ import annotations

import sqlalchemy as sa

from leadsla.store.revisions import add_missing_columns

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    add_missing_columns("crm_mapping_checks", [sa.Column("stamp_fields", sa.JSON(none_as_null=True))])
