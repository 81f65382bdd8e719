"""Wire format v1: parse and validate one ingest batch, item by item.

Every problem is reported as `events[i].<field>: <what is wrong>`, so a producer can find the
field without reading server logs. Nothing here touches the database.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

import orjson

from history import chain

MAX_EVENT_ID = 2**53 - 1  # exact in every JSON implementation; far beyond any real history
MAX_ID_LENGTH = 255
MAX_TYPE_LENGTH = 100
MAX_LABELS = 64

TYPE_PATTERN = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+", re.ASCII)
TIME_PATTERN = re.compile(  # ASCII: \d would otherwise take digits of any script
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)
KNOWN_FIELDS = frozenset(
    {
        "workflow_id",
        "run_id",
        "event_id",
        "type",
        "time",
        "workflow_type",
        "attributes",
        "identity",
        "refs",
    }
)


# orjson reads an integer outside 64 bits as a float, silently changing it. Every such integer
# has 19 or more digits (-2**63 - 1 has 19), so a body with a run of 19 or more digits (rare:
# only such integers, or long digit strings) is decoded by the standard library instead, which
# keeps integers exact; the checks below then refuse those that do not fit.
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x2E for b in range(256))
_NINETEEN_ZEROS = b"0" * 19


def decode_json(body: bytes):
    """Decode a request body exactly. Raises ValueError with a readable reason."""
    # translate + find runs in C at memory speed, several times faster than a regex search.
    if body.translate(_DIGITS_TO_ZERO).find(_NINETEEN_ZEROS) == -1:
        return orjson.loads(body)  # orjson.JSONDecodeError is a ValueError

    def refuse_constant(name: str):
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(body, parse_constant=refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class InvalidEvent(ValueError):
    """An item that cannot be stored; the message names the field."""


@dataclass(slots=True)
class ParsedEvent:
    index: int
    workflow_id: str
    run_id: str
    event_id: int
    type: str
    time_text: str
    time: datetime
    workflow_type: str | None
    identity: str | None
    refs: dict[str, int]
    attributes: dict
    attributes_bytes: bytes
    envelope: dict = field(repr=False)

    @property
    def run_key(self) -> tuple[str, str]:
        return (self.workflow_id, self.run_id)

    def header_with_salt(self, salt: str) -> bytes:
        return chain.header_bytes(
            self.envelope, chain.attributes_digest(salt, self.attributes_bytes)
        )


def parse_time(value: str) -> datetime:
    """RFC 3339 with a zone; fractions beyond microseconds are truncated (the text is kept)."""
    match = TIME_PATTERN.fullmatch(value)
    if match is None:
        raise InvalidEvent("must be an RFC 3339 time with a zone, e.g. 2026-01-31T12:00:00.5Z")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise InvalidEvent("has an impossible zone offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
        moment.astimezone(UTC)  # a zone offset can carry year 1 or 9999 out of range
    except ValueError as exc:
        raise InvalidEvent(f"is not a real date and time ({exc})") from None
    except OverflowError:
        raise InvalidEvent("is out of the range of storable times") from None
    return moment


def _no_nul(value: str, name: str) -> str:
    # PostgreSQL text and JSON columns cannot hold U+0000.
    if "\x00" in value:
        raise InvalidEvent(f"{name}: must not contain the NUL character")
    return value


def _required_string(item: dict, name: str, limit: int) -> str:
    value = item.get(name)
    if value is None:
        raise InvalidEvent(f"{name}: is required")
    if not isinstance(value, str):
        raise InvalidEvent(f"{name}: must be a string")
    _no_nul(value, name)
    if not value.strip():
        raise InvalidEvent(f"{name}: must not be empty")
    if len(value) > limit:
        raise InvalidEvent(f"{name}: must be at most {limit} characters")
    return value


def _optional_string(item: dict, name: str, limit: int) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{name}: must be a string")
    _no_nul(value, name)
    if len(value) > limit:
        raise InvalidEvent(f"{name}: must be at most {limit} characters")
    return value


def _event_id(item: dict) -> int:
    value = item.get("event_id")
    if value is None:
        raise InvalidEvent("event_id: is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent("event_id: must be an integer")
    if value < 1:
        raise InvalidEvent("event_id: must be 1 or more")
    if value > MAX_EVENT_ID:
        raise InvalidEvent(f"event_id: must be at most {MAX_EVENT_ID}")
    return value


def _refs(item: dict) -> dict[str, int]:
    value = item.get("refs")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("refs: must be an object of event ids")
    for name, ref in value.items():
        _no_nul(name, "refs")
        if isinstance(ref, bool) or not isinstance(ref, int) or not 1 <= ref <= MAX_EVENT_ID:
            raise InvalidEvent(f"refs.{name}: must be an event id (an integer of 1 or more)")
    return value


def _labels(attributes: dict) -> None:
    labels = attributes.get("labels")
    if labels is None:
        return
    if not isinstance(labels, dict):
        raise InvalidEvent("attributes.labels: must be an object of key=value labels")
    if len(labels) > MAX_LABELS:
        raise InvalidEvent(f"attributes.labels: at most {MAX_LABELS} labels")
    for key, value in labels.items():
        _no_nul(key, "attributes.labels")
        if isinstance(value, str):
            _no_nul(value, "attributes.labels")
        if not isinstance(value, str) or len(value) > 200 or len(key) > 100:
            raise InvalidEvent(
                f"attributes.labels.{key[:100]}: must be a string of at most 200 characters"
            )


def parse_event(index: int, item, *, max_attributes_bytes: int) -> ParsedEvent:
    """Validate one item of `events`. Raises InvalidEvent with a message naming the field."""
    if not isinstance(item, dict):
        raise InvalidEvent(": must be an object")  # no field: the item itself
    unknown = set(item) - KNOWN_FIELDS
    if unknown:
        raise InvalidEvent(f"{sorted(unknown)[0]}: is not a field of wire format v1")
    workflow_id = _required_string(item, "workflow_id", MAX_ID_LENGTH)
    run_id = _required_string(item, "run_id", MAX_ID_LENGTH)
    event_id = _event_id(item)
    event_type, time_text, time, workflow_type, identity = _description(item)
    refs = _refs(item)
    attributes, attributes_bytes = _attributes(item, event_type, max_attributes_bytes)
    return _parsed(index, workflow_id, run_id, event_id, event_type, time_text, time,
                   workflow_type, identity, refs, attributes, attributes_bytes)


def check_run_key(workflow_id, run_id) -> None:
    """The checks `parse_event` makes of an event's workflow_id and run_id, for a builder of
    events (see `parse_mapped_event`) to make once per run. Raises InvalidEvent."""
    item = {"workflow_id": workflow_id, "run_id": run_id}
    _required_string(item, "workflow_id", MAX_ID_LENGTH)
    _required_string(item, "run_id", MAX_ID_LENGTH)


def parse_mapped_event(item: dict, *, max_attributes_bytes: int) -> ParsedEvent:
    """Validate an item that an importer built itself (temporal.mapping) rather than received:
    the same answer as `parse_event` for such an item, with less work.

    The builder guarantees the item's shape: only fields of the wire format, an event_id that
    is an integer from 1 to MAX_EVENT_ID, refs an object of names (no NUL) to such integers,
    and a workflow_id and run_id that passed `check_run_key`. Everything that comes from its
    input is checked here as `parse_event` checks it: type, time, workflow_type, identity,
    and the attributes (canonical JSON: 64-bit integers, no NaN, nesting depth, size; labels).
    """
    event_type, time_text, time, workflow_type, identity = _description(item)
    attributes, attributes_bytes = _attributes(item, event_type, max_attributes_bytes)
    return _parsed(0, item["workflow_id"], item["run_id"], item["event_id"], event_type,
                   time_text, time, workflow_type, identity, item.get("refs") or {},
                   attributes, attributes_bytes)


def _description(item: dict) -> tuple[str, str, datetime, str | None, str | None]:
    """(type, time as sent, time, workflow_type, identity), checked in that order."""
    event_type = _required_string(item, "type", MAX_TYPE_LENGTH)
    if not _is_event_type(event_type):
        raise InvalidEvent(
            "type: must be dotted lowercase words, e.g. activity.completed"
        )
    time_text = _required_string(item, "time", 40)
    try:
        time = parse_time(time_text)
    except InvalidEvent as exc:
        raise InvalidEvent(f"time: {exc}") from None
    workflow_type = _optional_string(item, "workflow_type", MAX_ID_LENGTH)
    if event_type == "workflow.started" and not workflow_type:
        raise InvalidEvent("workflow_type: is required on workflow.started")
    identity = _optional_string(item, "identity", MAX_ID_LENGTH)
    return event_type, time_text, time, workflow_type, identity


@lru_cache(maxsize=4096)  # a producer uses a few dozen types, every event repeats one
def _is_event_type(value: str) -> bool:
    return TYPE_PATTERN.fullmatch(value) is not None


def _attributes(item: dict, event_type: str, max_attributes_bytes: int) -> tuple[dict, bytes]:
    """The attributes and their canonical bytes, which must fit in `max_attributes_bytes`."""
    attributes = item.get("attributes")
    if attributes is None:
        attributes = {}
    elif not isinstance(attributes, dict):
        raise InvalidEvent("attributes: must be an object")
    try:
        attributes_bytes = chain.canonical(attributes)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidEvent(f"attributes: cannot be stored exactly ({exc})") from None
    if len(attributes_bytes) > max_attributes_bytes:
        raise InvalidEvent(
            f"attributes: {len(attributes_bytes)} bytes is over the limit of "
            f"{max_attributes_bytes} bytes"
        )
    if event_type == "workflow.started":
        _labels(attributes)
    return attributes, attributes_bytes


def _parsed(index: int, workflow_id: str, run_id: str, event_id: int, event_type: str,
            time_text: str, time: datetime, workflow_type: str | None, identity: str | None,
            refs: dict, attributes: dict, attributes_bytes: bytes) -> ParsedEvent:
    envelope = {
        "workflow_id": workflow_id,
        "run_id": run_id,
        "event_id": event_id,
        "type": event_type,
        "time": time_text,
        "workflow_type": workflow_type,
        "identity": identity,
        "refs": refs,
    }
    return ParsedEvent(
        index=index,
        workflow_id=workflow_id,
        run_id=run_id,
        event_id=event_id,
        type=event_type,
        time_text=time_text,
        time=time,
        workflow_type=workflow_type,
        identity=identity,
        refs=refs,
        attributes=attributes,
        attributes_bytes=attributes_bytes,
        envelope=envelope,
    )
