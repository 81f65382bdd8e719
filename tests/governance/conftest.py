"""Governance tests: agents with declared tools and policies, an approver, and a `send`
helper that ingests a stream's pending events through the API with the agent's token."""

from __future__ import annotations

import pytest

from access.models import Agent, Membership, Token
from history.models import Run
from interventions.models import ApprovalPolicy


@pytest.fixture
def support_bot(acme, alice) -> Agent:
    """Owned, declares its tools; issue_refund needs an approval by policy."""
    agent = Agent.objects.create(
        namespace=acme, name="support-bot", owner_user=alice,
        allowed_tools=["search_kb", "get_customer", "issue_refund", "send_email"],
    )
    ApprovalPolicy.objects.create(agent=agent, tool="issue_refund", min_approvals=1)
    return agent


@pytest.fixture
def support_token(support_bot) -> str:
    return Token.issue(agent=support_bot)[1]


@pytest.fixture
def approver(django_user_model, acme):
    user = django_user_model.objects.create_user("dora", email="dora@acme.test")
    Membership.objects.create(user=user, namespace=acme, role="approver")
    return user


@pytest.fixture
def send(ingest):
    """send(token, stream) -> the Run: ingests the stream's events not sent yet."""

    def post(token: str, stream) -> Run:
        response = ingest(token, stream.take())
        assert response.status_code == 200, response.content
        return Run.objects.get(workflow_id=stream.workflow_id, run_id=stream.run_id)

    return post
