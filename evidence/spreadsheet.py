"""CSV that is safe to open in a spreadsheet.

A cell whose text starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a
formula by Excel, LibreOffice and Google Sheets (CSV injection: `=HYPERLINK(...)` in an agent's
workflow id would run when an investigator opens the file). Such text is prefixed with a single
quote, which spreadsheets show as text and do not evaluate, as OWASP recommends. Numbers and
times written by Flightdeck itself are not strings and pass unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

# The ASCII triggers, and their full-width forms, which some spreadsheets also accept.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def neutralise(value) -> object:
    """`value` as it may go into a cell: strings that could start a formula get a `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_rows(header: list[str], rows: Iterable[Iterable]) -> Iterator[str]:
    """The CSV text, one line at a time (for streaming responses and zip entries)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([neutralise(value) for value in row])
        yield buffer.getvalue()
