"""A credential an agent puts into the text of its approval request (the summary, above all) is
stored masked on the request, as the event's masked attributes show it, so it never reaches
people who may not see the raw event: not the approvals inbox, nor the API, nor the run page.
The raw event keeps it, for investigators."""

from __future__ import annotations

import pytest

from access.models import Token
from history.models import Run
from interventions.models import ApprovalRequest
from tests.builders import event

pytest_plugins = ["tests.interventions.personas"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker")]

KEY = "sk-proj-" + "Q7vX2mK9pL4wR8tZ3nB6cF1hJ5sD0gYa"
MASK = "[REDACTED:openai_api_key]"


@pytest.fixture
def request_with_a_key(ingest, agent_token) -> ApprovalRequest:
    response = ingest(agent_token, [
        event(1, "workflow.started"),
        event(2, "approval.requested", attributes={
            "request_id": "r1", "action": "refund", "risk": "high",
            "summary": f"Refund 20 EUR; the gateway key is {KEY}",
            "arguments": {"order": "A-1", "amount": 20}, "timeout_seconds": 600}),
    ])
    assert response.status_code == 200, response.content
    return ApprovalRequest.objects.get(request_id="r1")


def api_get(client, user, path: str):
    return client.get(path, headers={"Authorization": f"Bearer {Token.issue(user=user)[1]}"})


def test_the_summary_is_stored_masked(request_with_a_key):
    assert request_with_a_key.summary == f"Refund 20 EUR; the gateway key is {MASK}"
    assert not ApprovalRequest.objects.filter(summary__contains=KEY).exists()


def test_the_inbox_shows_an_approver_the_summary_masked(client, request_with_a_key, dora):
    client.force_login(dora)
    body = client.get("/approvals/").content.decode()

    assert f'id="approval-{request_with_a_key.pk}"' in body
    assert KEY not in body
    assert f"Refund 20 EUR; the gateway key is {MASK}" in body


def test_the_api_shows_the_summary_masked(client, request_with_a_key, dora, bob):
    pending = api_get(client, dora, "/api/v1/approvals")
    assert pending.status_code == 200
    assert [a["summary"] for a in pending.json()] == [request_with_a_key.summary]
    assert KEY not in pending.content.decode()

    run = request_with_a_key.run
    events = api_get(client, bob, f"/api/v1/runs/{run.uuid}/events")
    assert events.status_code == 200
    assert KEY not in events.content.decode() and MASK in events.content.decode()


def test_the_run_page_shows_a_viewer_no_secret(client, request_with_a_key, bob):
    client.force_login(bob)
    run = request_with_a_key.run
    for path in (f"/runs/{run.uuid}/", f"/runs/{run.uuid}/commands/",
                 f"/runs/{run.uuid}/events/2"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert KEY not in response.content.decode(), path
    assert "Waiting for approval" in client.get(f"/runs/{run.uuid}/").content.decode()


def test_the_raw_event_keeps_the_summary_for_investigators(client, request_with_a_key, ivy):
    run = Run.objects.get(workflow_id="wf-1")
    raw = api_get(client, ivy, f"/api/v1/runs/{run.uuid}/events?raw=true")
    assert raw.status_code == 200
    requested = next(e for e in raw.json()["events"] if e["type"] == "approval.requested")
    assert requested["attributes"]["summary"] == f"Refund 20 EUR; the gateway key is {KEY}"
