"""The customer-support agent: answers a ticket with its declared tools; a refund waits for a
person's decision, made through the API and delivered by a real worker, and the agent honours
it (refunds once approved; no refund when rejected or expired, and says why)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model

from access.models import Token
from interventions.models import ApprovalRequest
from reference_agents import support
from tests.interventions.services import request, wait_until
from tests.reference_agents.histories import assert_clean, assert_complete, only_run


def end_to_end(test):
    """A decision travels back through Celery: PostgreSQL, a private Redis, uvicorn."""
    for mark in (pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)):
        test = mark(test)
    return test


def sent(session) -> None:
    assert session.client.flush(timeout=30), "the SDK did not deliver its spool"


@pytest.mark.django_db(transaction=True)
def test_a_shipping_question_is_answered_with_its_tools_and_asks_no_approval(
    quiet_live_server, session_for
):
    session = session_for(support.NAME, quiet_live_server.url)
    job = support.job(2, session, intent="shipping")

    result = support.execute(session, job)
    sent(session)

    history = only_run(job.workflow_id)
    assert_complete(history)
    assert_clean(history)
    assert history.tools_called() == ["search_kb", "read_customer", "send_email"]
    assert set(history.tools_called()) <= set(support.TOOLS)
    llm = [attrs["activity_type"] for attrs in history.activities(kind="llm")]
    assert llm == ["classify_ticket", "draft_reply"]
    decision = history.attributes(history.of_type("decision.made")[0])
    assert (decision["decision"], decision["model"]) == ("shipping", "fake-1")
    assert not history.of_type("approval.requested")
    assert result["refund"] is None and result["intent"] == "shipping"
    assert history.run.agent.name == support.NAME
    assert history.run.labels == {"team": "cx", "channel": "email"}


class Worker(threading.Thread):
    """The agent working on its job in the background, as it would in its own process."""

    def __init__(self, session, job):
        super().__init__(daemon=True)
        self.session, self.job = session, job
        self.result = self.error = None

    def run(self):
        try:
            self.result = support.execute(self.session, self.job)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 90) -> dict:
        self.join(timeout)
        assert not self.is_alive(), "the agent did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def refund_job(session):
    job = support.job(0, session, intent="refund")
    assessment = session.model.assess_refund(job.input["ticket"], support.help_desk.customer(
        job.input["ticket"]["customer_id"]), [])
    assert assessment["eligible"], "the refund ticket chosen must be refundable"
    return job


def its_request(job) -> ApprovalRequest:
    return wait_until(
        lambda: ApprovalRequest.objects.filter(run__workflow_id=job.workflow_id).first(),
        timeout=60, what="the agent's approval request",
    )


def decide(base_url: str, approval: ApprovalRequest, decision: str, comment: str = "") -> None:
    approver = get_user_model().objects.get(username="approver")  # made by bootstrap_demo
    _, token = Token.issue(user=approver)
    status, _, body = request(
        base_url, "POST", f"/api/v1/approvals/{approval.pk}/decision",
        headers={"Authorization": f"Bearer {token}"},
        body={"decision": decision, "comment": comment},
    )
    assert status == 200, body


@end_to_end
def test_an_approved_refund_is_issued_once_after_the_request(
    asgi_server, celery_worker_process, session_for
):
    session = session_for(support.NAME, asgi_server.url)
    job = refund_job(session)
    agent = Worker(session, job)
    agent.start()

    approval = its_request(job)
    assert (approval.action, approval.risk) == ("issue_refund", "high")  # policy: at least high
    assert approval.state == "pending" and agent.is_alive()
    decide(asgi_server.url, approval, "approve")
    result = agent.finish()
    sent(session)

    history = only_run(job.workflow_id)
    assert_complete(history)
    assert_clean(history)
    assert history.tools_called() == ["search_kb", "read_customer", "issue_refund", "send_email"]
    asked = history.of_type("approval.requested")[0]
    refunded = [e for e in history.of_type("activity.completed")
                if history.attributes(e)["activity_type"] == "issue_refund"]
    assert len(refunded) == 1 and asked.event_id < refunded[0].event_id
    assert [history.attributes(e)["request_id"] for e in history.of_type("approval.granted")] \
        == [approval.request_id]
    approval.refresh_from_db()
    assert approval.state == "approved" and approval.claim_mismatch is False
    assert result["approval"] == "approved" and result["refund"]["amount"] > 0


@end_to_end
def test_a_rejected_refund_is_not_issued_and_the_reply_gives_the_reason(
    asgi_server, celery_worker_process, session_for
):
    session = session_for(support.NAME, asgi_server.url)
    job = refund_job(session)
    agent = Worker(session, job)
    agent.start()

    decide(asgi_server.url, its_request(job), "reject", "Refunds for this customer go to finance")
    result = agent.finish()
    sent(session)

    history = only_run(job.workflow_id)
    assert_complete(history)
    assert_clean(history)
    assert "issue_refund" not in history.tools_called()
    assert history.of_type("approval.rejected")
    withheld = [history.attributes(e) for e in history.of_type("decision.made")
                if history.attributes(e)["decision"] == "refund_withheld"]
    assert withheld[0]["reason"] == "Refunds for this customer go to finance"
    email = next(a for a in history.activities("activity.scheduled", "tool")
                 if a["activity_type"] == "send_email")
    assert "Refunds for this customer go to finance" in email["input"]["args"][2]
    assert result["refund"] is None and result["approval"] == "rejected"


@end_to_end
def test_an_expired_refund_request_is_not_issued(asgi_server, celery_worker_process, session_for):
    session = session_for(support.NAME, asgi_server.url, approval_timeout=2)
    job = refund_job(session)
    agent = Worker(session, job)
    agent.start()

    approval = its_request(job)
    result = agent.finish()
    sent(session)

    history = only_run(job.workflow_id)
    assert_complete(history)
    assert "issue_refund" not in history.tools_called()
    assert history.of_type("approval.expired")
    approval.refresh_from_db()
    assert approval.state == "expired" and approval.claim_mismatch is False
    assert result["refund"] is None and result["approval"] == "expired"
