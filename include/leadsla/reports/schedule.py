"""When each report is sent: a cron expression read in leadership's timezone, both taken from
include/config/reports.yaml (`leadership_timezone`, `schedules`).

The report DAGs call `report_schedule` while Airflow parses their files, so this module stays cheap:
the standard library, PyYAML (libyaml's loader, through `leadsla.yaml_file`) and croniter (all
already loaded for a DAG with a cron schedule) and one small file read, the only file besides time
zone data that a DAG file may read while it is parsed (bench/parse_time.py audits parse-time reads
against its allow-list). It never imports
pandas, pydantic models, the store or Airflow, and checks only the two keys a schedule needs; the
rest of reports.yaml is validated by `leadsla.reports.config` when a report is built. A change to
the file takes effect at the DAG processor's next parse of the report DAGs (every 30 s by default).
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from leadsla.errors import LeadSlaError
from leadsla.paths import config_dir
from leadsla.yaml_file import read_yaml_file

#: Defaults when reports.yaml names no schedule: the weekly digests on Monday 08:00, the monthly
#: and quarterly reviews at 07:00 on the first day of the period after the one they review.
DEFAULT_SCHEDULES = {
    "weekly": "0 8 * * 1",
    "feedback": "0 8 * * 1",
    "monthly": "0 7 1 * *",
    "quarterly": "0 7 1 1,4,7,10 *",
}
DEFAULT_TIMEZONE = "America/New_York"


class ReportScheduleError(LeadSlaError):
    """reports.yaml names a schedule or timezone that cannot be used."""


def report_schedule(name: str, path: str | Path | None = None) -> tuple[str, str]:
    """The cron expression and IANA timezone report `name` runs on.

    Args:
        name: weekly, feedback, monthly or quarterly.
        path: reports.yaml to read (default: include/config/reports.yaml, or under $LEADSLA_HOME).

    Returns:
        (cron, timezone), e.g. ("0 8 * * 1", "America/New_York"), for `CronTriggerTimetable`.

    Raises:
        ReportScheduleError: unreadable file, unknown report, an unknown timezone or a cron
            expression that is not five valid fields (the message names the file, the key and
            the value); a DAG file raising it is a DAG import error in the UI.
    """
    if name not in DEFAULT_SCHEDULES:
        raise ReportScheduleError(f"unknown report {name!r}: expected one of {', '.join(DEFAULT_SCHEDULES)}")
    path = Path(path) if path else config_dir() / "reports.yaml"
    data = read_yaml_file(path, ReportScheduleError, "the report settings") or {}
    if not isinstance(data, dict):
        raise ReportScheduleError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    tz = data.get("leadership_timezone", DEFAULT_TIMEZONE)
    try:
        if not isinstance(tz, str):
            raise ValueError(tz)
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file
        raise ReportScheduleError(
            f"{path}: leadership_timezone: {tz!r} is not an IANA timezone name (e.g. America/New_York)"
        ) from None
    schedules = data.get("schedules") or {}
    if not isinstance(schedules, dict):
        raise ReportScheduleError(f"{path}: schedules: expected a mapping of report name to cron expression")
    cron = schedules.get(name, DEFAULT_SCHEDULES[name])
    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ReportScheduleError(
            f"{path}: schedules.{name}: {cron!r} is not a valid five-field cron expression (e.g. '0 8 * * 1')"
        )
    return cron, str(tz)
