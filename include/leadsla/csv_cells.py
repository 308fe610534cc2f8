"""CSV cells a spreadsheet shows as text, never runs: every CSV the project writes goes through here.

CRM text ends up in CSV files (report attachments, `leadsla audit export`) that people open in
Excel, LibreOffice or Google Sheets, which treat a cell starting with ``=``, ``+``, ``-`` or ``@``
as a formula (``=HYPERLINK("https://evil.example", "Click")`` as a lead source becomes a live link;
``=cmd|...`` ran commands in older Excel) and strip a leading tab or carriage return before doing
the same. The OWASP rule: prefix such a cell with a single quote, which the spreadsheet shows as
text. Only text is changed; numbers and dates the project computes are written as they are (a
negative figure stays a number), so a cell is prefixed only where lead or CRM text could start it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

#: A text cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """`value` with a single quote in front when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeWriter:
    """`csv.writer` whose every cell goes through `neutralise` (same arguments, `writerow(s)`)."""

    def __init__(self, handle: TextIO, **fmtparams: Any) -> None:
        self._writer = csv.writer(handle, **fmtparams)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([neutralise(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(handle: TextIO, **fmtparams: Any) -> SafeWriter:
    """A CSV writer on `handle` that neutralises every cell (see the module docstring)."""
    return SafeWriter(handle, **fmtparams)
