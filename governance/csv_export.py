"""The governance findings as CSV, streamed, with spreadsheet formulas neutralised by the same
rule as every other CSV Flightdeck writes (`evidence.spreadsheet`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from evidence.spreadsheet import csv_rows

COLUMNS = ["received_at", "rule", "agent", "workflow_id", "run_id", "run_uuid", "event_id",
           "subject", "summary", "link"]


def rows_as_csv(rows: Iterable[list]) -> Iterator[str]:
    return csv_rows(COLUMNS, rows)
