"""Turning a Temporal history file into events ready to store, every one checked before
anything is written: read and normalise (`history_files`), map (`mapping`) and validate as
ingest would (`history.wire.parse_mapped_event`, which spares the checks the mapping makes
certain; each run's workflow and run id are checked once, not once per event).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings

from history.wire import InvalidEvent, ParsedEvent, check_run_key, parse_mapped_event
from temporal import history_files
from temporal.mapping import to_wire

LONG_STRING = 4096  # strings longer than this are left out of an oversized event


class ImportRefused(Exception):
    """An import that is not carried out: `status` is the HTTP answer it stands for (400 the
    file, 403 permission, 409 a conflict with what is stored), `message` says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class PreparedRun:
    workflow_id: str
    run_id: str
    events: list[ParsedEvent]


def prepare(content: bytes, *, workflow_id: str = "", run_id: str = "") -> list[PreparedRun]:
    """Read, map and validate every event of the file. Raises ImportRefused(400)."""
    try:
        histories = history_files.read(content, workflow_id=workflow_id, run_id=run_id)
    except history_files.HistoryError as exc:
        raise ImportRefused(400, str(exc)) from None
    seen: set[tuple[str, str]] = set()
    for history in histories:
        key = (history.workflow_id, history.run_id)
        if key in seen:
            raise ImportRefused(
                400, f"{history.where}: the file holds run {key[0]} / {key[1]} more than once"
            )
        seen.add(key)
        try:
            check_run_key(*key)
        except InvalidEvent as exc:
            raise ImportRefused(400, f"{history.where}: {_readable(exc)}") from None
    return [
        PreparedRun(history.workflow_id, history.run_id, [
            _parse_mapped(event, history.workflow_id, history.run_id, event_id,
                          f"{history.where}[{index}]")
            for index, (event_id, event) in enumerate(
                zip(history.event_ids, history.events, strict=True)
            )
        ])
        for history in histories
    ]


def parse_wire(event: dict, workflow_id: str, run_id: str, event_id: int,
               where: str) -> ParsedEvent:
    """Map one canonical Temporal event and validate it as ingest would (the follower's way,
    an event at a time). Raises ImportRefused(400)."""
    try:
        check_run_key(workflow_id, run_id)
    except InvalidEvent as exc:
        raise ImportRefused(400, f"{where}: {_readable(exc)}") from None
    return _parse_mapped(event, workflow_id, run_id, event_id, where)


def _parse_mapped(event: dict, workflow_id: str, run_id: str, event_id: int,
                  where: str) -> ParsedEvent:
    """`parse_wire` for a run key already checked. An event whose attributes are over the
    size limit is kept in a shortened form (docs/temporal.md) rather than refused, so that a
    history never has a gap."""
    item = to_wire(event, workflow_id=workflow_id, run_id=run_id, event_id=event_id)
    limit = settings.TEMPORAL_MAX_ATTRIBUTES_BYTES
    try:
        return parse_mapped_event(item, max_attributes_bytes=limit)
    except InvalidEvent as exc:
        if not str(exc).startswith("attributes:") or "over the limit" not in str(exc):
            raise ImportRefused(400, f"{where}: {_readable(exc)}") from None
    item["attributes"] = _shortened(item["attributes"])
    try:
        return parse_mapped_event(item, max_attributes_bytes=limit)
    except InvalidEvent as exc:
        raise ImportRefused(400, f"{where}: {_readable(exc)}") from None


def _readable(exc: InvalidEvent) -> str:
    """Wire-format field names mean little to someone holding a Temporal file: name the
    Temporal field they came from."""
    text = str(exc)
    for wire_name, temporal_name in (("time:", "eventTime:"), ("workflow_id:", "workflowId:"),
                                     ("run_id:", "runId:"), ("identity:", "identity:")):
        if text.startswith(wire_name):
            return temporal_name + text[len(wire_name):]
    return text


def _shortened(attributes: dict) -> dict:
    """Attributes without the decoded copies, and with very long strings (payload data)
    replaced by their length and SHA-256."""

    def shorten(value):
        if isinstance(value, str) and len(value) > LONG_STRING:
            digest = hashlib.sha256(value.encode()).hexdigest()
            return f"<{len(value)} characters left out (over the size limit); sha256 {digest}>"
        if isinstance(value, dict):
            return {key: shorten(item) for key, item in value.items()}
        if isinstance(value, list):
            return [shorten(item) for item in value]
        return value

    kept = {key: value for key, value in attributes.items()
            if key not in ("input", "output", "result", "details", "last_failure", "error")}
    kept["temporal"] = shorten(attributes["temporal"])
    kept["shortened"] = True
    return kept
