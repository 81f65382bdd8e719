"""A reference Temporal agent, written with `temporalio`: a support agent whose model and tool
calls are activities, that asks Flightdeck for approval before a privileged tool call, and
that reacts to cancellation. Pause and resume are Temporal's own: a paused workflow is given
no new tasks by the service until it is unpaused, so the agent needs no code for them.

It follows the conventions of docs/temporal.md: activity types named `llm.*` and `tool.*`
(Flightdeck shows them as model and tool calls), the reserved activity
`flightdeck.request_approval` whose input is the approval request, and the signal
`flightdeck.approval` that brings the decision back.

The model is a deterministic fake (no network): the same ticket always gives the same plan.

    python -m temporal.reference_agent worker --address 127.0.0.1:7233 --task-queue support
    python -m temporal.reference_agent start --address 127.0.0.1:7233 --task-queue support \
        --workflow-id ticket-1 --text "Please refund order 1234"

This module needs only temporalio (no Django), so a worker runs anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

APPROVAL_ACTIVITY = "flightdeck.request_approval"  # temporal.mapping.APPROVAL_ACTIVITY
APPROVAL_SIGNAL = "flightdeck.approval"  # temporal.models.DEFAULT_APPROVAL_SIGNAL
FAKE_MODEL = "fake-support-model-1"
CALL_TIMEOUT = timedelta(seconds=30)
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5)


# --- activities: the model, the tools, the approval request --------------------------------


@activity.defn(name="llm.plan")
async def plan(ticket: dict) -> dict:
    """The fake model reads the ticket and plans tool calls. A refund is privileged."""
    text = str(ticket.get("text", ""))
    order = re.search(r"\b(\d{3,})\b", text)
    order_id = order.group(1) if order else "unknown"
    calls = [{"tool": "lookup_order", "arguments": {"order_id": order_id}}]
    if "refund" in text.lower():
        cents = int(ticket.get("refund_cents", 0)) or 2500
        calls.append({"tool": "issue_refund", "privileged": True,
                      "arguments": {"order_id": order_id, "amount_cents": cents}})
    return {"model": FAKE_MODEL, "intent": "refund" if len(calls) > 1 else "question",
            "tool_calls": calls}


@activity.defn(name="tool.lookup_order")
async def lookup_order(arguments: dict) -> dict:
    order_id = str(arguments.get("order_id"))
    digest = int(hashlib.sha256(order_id.encode()).hexdigest()[:6], 16)
    return {"order_id": order_id, "status": "delivered", "total_cents": 1000 + digest % 9000}


@activity.defn(name="tool.issue_refund")
async def issue_refund(arguments: dict) -> dict:
    return {"refund_id": f"rf-{arguments.get('order_id')}", "state": "issued",
            "amount_cents": arguments.get("amount_cents")}


@activity.defn(name="tool.release_hold")
async def release_hold(arguments: dict) -> dict:
    """Clean-up after a cancellation: undo what the agent reserved."""
    return {"released": arguments.get("ticket_id")}


@activity.defn(name="llm.reply")
async def reply(context: dict) -> str:
    done = [r for r in context.get("results", []) if not r.get("skipped")]
    skipped = [r for r in context.get("results", []) if r.get("skipped")]
    parts = [f"Hello {context.get('customer', 'there')},"]
    parts.append(f"I looked into your request and completed {len(done)} step(s).")
    if skipped:
        parts.append("A refund needs a colleague's approval, which was not given: "
                     f"{skipped[0].get('comment') or 'no reason given'}.")
    return " ".join(parts)


@activity.defn(name=APPROVAL_ACTIVITY)
async def request_approval(request: dict) -> dict:
    """Nothing to do here: the request is the activity's input, which Flightdeck reads from
    the workflow's history and turns into an approval request. Returns at once."""
    return {"requested": request.get("request_id")}


ACTIVITIES = [plan, lookup_order, issue_refund, release_hold, reply, request_approval]


