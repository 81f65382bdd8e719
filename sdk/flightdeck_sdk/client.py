"""The client: configuration, the spool, the sender and the command channel of one agent
process, and the runs it opens."""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

from flightdeck_sdk.commands import CommandPoller
from flightdeck_sdk.errors import FlightdeckError
from flightdeck_sdk.outbox import Outbox
from flightdeck_sdk.run import Run
from flightdeck_sdk.spool import Spool
from flightdeck_sdk.transport import Transport

DEFAULT_URL = "http://127.0.0.1:8000"
REMEMBERED_CLOSED_RUNS = 1000


def default_spool_dir(token: str) -> Path:
    """~/.flightdeck/spool/<token prefix>: one spool per agent token."""
    parts = token.split("_")
    prefix = parts[1] if len(parts) == 3 and parts[1].isalnum() else (
        hashlib.sha256(token.encode()).hexdigest()[:8])
    return Path.home() / ".flightdeck" / "spool" / prefix


class Client:
    """One per agent process. `url`, `token` and `spool_dir` default to FLIGHTDECK_URL
    (else http://127.0.0.1:8000), FLIGHTDECK_TOKEN and FLIGHTDECK_SPOOL_DIR (else
    ~/.flightdeck/spool/<token prefix>)."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 spool_dir: os.PathLike | str | None = None, *, identity: str | None = None,
                 poll_commands: bool = True, command_wait: float = 20.0,
                 http_timeout: float = 30.0, max_backoff: float = 30.0):
        url = url or os.environ.get("FLIGHTDECK_URL") or DEFAULT_URL
        token = token or os.environ.get("FLIGHTDECK_TOKEN") or ""
        if not token:
            raise FlightdeckError("no agent token: pass token= or set FLIGHTDECK_TOKEN")
        spool_dir = spool_dir or os.environ.get("FLIGHTDECK_SPOOL_DIR") or default_spool_dir(
            token)
        self.url = url
        self.identity = identity
        self._spool = Spool(spool_dir)
        self._transport = Transport(url, token, timeout=http_timeout)
        self._runs: dict[tuple[str, str], Run] = {}
        self._ended: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._runs_lock = threading.Lock()
        self._closed = False
        self._outbox = Outbox(
            self._spool, self._transport, on_runs=self._learn_runs,
            open_here=lambda folder: self._live_run(folder.workflow_id, folder.run_id)
            is not None, max_backoff=max_backoff,
        )
        self._poller = None
        if poll_commands:
            self._poller = CommandPoller(
                Transport(url, token, timeout=http_timeout), dispatch=self._dispatch,
                has_runs=self._has_runs, wait=command_wait, max_backoff=max_backoff,
            )
        atexit.register(self._at_exit)

    @property
    def spool_dir(self) -> Path:
        return self._spool.directory

    def __repr__(self) -> str:
        return f"<flightdeck_sdk.Client {self.url} spool={self._spool.directory}>"

    # --- runs ------------------------------------------------------------------------------

    def run(self, workflow_type: str, workflow_id: str | None = None,
            run_id: str | None = None, *, input=None, labels: dict | None = None,
            identity: str | None = None, new: bool = False) -> Run:
        """A run to use as `with client.run(...) as run:`. Without `run_id` it is a new run;
        with the `workflow_id` and `run_id` of an earlier one it resumes that run (its history
        comes from this spool, else from Flightdeck). `new=True` says a given `run_id` has no
        history anywhere, so the run can start while Flightdeck is unreachable."""
        if self._closed:
            raise FlightdeckError("this client is closed")
        if not isinstance(workflow_type, str) or not 0 < len(workflow_type) <= 255:
            raise ValueError("workflow_type must be a string of 1-255 characters")
        fresh = run_id is None or new
        workflow_id = workflow_id or f"{workflow_type}-{uuid.uuid4().hex[:12]}"
        run_id = run_id or uuid.uuid4().hex
        for name, value in (("workflow_id", workflow_id), ("run_id", run_id)):
            if not isinstance(value, str) or not 0 < len(value) <= 255 or "\x00" in value:
                raise ValueError(f"{name} must be a string of 1-255 characters without NUL")
        return Run(self, workflow_type, workflow_id, run_id, fresh=fresh, input=input,
                   labels=labels, identity=identity)

    def arun(self, workflow_type: str, workflow_id: str | None = None,
             run_id: str | None = None, *, input=None, labels: dict | None = None,
             identity: str | None = None, new: bool = False) -> Run:
        """The same run, to use as `async with client.arun(...) as run:`."""
        return self.run(workflow_type, workflow_id, run_id, input=input, labels=labels,
                        identity=identity, new=new)

    def _register(self, run: Run) -> None:
        key = (run.workflow_id, run.run_id)
        with self._runs_lock:
            self._runs[key] = run
            self._ended.pop(key, None)
        self._outbox.add(run._folder)
        self._outbox.wake()
        if self._poller is not None:
            self._poller.notify()

    def _unregister(self, run: Run) -> None:
        key = (run.workflow_id, run.run_id)
        with self._runs_lock:
            if self._runs.get(key) is run:
                del self._runs[key]
            if run._closed:
                self._ended[key] = run._closed
                while len(self._ended) > REMEMBERED_CLOSED_RUNS:
                    self._ended.popitem(last=False)

    def _live_run(self, workflow_id: str, run_id: str) -> Run | None:
        with self._runs_lock:
            return self._runs.get((workflow_id, run_id))

    def _has_runs(self) -> bool:
        with self._runs_lock:
            return bool(self._runs)

    def _dispatch(self, command: dict) -> None:
        target = command.get("run") or {}
        key = (target.get("workflow_id"), target.get("run_id"))
        with self._runs_lock:
            run = self._runs.get(key)
            ended = self._ended.get(key)
        if run is not None:
            run._receive(command)
        elif ended is not None:
            self._outbox.ack(command["id"], "rejected", f"the run is already {ended}")
        # Otherwise the run is not live here: left unacknowledged, it comes back later.

    def _learn_runs(self, runs: list[dict]) -> None:
        with self._runs_lock:
            for found in runs:
                run = self._runs.get((found.get("workflow_id"), found.get("run_id")))
                if run is not None and found.get("uuid"):
                    run._learn_uuid(found["uuid"])

    # --- delivery --------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event spooled so far is delivered (or dead-lettered) and every
        acknowledgement sent; False if `timeout` seconds passed first (nothing is lost: the
        spool keeps sending, now or in the next process)."""
        return self._outbox.flush(timeout)

    def dead_letters(self) -> list[dict]:
        """Events Flightdeck refused for good (conflict, invalid), as kept in the spool's
        dead-letter file: each with `status`, `error` and the `event`."""
        return self._spool.dead_letters()

    def close(self, timeout: float = 5.0) -> None:
        """Flush for up to `timeout` seconds, then stop the background threads."""
        if self._closed:
            return
        self._closed = True
        self._outbox.flush(timeout)
        if self._poller is not None:
            self._poller.stop()
        self._outbox.stop()
        atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        self.close(timeout=2.0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
