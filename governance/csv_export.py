"""The governance findings as CSV, streamed, with spreadsheet formulas neutralised: a cell
that starts with =, +, -, @, a tab or a carriage return is prefixed with an apostrophe, so that
a spreadsheet shows an agent's string as text instead of running it (OWASP, "CSV Injection")."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = ["received_at", "rule", "agent", "workflow_id", "run_id", "run_uuid", "event_id",
           "subject", "summary", "link"]


def neutralise(value) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file-like object whose write returns the line, for csv.writer in a generator."""

    def write(self, value: str) -> str:
        return value


def rows_as_csv(rows: Iterable[list]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for row in rows:
        yield writer.writerow([neutralise(cell) for cell in row])
