"""JSON as Flightdeck stores it: values made JSON-safe, canonical bytes, digests, times.

Flightdeck refuses NaN and the infinities, integers beyond 64 bits and attributes nested past
about 250 levels (docs/event-schema.md). An agent's values are turned into JSON that ingest
accepts *before* they are spooled, so an event never comes back `invalid` for its content.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from uuid import UUID

MAX_DEPTH = 200
INT64 = (-(2**63), 2**63 - 1)


def jsonable(value, _depth: int = 0):
    """`value` as plain JSON (dict with string keys, list, str, int, float, bool, None).

    Tuples and sets become lists (sets sorted by their JSON), bytes `{"$bytes": base64}`,
    dataclasses dicts, dates ISO strings, non-finite floats and out-of-range integers strings;
    anything else its `str()`. Nesting deeper than MAX_DEPTH is cut to a string."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if INT64[0] <= value <= INT64[1] else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= MAX_DEPTH:
        return str(value)
    nested = _depth + 1
    if isinstance(value, dict):
        return {str(key): jsonable(item, nested) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item, nested) for item in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(item, nested) for item in value), key=canonical_text)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), _depth)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return jsonable(value.value, _depth)
    if isinstance(value, Decimal | UUID):
        return str(value)
    return str(value)


def canonical_text(value) -> str:
    """Keys sorted, no insignificant white space, non-ASCII as itself (what ingest hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def canonical(value) -> bytes:
    return canonical_text(value).encode("utf-8")


def digest(value) -> str:
    """Lowercase hex SHA-256 of the canonical JSON of a JSON value."""
    return hashlib.sha256(canonical(value)).hexdigest()


def now() -> str:
    """The current time as RFC 3339 in UTC with microseconds, e.g. 2026-11-26T14:02:11.120431Z."""
    return rfc3339(datetime.now(UTC))


def rfc3339(moment: datetime) -> str:
    """An aware datetime as the SDK writes times: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """A time the SDK wrote (`rfc3339`), or any RFC 3339 time with an offset; ValueError
    otherwise (a time without an offset is ambiguous)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment
