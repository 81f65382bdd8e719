"""CSV cells that a spreadsheet would run as formulas are neutralised; nothing else changes."""

from __future__ import annotations

import csv
import io

import pytest

from evidence.spreadsheet import csv_rows, neutralise


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\uff1d1+1",
                                  "=HYPERLINK(\"http://evil\")"])
def test_text_that_could_start_a_formula_is_prefixed(text):
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("value", ["plain", "a=b", " =1", "", 42, -5, 1.5, None, True])
def test_anything_else_passes_unchanged(value):
    assert neutralise(value) == value


def test_rows_are_written_as_csv_with_every_cell_neutralised():
    text = "".join(csv_rows(["id", "name"], [[1, "=cmd"], [-2, "a,\"b\"\nc"]]))
    assert list(csv.reader(io.StringIO(text))) == [
        ["id", "name"], ["1", "'=cmd"], ["-2", "a,\"b\"\nc"],
    ]
