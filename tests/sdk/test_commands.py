"""Operator commands sent through the real commands API, delivered by the real worker over the
pull channel, applied by the SDK at its checkpoints: pause and resume (also during a timer,
which fires on time and then holds), cancel, terminate (also while waiting for an approval, and
at once for an asyncio run) and a signal."""

from __future__ import annotations

import asyncio
import threading
import time

from history.models import Run
from interventions.models import ApprovalRequest, Command
from tests.interventions.services import wait_until
from tests.sdk.conftest import attributes, live, stored
from tests.sdk.test_approvals import AgentThread, ask_refund, pending_request


def send(api, run_uuid: str, kind: str, **body) -> dict:
    status, command = api.call("POST", f"/api/v1/runs/{run_uuid}/commands",
                               {"kind": kind, **body})
    assert status == 201, command
    return command


def final_state(command: dict) -> str:
    row = wait_until(
        lambda: Command.objects.filter(pk=command["id"], state__in=["applied", "rejected"])
        .first(), what=f"the {command['kind']} command to be acknowledged")
    return row.state


def status_of(workflow_id: str, *statuses: str) -> Run:
    return wait_until(
        lambda: Run.objects.filter(workflow_id=workflow_id, status__in=statuses).first(),
        what=f"run {workflow_id} to be {' or '.join(statuses)}")


def ticking(stop: threading.Event):
    """An agent body that takes a small step after another until `stop` is set."""

    def body(run):
        steps = 0
        while not stop.is_set():
            run.call("tick", lambda n: n, steps)
            steps += 1
            time.sleep(0.02)
        return steps

    return body


def started(agent: AgentThread):
    wait_until(lambda: agent.run_ is not None and agent.run_.position > 0,
               what="the agent to take its first step")
    return agent.run_.uuid


@live
def test_pause_holds_the_agent_at_a_checkpoint_until_resume(
    sdk_client, celery_worker_process, as_user, olga
):
    stop = threading.Event()
    agent = AgentThread(sdk_client(), "ticket-500", ticking(stop))
    agent.start()
    run_uuid, operator = started(agent), as_user(olga)

    pause = send(operator, run_uuid, "pause", reason="checking spend")
    status_of("ticket-500", "paused")
    assert final_state(pause) == "applied"
    held_at = agent.run_.position
    time.sleep(0.5)  # time enough for a run that did not hold to take more steps
    assert agent.run_.position == held_at and agent.is_alive()

    resume = send(operator, run_uuid, "resume")
    wait_until(lambda: agent.run_.position > held_at, what="the agent to go on")
    assert final_state(resume) == "applied"
    stop.set()
    agent.outcome()
    assert agent.client.flush(30)
    events = stored("ticket-500", agent.run_.run_id)
    types = [e.type for e in events]
    paused, resumed = types.index("workflow.paused"), types.index("workflow.resumed")
    assert set(types[paused + 1:resumed]) <= {"command.received", "command.applied"}
    assert attributes(events[paused])["command_id"] == pause["id"]
    assert attributes(events[paused])["reason"] == "checking spend"
    assert Run.objects.get(workflow_id="ticket-500").status == "completed"


@live
def test_cancel_raises_cancelled_at_the_next_checkpoint_and_closes_the_run(
    sdk_client, celery_worker_process, as_user, olga
):
    agent = AgentThread(sdk_client(), "ticket-501", ticking(threading.Event()))
    agent.start()
    cancel = send(as_user(olga), started(agent), "cancel", reason="customer withdrew")

    agent.outcome()  # Cancelled ended the block and did not escape it
    assert agent.run_.outcome == "cancelled"
    assert final_state(cancel) == "applied"
    assert agent.client.flush(30)
    last = stored("ticket-501", agent.run_.run_id)[-1]
    assert last.type == "workflow.cancelled"
    assert attributes(last) == {"reason": "customer withdrew", "command_id": cancel["id"]}
    assert Run.objects.get(workflow_id="ticket-501").status == "cancelled"


@live
def test_terminate_interrupts_an_approval_wait(
    sdk_client, celery_worker_process, as_user, olga
):
    agent = AgentThread(sdk_client(), "ticket-502", ask_refund)
    agent.start()
    pending_request("ticket-502")
    terminate = send(as_user(olga), agent.run_.uuid, "terminate", reason="runaway agent")

    assert agent.outcome() is None  # Terminated ended the wait and the block
    assert agent.run_.outcome == "terminated"
    assert final_state(terminate) == "applied"
    assert agent.client.flush(30)
    types = [e.type for e in stored("ticket-502", agent.run_.run_id)]
    assert types[-3:] == ["command.received", "command.applied", "workflow.terminated"]
    assert Run.objects.get(workflow_id="ticket-502").status == "terminated"


