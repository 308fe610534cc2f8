"""`leadsla qa`: the scenarios against a customer's policy as a pass/fail table, exit 2 on a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadsla.cli import main
from leadsla.scenarios.run import SCENARIOS
from tests.scenarios.policies import SHIPPED, counts_any_activity_by_anyone, edited, write_policy

ROOT = Path(__file__).resolve().parents[2]


def test_the_active_policy_passes_every_scenario(capsys, monkeypatch) -> None:
    monkeypatch.delenv("LEADSLA_POLICY_PATH", raising=False)
    assert main(["qa"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"policy: {SHIPPED['tiered']} (version 2026.11-tiered)\n")
    assert all(s.name in out for s in SCENARIOS)
    assert out.rstrip().endswith(f"{len(SCENARIOS)} scenarios: {len(SCENARIOS)} pass, 0 fail, 0 n/a")


def test_the_flat_policy_passes_with_the_tier_lines_not_applicable(capsys) -> None:
    assert main(["qa", "--policy", str(SHIPPED["flat"])]) == 0
    out = capsys.readouterr().out
    assert "sales_touch has no tier for lead type Demo Request" in out
    assert out.rstrip().endswith(f"{len(SCENARIOS)} scenarios: {len(SCENARIOS) - 2} pass, 0 fail, 2 n/a")


def test_a_policy_that_breaks_the_checklist_exits_2_with_the_failures(tmp_path, capsys) -> None:
    path = write_policy(tmp_path / "policy.yaml", edited("tiered", counts_any_activity_by_anyone))
    assert main(["qa", "--policy", str(path)]) == 2
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line and line.split()[0] in {s.name for s in SCENARIOS}
    }
    assert " fail " in rows["automated_email_does_not_stop"] and " fail " in rows["open_todo_task"]
    assert " n/a " in rows["touch_by_someone_else"] and " pass " in rows["holiday"]
    assert "expected breached, got met" in out
    assert out.rstrip().endswith(
        f"{len(SCENARIOS)} scenarios: {len(SCENARIOS) - 3} pass, 2 fail, 1 n/a: do not sign this policy off "
        "until the failures are understood"
    )


def test_one_scenario_can_be_run_alone(capsys) -> None:
    assert main(["qa", "--scenario", "holiday", "--scenario", "friday_evening"]) == 0
    out = capsys.readouterr().out
    assert "holiday" in out and "friday_evening" in out and "touched_in_time" not in out
    assert out.rstrip().endswith("2 scenarios: 2 pass, 0 fail, 0 n/a")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["qa", "--policy", "/nonexistent/policy.yaml"],
            "/nonexistent/policy.yaml: cannot read the SLA policy",
        ),
        (["qa", "--scenario", "nope"], "no scenario named nope: expected one of touched_in_time, "),
    ],
)
def test_bad_input_is_one_error_line(argv, message, capsys) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"leadsla: error: {message}") and captured.err.count("\n") == 1


def test_an_invalid_policy_file_is_one_error_line(tmp_path, capsys) -> None:
    data = edited("flat", lambda d: d["slas"][0]["tiers"][0]["target"].update(duration="soon"))
    path = write_policy(tmp_path / "policy.yaml", data)
    assert main(["qa", "--policy", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"leadsla: error: {path}: invalid SLA policy: slas[0].tiers[0].target.duration: 'soon'"
    )
    assert err.count("\n") == 1


def test_the_scenarios_never_import_airflow_the_store_or_a_network_client() -> None:
    code = (
        "import sys, leadsla.scenarios.run, leadsla.cli.qa\n"
        "edges = ('airflow', 'sqlalchemy', 'requests', 'slack_sdk', 'simple_salesforce')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in edges or m.startswith('leadsla.store')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "include")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "[]"
