"""Every `leadsla` command and every configuration loader answers bad input with one line from the
project's own errors (`LeadSlaError`) and exit 2 - never a traceback, never a hang: a property over
generated YAML trees, byte strings, mutated shipped files and odd arguments (tests/fuzz_inputs.py;
bench/fuzz.py runs the same property over 20,000+ cases). Plus the cases the review found."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from leadsla.cli import main
from tests.fuzz_inputs import SHIPPED, Case, cases, dump, outcome


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Where the cases' files are written (one folder for the module: cases reuse it)."""
    return tmp_path_factory.mktemp("fuzz")


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(case=cases())
def test_bad_input_ends_in_one_line_of_the_projects_own_errors(folder: Path, case: Case) -> None:
    assert outcome(case, folder) is None


def _one_error_line(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("leadsla: error: "), err
    return err


def test_policy_check_on_a_binary_file(tmp_path, capsys) -> None:
    binary = tmp_path / "policy.yaml"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
    err = _one_error_line(["policy", "check", str(binary)], capsys)
    assert "the SLA policy is not UTF-8 text (byte 136 is 0x80)" in err


def test_hours_that_are_a_number_in_a_policy(tmp_path, capsys) -> None:
    tree = SHIPPED["policy"]
    tree["calendars"]["us_east"]["hours"] = {"fri": 9}
    path = tmp_path / "policy.yaml"
    path.write_bytes(dump(tree))
    err = _one_error_line(["policy", "check", str(path)], capsys)
    assert "calendars.us_east" in err and "hours.fri" in err and "9" in err


def test_a_store_url_pointing_at_a_file_that_is_not_a_database(tmp_path, capsys) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are notes, not a database\n" * 200)
    err = _one_error_line(["store", "--url", f"sqlite:///{notes}"], capsys)
    assert f"cannot open the store at 'sqlite:///{notes}': file is not a database" in err


LAUGHS = b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n".encode() for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize("content", [b"", b"a: [1\n", b"a: &a [*a, *a]\n", b"- " * 5000, b"[" * 5000, LAUGHS])
def test_empty_broken_recursive_deep_or_exploding_yaml(tmp_path, capsys, content) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(content)
    _one_error_line(["policy", "check", str(path)], capsys)