@live
def test_terminate_stops_an_asyncio_run_at_once(
    sdk_client, celery_worker_process, as_user, olga
):
    client = sdk_client()
    box: dict = {}

    async def agent():
        async with client.arun("research", "r-503") as run:
            box["run"] = run
            await run.acall("plan", lambda: ["read", "write"], kind="llm")
            await asyncio.sleep(3600)  # a long await: terminate must not wait for it
            box["went_on"] = True
        box["after_block"] = True

    thread = threading.Thread(target=asyncio.run, args=(agent(),), daemon=True)
    thread.start()
    wait_until(lambda: "run" in box and box["run"].position == 1, what="the first step")
    send(as_user(olga), box["run"].uuid, "terminate", reason="stop now")
    thread.join(60)
    assert not thread.is_alive()
    assert box.get("after_block") and "went_on" not in box
    assert box["run"].outcome == "terminated"
    assert status_of("r-503", "terminated")


@live
def test_a_signal_reaches_its_handler_with_the_payload(
    sdk_client, celery_worker_process, as_user, olga
):
    received = []

    def body(run):
        run.on_signal("budget", received.append)
        while not received:
            run.call("tick", lambda: None)
            time.sleep(0.02)
        return received

    agent = AgentThread(sdk_client(), "ticket-504", body)
    agent.start()
    signal = send(as_user(olga), started(agent), "signal", signal_name="budget",
                  payload={"max_usd": 5})

    assert agent.outcome() == [{"max_usd": 5}]
    assert final_state(signal) == "applied"
    assert agent.client.flush(30)
    event = next(e for e in stored("ticket-504", agent.run_.run_id)
                 if e.type == "signal.received")
    assert attributes(event)["signal_name"] == "budget"
    assert attributes(event)["payload"] == {"max_usd": 5}


@live
def test_a_pause_holds_a_decision_that_arrives_during_it_until_resume(
    sdk_client, celery_worker_process, as_user, olga, dora
):
    agent = AgentThread(sdk_client(), "ticket-505", ask_refund)
    agent.start()
    request = pending_request("ticket-505")
    operator = as_user(olga)
    send(operator, agent.run_.uuid, "pause")
    status_of("ticket-505", "paused")
    status, _ = as_user(dora).call("POST", f"/api/v1/approvals/{request.pk}/decision",
                                   {"decision": "approve", "comment": "fine"})
    assert status == 200
    decision = Command.objects.get(approval=request)
    wait_until(lambda: any(attributes(e).get("command_id") == str(decision.pk)
                           for e in stored("ticket-505", agent.run_.run_id)),
               what="the agent to receive the decision")
    time.sleep(0.3)
    assert agent.is_alive()  # received, but held by the pause
    assert "approval.granted" not in [e.type for e in stored("ticket-505", agent.run_.run_id)]

    send(operator, agent.run_.uuid, "resume")
    assert agent.outcome().approved
    assert agent.client.flush(30)
    assert ApprovalRequest.objects.get(pk=request.pk).claimed_outcome == "granted"


@live
def test_an_operators_pause_during_a_timer_holds_the_run_after_it_fires(
    sdk_client, celery_worker_process, as_user, olga
):
    def body(run):
        run.call("plan", lambda: "plan")
        run.sleep(5, timer_id="rate-limit")  # the pause arrives first
        run.call("search", lambda: "hits")

    agent = AgentThread(sdk_client(), "ticket-506", body)
    agent.start()
    wait_until(lambda: agent.run_ is not None and agent.run_.position == 2,
               what="the agent to start its timer")
    operator = as_user(olga)
    send(operator, agent.run_.uuid, "pause", reason="quota check")
    status_of("ticket-506", "paused")
    wait_until(lambda: "timer.fired" in [e.type for e in stored("ticket-506",
                                                                agent.run_.run_id)],
               what="the timer to fire while the run is paused")
    time.sleep(0.3)  # time enough for a run that did not hold to take its next step
    assert agent.run_.position == 2 and agent.is_alive()

    send(operator, agent.run_.uuid, "resume")
    agent.outcome()
    assert agent.client.flush(30)
    events = stored("ticket-506", agent.run_.run_id)
    types = [e.type for e in events]
    started, fired = events[types.index("timer.started")], events[types.index("timer.fired")]
    assert types.index("workflow.paused") < types.index("timer.fired") \
        < types.index("workflow.resumed") < types.index("workflow.completed")
    assert attributes(fired)["fire_at"] == attributes(started)["fire_at"]  # not moved
    assert fired.refs == {"started": started.event_id}
    assert Run.objects.get(workflow_id="ticket-506").status == "completed"
