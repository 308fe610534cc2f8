"""The clocks of the records a sync just landed, written by the sync task itself.

A CRM change used to reach its clock only after crm_sync's run published the crm asset and the
scheduler started an `sla_monitor` run whose `evaluate` wrote it: on a loaded machine two more
task starts and a scheduler loop, tens of seconds. So each sync task, right after it lands a
group, evaluates the records that landed (as the incremental monitor selects them: their own row,
history or activity landed, or their owner's user row) and writes their clock rows: new or changed
ones, the starts and stops audited (actor `crm_sync`), the clocks they no longer give marked stale.

Clock rows only. No decision is taken here (no outbox row, no checkpoint audited, no breach
action, no `evaluations` row): the monitor run the crm asset starts re-evaluates the same records
(they landed after its last read) and decides from its own evaluation and the outbox, as before;
finding the rows already written, it writes and audits nothing twice. The writer
(`store.clocks.write_clocks`) keeps the later evaluation's row whichever commits last, so a monitor
run at an earlier instant never overwrites what the sync wrote, nor the reverse.

More than `LANDED_LIMIT` records (a first sync, a backfill) are left to the monitor, whose full
evaluation reads them in bounded chunks.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa

from leadsla.decisions.ahead import evaluate_records
from leadsla.policy import Policy
from leadsla.store.audit import AuditContext
from leadsla.store.clocks import ClockWrites, open_clocks_of, plan_writes, read_stored, write_clocks
from leadsla.store.connection import read_only
from leadsla.store.mirror import landed_since, load_frames, owned_by
from leadsla.tasks.evaluation import store_rows

log = logging.getLogger(__name__)

#: A sync that landed more records than this leaves their clocks to the monitor.
LANDED_LIMIT = 2_000
#: Rows landed this long before the sync started count as its own: the wall clock's resolution and
#: the instant the sync read before landing.
LANDED_MARGIN = dt.timedelta(seconds=1)
#: The audit's actor for the clock starts and stops the sync writes.
ACTOR = "crm_sync"


def landed_records(conn: sa.Connection, since: dt.datetime) -> set[str]:
    """The records whose clocks can have changed by what landed after `since` (the incremental
    monitor's selection, less the clocks merely due a change)."""
    records, users = landed_since(conn, since)
    if users:
        records |= owned_by(conn, users) | open_clocks_of(conn, users)
    return records


def plan_landed(conn: sa.Connection, policy: Policy, now: dt.datetime, ids: set[str]) -> ClockWrites:
    """The clock rows these records' evaluation at `now` writes (new, changed, gone stale)."""
    frames = load_frames(conn, ids)
    evaluation = evaluate_records(frames, policy, now)
    return plan_writes(store_rows(evaluation, policy, now), read_stored(conn, ids), now, scope=ids)


def write_landed_clocks(
    engine: sa.Engine,
    policy: Policy,
    since: dt.datetime,
    context: AuditContext,
    *,
    now: dt.datetime | None = None,
    limit: int = LANDED_LIMIT,
) -> dict[str, Any]:
    """Evaluate at `now` (default: the wall clock, when the CRM was read) the records landed after
    `since` and write their clock rows; reads on a read-only snapshot, writes in one short
    transaction.

    Returns:
        `records` evaluated, `clocks_written`, `clock_events` (starts and stops audited), or
        `left_to_monitor` with the count when more than `limit` records landed.
    """
    now = now or dt.datetime.now(dt.UTC)
    with read_only(engine) as conn:
        ids = landed_records(conn, since - LANDED_MARGIN)
        if not ids:
            return {"records": 0, "clocks_written": 0, "clock_events": 0}
        if len(ids) > limit:
            log.info("%d records landed: their clocks are left to sla_monitor", len(ids))
            return {"records": 0, "clocks_written": 0, "clock_events": 0, "left_to_monitor": len(ids)}
        writes = plan_landed(conn, policy, now, ids)
    with engine.begin() as conn:
        counts = write_clocks(conn, writes, now, context, actor=ACTOR)
    log.info("clocks of %d landed records at %s: %s", len(ids), now.isoformat(), counts)
    return {"records": len(ids), **counts}
