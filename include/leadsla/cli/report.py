"""`leadsla report {weekly,feedback,monthly,quarterly} [--period LABEL] [--at TIME] --out DIR`:
regenerate a report for any past period into a folder (HTML, chart PNGs, CSVs). Never sends mail.
Works offline on whatever the store holds; prints a warning line when the CRM mirror has no
successful sync past the period's end (its figures may be incomplete).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from leadsla.errors import LeadSlaError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help="build a report for a period into a folder")
    p.add_argument("name", choices=["weekly", "feedback", "monthly", "quarterly"])
    p.add_argument(
        "--period",
        help="2026-W46 (weekly, feedback), 2026-11 (monthly), 2026-Q4 (quarterly); "
        "default: the last full period before --at; a period not over at --at "
        "is reported up to --at and titled so",
    )
    p.add_argument("--at", help="the run's time (ISO, with timezone); default: now")
    p.add_argument("--out", required=True, type=Path, help="folder to write into")
    p.add_argument("--store", help="store URL (default: the configured store)")
    p.add_argument("--config", help="reports.yaml (default: include/config/reports.yaml)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from leadsla.reports.run import build_for

    at = dt.datetime.now(dt.UTC)
    if args.at:
        try:
            at = dt.datetime.fromisoformat(args.at)
        except ValueError:
            raise LeadSlaError(f"--at {args.at!r} is not an ISO time (e.g. 2026-11-16T13:00:00Z)") from None
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LeadSlaError(
            f"--out {args.out}: cannot make the report's folder: {exc.strerror or exc}"
        ) from None
    report, paths = build_for(
        args.name, period=args.period, at=at, store_url=args.store, config_path=args.config, out=args.out
    )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path in paths:
        print(path)
    return 0
