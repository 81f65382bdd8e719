"""Running reference agents: one job, a loop of jobs, or every agent at once for the demo.

In the demo each agent works in its own thread (or `LANES` threads) with its own token and
its own client (one command channel per agent), starting a run, finishing it (or waiting for
its approval), then pausing for its `INTERVAL` before the next one, until the process is told
to stop. Jobs a previous process left unfinished are resumed first (see ledger.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from types import ModuleType

from reference_agents.jobs import Job, Session
from reference_agents.ledger import Ledger

log = logging.getLogger("reference_agents")


def read_tokens(path: Path) -> dict[str, str]:
    """{agent name: token} from the file `manage.py bootstrap_demo` writes."""
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"no tokens file at {path}; run `manage.py bootstrap_demo` first") \
            from None
    return dict(content.get("agents", {}))


def run_job(agent: ModuleType, session: Session, job: Job, *, attempt_only: bool = False) -> dict:
    """Do one job; `attempt_only` runs a single attempt in this process, without the agent's
    own crash-and-restart handling (how crash_resume starts its children)."""
    if attempt_only:
        if not hasattr(agent, "attempt"):
            raise SystemExit(f"{agent.NAME} has no separate attempts")
        return agent.attempt(session, job)
    return agent.execute(session, job)


def loop(agent: ModuleType, session: Session, stop: threading.Event, *, interval: float,
         first_number: int = 0, step: int = 1) -> int:
    """Jobs one after another (numbers first_number, +step, ...) until `stop` is set; returns
    how many finished. A failed job is logged and the loop goes on, as a supervisor would."""
    finished = 0
    number = first_number
    while not stop.is_set():
        job = agent.job(number, session)
        job.run_id, job.new = uuid.uuid4().hex, True  # known before it starts: see Ledger
        finished += work(agent, session, job)
        number += step
        stop.wait(interval)
    return finished


def work(agent: ModuleType, session: Session, job: Job) -> bool:
    """Do one job, kept in the agent's ledger while under way; False if it failed (logged)."""
    ledger = Ledger(session.work_dir / "jobs")
    ledger.record(job)
    began = time.monotonic()
    try:
        result = agent.execute(session, job)
    except Exception:
        log.exception("%s: %s failed", agent.NAME, job.workflow_id)
        ledger.done(job)
        return False
    # Not on KeyboardInterrupt or SystemExit: the SDK leaves the run open then, and the entry
    # is how the next process finds it to resume.
    ledger.done(job)
    log.info("%s: %s done in %.1fs: %s", agent.NAME, job.workflow_id,
             time.monotonic() - began, json.dumps(result, default=str)[:200])
    return True


def resume_unfinished(agent: ModuleType, session: Session) -> list[threading.Thread]:
    """A thread for each job the agent's previous process left unfinished, resuming its run.
    An agent that does not resume (`RESUMES = False`: it restarts from scratch) drops them."""
    ledger = Ledger(session.work_dir / "jobs")
    threads = []
    for job in ledger.unfinished():
        if not getattr(agent, "RESUMES", True):
            ledger.done(job)
            continue
        log.info("%s: resuming %s (run %s)", agent.NAME, job.workflow_id, job.run_id)
        thread = threading.Thread(target=work, args=(agent, session, job), daemon=True,
                                  name=f"{agent.NAME}-resumed")
        thread.start()
        threads.append(thread)
    return threads


def demo(agents: list[ModuleType], sessions: dict[str, Session], stop: threading.Event, *,
         interval_scale: float = 1.0) -> list[threading.Thread]:
    """Start the agents' threads, `LANES` per agent (default one), all of an agent's lanes on
    its one session; each loops until `stop` is set. Lanes let the support agent take new
    tickets while earlier ones wait for a person's approval."""
    threads = []
    for agent in agents:
        threads += resume_unfinished(agent, sessions[agent.NAME])
        lanes = getattr(agent, "LANES", 1)
        for lane in range(lanes):
            thread = threading.Thread(
                target=loop, name=f"{agent.NAME}-{lane + 1}" if lanes > 1 else agent.NAME,
                daemon=True, args=(agent, sessions[agent.NAME], stop),
                kwargs={"interval": agent.INTERVAL * interval_scale, "first_number": lane,
                        "step": lanes},
            )
            thread.start()
            threads.append(thread)
    return threads
