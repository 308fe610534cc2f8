"""A record's "why" timeline from the audit trail: every clock start, pause, checkpoint, message,
escalation and reassignment with the rule that fired, the policy version and the Airflow task run
that did it (linked as /dags/{dag_id}/runs/{run_id}/tasks/{task_id}). Read-only, on read-only
connections (`store.connection.read_only`): a long export never takes or waits for the write lock.

The export's rows carry the chain's hashes (`prev_hash`, `entry_hash`), and `read_export` reads
them back as entries `store.chain.verify_entries` checks offline.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from leadsla.store.chain import HASHED
from leadsla.store.connection import read_only
from leadsla.store.schema import audit

EXPORT_COLUMNS = ["audit_id", *HASHED, "prev_hash", "entry_hash"]
#: Characters that make a spreadsheet read a cell as a formula; a CSV writer that neutralises
#: them prefixes the cell with a single quote, which `read_export` takes off again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def task_link(dag_id: str | None, run_id: str | None, task_id: str | None) -> str | None:
    """The Airflow UI path of the task run, or None for entries made outside Airflow."""
    if not (dag_id and run_id and task_id):
        return None
    return f"/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}"


def record_timeline(engine: sa.Engine, record_id: str) -> list[dict]:
    """Audit entries of one record, oldest first, each with `link` to its task run."""
    with read_only(engine) as conn:
        rows = (
            conn.execute(
                sa.select(audit).where(audit.c.record_id == record_id).order_by(audit.c.at, audit.c.audit_id)
            )
            .mappings()
            .all()
        )
    return [dict(r, link=task_link(r["dag_id"], r["run_id"], r["task_id"])) for r in rows]


def entries_between(engine: sa.Engine, start: dt.datetime, end: dt.datetime):
    """Audit rows with start <= at < end, in order (an iterator of mappings, streamed)."""
    with read_only(engine) as conn:
        result = conn.execution_options(stream_results=True).execute(
            sa.select(audit)
            .where(audit.c.at >= start, audit.c.at < end)
            .order_by(audit.c.at, audit.c.audit_id)
        )
        yield from result.mappings()


def export_cell(column: str, value: Any) -> Any:
    """How the export writes a column's value: `detail` as JSON with sorted keys, instants in ISO
    8601, everything else as it is (None as an empty cell)."""
    if column == "detail":
        return json.dumps(value, sort_keys=True)
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _text(cell: str) -> str | None:
    if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS):
        cell = cell[1:]
    return cell or None


def read_export(path: Path) -> Iterator[dict[str, Any]]:
    """The entries of an export file, typed as the store holds them (an empty cell is None).

    Raises:
        ValueError: the file is not an audit export (a column is missing or a cell unreadable).
    """
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in EXPORT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} is not an audit export with hashes: it lacks {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                entry: dict[str, Any] = {c: _text(row[c]) for c in EXPORT_COLUMNS}
                entry["audit_id"] = int(row["audit_id"])
                entry["try_number"] = int(row["try_number"]) if row["try_number"] else None
                entry["detail"] = json.loads(row["detail"])
                for c in ("at", "recorded_at", "clock_start"):
                    entry[c] = dt.datetime.fromisoformat(row[c]) if row[c] else None
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path} line {line} is not an audit entry: {exc}") from None
            yield entry
