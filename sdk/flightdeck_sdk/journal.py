"""One run's append-only journal on disk: every event the run recorded, in the order written,
and how far the sender has delivered it.

A line is `<crc32 hex> <canonical JSON of the event>\\n`, written with one `write` on a file
opened for appending and fsynced before the SDK call that recorded it returns. A process
killed at any moment leaves at worst a torn last line (no newline, or a checksum that does not
match): readers skip it, and the next writer cuts it off before appending, so it never glues
itself to a good line. The torn line's SDK call had not returned, so nothing promised is lost.

`sent` is another append-only file of byte offsets: everything before the largest one was
accepted by Flightdeck (stored, duplicate, or dead-lettered). Losing its last lines only means
sending some events again, which ingest answers as duplicates.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zlib
from pathlib import Path

from flightdeck_sdk.encoding import canonical_text
from flightdeck_sdk.errors import FlightdeckError

log = logging.getLogger("flightdeck_sdk")

SENT_FILE_COMPACT_BYTES = 64 * 1024


def encode_line(event: dict) -> bytes:
    body = canonical_text(event).encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_line(line: bytes) -> dict | None:
    """The event of one complete line (without its newline), or None if it is damaged."""
    crc, _, body = line.partition(b" ")
    try:
        if len(crc) != 8 or int(crc, 16) != zlib.crc32(body):
            return None
        event = json.loads(body)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def fsync_directory(path: Path) -> None:
    """Make a new or renamed entry of `path` survive a power cut, where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open a directory; NTFS journals the entry itself
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Journal:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / "journal.jsonl"
        self.sent_path = self.directory / "sent"
        self._fd: int | None = None

    # --- writing (only by the holder of the run's lock) -------------------------------------

    def open_for_append(self) -> None:
        """Open for appending, first cutting off a torn last line a killed writer left."""
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        size = os.fstat(fd).st_size
        if size:
            keep = self._complete_prefix(fd, size)
            if keep != size:
                log.warning("spool %s: cutting off a torn last line (%d bytes)", self.path,
                            size - keep)
                os.ftruncate(fd, keep)
                os.fsync(fd)
        if created:
            fsync_directory(self.directory)
        self._fd = fd

    @staticmethod
    def _complete_prefix(fd: int, size: int) -> int:
        """The length up to and including the last newline."""
        position = size
        while position > 0:
            start = max(0, position - 65536)
            os.lseek(fd, start, os.SEEK_SET)  # (no os.pread: it is missing on Windows)
            chunk = os.read(fd, position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            position = start
        return 0

    def append(self, events: list[dict]) -> None:
        """Write the events as one append and fsync: when this returns they are on disk."""
        if self._fd is None:
            raise FlightdeckError(f"journal {self.path} is not open for writing")
        data = b"".join(encode_line(event) for event in events)
        before = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError as exc:
            # Take back a partial write so the file stays a sequence of whole lines.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            raise FlightdeckError(f"could not write the spool {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- reading (by anyone) ---------------------------------------------------------------

    def read(self, start: int = 0, limit: int | None = None,
             max_bytes: int | None = None) -> tuple[list[dict], int]:
        """Events of the complete lines from byte `start`, at most `limit` of them and about
        `max_bytes` worth; and the offset just after the last line read. Damaged lines are
        skipped (and counted in the offset)."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return [], start
        events: list[dict] = []
        offset = start
        read_bytes = 0
        with handle:
            handle.seek(start)
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # torn, or being written right now
                if limit is not None and len(events) >= limit:
                    break
                if max_bytes is not None and events and read_bytes + len(line) > max_bytes:
                    break
                offset += len(line)
                read_bytes += len(line)
                event = decode_line(line[:-1])
                if event is None:
                    log.error("spool %s: skipping a damaged line at byte %d", self.path,
                              offset - len(line))
                    continue
                events.append(event)
        return events, offset

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def sent_offset(self) -> int:
        try:
            text = self.sent_path.read_bytes()
        except FileNotFoundError:
            return 0
        best = 0
        for line in text.split(b"\n"):
            if line.strip().isdigit():
                best = max(best, int(line))
        return best

    def mark_sent(self, offset: int) -> None:
        with open(self.sent_path, "ab") as handle:
            handle.write(b"%d\n" % offset)
            grown = handle.tell() > SENT_FILE_COMPACT_BYTES
        if grown:
            # Rewritten as one line. Two senders racing here may lose a mark: events are then
            # sent again, which ingest answers as duplicates.
            best = self.sent_offset()
            temporary = self.sent_path.with_name(f"sent.{os.getpid()}.tmp")
            temporary.write_bytes(b"%d\n" % best)
            os.replace(temporary, self.sent_path)
