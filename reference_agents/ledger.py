"""The jobs an agent process has under way, one small JSON file each, so that a restarted demo
resumes them: the run of a job that was waiting for an approval, or half done, when the
process stopped is opened again with its run id, and the SDK replays what it completed.

A file is written before the job starts (with the run id chosen for it) and removed when the
job ends, however it ends; a file left behind means the process died during that job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from reference_agents.jobs import Job

log = logging.getLogger("reference_agents")


class Ledger:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def _path(self, job: Job) -> Path:
        name = hashlib.sha256(job.workflow_id.encode()).hexdigest()[:24]
        return self.directory / f"{name}.json"

    def record(self, job: Job) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self._path(job).with_suffix(".partial")
        partial.write_text(json.dumps(asdict(job)))
        os.replace(partial, self._path(job))  # never a half-written file to resume from

    def done(self, job: Job) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(job).unlink()

    def unfinished(self) -> list[Job]:
        """The jobs recorded and not done, to be resumed (as existing runs: `new` False)."""
        jobs = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                job = Job(**json.loads(path.read_text()))
            except (ValueError, TypeError) as exc:
                log.warning("ignoring unreadable job file %s: %s", path, exc)
                continue
            job.new = False
            jobs.append(job)
        return jobs
