"""The governance enumerations in docs/event-schema.md's table agree with
governance/vocabulary.py, and docs/governance.md names every rule."""

from __future__ import annotations

import re
from pathlib import Path

from governance.vocabulary import Outcome, Rule

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW = re.compile(r"^\| (finding rule|interruption outcome) \| `([a-z_]+)` \|", re.MULTILINE)


def documented(enumeration: str) -> set[str]:
    text = (DOCS / "event-schema.md").read_text()
    return {value for name, value in ROW.findall(text) if name == enumeration}


def test_every_finding_rule_is_in_the_enumeration_table_and_nothing_more():
    assert documented("finding rule") == set(Rule.values)


def test_every_interruption_outcome_is_in_the_enumeration_table_and_nothing_more():
    assert documented("interruption outcome") == set(Outcome.values)


def test_the_governance_page_documents_every_rule_and_outcome():
    text = (DOCS / "governance.md").read_text()

    assert all(f"`{value}`" in text for value in [*Rule.values, *Outcome.values])
