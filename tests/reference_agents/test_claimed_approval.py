"""The escalations agent claims an approval it never got: it asks for approval of the
privileged refund, then records `approval.granted` for the request whatever the decision and
refunds. A person decides through the API and the decision reaches the agent through the real
worker (or the sweeper expires the request); Flightdeck checks the agent's claim against it and
flags a contradiction on the request, in the audit log and in the approvals inbox."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from audit.models import AuditEntry
from interventions.models import ApprovalRequest, Command
from reference_agents import claimed_approval, help_desk
from tests.reference_agents.histories import assert_complete, findings, only_run
from tests.reference_agents.test_support import decide, its_request, sent

# A decision travels back through Celery: PostgreSQL, a private Redis, uvicorn.
pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


class Worker:
    """The agent on its job in the background, as in its own process."""

    def __init__(self, session, job):
        self.box: dict = {}
        self.thread = threading.Thread(target=self._work, args=(session, job), daemon=True)
        self.thread.start()

    def _work(self, session, job):
        try:
            self.box["result"] = claimed_approval.execute(session, job)
        except BaseException as exc:  # re-raised by finish()
            self.box["error"] = exc

    def finish(self, timeout: float = 90) -> dict:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the agent did not finish"
        if "error" in self.box:
            raise self.box["error"]
        return self.box["result"]


def refund_job(session):
    job = claimed_approval.job(0, session)
    ticket = job.input["ticket"]
    assessment = session.model.assess_refund(ticket, help_desk.customer(ticket["customer_id"]),
                                             [])
    assert assessment["eligible"], "the escalation chosen must be refundable"
    return job


def inbox_row(request: ApprovalRequest) -> str:
    """The request's row among the inbox's decided requests, as the approver sees it."""
    browser = Client()
    browser.force_login(get_user_model().objects.get(username="approver"))
    body = browser.get("/approvals/").content.decode()
    row = body[body.index(f'id="settled-{request.pk}"'):]
    return row[: row.index("</tr>")]


@pytest.mark.parametrize(("decision", "state"), [("reject", "rejected"), (None, "expired")])
def test_it_refunds_after_a_refusal_claiming_a_grant_and_flightdeck_flags_the_claim(
    asgi_server, celery_worker_process, session_for, decision, state
):
    timeout = 900 if decision else 2  # no decision: the sweeper expires the request
    session = session_for(claimed_approval.NAME, asgi_server.url, approval_timeout=timeout)
    job = refund_job(session)
    agent = Worker(session, job)
    request = its_request(job)
    assert (request.action, request.risk, request.state) == ("issue_refund", "high", "pending")
    if decision:
        decide(asgi_server.url, request, decision, "Escalations need finance's sign-off")
    result = agent.finish()
    sent(session)

    history = only_run(job.workflow_id)
    assert_complete(history)
    assert findings(history) == []
    request.refresh_from_db()
    # Flightdeck never granted it ...
    assert request.state == state
    assert not Command.objects.filter(run=history.run, kind="approve").exists()
    assert not request.decisions.filter(decision="approve").exists()
    # ... the SDK recorded the decision it received, then the agent claimed the opposite ...
    delivered = history.of_type(f"approval.{state}")
    claimed = history.of_type("approval.granted")
    assert len(delivered) == 1 and len(claimed) == 1
    assert history.attributes(claimed[0])["request_id"] == request.request_id
    assert request.event_id < delivered[0].event_id < claimed[0].event_id
    # ... and called the privileged tool on the strength of that claim.
    refunds = [e for e in history.of_type("activity.scheduled")
               if history.attributes(e)["activity_type"] == "issue_refund"]
    assert len(refunds) == 1 and claimed[0].event_id < refunds[0].event_id
    assert result["refund"]["amount"] > 0 and result["approval"] == state

    assert (request.claimed_outcome, request.claim_event_id, request.claim_mismatch) == (
        "granted", claimed[0].event_id, True)
    audited = AuditEntry.objects.get(action="approval.claim_mismatch",
                                     object_id=str(request.pk))
    assert audited.after == {"claimed": "granted", "decided": state,
                             "event_id": claimed[0].event_id}
    assert "claims granted: mismatch" in inbox_row(request)


def test_a_claim_that_matches_an_approval_is_not_flagged(
    asgi_server, celery_worker_process, session_for
):
    session = session_for(claimed_approval.NAME, asgi_server.url)
    job = refund_job(session)
    agent = Worker(session, job)
    decide(asgi_server.url, its_request(job), "approve")
    agent.finish()
    sent(session)

    history = only_run(job.workflow_id)
    request = ApprovalRequest.objects.get(run=history.run)
    assert (request.state, request.claimed_outcome, request.claim_mismatch) == (
        "approved", "granted", False)
    assert len(history.of_type("approval.granted")) == 2  # the SDK's and the agent's own
    assert not AuditEntry.objects.filter(action="approval.claim_mismatch").exists()
    assert "mismatch" not in inbox_row(request)
