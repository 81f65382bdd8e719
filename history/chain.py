"""The tamper-evidence scheme: canonical bytes, salted attribute digests and the hash chain.

Pure functions with no Django import, so that the offline verifier can use the same code and
so that docs/event-schema.md can state the scheme in terms of these few lines:

    attributes_bytes = canonical(attributes)
    attributes_digest = hex(SHA-256(salt || attributes_bytes))       # salt: 16 random bytes
    header_bytes = canonical({envelope fields..., "attributes_digest": attributes_digest})
    chain_hash(1) = hex(SHA-256(32 zero bytes || header_bytes(1)))
    chain_hash(n) = hex(SHA-256(bytes(chain_hash(n - 1)) || header_bytes(n)))

The header carries the run's identity and the event id, so moving, swapping or dropping an
event breaks the chain; the salted digest lets a redacted export drop the attributes and still
prove the chain, without offering an unsalted hash against which a hidden value could be
guessed.
"""

from __future__ import annotations

import hashlib
import math
import os

import orjson

GENESIS = "0" * 64
SALT_BYTES = 16

# The envelope fields a header holds, besides attributes_digest. Absent optional fields are
# written as null (identity, workflow_type) or {} (refs), so each has exactly one form.
HEADER_FIELDS = (
    "workflow_id",
    "run_id",
    "event_id",
    "type",
    "time",
    "workflow_type",
    "identity",
    "refs",
)


def canonical(value) -> bytes:
    """UTF-8 JSON with keys sorted and no insignificant white space. Raises TypeError or
    orjson.JSONEncodeError for values JSON cannot carry exactly (integers beyond 64 bits).

    orjson writes NaN and the infinities as null; they are refused here instead (JSON input
    cannot hold them, but direct callers such as importers could pass them)."""
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    if b"null" in text and _has_non_finite(value):
        raise TypeError("NaN and infinities cannot be stored as JSON")
    return text


def _has_non_finite(value) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def new_salt() -> str:
    return os.urandom(SALT_BYTES).hex()


def new_salts(count: int) -> list[str]:
    """`count` salts from one read of the system's random source (one call per event was a
    system call per event)."""
    pool = os.urandom(SALT_BYTES * count).hex()
    width = 2 * SALT_BYTES
    return [pool[start:start + width] for start in range(0, len(pool), width)]


def attributes_digest(salt_hex: str, attributes_bytes: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(salt_hex) + attributes_bytes).hexdigest()


def header_bytes(envelope: dict, digest: str) -> bytes:
    """The stored header: the envelope fields of HEADER_FIELDS plus the attributes digest."""
    fields = {name: envelope[name] for name in HEADER_FIELDS}
    fields["attributes_digest"] = digest
    # Envelope values are validated strings, integers and nulls (never floats), so the
    # non-finite check of canonical() has nothing to find here.
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def link(previous_hash: str, header: bytes) -> str:
    """The chain hash of an event whose predecessor's chain hash is `previous_hash`."""
    return hashlib.sha256(bytes.fromhex(previous_hash) + header).hexdigest()
