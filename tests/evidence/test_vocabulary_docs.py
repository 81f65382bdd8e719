"""The evidence enumerations appear in docs/event-schema.md's one table, and nothing more."""

from __future__ import annotations

import re
from pathlib import Path

from evidence.models import ExportKind, ExportState

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW = re.compile(r"^\| (export kind|export state) \| `([a-z_]+)` \|", re.MULTILINE)


def documented(enumeration: str) -> set[str]:
    text = (DOCS / "event-schema.md").read_text()
    return {value for name, value in ROW.findall(text) if name == enumeration}


def test_every_export_kind_and_state_is_documented_and_nothing_more():
    assert documented("export kind") == set(ExportKind.values)
    assert documented("export state") == set(ExportState.values)


def test_every_evidence_audit_action_is_documented():
    text = (DOCS / "audit.md").read_text()
    for action in ("evidence.export_requested", "evidence.exported", "evidence.downloaded"):
        assert f"`{action}`" in text
