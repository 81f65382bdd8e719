"""The report builder fails, and its supervisor starts a new run of the same workflow id that
fetches every ledger again: the durability rules call it a restart from scratch."""

from __future__ import annotations

import pytest

from reference_agents import restart_from_scratch
from tests.reference_agents.histories import (
    assert_complete,
    findings,
    recorded,
    runs_of,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_its_second_run_redoes_the_first_runs_work(quiet_live_server, session_for):
    session = session_for(restart_from_scratch.NAME, quiet_live_server.url)
    job = restart_from_scratch.job(0, session)

    restart_from_scratch.execute(session, job)
    assert session.client.flush(timeout=30)

    first, second = (recorded(run) for run in runs_of(job.workflow_id))
    assert first.run.run_id != second.run.run_id
    assert_complete(first, status="failed")
    assert_complete(second)
    assert [a["activity_type"] for a in first.activities("activity.failed")] == ["publish_report"]
    redone = {a["activity_key"] for a in first.activities()} & \
        {a["activity_key"] for a in second.activities()}
    assert len(redone) == len(restart_from_scratch.ACCOUNTS) + 1  # ledgers and reconcile
    assert "restart_from_scratch" in findings(second)
    assert second.run.events_with_secrets == 0