# --- the workflow -------------------------------------------------------------------------


@workflow.defn(name="SupportAgent")
class SupportAgent:
    def __init__(self) -> None:
        self.decisions: dict[str, dict] = {}
        self.waiting_for: str | None = None

    @workflow.signal(name=APPROVAL_SIGNAL)
    def approval(self, decision: dict) -> None:
        """Flightdeck's decision: {request_id, decision, comment, approver, approvers}."""
        if isinstance(decision, dict) and decision.get("request_id"):
            self.decisions[str(decision["request_id"])] = decision

    @workflow.query(name="waiting_for")
    def pending_request(self) -> str | None:
        return self.waiting_for

    @workflow.run
    async def run(self, ticket: dict) -> dict:
        try:
            return await self._handle(ticket)
        except asyncio.CancelledError:
            # Cancelled (from Flightdeck or elsewhere): clean up, then end as cancelled.
            await workflow.execute_activity(
                release_hold, {"ticket_id": ticket.get("ticket_id")},
                start_to_close_timeout=CALL_TIMEOUT, retry_policy=RETRY,
            )
            raise

    async def _handle(self, ticket: dict) -> dict:
        steps = await workflow.execute_activity(
            plan, ticket, start_to_close_timeout=CALL_TIMEOUT, retry_policy=RETRY
        )
        results = []
        for call in steps["tool_calls"]:
            if call.get("privileged"):
                decision = await self._approval(call, ticket)
                if decision.get("decision") != "approved":
                    results.append({"tool": call["tool"], "skipped": True,
                                    "decision": decision.get("decision"),
                                    "comment": decision.get("comment")})
                    continue
            result = await workflow.execute_activity(
                f"tool.{call['tool']}", call["arguments"], start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=RETRY,
            )
            results.append({"tool": call["tool"], "result": result})
        answer = await workflow.execute_activity(
            reply, {"customer": ticket.get("customer"), "results": results},
            start_to_close_timeout=CALL_TIMEOUT, retry_policy=RETRY,
        )
        return {"reply": answer, "results": results}

    async def _approval(self, call: dict, ticket: dict) -> dict:
        """Ask Flightdeck, then wait (durably) for the decision signal."""
        request_id = f"{call['tool']}-{workflow.info().workflow_id}"
        await workflow.execute_activity(
            request_approval,
            {"request_id": request_id, "action": call["tool"], "arguments": call["arguments"],
             "risk": "high", "summary": f"Refund for ticket {ticket.get('ticket_id')}",
             "on_behalf_of": ticket.get("on_behalf_of") or ""},
            start_to_close_timeout=CALL_TIMEOUT, retry_policy=RETRY,
        )
        self.waiting_for = request_id
        await workflow.wait_condition(lambda: request_id in self.decisions)
        self.waiting_for = None
        return self.decisions[request_id]


# --- running it ---------------------------------------------------------------------------


def worker(client: Client, task_queue: str, **options) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=[SupportAgent],
                  activities=ACTIVITIES, **options)


async def _main(args) -> None:
    client = await Client.connect(args.address, namespace=args.namespace)
    if args.command == "worker":
        async with worker(client, args.task_queue):
            print(f"reference agent worker on {args.task_queue} ready", flush=True)
            await asyncio.Event().wait()
    else:
        handle = await client.start_workflow(
            SupportAgent.run,
            {"ticket_id": args.workflow_id, "customer": args.customer, "text": args.text},
            id=args.workflow_id, task_queue=args.task_queue,
        )
        print(handle.result_run_id or handle.run_id, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["worker", "start"])
    parser.add_argument("--address", default="127.0.0.1:7233")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", default="support")
    parser.add_argument("--workflow-id", default="ticket-1")
    parser.add_argument("--customer", default="Sam")
    parser.add_argument("--text", default="Please refund order 1234, it arrived broken.")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
