"""Sealing an import's events (salt, header, secret scan: `history.sealing`) in helper
processes, a chunk ahead of the chunk being stored.

Storing a chunk is mostly waiting for PostgreSQL, and sealing is most of the work per event
left after the file is checked: so while this process stores one chunk, forked helpers seal
the next ones. They inherit the prepared events through the fork and send back only the seals
(bytes and strings, cheap to send). This process seals the first chunk itself. Events stored
already (importing a file again) are not sealed: ingest finds them duplicates. A small import,
or one where helpers are not available (`preparation.process_count`), is sealed by ingest as it
stores, as any batch is; the stored bytes are the same either way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from itertools import islice

from history.chain import new_salts
from history.sealing import Seal, seal
from history.wire import ParsedEvent
from temporal.preparation import PreparedRun, forked_pool, process_count

# (index of the run, first event index, end): one chunk of one run's events.
Span = tuple[int, int, int]


def sealed_chunks(runs: list[PreparedRun], size: int, stored: dict[tuple[str, str], set[int]],
                  processes: int | None = None
                  ) -> Iterator[tuple[PreparedRun, list[ParsedEvent]]]:
    """Each run's events in chunks of `size`, oldest first, sealed unless their id is in
    `stored` (by run key). Close the iterator (contextlib.closing) to stop early: helpers
    still sealing are then not waited for."""
    spans = [(number, start, min(start + size, len(run.events)))
             for number, run in enumerate(runs) for start in range(0, len(run.events), size)]
    helpers = process_count(sum(len(run.events) for run in runs), processes) - 1
    if helpers < 1 or len(spans) < 2:
        for span in spans:
            yield _chunk(runs, span)
        return
    with forked_pool(helpers, _receive, (runs, stored)) as pool:
        try:
            upcoming = iter(spans[1:])
            pending = deque((span, _submit(pool, span)) for span in islice(upcoming, helpers + 1))
            _seal(runs, stored, spans[0])
            yield _chunk(runs, spans[0])
            while pending:
                span, pieces = pending.popleft()
                _collect(runs, stored, pieces)
                following = next(upcoming, None)
                if following is not None:
                    pending.append((following, _submit(pool, following)))
                yield _chunk(runs, span)
        finally:
            pool.shutdown(cancel_futures=True)


PIECES = 5  # a chunk is sealed in this many pieces, so that this process can take some over


def _submit(pool, span: Span) -> list[tuple[Span, Future]]:
    number, start, stop = span
    step = -(-(stop - start) // PIECES)
    return [((number, first, min(first + step, stop)),
             pool.submit(_seal_elsewhere, (number, first, min(first + step, stop))))
            for first in range(start, stop, step)]


def _collect(runs: list[PreparedRun], stored: dict, pieces: list[tuple[Span, Future]]) -> None:
    """Wait for a chunk's seals. Pieces no helper has started yet (helpers are behind, or
    another program holds a core) are sealed here instead, from the last one back."""
    waiting = []
    for piece, future in reversed(pieces):
        if future.cancel():
            _seal(runs, stored, piece)
        else:
            waiting.append((piece, future))
    for (number, start, _), future in waiting:
        for position, packed in future.result():
            runs[number].events[start + position].sealed = Seal(*packed)


def _chunk(runs: list[PreparedRun], span: Span) -> tuple[PreparedRun, list[ParsedEvent]]:
    number, start, stop = span
    return runs[number], runs[number].events[start:stop]


def _seal(runs: list[PreparedRun], stored: dict, span: Span) -> list[tuple[int, Seal]]:
    """Seal the events of `span` not stored yet; (position in the span, seal) of each."""
    run, events = _chunk(runs, span)
    skip = stored.get((run.workflow_id, run.run_id), ())
    fresh = [(position, event) for position, event in enumerate(events)
             if event.event_id not in skip]
    sealed = []
    for (position, event), salt in zip(fresh, new_salts(len(fresh)), strict=True):
        event.sealed = seal(event, salt)
        sealed.append((position, event.sealed))
    return sealed


_inherited: tuple[list[PreparedRun], dict] = ([], {})


def _receive(inherited: tuple[list[PreparedRun], dict]) -> None:
    """In a helper process: keep the prepared runs its parent held when it forked."""
    global _inherited  # set once per helper process, read by its tasks
    _inherited = inherited


def _seal_elsewhere(span: Span) -> list[tuple[int, tuple]]:
    """In a helper process: seal a chunk and pack the seals to be sent back."""
    runs, stored = _inherited
    return [(position, (s.salt, s.header, s.findings, s.masked, s.masked_bytes))
            for position, s in _seal(runs, stored, span)]
