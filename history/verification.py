"""Re-check a run's stored events against their hash chain.

What it can find: any change, after ingest, to an event's stored header or attributes, to
its salt, to its chain hash or to the run's head hash, and events removed, inserted or
swapped, unless whoever changed them also recomputed every later chain hash and the head hash
(signed digests, which are kept outside the database, close that gap).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from history import chain
from history.models import Run
from history.wire import InvalidEvent, parse_time


@dataclass
class Problem:
    run: Run
    event_id: int | None
    message: str

    def __str__(self) -> str:
        where = f"event {self.event_id}" if self.event_id is not None else "run"
        run = self.run
        return f"run {run.uuid} ({run.workflow_id} / {run.run_id}) {where}: {self.message}"


def _columns_against_header(
    fields: dict, run: Run, event_id, event_type, time_text, time, identity, refs
) -> list[str]:
    """The stored columns that disagree with the (hashed) header: the columns are what pages
    and the API show, so a change to them must be caught too."""
    try:
        header_time = parse_time(fields.get("time") or "")
    except InvalidEvent:
        header_time = None
    checks = (
        ("event_id", fields.get("event_id") == event_id),
        ("type", fields.get("type") == event_type),
        ("time", fields.get("time") == time_text and header_time == time),
        ("workflow_id", fields.get("workflow_id") == run.workflow_id),
        ("run_id", fields.get("run_id") == run.run_id),
        ("identity", (fields.get("identity") or "") == identity),
        ("refs", (fields.get("refs") or {}) == (refs or {})),
    )
    return [name for name, ok in checks if not ok]


def verify_run(run: Run) -> list[Problem]:
    problems: list[Problem] = []

    def fail(event_id: int | None, message: str) -> None:
        problems.append(Problem(run, event_id, message))

    previous = chain.GENESIS
    expected_id = 1
    broken_prefix = False  # once an event is missing, later ones cannot be chained
    count = 0
    events = (
        run.events.order_by("event_id")
        .values_list(
            "event_id", "type", "time_text", "time", "identity", "refs", "attributes", "salt",
            "header", "chain_hash",
        )
        .iterator(chunk_size=2000)
    )
    for row in events:
        event_id, event_type, time_text, time, identity, refs, attributes, salt, header, link = row
        count += 1
        in_prefix = event_id <= run.contiguous_through and not broken_prefix
        if in_prefix and event_id != expected_id:
            fail(expected_id, f"missing from the chain (next stored event is {event_id})")
            in_prefix, broken_prefix = False, True
        try:
            fields = orjson.loads(header)
        except orjson.JSONDecodeError:
            fail(event_id, "stored header is not valid JSON")
            fields = {}
        else:
            if not isinstance(fields, dict):
                fail(event_id, "stored header is not a JSON object")
                fields = {}
            elif chain.canonical(fields) != header.encode():
                fail(event_id, "stored header is not in canonical form")
        if fields:
            mismatched = _columns_against_header(
                fields, run, event_id, event_type, time_text, time, identity, refs
            )
            if mismatched:
                fail(event_id, f"header disagrees with the stored {', '.join(mismatched)}")
            try:
                digest = chain.attributes_digest(salt, attributes.encode())
            except ValueError:
                digest = None
                fail(event_id, "stored salt is not 16 bytes of hex")
            if digest is not None and fields.get("attributes_digest") != digest:
                fail(event_id, "attributes do not match their digest (changed after ingest)")
        if in_prefix:
            previous = chain.link(previous, header.encode())
            if link != previous:
                fail(event_id, "chain hash does not match (this event or one before it changed)")
            expected_id += 1
        elif link and not broken_prefix:
            # (Once an event is missing, every later hash is moot: one problem is enough.)
            fail(event_id, "has a chain hash although it lies beyond a gap")
    if expected_id - 1 != run.contiguous_through:
        fail(None, f"contiguous_through is {run.contiguous_through} but the chain reaches "
                   f"{expected_id - 1}")
    if run.contiguous_through and run.head_hash != previous:
        fail(None, "head hash does not match the chain")
    if count != run.event_count:
        fail(None, f"event_count is {run.event_count} but {count} events are stored")
    return problems
