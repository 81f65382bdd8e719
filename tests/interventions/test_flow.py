"""The command and approval flow through the API, with the delivery task run in-process.
(End-to-end through a real Celery worker and Redis: test_delivery_worker.py.)"""

from __future__ import annotations

import pytest

from access.models import Membership
from interventions.models import ApprovalRequest, Command
from interventions.tasks import deliver_command
from tests.builders import event


@pytest.fixture
def running_run(ingest, agent_token):
    response = ingest(agent_token, [event(1, "workflow.started"), event(2)])
    assert response.status_code == 200, response.content
    from history.models import Run

    return Run.objects.get(workflow_id="wf-1")


@pytest.fixture
def operator(django_user_model, acme):
    user = django_user_model.objects.create_user("olga", password="correct horse battery")
    Membership.objects.create(user=user, namespace=acme, role="operator")
    return user


def test_a_paused_command_travels_to_the_agent_and_back(
    client, running_run, operator, agent_token, ingest
):
    client.force_login(operator)
    url = f"/api/v1/runs/{running_run.uuid}/commands"
    response = client.post(
        url, {"kind": "pause", "reason": "look"}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    command = Command.objects.get()
    assert command.state == "queued"
    deliver_command.run(str(command.pk))
    command.refresh_from_db()
    assert command.state == "dispatched" and command.attempts == 1

    client.logout()
    polled = client.get(
        "/api/v1/agent/commands?wait=0", headers={"Authorization": f"Bearer {agent_token}"}
    )
    assert polled.status_code == 200
    assert [c["id"] for c in polled.json()["commands"]] == [str(command.pk)]
    command.refresh_from_db()
    assert command.state == "delivered"

    ack = client.post(
        f"/api/v1/agent/commands/{command.pk}/ack", {"status": "applied", "detail": "ok"},
        content_type="application/json", headers={"Authorization": f"Bearer {agent_token}"},
    )
    assert ack.status_code == 200, ack.content
    again = client.post(
        f"/api/v1/agent/commands/{command.pk}/ack", {"status": "applied"},
        content_type="application/json", headers={"Authorization": f"Bearer {agent_token}"},
    )
    assert again.status_code == 200
    command.refresh_from_db()
    assert command.state == "applied"
    ingest(agent_token, [event(3, "workflow.paused")])
    running_run.refresh_from_db()
    assert running_run.status == "paused"


def test_an_approval_request_becomes_a_decision_command(
    client, running_run, alice, agent_token, ingest
):
    ingest(agent_token, [event(3, "approval.requested", attributes={
        "request_id": "r1", "action": "refund", "arguments": {"amount": 10}, "risk": "high"})])
    request = ApprovalRequest.objects.get()
    assert request.risk == "high" and request.required_approvals == 1
    client.force_login(alice)
    response = client.post(
        f"/api/v1/approvals/{request.pk}/decision", {"decision": "approve"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    command = Command.objects.get()
    assert command.kind == "approve" and command.payload["request_id"] == "r1"
    ingest(agent_token, [event(4, "approval.granted", attributes={"request_id": "r1"})])
    request.refresh_from_db()
    assert request.state == "approved" and request.claim_mismatch is False
