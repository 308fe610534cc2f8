"""`leadsla policy check` and `leadsla deadline`, run through leadsla.cli.main as a person would."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadsla.cli import main
from leadsla.policy import DEFAULT_POLICY_PATH


def test_policy_check_prints_the_matrix(capsys):
    assert main(["policy", "check"]) == 0
    out = capsys.readouterr().out
    assert "valid SLA policy version 2026.11-tiered" in out
    # Cells wrap in the table, so look for short pieces of each cell.
    for text in (
        "sales_touch",
        "demo_request (critical)",
        "5m business",
        "1h calendar",
        "24h business",
        "2h business (owner",
        "4h if started outside",
        "14d calendar",
        "reassign owner_manager >",
        "queue:Breached SLA",
        "lock 24h",
        "vp_revops",
        "warning 80%",
    ):
        assert text in out, text
    assert "sdr_apac" in out and "Australia/Sydney" in out


def test_policy_check_of_the_flat_alternative(capsys):
    assert main(["policy", "check", str(DEFAULT_POLICY_PATH.with_name("sla_policy.flat.yaml"))]) == 0
    assert "warning 2h elapsed -> owner, owner_manager" in capsys.readouterr().out


def test_policy_check_reports_a_bad_file_in_one_line(tmp_path: Path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text(DEFAULT_POLICY_PATH.read_text().replace("duration: 5m,", "duration: soon,"))
    assert main(["policy", "check", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(
        f"leadsla: error: {bad}: invalid SLA policy: slas[0].tiers[1].target.duration: 'soon'"
    )


def test_deadline_preview_with_reasoning(capsys):
    assert (
        main(["deadline", "--calendar", "us_east", "--start", "2026-11-25T16:00-05:00", "--duration", "12h"])
        == 0
    )
    out = capsys.readouterr().out
    assert "due:      Mon 2026-11-30 12:00 EST  (2026-11-30T17:00:00Z)" in out
    assert "Thanksgiving Day (2026-11-26)" in out
    assert "weekend" in out and "Saturday-Sunday" in out
    assert "skipped:  4d 8h closed" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--calendar", "us_east", "--start", "2026-11-25T16:00", "--duration", "4h"],
            "--start 2026-11-25T16:00 is naive",
        ),
        (
            ["--calendar", "us_east", "--start", "tomorrow", "--duration", "4h"],
            "--start 'tomorrow' is not an ISO timestamp",
        ),
        (
            ["--calendar", "us_east", "--start", "2026-11-25T16:00Z", "--duration", "soon"],
            "--duration 'soon' is not a duration",
        ),
        (
            ["--calendar", "mars", "--start", "2026-11-25T16:00Z", "--duration", "4h"],
            "unknown calendar 'mars': the policy defines apac, dach",
        ),
    ],
)
def test_deadline_bad_input_is_one_clear_line(capsys, argv, message):
    assert main(["deadline", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err
