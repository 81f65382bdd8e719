"""Values too large for one event, kept by digest.

Flightdeck refuses an event whose attributes are over 256 KiB as canonical JSON. The SDK never
lets that happen: the largest attribute values are replaced, one at a time, by a reference

    {"$flightdeck_large": {"sha256": "<hex>", "size": <bytes>, "preview": "<first characters>"}}

until the event fits, and each full value is kept in the run's local blob store under its
digest, so a resumed run replays the real value. (The server keeps only the reference: a value
that was never small enough to send cannot be fetched back from Flightdeck.)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from flightdeck_sdk.encoding import canonical
from flightdeck_sdk.errors import FlightdeckError
from flightdeck_sdk.journal import fsync_directory

MARKER = "$flightdeck_large"
ATTRIBUTES_LIMIT = 256 * 1024
# Room for differences between this JSON and the server's canonical form (float spelling) and
# for the references themselves.
TARGET = ATTRIBUTES_LIMIT - 16 * 1024
PREVIEW_CHARACTERS = 1024
MIN_REPLACED = 256  # bytes: smaller values are not worth a reference
REST_KEY = "$flightdeck_rest"
KEPT_FIELDS = frozenset({
    "activity_type", "kind", "attempt", "activity_key", "position", "request_id", "action",
    "command_id", "decision", "risk", "approvals", "timeout_seconds", "labels",
})


class BlobStore:
    """Full values by SHA-256 of their canonical JSON, one file each, written atomically."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.directory / sha
        if path.exists():
            return sha
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{sha}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_directory(self.directory)
        return sha

    def get(self, sha: str) -> bytes | None:
        try:
            data = (self.directory / sha).read_bytes()
        except (FileNotFoundError, OSError):
            return None
        return data if hashlib.sha256(data).hexdigest() == sha else None


def is_reference(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(MARKER), dict)


def reference(value, store: BlobStore) -> dict:
    data = canonical(value)
    sha = store.put(data)
    # A preview never makes the reference larger than what it replaces.
    characters = min(PREVIEW_CHARACTERS, len(data) // 4)
    if isinstance(value, str):
        preview = value[:characters]
    else:
        preview = data[: characters * 4].decode("utf-8", "ignore")[:characters]
    return {MARKER: {"sha256": sha, "size": len(data), "preview": preview,
                     "type": type(value).__name__}}


def fit(attributes: dict, store: BlobStore, target: int = TARGET) -> dict:
    """`attributes` small enough for one event. While over `target` bytes: the smallest value
    whose replacement alone is enough becomes a reference (so most of the structure stays
    visible); if no single value is enough, the largest values are replaced one after the
    other until the estimate fits."""
    size = len(canonical(attributes))
    if size <= target:
        return attributes
    result = json.loads(canonical(attributes))  # a private copy to change in place
    while size > target:
        candidates = sorted(_values(result, ()), key=lambda item: item[0], reverse=True)
        if not candidates:
            # Only many small values: keep the SDK's own fields, store the rest as one value.
            rest = {key: result.pop(key) for key in list(result) if key not in KEPT_FIELDS}
            if not rest:
                raise FlightdeckError("the SDK's own attributes are over the size limit")
            result[REST_KEY] = reference(rest, store)
            break
        enough = [item for item in candidates if size - item[0] + 400 <= target]
        if enough:
            _, container, key, _ = enough[-1]
            container[key] = reference(container[key], store)
        else:
            estimate, replaced = size, []
            for value_size, container, key, path in candidates:
                if any(path[:len(done)] == done for done in replaced):
                    continue  # inside a value already stored aside
                container[key] = reference(container[key], store)
                replaced.append(path)
                estimate -= value_size - len(canonical(container[key]))
                if estimate <= target:
                    break
        size = len(canonical(result))
    return result


def _values(node, path: tuple, depth: int = 0):
    """(size, container, key, path) for every value inside `node` worth replacing."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        if is_reference(value) or not isinstance(value, dict | list | str):
            continue
        size = len(canonical(value))
        if size > MIN_REPLACED:
            yield size, node, key, (*path, key)
            if isinstance(value, dict | list) and depth < 50:
                yield from _values(value, (*path, key), depth + 1)


def expand(value, store: BlobStore):
    """`value` with every reference replaced by the full value from the blob store. Raises
    FlightdeckError when a full value is not there (the history came from the server)."""
    if is_reference(value):
        sha = value[MARKER].get("sha256", "")
        data = store.get(sha)
        if data is None:
            raise FlightdeckError(
                f"the recorded value {sha[:12]}… ({value[MARKER].get('size')} bytes) was too "
                "large to send and is not in this machine's blob store; it cannot be replayed"
            )
        # A stored value may itself hold references: `fit` can store a parent whose child
        # was stored in an earlier pass.
        return expand(json.loads(data), store)
    if isinstance(value, dict):
        return {key: expand(item, store) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item, store) for item in value]
    return value
