"""The approval gate against the live server: the agent waits until a person decides through
the real approvals API (or the sweeper expires the request), the decision travels back by the
worker and the pull channel, and the agent records its claim."""

from __future__ import annotations

import asyncio
import threading

from flightdeck_sdk import Approval

from interventions.models import ApprovalRequest, Command
from tests.interventions.services import wait_until
from tests.sdk.conftest import attributes, live, stored


class AgentThread(threading.Thread):
    """Runs `body(run)` inside a run of the support agent; keeps the run and the outcome."""

    def __init__(self, client, workflow_id: str, body):
        super().__init__(daemon=True)
        self.client, self.workflow_id, self.body = client, workflow_id, body
        self.run_ = None
        self.result = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.client.run("support", self.workflow_id) as run:
                self.run_ = run
                self.result = self.body(run)
        except BaseException as exc:
            self.error = exc

    def outcome(self, timeout: float = 60):
        self.join(timeout)
        assert not self.is_alive(), "the agent is still waiting"
        if self.error is not None:
            raise self.error
        return self.result


def ask_refund(run) -> Approval:
    approval = run.request_approval(
        "issue_refund", arguments={"order": "A-1", "amount": 20}, summary="Refund 20 EUR",
        risk="high", timeout=600,
    )
    if approval.approved:
        run.call("issue_refund", lambda order, amount: {"refunded": amount}, "A-1", 20)
    return approval


def pending_request(workflow_id: str) -> ApprovalRequest:
    return wait_until(
        lambda: ApprovalRequest.objects.filter(run__workflow_id=workflow_id).first(),
        what="the approval request to open",
    )


@live
def test_an_approved_request_lets_the_agent_go_on_with_the_approvers_comment(
    sdk_client, celery_worker_process, as_user, dora
):
    client = sdk_client()
    agent = AgentThread(client, "ticket-400", ask_refund)
    agent.start()
    request = pending_request("ticket-400")
    assert (request.action, request.risk, request.arguments) == (
        "issue_refund", "high", {"order": "A-1", "amount": 20})
    status, body = as_user(dora).call("POST", f"/api/v1/approvals/{request.pk}/decision",
                                      {"decision": "approve", "comment": "within policy"})
    assert status == 200, body

    approval = agent.outcome()
    assert approval.approved and approval.decision == "approved"
    assert (approval.comment, approval.approver, approval.approvers) == (
        "within policy", "dora", ("dora",))
    assert approval.request_id == request.request_id
    assert client.flush(30)
    types = [e.type for e in stored("ticket-400", agent.run_.run_id)]
    assert types[1:] == ["approval.requested", "command.received", "approval.granted",
                         "command.applied", "activity.scheduled", "activity.started",
                         "activity.completed", "workflow.completed"]
    request.refresh_from_db()
    assert (request.state, request.claimed_outcome, request.claim_mismatch) == (
        "approved", "granted", False)
    assert Command.objects.get(approval=request).state == "applied"


@live
def test_a_rejected_request_returns_the_rejection_and_its_comment(
    sdk_client, celery_worker_process, as_user, dora
):
    client = sdk_client()
    agent = AgentThread(client, "ticket-401", ask_refund)
    agent.start()
    request = pending_request("ticket-401")
    status, body = as_user(dora).call("POST", f"/api/v1/approvals/{request.pk}/decision",
                                      {"decision": "reject", "comment": "customer is abusing"})
    assert status == 200, body

    approval = agent.outcome()
    assert not approval.approved and approval.decision == "rejected"
    assert approval.comment == "customer is abusing"
    assert client.flush(30)
    events = stored("ticket-401", agent.run_.run_id)
    assert "activity.scheduled" not in [e.type for e in events]  # no refund was issued
    claim = next(e for e in events if e.type == "approval.rejected")
    assert attributes(claim)["request_id"] == request.request_id
    request.refresh_from_db()
    assert (request.state, request.claimed_outcome, request.claim_mismatch) == (
        "rejected", "rejected", False)


@live
def test_an_expired_request_ends_the_wait_as_expired(sdk_client, celery_worker_process):
    client = sdk_client()

    def ask_briefly(run) -> Approval:
        return run.request_approval("delete_account", arguments={"user": 7}, timeout=1)

    agent = AgentThread(client, "ticket-402", ask_briefly)
    agent.start()
    request = pending_request("ticket-402")

    approval = agent.outcome()  # the sweeper (every second here) expires it
    assert approval.decision == "expired" and not approval.approved
    assert client.flush(30)
    assert "approval.expired" in [e.type for e in stored("ticket-402", agent.run_.run_id)]
    request.refresh_from_db()
    assert (request.state, request.claimed_outcome, request.claim_mismatch) == (
        "expired", "expired", False)


@live
def test_an_asyncio_agent_awaits_the_decision_without_blocking_its_loop(
    sdk_client, celery_worker_process, as_user, dora
):
    client = sdk_client()
    box: dict = {}

    async def agent():
        async with client.arun("support", "ticket-403") as run:
            box["run"] = run
            heartbeat = asyncio.create_task(beat(box))
            box["approval"] = await run.arequest_approval(
                "issue_refund", arguments={"order": "A-2"}, summary="Refund", timeout=600)
            heartbeat.cancel()

    thread = threading.Thread(target=asyncio.run, args=(agent(),), daemon=True)
    thread.start()
    request = pending_request("ticket-403")
    wait_until(lambda: box.get("beats", 0) >= 3, what="the loop to keep running while waiting")
    status, body = as_user(dora).call("POST", f"/api/v1/approvals/{request.pk}/decision",
                                      {"decision": "approve", "comment": "go"})
    assert status == 200, body
    thread.join(60)
    assert not thread.is_alive()
    assert box["approval"].approved and box["approval"].comment == "go"
    assert box["run"].outcome == "completed"


async def beat(box: dict) -> None:
    while True:
        box["beats"] = box.get("beats", 0) + 1
        await asyncio.sleep(0.05)
