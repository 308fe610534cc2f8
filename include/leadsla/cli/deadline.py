"""`leadsla deadline`: preview when an SLA would be due on a calendar, and why (what was skipped).

Read-only: it loads the policy for its calendars and computes; nothing is stored.
"""

from __future__ import annotations

import argparse
import datetime as dt

from leadsla.calendar import CalendarError, format_duration, parse_duration


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deadline",
        help="preview a due time on a policy calendar, with the hours, weekends and holidays skipped",
        description="Compute start + duration in business time on one of the policy's calendars.",
    )
    parser.add_argument(
        "--calendar", required=True, help="calendar name from the policy (or 24x7 for real time)"
    )
    parser.add_argument("--start", required=True, help="aware ISO timestamp, e.g. 2026-11-20T14:00-05:00")
    parser.add_argument("--duration", required=True, help="business time, e.g. 4h, 5m, 1h30m, 3d")
    parser.add_argument("--policy", help="policy YAML (default: the shipped policy)")
    parser.set_defaults(handler=run)


def _parse_start(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise CalendarError(
            f"--start {text!r} is not an ISO timestamp: expected e.g. 2026-11-20T14:00-05:00"
        ) from None


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from leadsla.policy import load_policy

    seconds = parse_duration(args.duration, what="--duration")
    start = _parse_start(args.start)
    if start.tzinfo is None:
        raise CalendarError(f"--start {args.start} is naive: add a UTC offset (e.g. -05:00 or Z)")
    calendar = load_policy(args.policy).calendar(args.calendar)
    result = calendar.explain_deadline(start, seconds)

    def show(t: dt.datetime) -> str:
        return f"{calendar.local(int(t.timestamp())):%a %Y-%m-%d %H:%M %Z}"

    print(f"calendar: {args.calendar} ({calendar.timezone})")
    print(f"start:    {show(result['start'])}  ({result['start']:%Y-%m-%dT%H:%M:%SZ})")
    print(f"duration: {format_duration(seconds)} of open time")
    print(f"due:      {show(result['deadline'])}  ({result['deadline']:%Y-%m-%dT%H:%M:%SZ})")
    skipped = result["skipped"]
    total = sum(g["seconds"] for g in skipped)
    print(f"skipped:  {format_duration(total)} closed" + ("" if skipped else " (none)"))
    if skipped:
        rows = [
            [show(g["from"]), show(g["to"]), g["kind"], g["label"], format_duration(g["seconds"])]
            for g in skipped
        ]
        print(tabulate(rows, headers=["from", "to", "why", "what", "length"], tablefmt="simple"))
    return 0
