"""An agent that crashes mid-run and resumes: a nightly digest of several feeds.

Each feed is fetched, summarised and stored as a file (a real side effect, made with O_EXCL so
that storing the same summary twice fails loudly). Its first attempt runs in a child process
that dies with `os._exit` right after the third summary is stored, as a killed process would:
no exception, no closing event. A second child is started with the same workflow id and run
id; the SDK replays the completed activities from the record instead of calling them again, so
the run continues after its last completed activity and finishes without redoing any work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from reference_agents import library
from reference_agents.jobs import Job, Session

NAME = "digest-agent"
NAMESPACE = "research"
WORKFLOW_TYPE = "nightly-digest"
DESCRIPTION = "Summarises the night's feeds into a digest; crashes once and resumes."
TOOLS = ("fetch_feed", "store_summary", "publish_digest")
PRIVILEGED = ()
MISBEHAVIOUR = ""
INTERVAL = 60
FEEDS = 6
CRASH_AFTER = 3  # summaries stored before the first attempt dies
CRASH_EXIT = 75


def job(number: int, session: Session) -> Job:
    topic = ("grid storage", "heat pumps", "offshore wind", "battery recycling")[number % 4]
    return Job(workflow_id=f"digest-{topic.replace(' ', '-')}-{session.batch}-{number}",
               input={"topic": topic, "feeds": FEEDS}, number=number,
               labels={"team": "research"})


def fetch_feed(topic: str, n: int) -> dict:
    url = library.search(f"{topic} feed {n}", limit=1)[0]["url"]
    return library.page(url)


def store_summary(folder: str, n: int, summary: dict) -> dict:
    path = Path(folder) / f"{n:02d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: a summary stored twice means completed work was redone; fail loudly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(descriptor, "w") as file:
        json.dump(summary, file)
    return {"stored": str(path)}


def publish_digest(folder: str, topic: str) -> dict:
    parts = sorted(Path(folder).glob("[0-9]*.json"))
    lines = [json.loads(part.read_text())["summary"] for part in parts]
    digest = Path(folder) / "digest.md"
    digest.write_text(f"# {topic}\n\n" + "\n".join(f"- {line}" for line in lines) + "\n")
    return {"digest": str(digest), "items": len(lines)}


def attempt(session: Session, job: Job) -> dict:
    """One attempt in this process; dies after CRASH_AFTER stores when session.crash_after."""
    folder = str(session.work_dir / "digests" / job.workflow_id)
    topic = job.input["topic"]
    result: dict = {}  # stays empty when an operator cancels or terminates the run
    with session.client.run(WORKFLOW_TYPE, workflow_id=job.workflow_id, run_id=job.run_id,
                            input=job.input, labels=job.labels, new=job.new) as run:
        for n in range(1, job.input["feeds"] + 1):
            page = run.call("fetch_feed", fetch_feed, topic, n, kind="tool")
            summary = run.call("summarise", session.model.summarise, page, kind="llm")
            run.call("store_summary", store_summary, folder, n, summary, kind="tool")
            if session.crash_after == n:
                session.client.flush(timeout=0)  # nothing owed: the spool already holds it
                os._exit(CRASH_EXIT)  # a crash: no exception handler, no closing event
        published = run.call("publish_digest", publish_digest, folder, topic, kind="tool")
        result = {"topic": topic, **published}
        run.complete(result)
    return {**result, "outcome": run.outcome}


def execute(session: Session, job: Job) -> dict:
    """First attempt in a child that crashes, then a second one resuming the same run."""
    job.run_id = job.run_id or uuid.uuid4().hex
    first = _child(session, job, crash_after=CRASH_AFTER)
    if first.returncode != CRASH_EXIT:
        raise RuntimeError(f"the first attempt should have crashed; it exited with "
                           f"{first.returncode}: {first.stderr[-2000:]}")
    second = _child(session, job, crash_after=None)
    if second.returncode != 0:
        raise RuntimeError(f"the resumed attempt exited with {second.returncode}: "
                           f"{second.stderr[-2000:]}")
    return json.loads(second.stdout.strip().splitlines()[-1])


def _child(session: Session, job: Job, crash_after: int | None):
    argv = [sys.executable, "-m", "reference_agents", "run", NAME, "--attempt",
            "--number", str(job.number), "--batch", session.batch, "--run-id", job.run_id,
            "--workflow-id", job.workflow_id,
            # The same folders (spool included) as this session: --work-dir is their parent.
            "--work-dir", str(session.work_dir.parent), "--approval-timeout",
            str(session.approval_timeout), "--pace", str(session.model.pace)]
    if not session.poll_commands:
        argv.append("--no-commands")
    if session.url:
        argv += ["--url", session.url]
    if crash_after is not None:
        argv += ["--crash-after", str(crash_after)]
    env = dict(os.environ)
    if session.token:
        env["FLIGHTDECK_TOKEN"] = session.token  # not in argv, where `ps` would show it
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600,  # noqa: S603
                          check=False, cwd=Path(__file__).resolve().parents[1])
