"""The `leadsla` command: tools for data engineers, RevOps and auditors.

Each sub-command lives in its own module exposing `register(subparsers)`; `COMMANDS` lists them in
the order `--help` shows. Errors written for people (`LeadSlaError`) print as one line (line breaks
in the message made spaces), exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from leadsla import __version__
from leadsla.errors import LeadSlaError
from leadsla.yaml_file import one_line

#: Sub-command modules under leadsla.cli, each with `register(subparsers)`.
COMMANDS = ["store", "policy", "config", "deadline", "qa", "validate_leads", "report", "audit"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadsla",
        description="Lead SLA Monitor: business-time SLA clocks, alerts and escalation for CRM handoffs.",
    )
    parser.add_argument("--version", action="version", version=f"leadsla {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"leadsla.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except LeadSlaError as exc:
        print(f"leadsla: error: {one_line(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
