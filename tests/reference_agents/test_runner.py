"""The demo runner: jobs under way are kept in a ledger on disk, and a restarted process
resumes them; here a support agent's refunds, waiting for approval when its process stopped,
are approved after the restart and finish as the same runs, without redoing anything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from access.models import Token
from history.models import Run
from interventions.models import ApprovalRequest
from reference_agents import support
from reference_agents.jobs import Job
from reference_agents.ledger import Ledger
from tests.interventions.services import request, wait_until
from tests.reference_agents.histories import assert_clean, assert_complete, recorded

ROOT = Path(__file__).resolve().parents[2]


def test_the_ledger_keeps_a_job_until_it_is_done(tmp_path):
    ledger = Ledger(tmp_path)
    job = Job("wf-1", {"ticket": {"ticket_id": "T-1"}}, run_id="r-1", labels={"a": "b"},
              number=4, new=True)

    ledger.record(job)
    (left,) = ledger.unfinished()

    assert (left.workflow_id, left.run_id, left.input, left.number) == ("wf-1", "r-1",
                                                                        job.input, 4)
    assert left.new is False  # resumed, not started again
    ledger.done(job)
    assert ledger.unfinished() == []


def demo_process(url: str, tmp_path: Path, log_name: str) -> subprocess.Popen:
    log = open(tmp_path / log_name, "w")  # noqa: SIM115 - the child writes it until it ends
    return subprocess.Popen(  # noqa: S603 - this interpreter, our own module
        [sys.executable, "-m", "reference_agents", "demo", "--agents", support.NAME,
         "--url", url, "--tokens-file", str(tmp_path / "tokens.json"),
         "--work-dir", str(tmp_path / "agents"), "--pace", "0", "--interval-scale", "100"],
        cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
    )


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_restarted_demo_resumes_runs_that_wait_for_approval(
    asgi_server, celery_worker_process, demo_tokens, tmp_path
):
    first = demo_process(asgi_server.url, tmp_path, "first.log")
    try:
        waiting = wait_until(
            lambda: (list(ApprovalRequest.objects.filter(state="pending"))
                     if ApprovalRequest.objects.filter(state="pending").count() == 2 else None),
            timeout=90, what="two refunds waiting for approval")
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(60)
    assert first.returncode == 0
    runs = {request.run.pk for request in waiting}
    assert Run.objects.filter(pk__in=runs, status="running").count() == 2

    second = demo_process(asgi_server.url, tmp_path, "second.log")
    try:
        wait_until(lambda: (tmp_path / "second.log").read_text().count("resuming") == 2,
                   timeout=60, what="the second process to resume both runs")
        approver = get_user_model().objects.get(username="approver")
        token = Token.issue(user=approver)[1]
        for pending in waiting:
            status, _, body = request(
                asgi_server.url, "POST", f"/api/v1/approvals/{pending.pk}/decision",
                headers={"Authorization": f"Bearer {token}"}, body={"decision": "approve"})
            assert status == 200, body
        wait_until(lambda: Run.objects.filter(pk__in=runs, status="completed").count() == 2,
                   timeout=90, what="both resumed runs to complete")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)

    for run in Run.objects.filter(pk__in=runs):
        history = recorded(run)
        assert_complete(history)
        assert_clean(history)
        assert history.tools_called() == ["search_kb", "read_customer", "issue_refund",
                                          "send_email"]
        markers = [history.attributes(e) for e in history.of_type("marker.recorded")]
        assert [m["marker"] for m in markers] == ["resumed"]
    # The resumed jobs are done; what is left is the second process's own new refunds.
    left = Ledger(tmp_path / "agents" / support.NAME / "jobs").unfinished()
    assert not {job.run_id for job in left} & {run.run_id for run in Run.objects.filter(
        pk__in=runs)}
