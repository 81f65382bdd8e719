"""The enumeration table in docs/event-schema.md and history/vocabulary.py must agree."""

from __future__ import annotations

import json
import re
from pathlib import Path

from history.ingest import CONFLICT, DUPLICATE, INVALID, STORED
from history.vocabulary import ALL_CORE_EVENT_TYPES, STATUS_EVENTS, RunStatus
from interventions.vocabulary import ApprovalState, CommandKind, CommandState, ConnectorKind, Risk

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROW = re.compile(
    r"^\| (event type|run status|ingest result|command kind|command state|approval state|risk"
    r"|connector) \| `([a-z_.]+)` \|",
    re.MULTILINE,
)


def documented(enumeration: str) -> set[str]:
    text = (DOCS / "event-schema.md").read_text()
    return {value for name, value in ROW.findall(text) if name == enumeration}


def test_every_core_event_type_is_documented_and_nothing_more():
    assert documented("event type") == set(ALL_CORE_EVENT_TYPES)


def test_every_run_status_is_documented_and_nothing_more():
    assert documented("run status") == set(RunStatus.values)


def test_every_ingest_result_is_documented_and_nothing_more():
    assert documented("ingest result") == {STORED, DUPLICATE, CONFLICT, INVALID}


def test_every_command_and_approval_enumeration_is_documented_and_nothing_more():
    assert documented("command kind") == set(CommandKind.values)
    assert documented("command state") == set(CommandState.values)
    assert documented("approval state") == set(ApprovalState.values)
    assert documented("risk") == set(Risk.values)
    assert documented("connector") == set(ConnectorKind.values)


def test_every_status_event_sets_a_documented_status():
    assert set(STATUS_EVENTS.values()) <= set(RunStatus.values)
    assert set(STATUS_EVENTS) <= set(ALL_CORE_EVENT_TYPES)


def test_the_json_schema_is_valid_json_and_names_the_envelope():
    schema = json.loads((DOCS / "event-schema.json").read_text())
    assert schema["required"] == ["events"]
    assert schema["$defs"]["event"]["required"] == [
        "workflow_id", "run_id", "event_id", "type", "time",
    ]


def test_the_json_schema_accepts_what_ingest_accepts_and_refuses_what_it_refuses():
    from jsonschema import Draft202012Validator

    from tests.builders import event, history

    validator = Draft202012Validator(json.loads((DOCS / "event-schema.json").read_text()))
    assert validator.is_valid({"events": history(12)})
    for bad in (
        {"events": []},
        {"events": [event(0)]},
        {"events": [event(1, "Started")]},
        {"events": [event(1, time="2026-01-01T00:00:00")]},
        {"events": [{**event(1, "workflow.started"), "workflow_type": None}]},
        {"events": [{**event(1), "extra": 1}]},
    ):
        assert not validator.is_valid(bad), bad
