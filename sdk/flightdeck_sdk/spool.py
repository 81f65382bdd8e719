"""The durable spool: a folder per run holding its journal, delivery mark and large values.

    <spool>/runs/<key>/run.json        {"workflow_id", "run_id"} (for people and the sender)
    <spool>/runs/<key>/lock            held by the process that runs it (flock)
    <spool>/runs/<key>/journal.jsonl   every event of the run (journal.py)
    <spool>/runs/<key>/sent            delivery mark
    <spool>/runs/<key>/closed          written after the run's closing event
    <spool>/runs/<key>/blobs/<sha256>  values too large for an event (large_values.py)
    <spool>/dead-letter.jsonl          events Flightdeck refused for good (conflict, invalid)

A run folder belongs to the process holding its lock; any process may read it and send what
it holds (sending twice is harmless). A run whose holder died is an *orphan*: the next client
on the same spool sends what it left, and a new process may take it over to resume the run.
Once a closed run is fully delivered, its folder is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from flightdeck_sdk.encoding import canonical_text, now
from flightdeck_sdk.errors import FlightdeckError
from flightdeck_sdk.journal import Journal, fsync_directory
from flightdeck_sdk.large_values import BlobStore
from flightdeck_sdk.locking import FileLock

log = logging.getLogger("flightdeck_sdk")


def run_key(workflow_id: str, run_id: str) -> str:
    return hashlib.sha256(json.dumps([workflow_id, run_id]).encode()).hexdigest()[:32]


@dataclass
class RunFolder:
    """The files of one run in the spool."""

    directory: Path
    workflow_id: str
    run_id: str

    @property
    def journal(self) -> Journal:
        return Journal(self.directory)

    @property
    def blobs(self) -> BlobStore:
        return BlobStore(self.directory / "blobs")

    @property
    def lock(self) -> FileLock:
        return FileLock(self.directory / "lock")

    @property
    def closed(self) -> bool:
        return (self.directory / "closed").exists()

    def mark_closed(self) -> None:
        with open(self.directory / "closed", "wb") as handle:
            handle.flush()
            os.fsync(handle.fileno())

    def pending_bytes(self, journal: Journal | None = None) -> int:
        journal = journal or self.journal
        return max(0, journal.size() - journal.sent_offset())


class Spool:
    def __init__(self, directory: os.PathLike | str):
        self.directory = Path(directory).expanduser()
        self.runs_directory = self.directory / "runs"
        try:
            # Owner only, the spool itself too: the dead-letter file beside `runs` holds whole
            # events, payloads and all (mkdir's mode applies to the last folder only).
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.runs_directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise FlightdeckError(
                f"cannot create the spool folder {self.directory}: {exc}"
            ) from exc
        self.dead_letter_path = self.directory / "dead-letter.jsonl"
        self._dead_letter_lock = threading.Lock()

    def folder(self, workflow_id: str, run_id: str) -> RunFolder:
        return RunFolder(self.runs_directory / run_key(workflow_id, run_id), workflow_id, run_id)

    def claim(self, workflow_id: str, run_id: str, timeout: float = 2.0) -> tuple[RunFolder,
                                                                                  FileLock]:
        """The run's folder, created if new, with its lock held by the caller. Raises
        FlightdeckError if another live process holds the run. (Senders take the lock for
        moments only, to check a folder; `timeout` waits those out.)"""
        folder = self.folder(workflow_id, run_id)
        lock = folder.lock
        for _ in range(100):
            new = not folder.directory.exists()
            folder.directory.mkdir(parents=True, exist_ok=True)
            if new:
                fsync_directory(self.runs_directory)
            if lock.acquire(timeout=timeout):
                break
            if (folder.directory / "lock").exists():
                raise FlightdeckError(
                    f"run {workflow_id}/{run_id} is held by another live process using the "
                    f"spool {self.directory}"
                )
        else:  # pragma: no cover - a clean-up racing us a hundred times
            raise FlightdeckError(f"could not take the spool folder of {workflow_id}/{run_id}")
        meta = folder.directory / "run.json"
        if not meta.exists():
            meta.write_text(json.dumps({"workflow_id": workflow_id, "run_id": run_id}))
        return folder, lock

    def folders(self) -> list[RunFolder]:
        """Every run folder in the spool (live ones of any process included)."""
        found = []
        try:
            entries = list(self.runs_directory.iterdir())
        except FileNotFoundError:
            return []
        for directory in entries:
            try:
                meta = json.loads((directory / "run.json").read_text())
                found.append(RunFolder(directory, meta["workflow_id"], meta["run_id"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being created, or being removed
        return found

    def remove_if_done(self, folder: RunFolder) -> bool:
        """Remove a closed, fully delivered run's folder, if no process holds it."""
        if not folder.closed or folder.pending_bytes():
            return False
        lock = folder.lock
        if not lock.acquire(timeout=0):
            return False
        try:
            if not folder.closed or folder.pending_bytes():
                return False
            # The lock file goes first, so a process taking the run now sees it vanish.
            os.unlink(folder.directory / "lock")
            shutil.rmtree(folder.directory, ignore_errors=True)
            return True
        finally:
            lock.release()

    def remove_empty(self, folder: RunFolder) -> None:
        """Remove the folder of a run that recorded nothing; the caller holds its lock."""
        if folder.journal.size() == 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder.directory / "lock")
            shutil.rmtree(folder.directory, ignore_errors=True)

    def dead_letter(self, event: dict, status: str, error: str) -> None:
        """Keep an event Flightdeck refused for good, and say so in the log."""
        record = {"time": now(), "status": status, "error": error,
                  "workflow_id": event.get("workflow_id"), "run_id": event.get("run_id"),
                  "event_id": event.get("event_id"), "event": event}
        log.error("Flightdeck refused event %s of %s/%s (%s: %s); kept in %s",
                  event.get("event_id"), event.get("workflow_id"), event.get("run_id"),
                  status, error, self.dead_letter_path)
        descriptor = os.open(self.dead_letter_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                             0o600)
        with self._dead_letter_lock, os.fdopen(descriptor, "ab") as handle:
            handle.write(canonical_text(record).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def dead_letters(self) -> list[dict]:
        try:
            lines = self.dead_letter_path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records
