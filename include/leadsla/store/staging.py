"""A sharded full evaluation's parts, staged in the store between the shard tasks that evaluate
them and the one task that merges them, decides and writes (`leadsla.tasks.monitor`).

A part is far too large for XCom at a million leads (tens of thousands of clock rows), and the
merge must see every shard's part or none: a shard task writes its part in its own short
transaction keyed by (run, shard), so a retried or doubled shard replaces it and never adds to it;
the merging task reads all `shards` parts of its run at the run's `now` (any missing: it fails,
never decides without a shard) and, in its write transaction, clears other runs' parts (its own
stay, so a retry of the merge decides from the same parts: every write is keyed, nothing doubles).

A part is pickled and zlib-compressed: pandas frames and clock rows round-trip exactly, which the
decisions need. Only the monitor's own tasks write and read this table, in the store every
decision already trusts; nothing from outside is ever unpickled.
"""

from __future__ import annotations

import datetime as dt
import pickle
import zlib
from typing import Any

import sqlalchemy as sa

from leadsla.errors import LeadSlaError
from leadsla.store import schema
from leadsla.store.upsert import upsert


def stage(conn: sa.Connection, *, run_id: str, shard: int, shards: int, now: dt.datetime, part: Any) -> int:
    """Stage (or replace) shard `shard` of `shards` of run `run_id`, evaluated at `now`, in the
    caller's transaction; the bytes stored."""
    blob = zlib.compress(pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL), 3)
    upsert(
        conn,
        schema.evaluation_shards,
        [
            {
                "run_id": run_id,
                "shard": shard,
                "shards": shards,
                "evaluated_at": now,
                "staged_at": dt.datetime.now(dt.UTC),
                "part": blob,
            }
        ],
    )
    return len(blob)


def staged(conn: sa.Connection, *, run_id: str, shards: int, now: dt.datetime) -> list[Any]:
    """The `shards` parts of run `run_id` at `now`, in shard order.

    Raises:
        LeadSlaError: a shard's part is missing (or was staged for another plan or instant).
    """
    table = schema.evaluation_shards
    rows = conn.execute(
        sa.select(table.c.shard, table.c.shards, table.c.evaluated_at, table.c.part)
        .where(table.c.run_id == run_id)
        .order_by(table.c.shard)
    ).all()
    found = {r.shard: r for r in rows if r.shards == shards and r.evaluated_at == now}
    missing = sorted(set(range(shards)) - set(found))
    if missing:
        raise LeadSlaError(
            f"evaluation_shards: run {run_id!r} lacks shard(s) {missing} of {shards} at {now.isoformat()}"
            " (a shard task did not finish: clear it and this task to evaluate again)"
        )
    return [pickle.loads(zlib.decompress(found[i].part)) for i in range(shards)]


def clear_others(conn: sa.Connection, run_id: str) -> int:
    """Delete the parts staged by other runs (finished, or abandoned); how many."""
    table = schema.evaluation_shards
    return conn.execute(table.delete().where(table.c.run_id != run_id)).rowcount
