"""Which periods `make run` e-mails the four reports for: the ones holding most of the demo's
two weeks of history (sandbox.devstack.demo_report_periods), in leadership's timezone."""

from __future__ import annotations

import datetime as dt

import pytest

from sandbox.devstack import DEMO_BACKLOG_HOURS, demo_report_periods

UTC = dt.UTC


@pytest.mark.parametrize(
    "now,expected",
    [
        # Monday 08:00 in New York: last full week W47 (all of it in the history) beats W48's 8 hours;
        # November holds all two weeks, October none.
        (
            dt.datetime(2026, 11, 23, 13, tzinfo=UTC),
            {"weekly": "2026-W47", "feedback": "2026-W47", "monthly": "2026-11", "quarterly": "2026-Q4"},
        ),
        # Wednesday 2 December: November holds 12 days of the history, December 1.5.
        (
            dt.datetime(2026, 12, 2, 12, tzinfo=UTC),
            {"weekly": "2026-W48", "feedback": "2026-W48", "monthly": "2026-11", "quarterly": "2026-Q4"},
        ),
        # Sunday 3 January: the last full quarter and month hold most of it.
        (
            dt.datetime(2027, 1, 3, 12, tzinfo=UTC),
            {"weekly": "2026-W52", "feedback": "2026-W52", "monthly": "2026-12", "quarterly": "2026-Q4"},
        ),
        # 20 January: this quarter and month hold all of it.
        (
            dt.datetime(2027, 1, 20, 12, tzinfo=UTC),
            {"weekly": "2027-W02", "feedback": "2027-W02", "monthly": "2027-01", "quarterly": "2027-Q1"},
        ),
    ],
)
def test_periods_hold_most_of_the_demo_history(now, expected):
    start = now - dt.timedelta(hours=DEMO_BACKLOG_HOURS)
    assert demo_report_periods(start, now, "America/New_York") == expected


def test_two_weeks_of_history_always_hold_the_last_full_week():
    from leadsla.reports.period import last_full

    for hours in range(0, 7 * 24, 5):  # every weekday and hour of a week
        now = dt.datetime(2026, 11, 23, 0, tzinfo=UTC) + dt.timedelta(hours=hours)
        week = last_full("week", now, "America/New_York")
        assert week.start >= now - dt.timedelta(hours=DEMO_BACKLOG_HOURS), now


def _stand_in_airflow(tmp_path, monkeypatch, *, refuse_monthly_while=None):
    """A stand-in `airflow` executable on PATH that records its arguments in the returned file
    (refusing `sla_reports_monthly` while `refuse_monthly_while` exists), a store and a sandbox
    folder for `devstack.trigger_reports`."""
    import os
    import sys

    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    refuse = (
        (
            f"if sys.argv[3] == 'sla_reports_monthly' and os.path.exists({str(refuse_monthly_while)!r}): "
            "sys.exit(1)\n"
        )
        if refuse_monthly_while
        else ""
    )
    (bin_dir / "airflow").write_text(
        f"#!{sys.executable}\nimport json, os, sys\n{refuse}"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    (bin_dir / "airflow").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("LEADSLA_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("LEADSLA_SANDBOX_DIR", str(tmp_path / "sandbox"))
    (tmp_path / "sandbox").mkdir()
    return calls


def _first_clock_lands() -> None:
    """What the first sync and evaluation leave in the store: a lead with a clock."""
    from leadsla.store import open_store
    from tests.reports_data import Builder, t

    engine = open_store()
    start = t("2026-11-10 14:00")
    b = Builder().user("R1", "Rita", "A").lead("L1", owner="R1", stages={"MQL": start})
    b.clock(
        "L1", start, target_h=4, elapsed_h=1, owner="R1", team="A", stopped_at=start + dt.timedelta(hours=1)
    )
    b.write(engine)
    engine.dispose()


def test_trigger_reports_waits_for_clocks_then_triggers_each_dag_once(tmp_path, monkeypatch, capsys):
    """The wiring `make run` relies on, with a stand-in `airflow` executable that records its
    arguments (the real CLI against a real Airflow is exercised by tests/integration/test_report_dags.py)."""
    import json

    from sandbox import devstack

    calls = _stand_in_airflow(tmp_path, monkeypatch)
    # No clocks yet: it waits, then gives up without triggering anything.
    assert devstack.trigger_reports(timeout_s=0.2, poll_s=0.05) == 1
    assert not calls.exists()
    _first_clock_lands()
    assert devstack.trigger_reports(timeout_s=5, poll_s=0.05) == 0
    argv = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [a[:3] for a in argv] == [["dags", "trigger", f"sla_reports_{n}"] for n in devstack.REPORTS]
    periods = {a[2].removeprefix("sla_reports_"): json.loads(a[4])["period"] for a in argv}
    assert all(a[3] == "--conf" for a in argv) and set(periods) == set(devstack.REPORTS)
    assert "report e-mails requested" in capsys.readouterr().out
    # A restarted `make run` does not send them again.
    assert devstack.trigger_reports(timeout_s=5, poll_s=0.05) == 0
    assert len(calls.read_text().splitlines()) == 4


def test_a_report_that_could_not_be_triggered_is_tried_again_after_a_restart(tmp_path, monkeypatch):
    import json

    from sandbox import devstack

    broken = tmp_path / "monthly_broken"
    broken.touch()
    calls = _stand_in_airflow(tmp_path, monkeypatch, refuse_monthly_while=broken)
    _first_clock_lands()

    assert devstack.trigger_reports(timeout_s=5, poll_s=0.01) == 1
    first = [json.loads(line)[2] for line in calls.read_text().splitlines()]
    assert sorted(first) == sorted(f"sla_reports_{n}" for n in devstack.REPORTS if n != "monthly")
    broken.unlink()
    assert devstack.trigger_reports(timeout_s=5, poll_s=0.01) == 0  # the restart: only the missing one
    assert [json.loads(line)[2] for line in calls.read_text().splitlines()][len(first) :] == [
        "sla_reports_monthly"
    ]
    assert devstack.trigger_reports(timeout_s=5, poll_s=0.01) == 0  # all four done: nothing more
    assert len(calls.read_text().splitlines()) == 4
