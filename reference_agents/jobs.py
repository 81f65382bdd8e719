"""What a reference agent is given to work: a `Job` (one workflow to run) and a `Session` (where
to send its history, with which token, and the agent's working folders).

Every agent module offers `job(number, session) -> Job` (the n-th piece of work of its stream;
the same number gives the same content) and `execute(session, job) -> dict` (does it, to the
end, including any crash and restart that agent is there to show).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from flightdeck_sdk import Client

from reference_agents.model import FakeModel


@dataclass
class Job:
    workflow_id: str
    input: dict
    run_id: str | None = None
    labels: dict = field(default_factory=dict)
    number: int = 0  # its place in the agent's stream: `job(number, session)` makes it again
    # True when `run_id` was chosen for a run that does not exist yet (the SDK then starts it
    # without asking Flightdeck for its history); False to resume the run `run_id` names.
    new: bool = False


@dataclass
class Session:
    """One agent's connection to Flightdeck. `url` and `token` left None fall back to the
    SDK's environment variables (FLIGHTDECK_URL, FLIGHTDECK_TOKEN)."""

    url: str | None
    token: str | None
    work_dir: Path
    approval_timeout: int = 900
    model: FakeModel = field(default_factory=FakeModel)
    # Tells this process's workflow ids apart from an earlier start's: a new run of a workflow
    # id that completed before would rightly be reported as redone work.
    batch: str = field(default_factory=lambda: secrets.token_hex(3))
    # For crash_resume's first attempt: die after this many steps, as a killed process would.
    crash_after: int | None = None
    # Off only where nothing can be commanded anyway (tests on a server without the long-poll).
    poll_commands: bool = True
    _client: Client | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def spool_dir(self) -> Path:
        return self.work_dir / "spool"

    @property
    def client(self) -> Client:
        """The agent's one client (one command channel per agent token), made on first use."""
        with self._lock:
            if self._client is None:
                self.work_dir.mkdir(parents=True, exist_ok=True)
                self._client = Client(url=self.url, token=self.token,
                                      spool_dir=str(self.spool_dir),
                                      poll_commands=self.poll_commands)
            return self._client

    def close(self, timeout: float = 10) -> None:
        """Send what is spooled (up to `timeout` seconds) and stop the client's threads."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.flush(timeout=timeout)
            finally:
                client.close()
