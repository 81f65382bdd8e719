"""Reading Temporal history files in the shapes found in the wild, into canonical events.

Accepted (docs/temporal.md, "Importing"):
- `{"events": [...]}` (what `temporal workflow show -o json` writes), optionally with
  `workflowId` / `runId` beside `events`;
- `{"history": {"events": [...]}}` (a GetWorkflowExecutionHistory response);
- a bare array of events, oldest or newest first;
- an array of histories (each of the shapes above).

Events may spell enums as `EVENT_TYPE_WORKFLOW_EXECUTION_STARTED` (protobuf JSON) or
`WorkflowExecutionStarted` (older tools and the Web UI's download), or as numbers, and give
`eventId` and other 64-bit integers as strings or numbers. Everything is brought to the
canonical protobuf JSON form before mapping, using the event's protobuf descriptor, so the same
history stores the same bytes whichever way it was written. Every problem is a `HistoryError`
naming where it is (`[2].events[7].eventId: ...`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from google.protobuf.descriptor import FieldDescriptor
from temporalio.api.history.v1 import HistoryEvent

from history.wire import MAX_EVENT_ID, decode_json
from temporal.mapping import EVENT_TYPE_PREFIX

MAX_ID_LENGTH = 255
_PASCAL = re.compile(r"[A-Z][A-Za-z0-9]*")
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z0-9]*")
# A JSON number such as 2.0 or 1.00 (and, harmlessly, such text inside a string). It starts
# with the literal "." and looks behind for the digit: the regex engine then jumps from dot to
# dot instead of trying every digit of a 30 MB file (ten times faster than `\d\.0+...`).
_WHOLE_FLOAT = re.compile(rb"\.(?<=\d\.)0+(?:[eE][+-]?\d+)?\s*[,}\]]")
_INT64 = frozenset({
    FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64,
})


class HistoryError(ValueError):
    """The file is not a Temporal history Flightdeck can read; the message says where and why."""


@dataclass
class TemporalHistory:
    """One run's events, canonical and in ascending event id order."""

    events: list[dict]
    event_ids: list[int]
    workflow_id: str
    run_id: str
    where: str  # the JSON path of this history in the file, for messages

    @property
    def started(self) -> dict | None:
        first = self.events[0] if self.events else None
        if first and first["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED":
            return first
        return None


def read(content: bytes, *, workflow_id: str = "", run_id: str = "") -> list[TemporalHistory]:
    """Every history in `content` (a file's bytes). `workflow_id` and `run_id` name the run
    when the history does not (a history without its start event, or from old servers)."""
    try:
        data = decode_json(content)
    except ValueError as exc:
        raise HistoryError(f"the file is not JSON ({exc})") from None
    # Whole-number floats (2.0) are rare in histories; only a file that has one is walked.
    floats = _WHOLE_FLOAT.search(content) is not None
    found = list(_histories(data))
    if len(found) > 1 and run_id:
        raise HistoryError(
            f"run_id: the file holds {len(found)} histories; a run id can only be given for one"
        )
    try:
        return [_history(events, path, wrapper, workflow_id, run_id, floats)
                for events, path, wrapper in found]
    except RecursionError:
        raise HistoryError("the file nests objects too deeply to be a Temporal history") from None


def _histories(data):
    """(events list, path, wrapper object) for each history in the decoded file."""
    if isinstance(data, dict):
        yield _events_of(data, "")
        return
    if not isinstance(data, list):
        raise HistoryError(
            "a Temporal history is a JSON object with `events` (or `history.events`) or an "
            f"array; this file holds {_kind(data)}"
        )
    if not data:
        raise HistoryError("the file is an empty array: there is no event to import")
    if all(isinstance(item, dict) and ("events" in item or "history" in item) for item in data):
        for index, item in enumerate(data):
            yield _events_of(item, f"[{index}]")
        return
    yield data, "", {}


def _events_of(wrapper: dict, path: str):
    events = wrapper.get("events")
    where = f"{path}.events" if path else "events"
    if events is None and isinstance(wrapper.get("history"), dict):
        events = wrapper["history"].get("events")
        where = f"{path}.history.events" if path else "history.events"
    if events is None:
        keys = ", ".join(sorted(map(str, wrapper))[:8]) or "none"
        raise HistoryError(
            f"{path or 'the file'}: has no `events` or `history.events` (its keys: {keys}); "
            "is this a Temporal history (`temporal workflow show -o json`)?"
        )
    if not isinstance(events, list):
        raise HistoryError(f"{where}: must be an array of events, not {_kind(events)}")
    if not events:
        raise HistoryError(f"{where}: is empty: a history has at least one event")
    return events, where, wrapper


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _history(events: list, where: str, wrapper: dict, workflow_id: str,
             run_id: str, floats: bool) -> TemporalHistory:
    by_id: dict[int, dict] = {}
    for index, item in enumerate(events):
        path = f"{where}[{index}]" if where else f"[{index}]"
        event_id, event = normalize_event(item, path, floats=floats)
        earlier = by_id.get(event_id)
        if earlier is not None and earlier != event:
            raise HistoryError(
                f"{path}.eventId: event {event_id} appears twice with different content"
            )
        by_id[event_id] = event
    ids = sorted(by_id)  # newest-first files come out oldest first
    ordered = [by_id[event_id] for event_id in ids]
    history = TemporalHistory(ordered, ids, "", "", where or "events")
    history.workflow_id = _identity(history, wrapper, "workflowId", workflow_id, "workflow_id")
    history.run_id = _identity(history, wrapper, "runId", run_id, "run_id")
    return history


def _identity(history: TemporalHistory, wrapper: dict, key: str, given: str, option: str) -> str:
    started = history.started
    attributes = started.get("workflowExecutionStartedEventAttributes") if started else None
    attributes = attributes if isinstance(attributes, dict) else {}
    source = "workflowId" if key == "workflowId" else "originalExecutionRunId"
    value = attributes.get(source) or wrapper.get(key) or wrapper.get(option) or given
    if not value:
        raise HistoryError(
            f"{history.where}: the history does not name its {option.replace('_', ' ')} (no "
            f"WorkflowExecutionStarted event with {source}); give it as {option}"
        )
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or "\x00" in value:
        raise HistoryError(
            f"{history.where}: {option} must be a string of at most {MAX_ID_LENGTH} characters"
        )
    return value


def normalize_event(item, path: str, *, floats: bool = True) -> tuple[int, dict]:
    """(event id, the event in canonical form). Canonical events are returned as they are;
    `floats=False` says the file has no whole-number float to rewrite."""
    if not isinstance(item, dict):
        raise HistoryError(f"{path}: must be an event object, not {_kind(item)}")
    if "eventType" not in item:
        hint = (
            "; this looks like Flightdeck's own event format: send it to POST /api/v1/ingest"
            if "type" in item and "workflow_id" in item else
            "; is this a Temporal history (`temporal workflow show -o json`)?"
        )
        raise HistoryError(f"{path}: has no eventType{hint}")
    event_type = item["eventType"]
    event_id = _event_id(item.get("eventId"), path)
    if not isinstance(item.get("eventTime"), str):
        raise HistoryError(f"{path}.eventTime: is required, an RFC 3339 time")
    if isinstance(event_type, str) and event_type.startswith(EVENT_TYPE_PREFIX) and isinstance(
        item["eventId"], str
    ):
        # Canonical enums and integers already.
        return event_id, whole_numbers(item) if floats else item
    event = _canonical(item, path)
    return event_id, whole_numbers(event) if floats else event


def whole_numbers(value):
    """`value` with every float that is a whole number written as an integer, as Go's
    protobuf JSON (the CLI, the server) writes doubles such as backoffCoefficient (2, where
    Python's MessageToDict gives 2.0): the same history then stores the same bytes."""
    if isinstance(value, dict):
        return {key: whole_numbers(item) if isinstance(item, dict | list | float) else item
                for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _event_id(value, path: str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EVENT_ID:
        raise HistoryError(
            f"{path}.eventId: must be a positive integer (a number or a string of digits)"
        )
    return value


def _canonical(item: dict, path: str) -> dict:
    """Rewrite an event in another spelling to protobuf JSON: enum names, 64-bit integers as
    strings, through HistoryEvent's descriptor. Fields the descriptor does not know are kept."""
    event = dict(item)
    event["eventType"] = _event_type_name(item["eventType"], path)
    return _walk(event, HistoryEvent.DESCRIPTOR, path)


def _event_type_name(value, path: str) -> str:
    enum = HistoryEvent.DESCRIPTOR.fields_by_name["event_type"].enum_type
    if isinstance(value, int) and not isinstance(value, bool):
        known = enum.values_by_number.get(value)
        return known.name if known else f"{EVENT_TYPE_PREFIX}{value}"
    if isinstance(value, str) and value.startswith(EVENT_TYPE_PREFIX):
        return value
    if isinstance(value, str) and _PASCAL.fullmatch(value):
        return EVENT_TYPE_PREFIX + _upper_snake(value)
    raise HistoryError(
        f"{path}.eventType: must name a Temporal event type, e.g. "
        "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED or WorkflowExecutionStarted"
    )


def _upper_snake(pascal: str) -> str:
    return "_".join(word.upper() for word in _WORDS.findall(pascal))


def _walk(value: dict, descriptor, path: str) -> dict:
    fields = _fields(descriptor)
    out = {}
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            out[key] = item
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[key] = {name: _convert(value_field, entry, path) for name, entry in item.items()} \
                if isinstance(item, dict) else item
        elif field.is_repeated and isinstance(item, list):
            out[key] = [_convert(field, entry, path) for entry in item]
        else:
            out[key] = _convert(field, item, path)
    return out


def _convert(field, item, path: str):
    if field.message_type is not None:
        return _walk(item, field.message_type, path) if isinstance(item, dict) else item
    if field.enum_type is not None:
        return _enum_name(field.enum_type, item)
    if field.type in _INT64 and isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    return item


@cache
def _fields(descriptor) -> dict:
    """A message's fields by their JSON name (and by proto name, which parsers also accept)."""
    fields = {field.json_name: field for field in descriptor.fields}
    fields.update({field.name: field for field in descriptor.fields})
    return fields


@cache
def _enum_names(enum) -> dict:
    """PascalCase spelling -> canonical name, e.g. "Normal" -> "TASK_QUEUE_KIND_NORMAL"."""
    names = [value.name for value in enum.values]
    prefix = _common_prefix(names)
    return {
        "".join(word.capitalize() for word in name[len(prefix):].split("_")): name
        for name in names
    }


def _common_prefix(names: list[str]) -> str:
    if len(names) < 2:
        return names[0].rsplit("_", 1)[0] + "_" if names else ""
    first, last = min(names), max(names)
    size = 0
    while size < min(len(first), len(last)) and first[size] == last[size]:
        size += 1
    return first[: first.rfind("_", 0, size + 1) + 1]


def _enum_name(enum, item):
    if isinstance(item, int) and not isinstance(item, bool):
        known = enum.values_by_number.get(item)
        return known.name if known else item
    if isinstance(item, str) and item not in enum.values_by_name:
        return _enum_names(enum).get(item, item)
    return item
