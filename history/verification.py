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


@dataclass
class Problem:
    run: Run
    event_id: int | None
    message: str

    def __str__(self) -> str:
        where = f"event {self.event_id}" if self.event_id is not None else "run"
        run = self.run
        return f"run {run.uuid} ({run.workflow_id} / {run.run_id}) {where}: {self.message}"


def verify_run(run: Run) -> list[Problem]:
    problems: list[Problem] = []

    def fail(event_id: int | None, message: str) -> None:
        problems.append(Problem(run, event_id, message))

    previous = chain.GENESIS
    expected_id = 1
    count = 0
    events = (
        run.events.order_by("event_id")
        .values_list("event_id", "type", "time_text", "attributes", "salt", "header", "chain_hash")
        .iterator(chunk_size=2000)
    )
    for event_id, event_type, time_text, attributes, salt, header, chain_hash in events:
        count += 1
        in_prefix = event_id <= run.contiguous_through
        if in_prefix and event_id != expected_id:
            fail(expected_id, f"missing from the chain (next stored event is {event_id})")
            in_prefix = False
        try:
            fields = orjson.loads(header)
        except orjson.JSONDecodeError:
            fail(event_id, "stored header is not valid JSON")
            continue
        if chain.canonical(fields) != header.encode():
            fail(event_id, "stored header is not in canonical form")
        mismatched = [
            name
            for name, value in (
                ("event_id", event_id),
                ("type", event_type),
                ("time", time_text),
                ("workflow_id", run.workflow_id),
                ("run_id", run.run_id),
            )
            if fields.get(name) != value
        ]
        if mismatched:
            fail(event_id, f"header disagrees with the stored {', '.join(mismatched)}")
        digest = chain.attributes_digest(salt, attributes.encode())
        if fields.get("attributes_digest") != digest:
            fail(event_id, "attributes do not match their digest (changed after ingest)")
        if in_prefix:
            previous = chain.link(previous, header.encode())
            if chain_hash != previous:
                fail(event_id, "chain hash does not match (this event or one before it changed)")
            expected_id += 1
        elif chain_hash:
            fail(event_id, "has a chain hash although it lies beyond a gap")
    if expected_id - 1 != run.contiguous_through:
        fail(None, f"contiguous_through is {run.contiguous_through} but the chain reaches "
                   f"{expected_id - 1}")
    if run.contiguous_through and run.head_hash != previous:
        fail(None, "head hash does not match the chain")
    if count != run.event_count:
        fail(None, f"event_count is {run.event_count} but {count} events are stored")
    return problems
