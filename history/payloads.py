"""Decode payloads for display. Temporal (and SDKs modelled on it) encode values as
`{"metadata": {"encoding": <base64>}, "data": <base64>}`; the page shows the decoded value next
to the raw form. Display only: stored bytes are never changed."""

from __future__ import annotations

import base64
import binascii

import orjson

MAX_DECODED = 64 * 1024


def _b64(value) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_payload(value) -> object | None:
    """The decoded value of a Temporal-style payload dict, or None if `value` is not one."""
    if not isinstance(value, dict) or "data" not in value:
        return None
    metadata = value.get("metadata")
    if not isinstance(metadata, dict):
        return None
    encoding = _b64(metadata.get("encoding"))
    data = _b64(value.get("data"))
    if encoding is None or data is None or len(data) > MAX_DECODED:
        return None
    if encoding.startswith(b"json/"):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
    if encoding == b"binary/null":
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes, {encoding.decode(errors='replace')}>"


def decoded_payloads(attributes, path: str = "", found: list | None = None, depth: int = 0):
    """Every decodable payload inside `attributes`, as (JSON pointer, decoded value) pairs."""
    found = [] if found is None else found
    if depth > 32 or len(found) >= 50:
        return found
    decoded = decode_payload(attributes)
    if decoded is not None:
        found.append((path or "/", decoded))
        return found
    if isinstance(attributes, dict):
        for key, value in attributes.items():
            escaped = str(key).replace("~", "~0").replace("/", "~1")
            decoded_payloads(value, f"{path}/{escaped}", found, depth + 1)
    elif isinstance(attributes, list):
        for index, value in enumerate(attributes):
            decoded_payloads(value, f"{path}/{index}", found, depth + 1)
    return found
