"""The report DAGs run when reports.yaml says, in leadership's timezone, through DST changes.

Each DAG file is loaded by a real DagBag with $LEADSLA_HOME pointing at a folder whose
include/config/reports.yaml names the timezone; the timetable goes through Airflow's own
serialization (what the scheduler uses) and its run times are listed across both DST changes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
CONFIG = Path(__file__).resolve().parents[2] / "include" / "config" / "reports.yaml"


def load_dag(name: str, home: Path | None, monkeypatch: pytest.MonkeyPatch):
    """The DAG of dags/sla_reports_<name>.py, parsed with reports.yaml from `home` (None: the project's)."""
    from airflow.dag_processing.dagbag import DagBag

    if home is not None:
        monkeypatch.setenv("LEADSLA_HOME", str(home))
    bag = DagBag(dag_folder=str(DAGS / f"sla_reports_{name}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[f"sla_reports_{name}"]


def with_settings(tmp_path: Path, **replace: str) -> Path:
    """A $LEADSLA_HOME whose reports.yaml is the project's with top-level lines replaced."""
    lines = CONFIG.read_text().splitlines()
    for key, value in replace.items():
        lines = [f"{key}: {value}" if line.startswith(f"{key}:") else line for line in lines]
    target = tmp_path / "include" / "config" / "reports.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("\n".join(lines) + "\n")
    return tmp_path


def run_times(dag, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every scheduled run time in [start, end), as the scheduler computes them."""
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = decode_timetable(encode_timetable(dag.timetable))
    restriction = TimeRestriction(earliest=start, latest=end, catchup=True)
    times, last = [], None
    while (
        info := timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
    ) is not None:
        times.append(info.run_after)
        last = info.data_interval
    return times


@pytest.mark.parametrize(
    "zone,winter_utc,summer_utc",
    [("America/New_York", 13, 12), ("Europe/Berlin", 7, 6), ("Australia/Sydney", 21, 22)],
)
def test_weekly_summary_fires_monday_0800_in_the_configured_zone(
    tmp_path, monkeypatch, zone, winter_utc, summer_utc
):
    dag = load_dag("weekly", with_settings(tmp_path, leadership_timezone=zone), monkeypatch)
    # October 2026 to April 2027 crosses the autumn and spring DST changes of all three zones.
    times = run_times(dag, dt.datetime(2026, 10, 1, tzinfo=dt.UTC), dt.datetime(2027, 5, 1, tzinfo=dt.UTC))
    assert len(times) == 30  # every Monday from Oct 5, 2026 to Apr 26, 2027
    local = [t.astimezone(ZoneInfo(zone)) for t in times]
    assert all((x.weekday(), x.hour, x.minute) == (0, 8, 0) for x in local), local
    # The same local hour is a different UTC hour on each side of a DST change.
    assert {t.astimezone(dt.UTC).hour for t in times} == {winter_utc, summer_utc}
    assert times[0].astimezone(ZoneInfo(zone)).date() == dt.date(2026, 10, 5)


def test_project_settings_schedule_every_report_in_leadership_time(monkeypatch):
    from leadsla.reports.config import load_report_config

    cfg = load_report_config()
    for name in ("weekly", "feedback", "monthly", "quarterly"):
        dag = load_dag(name, None, monkeypatch)
        assert dag.timetable.expression == getattr(cfg.schedules, name)
        assert str(dag.timetable.timezone) == cfg.leadership_timezone
    monthly = run_times(
        load_dag("monthly", None, monkeypatch),
        dt.datetime(2027, 1, 15, tzinfo=dt.UTC),
        dt.datetime(2027, 4, 15, tzinfo=dt.UTC),
    )
    assert [t.astimezone(ZoneInfo(cfg.leadership_timezone)).strftime("%m-%d %H:%M") for t in monthly] == [
        "02-01 07:00",
        "03-01 07:00",
        "04-01 07:00",
    ]
    quarterly = run_times(
        load_dag("quarterly", None, monkeypatch),
        dt.datetime(2027, 1, 15, tzinfo=dt.UTC),
        dt.datetime(2028, 1, 15, tzinfo=dt.UTC),
    )
    assert [
        t.astimezone(ZoneInfo(cfg.leadership_timezone)).strftime("%Y-%m-%d %H:%M") for t in quarterly
    ] == ["2027-04-01 07:00", "2027-07-01 07:00", "2027-10-01 07:00", "2028-01-01 07:00"]


def test_a_moved_schedule_moves_the_dag(tmp_path, monkeypatch):
    home = with_settings(tmp_path, leadership_timezone="Asia/Kolkata")
    path = home / "include" / "config" / "reports.yaml"
    path.write_text(path.read_text().replace('feedback: "0 8 * * 1"', 'feedback: "30 9 * * 2"'))
    times = run_times(
        load_dag("feedback", home, monkeypatch),
        dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 15, tzinfo=dt.UTC),
    )
    assert [t.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%a %H:%M") for t in times] == [
        "Tue 09:30",
        "Tue 09:30",
    ]


def test_a_bad_timezone_is_an_import_error_naming_the_key(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("LEADSLA_HOME", str(with_settings(tmp_path, leadership_timezone="Mars/Olympus")))
    bag = DagBag(dag_folder=str(DAGS / "sla_reports_weekly.py"))
    (error,) = bag.import_errors.values()
    assert "leadership_timezone: 'Mars/Olympus' is not an IANA timezone" in error


def test_a_bad_cron_is_an_import_error_naming_the_key(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    home = with_settings(tmp_path)
    path = home / "include" / "config" / "reports.yaml"
    path.write_text(path.read_text().replace('monthly: "0 7 1 * *"', 'monthly: "0 25 1 * *"'))
    monkeypatch.setenv("LEADSLA_HOME", str(home))
    bag = DagBag(dag_folder=str(DAGS / "sla_reports_monthly.py"))
    (error,) = bag.import_errors.values()
    assert "schedules.monthly: '0 25 1 * *' is not a valid five-field cron expression" in error
