"""The command channel: one thread per client long-polls `GET /api/v1/agent/commands` while
the client has live runs, and hands each command to its run.

The channel serves every run of the agent token, so a command for a run this process does not
hold is left unacknowledged: Flightdeck hands it out again after COMMAND_PULL_REDELIVER_SECONDS
(60 s), to whichever process polls then. Run each agent token's runs in one process, or expect
that delay.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from flightdeck_sdk.transport import Refused, Transport, Unavailable

log = logging.getLogger("flightdeck_sdk")


class CommandPoller:
    def __init__(self, transport: Transport, *, dispatch: Callable[[dict], None],
                 has_runs: Callable[[], bool], wait: float = 20.0, max_backoff: float = 30.0):
        self.transport = transport
        self.dispatch = dispatch
        self.has_runs = has_runs
        self.wait = wait
        self.max_backoff = max_backoff
        self._condition = threading.Condition()
        self._stopping = False
        self._failures = 0
        self._thread = threading.Thread(target=self._loop, name="flightdeck-commands",
                                        daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A run started: start polling if idle."""
        with self._condition:
            self._condition.notify_all()

    def stop(self, timeout: float = 2.0) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self.transport.interrupt()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._stopping and not self.has_runs():
                    self._condition.wait(5)
                if self._stopping:
                    return
            try:
                commands = self.transport.poll_commands(self.wait)
            except (Unavailable, Refused) as exc:
                if self._stopping:
                    return
                self._failures += 1
                level = logging.ERROR if isinstance(exc, Refused) else logging.WARNING
                delay = min(self.max_backoff, 0.5 * 2 ** min(self._failures, 10))
                log.log(level, "command channel: %s; next try in %.1f s", exc, delay)
                with self._condition:
                    self._condition.wait(delay * random.uniform(0.5, 1.0))  # noqa: S311
                continue
            self._failures = 0
            for command in commands:
                try:
                    self.dispatch(command)
                except Exception:  # one bad command must not stop the channel
                    log.exception("command %s: could not be handled", command.get("id"))
