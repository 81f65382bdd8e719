"""The sender: one background thread per client that delivers spooled events and command
acknowledgements to Flightdeck.

It sends each run's journal from its delivery mark in batches, moves the mark after each
answer, and keeps trying with exponential backoff while Flightdeck is unreachable. Per-event
refusals (`conflict`, `invalid`) are never retried: they go to the dead-letter file and the
log. It also sends what dead processes left in the same spool (orphans), and removes the
folders of closed runs once everything is delivered.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from flightdeck_sdk.spool import RunFolder, Spool
from flightdeck_sdk.transport import Refused, Transport, Unavailable

log = logging.getLogger("flightdeck_sdk")

MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024  # under ingest's 5 MiB body limit
ORPHAN_SCAN_SECONDS = 15.0
LINGER_SECONDS = 0.02  # gather the events of a burst into one batch


class Outbox:
    def __init__(self, spool: Spool, transport: Transport, *,
                 on_runs: Callable[[list[dict]], None],
                 open_here: Callable[[RunFolder], bool], max_backoff: float = 30.0):
        self.spool = spool
        self.transport = transport
        self.on_runs = on_runs
        self.open_here = open_here
        self.max_backoff = max_backoff
        self._own: dict[str, RunFolder] = {}  # folders this process writes or wrote
        self._orphans: dict[str, RunFolder] = {}
        self._acks: list[tuple[str, str, str]] = []
        self._condition = threading.Condition()
        self._wake = True  # a first pass at once: orphans found below are sent now
        self._stopping = False
        self._failures = 0
        self._last_scan = 0.0
        self._batch_limit: dict[str, int] = {}
        self._scan_orphans()  # before any flush() can ask what is pending
        self._thread = threading.Thread(target=self._loop, name="flightdeck-sender",
                                        daemon=True)
        self._thread.start()

    # --- called from other threads --------------------------------------------------------

    def add(self, folder: RunFolder) -> None:
        with self._condition:
            self._own[folder.directory.name] = folder
            self._orphans.pop(folder.directory.name, None)

    def wake(self) -> None:
        with self._condition:
            self._wake = True
            self._condition.notify_all()

    def ack(self, command_id: str, status: str, detail: str) -> None:
        with self._condition:
            self._acks.append((command_id, status, detail))
            self._wake = True
            self._condition.notify_all()

    def pending(self) -> bool:
        with self._condition:
            folders = list(self._own.values()) + list(self._orphans.values())
            acks = bool(self._acks)
        return acks or any(folder.pending_bytes() for folder in folders)

    def flush(self, timeout: float) -> bool:
        """Wait until everything spooled so far is delivered; False after `timeout`."""
        deadline = time.monotonic() + timeout
        self.wake()
        with self._condition:
            while True:
                self._condition.release()
                try:
                    done = not self.pending()
                finally:
                    self._condition.acquire()
                if done:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake = True
                self._condition.notify_all()
                self._condition.wait(min(remaining, 0.1))

    def stop(self, timeout: float = 5.0) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout)

    # --- the thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._condition:
                if self._stopping:
                    return
                if not self._wake:
                    self._condition.wait(self._idle_wait())
                self._wake = False
            time.sleep(LINGER_SECONDS)
            try:
                progressed = self._send_everything()
            except Unavailable as exc:
                self._failures += 1
                delay = self._backoff()
                log.warning("Flightdeck unreachable (%s); events stay in the spool, next try "
                            "in %.1f s", exc, delay)
                self._sleep(delay)
                continue
            except Exception:  # never let the sender die: the spool must keep draining
                log.exception("flightdeck sender: unexpected error")
                self._sleep(self._backoff())
                continue
            self._failures = 0
            with self._condition:
                self._condition.notify_all()  # flush() waiters
                if progressed:
                    self._wake = True

    def _idle_wait(self) -> float:
        return max(0.5, ORPHAN_SCAN_SECONDS - (time.monotonic() - self._last_scan))

    def _backoff(self) -> float:
        base = min(self.max_backoff, 0.5 * 2 ** min(self._failures, 10))
        return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security

    def _sleep(self, seconds: float) -> None:
        """Wait out a backoff, unless stopping (a flush's wake does not cut it short, or a
        client flushing in a loop would hammer a server that is down)."""
        deadline = time.monotonic() + seconds
        with self._condition:
            while not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._condition.wait(remaining)

    def _send_everything(self) -> bool:
        """One pass: acknowledgements, then a batch from each run with something unsent.
        True if anything was sent (another pass may have more)."""
        progressed = self._send_acks()
        if time.monotonic() - self._last_scan >= ORPHAN_SCAN_SECONDS:
            self._scan_orphans()
        with self._condition:
            folders = list(self._own.values()) + list(self._orphans.values())
        for folder in folders:
            if folder.pending_bytes():
                self._send_batch(folder)
                progressed = True
            elif (not self.open_here(folder) and not self._is_live(folder)
                  and self.spool.remove_if_done(folder)):
                with self._condition:
                    self._own.pop(folder.directory.name, None)
                    self._orphans.pop(folder.directory.name, None)
            elif folder.directory.name in self._orphans and not folder.closed:
                # An open run of a dead process, fully sent: nothing more to do until a
                # process resumes it.
                with self._condition:
                    self._orphans.pop(folder.directory.name, None)
        return progressed

    def _is_live(self, folder: RunFolder) -> bool:
        lock = folder.lock
        if lock.acquire(timeout=0):
            lock.release()
            return False
        return True

    def _scan_orphans(self) -> None:
        self._last_scan = time.monotonic()
        with self._condition:
            known = set(self._own) | set(self._orphans)
        for folder in self.spool.folders():
            name = folder.directory.name
            if name in known or (not folder.pending_bytes() and not folder.closed):
                continue
            if self._is_live(folder):
                continue  # another live process sends it
            log.info("sending what a previous process left for %s/%s", folder.workflow_id,
                     folder.run_id)
            with self._condition:
                self._orphans[name] = folder

    def _send_acks(self) -> bool:
        with self._condition:
            acks, self._acks = self._acks, []
        for index, (command_id, status, detail) in enumerate(acks):
            try:
                self.transport.ack(command_id, status, detail)
            except Unavailable:
                with self._condition:
                    self._acks[:0] = acks[index:]
                raise
            except Refused as exc:
                # 404 (not this agent's), 409 (already finished otherwise): nothing to retry.
                log.warning("acknowledging command %s as %s: %s", command_id, status, exc)
        return bool(acks)

    def _send_batch(self, folder: RunFolder) -> None:
        journal = folder.journal
        start = journal.sent_offset()
        limit = self._batch_limit.get(folder.directory.name, MAX_BATCH_EVENTS)
        events, end = journal.read(start, limit=limit, max_bytes=MAX_BATCH_BYTES)
        if not events:
            if end > start:
                journal.mark_sent(end)  # only damaged lines there
            return
        try:
            status, body = self.transport.ingest(events)
        except Refused as exc:
            self._refused(folder, events, end, exc)
            return
        if status == 207:
            for result in body.get("results", []):
                if result.get("status") in ("conflict", "invalid"):
                    index = result.get("index")
                    if isinstance(index, int) and 0 <= index < len(events):
                        self.spool.dead_letter(events[index], result["status"],
                                               str(result.get("error") or result["status"]))
        journal.mark_sent(end)
        self._batch_limit.pop(folder.directory.name, None)
        if body.get("runs"):
            self.on_runs(body["runs"])

    def _refused(self, folder: RunFolder, events: list[dict], end: int, exc: Refused) -> None:
        name = folder.directory.name
        if exc.status == 401 or (exc.status == 403 and not _refuses_the_run(exc)):
            # A bad or revoked token, or one that may not ingest (a user's): keep everything,
            # it is not the events' fault.
            log.error("Flightdeck refused the agent token (%s); events stay in the spool",
                      exc.detail)
            raise Unavailable(str(exc))
        if exc.status in (400, 413) and len(events) > 1:
            # Find the event that breaks the batch: halve until it stands alone.
            self._batch_limit[name] = max(1, len(events) // 2)
            return
        for event in events:
            self.spool.dead_letter(event, "refused", f"HTTP {exc.status}: {exc.detail}")
        folder.journal.mark_sent(end)
        self._batch_limit.pop(name, None)


def _refuses_the_run(exc: Refused) -> bool:
    """A 403 about these events (their run belongs to another agent, so resending them can
    never succeed), as opposed to one about the token."""
    return "belongs to another agent" in exc.detail
