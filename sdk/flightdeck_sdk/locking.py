"""An exclusive lock on a file, held by an open file: released when the process dies, however
it dies (SIGKILL included), so a crashed agent never leaves a run locked."""

from __future__ import annotations

import os
import time

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


class FileLock:
    def __init__(self, path: os.PathLike | str):
        self.path = os.fspath(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float = 0.0) -> bool:
        """Take the lock, waiting up to `timeout` seconds; False if another holder kept it.
        Also False when the file was removed meanwhile (its run directory was cleaned up)."""
        deadline = time.monotonic() + timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            if self._try(fd):
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    self._fd = fd
                    return True
                # Locked a file that a clean-up unlinked: worthless, try the path again.
                self._unlock(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def release(self) -> None:
        if self._fd is not None:
            self._unlock(self._fd)
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def _try(fd: int) -> bool:
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    @staticmethod
    def _unlock(fd: int) -> None:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
