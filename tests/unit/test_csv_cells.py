"""`leadsla.csv_cells`: a text cell a spreadsheet would run as a formula gets a single quote in
front (OWASP: = + - @ tab CR), anything else is written as it is; and it is the only way the
project writes CSV (the report attachments and the audit export go through it)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from leadsla import csv_cells

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "leadsla"


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.one_of(st.text(max_size=12), st.sampled_from(csv_cells.FORMULA_STARTS).map(lambda c: c + "1+1")))
def test_only_a_formula_start_is_prefixed_and_nothing_else_changes(text) -> None:
    shown = csv_cells.neutralise(text)
    if text[:1] in csv_cells.FORMULA_STARTS:
        assert shown == "'" + text
    else:
        assert shown == text


def test_numbers_and_missing_values_are_written_as_they_are() -> None:
    assert [csv_cells.neutralise(v) for v in (-1, -0.5, 3, None, "'=x")] == [-1, -0.5, 3, None, "'=x"]


def test_the_writer_neutralises_every_cell_and_keeps_the_rows_readable() -> None:
    buffer = io.StringIO()
    writer = csv_cells.writer(buffer)
    writer.writerow(['=HYPERLINK("https://evil.example","x")', "\rCR", "-3", -3, "ok"])
    writer.writerows([["@SUM(A1)", "line\nbreak"]])
    rows = list(csv.reader(io.StringIO(buffer.getvalue(), newline="")))
    assert rows == [
        ['\'=HYPERLINK("https://evil.example","x")', "'\rCR", "'-3", "-3", "ok"],
        ["'@SUM(A1)", "line\nbreak"],
    ]


def test_no_module_writes_csv_but_through_csv_cells() -> None:
    """A CSV writer anywhere else would bypass the neutralisation: the reports' `_csv` (which
    neutralises each text column) and `csv_cells` itself are the only two."""
    writers = re.compile(r"csv\.writer\(|csv\.DictWriter\(|\.to_csv\(")
    found = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if writers.search(path.read_text(encoding="utf-8"))
    }
    assert found == {"csv_cells.py", "reports/builders.py"}
    builders = (PACKAGE / "reports" / "builders.py").read_text(encoding="utf-8")
    assert builders.count(".to_csv(") == 1 and "map(neutralise)" in builders
