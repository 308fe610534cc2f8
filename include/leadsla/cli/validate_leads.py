"""`leadsla validate-leads FILE.csv [--json]`: a Salesforce Lead export through the sync's own gate.

For RevOps: a Data Loader style export (API field names as headers; unknown columns ignored) is
validated with the same GX suite and the same code (`leadsla.quality.gate.validate`) that the
crm_sync gate runs, and each row gets a verdict: quarantined (errors), flagged (warnings) or
valid. Rows are numbered from 1 (data rows, header excluded). This command never writes the
store; with --store it reads owners from it for the owner checks.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from leadsla.errors import LeadSlaError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate-leads", help="validate a Salesforce Lead export (CSV) with the data-quality suites"
    )
    parser.add_argument(
        "file", metavar="FILE.csv", help="Data Loader style export: API field names as headers"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    parser.add_argument("--store", metavar="URL", help="read owners (manager, active) from this store")
    parser.add_argument(
        "--at", metavar="ISO", help="the check's time (default now, UTC); future dates are relative to it"
    )
    parser.set_defaults(handler=run)


def read_export(path: Path) -> list[dict[str, Any]]:
    """The export's rows as {API field name: text}; blank cells are None.

    Raises:
        LeadSlaError: the file is missing, unreadable, or has no Id column.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            if "Id" not in [h.strip() for h in header]:
                raise LeadSlaError(
                    f"{path}: no Id column in the header (expected Salesforce API field names, "
                    f"e.g. Id,Status,CreatedDate)"
                )
            return [
                {(k or "").strip(): (v if v != "" else None) for k, v in row.items() if k is not None}
                for row in reader
            ]
    except FileNotFoundError:
        raise LeadSlaError(f"{path}: no such file") from None
    except (UnicodeDecodeError, csv.Error, IsADirectoryError, PermissionError) as exc:
        raise LeadSlaError(f"{path}: cannot be read as a UTF-8 CSV export ({exc})") from None


def validate_export(
    rows: list[dict[str, Any]], now: dt.datetime, store_url: str | None = None
) -> dict[str, Any]:
    """The verdicts as the --json object: total, valid, quarantined, flagged (rows numbered from 1)."""
    from leadsla.crm.mapping import load as load_mapping
    from leadsla.quality import rules as quality_rules
    from leadsla.quality.gate import validate

    rules = quality_rules.load(status_map=load_mapping().status_map.get("Lead"))
    lookups = None
    if store_url:
        from leadsla.quality.quarantine import lookups_for
        from leadsla.store import open_store
        from leadsla.store.connection import read_only

        engine = open_store(store_url)
        try:
            with read_only(engine) as conn:
                lookups = lookups_for(conn, "leads", rows, rules)
        finally:
            engine.dispose()
    result = validate("leads", rows, now, rules, lookups)
    quarantined, flagged = [], []
    for v in result.verdicts:
        entry = {"row": v.row + 1, "Id": rows[v.row].get("Id")}
        if v.quarantined:
            quarantined.append({**entry, "reasons": v.errors + v.warnings})
        elif v.warnings:
            flagged.append({**entry, "reasons": v.warnings})
    return {
        "total": len(rows),
        "valid": len(rows) - len(quarantined) - len(flagged),
        "quarantined": quarantined,
        "flagged": flagged,
    }


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    rows = read_export(path)
    if args.at:
        try:
            now = dt.datetime.fromisoformat(args.at.replace("Z", "+00:00"))
        except ValueError:
            raise LeadSlaError(f"--at {args.at!r} is not an ISO date/time") from None
        if now.tzinfo is None:
            raise LeadSlaError(f"--at {args.at!r} has no timezone (add Z or +00:00)")
    else:
        now = dt.datetime.now(dt.UTC)
    report = validate_export(rows, now, args.store)
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    for kind, items in (("QUARANTINED", report["quarantined"]), ("FLAGGED", report["flagged"])):
        for item in items:
            print(f"row {item['row']} {kind} {item['Id'] or '(no Id)'}: {'; '.join(item['reasons'])}")
    print(
        f"{report['total']} rows: {report['valid']} valid, {len(report['flagged'])} flagged, "
        f"{len(report['quarantined'])} quarantined"
    )
    return 0
