"""`leadsla audit --record ID` (a record's timeline), `leadsla audit export --from DATE --to DATE
--out FILE.csv` (every audit entry of the period with its policy version, Airflow task run and
chain hashes) and `leadsla audit verify [--from DATE] [--to DATE]` (recompute the hash chain and
name the first broken entry; `--file EXPORT.csv` checks an export offline, without a store).
Read-only: never writes the store. verify exits 0 when intact, 1 when broken.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from leadsla import csv_cells
from leadsla.errors import LeadSlaError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "audit", help="a record's audit timeline, export the audit trail to CSV, or verify its hash chain"
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["export", "verify"],
        help="export: write a period's entries to CSV; verify: recompute the hash chain (exit 1 if broken)",
    )
    p.add_argument("--record", help="CRM record id whose timeline to print")
    p.add_argument(
        "--from", dest="start", help="export from this date/time (inclusive, ISO; a date is 00:00 UTC)"
    )
    p.add_argument("--to", dest="end", help="export up to this date/time (exclusive)")
    p.add_argument("--out", type=Path, help="CSV file to write")
    p.add_argument("--file", type=Path, help="verify: an export to check offline instead of the store")
    p.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="ID:HASH",
        help="verify: an entry id and its hash as copied earlier (a verify line, the health log)",
    )
    p.add_argument("--store", help="store URL (default: the configured store)")
    p.set_defaults(handler=run)


def _when(text: str | None, flag: str) -> dt.datetime:
    if not text:
        raise LeadSlaError(f"audit export needs {flag} (e.g. {flag} 2026-11-01)")
    return _parse_when(text, flag)


def _parse_when(text: str, flag: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise LeadSlaError(f"{flag} {text!r} is not an ISO date or time (e.g. 2026-11-01)") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _verify(args: argparse.Namespace) -> int:
    """Recompute the chain (the store's, or an export's offline); print one line; 1 when broken."""
    from leadsla.reports.timeline import read_export
    from leadsla.store import open_store
    from leadsla.store.chain_verify import parse_anchor, verify_entries, verify_store

    try:
        anchors = [parse_anchor(a) for a in args.anchor]
    except ValueError as exc:
        raise LeadSlaError(str(exc)) from None
    if args.file is not None:
        if args.start or args.end or args.store:
            raise LeadSlaError("verify --file checks the export alone: drop --from, --to and --store")
        try:
            verdict = verify_entries(read_export(args.file), anchors)
        except OSError as exc:
            raise LeadSlaError(f"cannot read {args.file}: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise LeadSlaError(str(exc).splitlines()[0]) from None
    else:
        start = _parse_when(args.start, "--from") if args.start else None
        end = _parse_when(args.end, "--to") if args.end else None
        if start and end and end <= start:
            raise LeadSlaError(f"--to {end.isoformat()} is not after --from {start.isoformat()}")
        engine = open_store(args.store)
        try:
            verdict = verify_store(engine, start, end, anchors)
        finally:
            engine.dispose()
    print(verdict.line())
    return 1 if verdict.broken else 0


def run(args: argparse.Namespace) -> int:
    from leadsla.reports.timeline import EXPORT_COLUMNS, entries_between, export_cell, record_timeline
    from leadsla.store import open_store

    if args.action == "verify":
        return _verify(args)
    if args.action != "export" and not args.record:
        raise LeadSlaError(
            "give --record ID for a timeline, or `audit export --from DATE --to DATE --out FILE.csv`"
        )
    if args.action == "export" and not args.out:
        raise LeadSlaError("audit export needs --out FILE.csv")
    engine = open_store(args.store)
    try:
        if args.action == "export":
            start, end = _when(args.start, "--from"), _when(args.end, "--to")
            if end <= start:
                raise LeadSlaError(f"--to {end.isoformat()} is not after --from {start.isoformat()}")
            n = 0
            try:
                fh = args.out.open("w", newline="", encoding="utf-8")
            except OSError as exc:
                raise LeadSlaError(f"cannot write {args.out}: {exc.strerror or exc}") from None
            with fh:
                w = csv_cells.writer(fh)  # CRM text never runs as a spreadsheet formula
                w.writerow(EXPORT_COLUMNS)
                for row in entries_between(engine, start, end):
                    w.writerow([export_cell(c, row[c]) for c in EXPORT_COLUMNS])
                    n += 1
            print(f"{n} audit entries written to {args.out} (check it with `leadsla audit verify --file`)")
            return 0
        rows = record_timeline(engine, args.record)
        if not rows:
            raise LeadSlaError(f"no audit entries for record {args.record!r}")
        for r in rows:
            rule = f" rule={r['actor']}" if r["actor"] else ""
            cp = f" checkpoint={r['checkpoint']}" if r["checkpoint"] else ""
            link = f" task={r['link']} try={r['try_number']}" if r["link"] else ""
            sys.stdout.write(
                f"{r['at'].isoformat()} {r['event']}{cp}{rule} policy={r['policy_version']}{link}"
                f" {json.dumps(r['detail'], sort_keys=True)}\n"
            )
        return 0
    finally:
        engine.dispose()
