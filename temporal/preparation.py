"""Turning a Temporal history file into events ready to store, every one checked before
anything is written: read and normalise (`history_files`), map (`mapping`) and validate as
ingest would (`history.wire`). Sealing them (salt, header, secret scan) comes later, while they
are stored (`temporal.sealing_ahead`).

All of that depends on each event alone, so a large file is shared out between processes
(`TEMPORAL_IMPORT_PROCESSES`): cut in contiguous pieces, taken from the start by this process
and from the end by forked helpers. The helpers inherit the decoded file rather than receive
it, and send back each event as bytes and strings, cheap to send; the attributes dict of such
an event is decoded again only if someone reads it (`ParsedEvent.attributes`). Pieces are
collected in file order, so a bad file is refused with the same message, naming the same first
bad event, however it was shared out.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from django.conf import settings

from history.wire import InvalidEvent, ParsedEvent, check_run_key, checked_event, parse_mapped_event
from temporal import history_files
from temporal.history_files import TemporalHistory
from temporal.mapping import to_wire

LONG_STRING = 4096  # strings longer than this are left out of an oversized event
# Below this many events a file is prepared here alone: starting a helper process costs more
# than it saves, and small files are the ones imported while a web request waits.
PARALLEL_MIN_EVENTS = 8000
PIECES = 16  # a file shared out is cut in this many pieces, taken by whoever is free


class ImportRefused(Exception):
    """An import that is not carried out: `status` is the HTTP answer it stands for (400 the
    file, 403 permission, 409 a conflict with what is stored), `message` says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def __reduce__(self):
        # Raised in a helper process, it travels back to this one by pickling.
        return (ImportRefused, (self.status, self.message))


@dataclass
class PreparedRun:
    workflow_id: str
    run_id: str
    events: list[ParsedEvent]


# (history index, first event index, end): a contiguous stretch of one history's events.
Segment = tuple[int, int, int]


def prepare(content: bytes, *, workflow_id: str = "", run_id: str = "",
            processes: int | None = None) -> list[PreparedRun]:
    """Read, map and validate every event of the file. `processes` defaults to
    TEMPORAL_IMPORT_PROCESSES. Raises ImportRefused(400)."""
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
    count = process_count(sum(len(history.events) for history in histories), processes)
    if count == 1:
        events = _prepare_piece(histories, _pieces(histories, 1)[0])
    else:
        events = _prepare_in_processes(histories, _pieces(histories, PIECES), count - 1)
    runs = [PreparedRun(history.workflow_id, history.run_id, []) for history in histories]
    for history_index, event in events:
        runs[history_index].events.append(event)
    return runs


def process_count(events: int, wanted: int | None = None) -> int:
    """How many processes should share out the work on `events` events: `wanted` (default
    TEMPORAL_IMPORT_PROCESSES), or 1 when that is not worth it or not safe here."""
    wanted = settings.TEMPORAL_IMPORT_PROCESSES if wanted is None else wanted
    if wanted < 2 or events < PARALLEL_MIN_EVENTS:
        return 1
    # Forking copies only the calling thread: a lock held by another thread (a threaded web
    # server's, a client library's) would stay locked forever in the helper.
    if threading.active_count() > 1 or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return wanted


def _pieces(histories: list[TemporalHistory], count: int) -> list[list[Segment]]:
    """The file's events in `count` contiguous pieces of nearly equal size, in file order."""
    total = sum(len(history.events) for history in histories)
    size = -(-total // count)
    pieces: list[list[Segment]] = [[]]
    room = size
    for history_index, history in enumerate(histories):
        start = 0
        while start < len(history.events):
            if room == 0:
                pieces.append([])
                room = size
            stop = min(len(history.events), start + room)
            pieces[-1].append((history_index, start, stop))
            room -= stop - start
            start = stop
    return pieces


def _prepare_piece(histories: list[TemporalHistory],
                   piece: list[Segment]) -> list[tuple[int, ParsedEvent]]:
    prepared = []
    for history_index, start, stop in piece:
        history = histories[history_index]
        for index in range(start, stop):
            event = _parse_mapped(history.events[index], history.workflow_id, history.run_id,
                                  history.event_ids[index], f"{history.where}[{index}]")
            prepared.append((history_index, event))
    return prepared


def _prepare_in_processes(histories: list[TemporalHistory], pieces: list[list[Segment]],
                          helpers: int) -> list[tuple[int, ParsedEvent]]:
    """Helpers take pieces from the end of the file, this process from the start, until they
    meet: whoever has more of the machine (other programs share it) does more."""
    # The helpers get `histories` as their initializer's argument, inherited through the fork,
    # not sent: the decoded file may be hundreds of megabytes of small objects.
    with forked_pool(helpers, _receive, histories) as pool:
        try:
            elsewhere = {number: pool.submit(_prepare_elsewhere, pieces[number])
                         for number in reversed(range(1, len(pieces)))}
            here = {0: _prepare_piece(histories, pieces[0])}
            for number in range(1, len(pieces)):
                if not elsewhere[number].cancel():  # a helper has it already
                    break
                here[number] = _prepare_piece(histories, pieces[number])
            prepared = []
            # In file order: the first error raised is the file's first.
            for number in range(len(pieces)):
                if number in here:
                    prepared.extend(here[number])
                else:
                    packed = elsewhere[number].result()
                    prepared.extend(_received(histories, event) for event in packed)
        except BaseException:
            pool.shutdown(cancel_futures=True)  # rather than wait for pieces nobody needs
            raise
    return prepared


def forked_pool(helpers: int, receive, inherited) -> ProcessPoolExecutor:
    """A pool of `helpers` forked processes, each calling `receive(inherited)` first; forked,
    they inherit `inherited` rather than receive a pickled copy."""
    return ProcessPoolExecutor(helpers, mp_context=multiprocessing.get_context("fork"),
                               initializer=receive, initargs=(inherited,))


_inherited: list[TemporalHistory] = []


def _receive(histories: list[TemporalHistory]) -> None:
    """In a helper process: keep the file its parent decoded."""
    _inherited[:] = histories


def _prepare_elsewhere(piece: list[Segment]) -> list[tuple]:
    """In a helper process: prepare a piece and pack it to be sent back."""
    return [_packed(history_index, event)
            for history_index, event in _prepare_piece(_inherited, piece)]


def _packed(history_index: int, event: ParsedEvent) -> tuple:
    """An event as plain values, without its attributes dict: the bytes say the same, and
    dicts are slow to send."""
    return (history_index, event.event_id, event.type, event.time_text, event.time,
            event.workflow_type, event.identity, event.refs, event.attributes_bytes)


def _received(histories: list[TemporalHistory], packed: tuple) -> tuple[int, ParsedEvent]:
    (history_index, event_id, event_type, time_text, time, workflow_type, identity, refs,
     attributes_bytes) = packed
    history = histories[history_index]
    return history_index, checked_event(
        0, history.workflow_id, history.run_id, event_id, event_type, time_text, time,
        workflow_type, identity, refs, None, attributes_bytes,
    )


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
