"""Audit trail tampering: the hash chain (`store.chain`) no longer verifies.

Walks the whole chain every run (a read-only connection: on SQLite it takes no write lock), so an
entry edited, deleted, inserted or moved since the last run, or the trail emptied, is one critical
finding naming the first broken entry. An intact chain is logged with its head (entries, id,
hash): the task log keeps a copy of each day's head outside the store, against which a chain
rewritten from some entry on can later be shown to differ.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa

from leadsla.health.finding import Finding
from leadsla.policy import Policy
from leadsla.store.chain_verify import verify_store

log = logging.getLogger(__name__)

FIX = (
    "Run `leadsla audit verify` to see the first broken entry, compare the trail with the last audit "
    "export or a backup and restore it, and find who had write access to the store (a DBA, a "
    "migration, a script): the append-only guards are put back whenever the store opens, so the "
    "change was made by someone who lifted them."
)


def check(conn: sa.Connection, now: dt.datetime, policy: Policy, settings: dict[str, Any]) -> list[Finding]:
    verdict = verify_store(conn.engine)
    broken = verdict.broken
    if broken is None:
        log.info(
            "audit chain intact: %d entries, anchor %s:%s",
            verdict.entries,
            verdict.last_id,
            verdict.last_hash,
        )
        return []
    where = f"entry #{broken.audit_id}" if broken.audit_id is not None else "its chain head"
    return [
        Finding(
            "audit_chain_broken",
            "critical",
            f"the audit trail was tampered with at {where} ({broken.kind}): {broken.reason}",
            [],
            FIX,
        )
    ]
