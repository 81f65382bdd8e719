"""The digest agent dies mid-run (its first child process calls os._exit after three stored
summaries) and a second process resumes the same run: one run, every activity completed once,
no summary stored twice, nothing for the durability panel to report."""

from __future__ import annotations

import json

import pytest

from reference_agents import crash_resume
from tests.reference_agents.histories import assert_clean, assert_complete, only_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_crashes_resumes_the_same_run_and_redoes_nothing(quiet_live_server, session_for):
    session = session_for(crash_resume.NAME, quiet_live_server.url)
    job = crash_resume.job(1, session)

    result = crash_resume.execute(session, job)  # raises unless the first child crashed

    history = only_run(job.workflow_id)
    assert history.run.run_id == job.run_id
    assert_complete(history)
    assert_clean(history)
    keys = [attrs["activity_key"] for attrs in history.activities()]
    assert len(keys) == len(set(keys)) == crash_resume.FEEDS * 3 + 1
    scheduled = [attrs["activity_key"] for attrs in history.activities("activity.scheduled")]
    assert scheduled == keys, "each activity scheduled once and completed once, in order"
    folder = session.work_dir / "digests" / job.workflow_id
    stored = sorted(path.name for path in folder.glob("[0-9]*.json"))
    assert stored == [f"{n:02d}.json" for n in range(1, crash_resume.FEEDS + 1)]
    assert result["items"] == crash_resume.FEEDS
    summaries = [json.loads((folder / name).read_text())["url"] for name in stored]
    assert len(set(summaries)) == crash_resume.FEEDS


def test_its_first_attempt_alone_leaves_the_run_open_after_three_summaries(
    quiet_live_server, session_for
):
    session = session_for(crash_resume.NAME, quiet_live_server.url)
    job = crash_resume.job(2, session)
    job.run_id = "crashed-once"

    first = crash_resume._child(session, job, crash_after=crash_resume.CRASH_AFTER)

    assert first.returncode == crash_resume.CRASH_EXIT
    # A new client on the same spool sends what the dead process left.
    assert session.client.flush(timeout=30)
    history = only_run(job.workflow_id)
    assert history.run.status == "running"
    summaries = [a for a in history.activities() if a["activity_type"] == "store_summary"]
    assert len(summaries) == crash_resume.CRASH_AFTER
    assert not history.of_type("workflow.failed", "workflow.completed")
