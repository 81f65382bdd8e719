"""Races on PostgreSQL: two people, two clicks, two workers or an agent and the sweeper acting on
the same request or command at the same moment always leave exactly one outcome.

Each contender runs in its own thread, with its own database connection, released together by a
barrier; each scenario is repeated so that both orders of arrival get their turn.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from history.models import Run
from interventions.approvals import DecisionRefused, decide, expire_overdue
from interventions.commands import CommandRefused, acknowledge, create_command, request_command
from interventions.models import ApprovalRequest, Command
from interventions.pull_channel import hand_out
from interventions.tasks import deliver_command

pytest_plugins = ["tests.interventions.personas"]
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("broker"),
]

ROUNDS = 8
JOIN_TIMEOUT = 60  # seconds; a thread still alive after this is stuck (a lock never released)


def run_together(*workers) -> list:
    """Run each callable in its own thread (so its own connection), released at once by a
    barrier; their results in order. An exception a worker raised is its result."""
    barrier = threading.Barrier(len(workers))
    results: list = [None] * len(workers)

    def body(index, work):
        try:
            barrier.wait(timeout=30)
            results[index] = work()
        except BaseException as exc:  # the test inspects it
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=pair) for pair in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"threads still running after {JOIN_TIMEOUT}s: {stuck}"
    return results


def refused(result, kind=(DecisionRefused, CommandRefused)) -> str | None:
    """The refusal's message if `result` is one; any other exception fails the test."""
    if isinstance(result, BaseException):
        if not isinstance(result, kind):
            raise result
        return result.message
    return None


def decision_commands(request: ApprovalRequest) -> list[tuple[str, str]]:
    return [(c.kind, c.payload["decision"]) for c in Command.objects.filter(approval=request)]


def fresh_run(report, number: int) -> Run:
    report("workflow.started", workflow_id=f"wf-race-{number}")
    return Run.objects.get(workflow_id=f"wf-race-{number}")


# --- approvals --------------------------------------------------------------------------------


def test_an_approve_and_a_reject_at_the_same_moment_have_one_outcome(ask_approval, dora, alice):
    for _ in range(ROUNDS):
        pending = ask_approval()

        def decision(user, verdict, comment="", pk=pending.pk):
            return lambda: decide(ApprovalRequest.objects.get(pk=pk), user, verdict, comment)

        approved, rejected = run_together(
            decision(dora, "approve"), decision(alice, "reject", "not now")
        )
        pending.refresh_from_db()
        assert pending.state in ("approved", "rejected")
        winner, loser = (approved, rejected) if pending.state == "approved" else (
            rejected, approved
        )
        assert refused(winner) is None
        assert refused(loser) == f"the request is already {pending.state}"
        assert pending.decisions.count() == 1
        kind = "approve" if pending.state == "approved" else "reject"
        assert decision_commands(pending) == [(kind, pending.state)]


def test_an_approval_at_the_deadline_and_the_expiry_sweep_have_one_outcome(ask_approval, dora):
    for number in range(ROUNDS * 2):
        pending = ask_approval()
        # Due a moment after the threads start: the approval lands on either side of it, while
        # the sweep acts as if its clock already read the deadline.
        deadline = timezone.now() + timedelta(milliseconds=5 * (number % 4))
        ApprovalRequest.objects.filter(pk=pending.pk).update(deadline=deadline)

        approval, expired = run_together(
            lambda pk=pending.pk: decide(ApprovalRequest.objects.get(pk=pk), dora, "approve"),
            lambda deadline=deadline: expire_overdue(now=deadline),
        )
        pending.refresh_from_db()
        if pending.state == "approved":
            assert refused(approval) is None and expired == 0
            assert decision_commands(pending) == [("approve", "approved")]
        else:
            assert pending.state == "expired"
            assert "expired" in refused(approval)
            assert pending.decisions.count() == 0
            assert decision_commands(pending) == [("reject", "expired")]


# --- operators' commands ----------------------------------------------------------------------


def test_a_double_clicked_button_makes_one_command(report, olga):
    for number in range(ROUNDS):
        run = fresh_run(report, number)
        command_id = uuid.uuid4()

        def click(pk=run.pk, command_id=command_id):
            return request_command(
                Run.objects.get(pk=pk), olga, "pause", reason="look", command_id=command_id
            )

        first, second = run_together(click, click)
        assert refused(first) is None and refused(second) is None
        assert {first[0].pk, second[0].pk} == {command_id}
        assert sorted([first[1], second[1]]) == [False, True]
        assert Command.objects.filter(run=run).count() == 1


def test_two_pause_requests_at_the_same_moment_make_one_pause(report, olga, alice):
    for number in range(ROUNDS):
        run = fresh_run(report, number)

        def pause(user, pk=run.pk):
            return lambda: request_command(Run.objects.get(pk=pk), user, "pause", reason="look")

        results = run_together(pause(olga), pause(alice))
        messages = [refused(result) for result in results]
        assert messages.count(None) == 1
        (message,) = [m for m in messages if m is not None]
        assert "pause was already requested" in message
        assert Command.objects.filter(run=run, kind="pause").count() == 1


# --- delivery and acknowledgement ---------------------------------------------------------


def test_two_acknowledgements_with_different_verdicts_have_one_winner(running_run):
    for number in range(ROUNDS):
        command = create_command(running_run, "signal", signal_name=f"nudge-{number}")
        command.claim(lease_seconds=60)
        if number % 2:
            command.advance("delivered")

        def ack(verdict, pk=command.pk):
            return lambda: acknowledge(Command.objects.get(pk=pk), verdict, verdict)

        applied, rejected = run_together(ack("applied"), ack("rejected"))
        command.refresh_from_db()
        assert command.state in ("applied", "rejected")
        winner, loser = (applied, rejected) if command.state == "applied" else (rejected, applied)
        assert refused(winner) is None and winner[1] is True
        assert refused(loser).startswith(f"the command is already {command.state}")
        assert command.ack_detail == command.state


def test_a_command_delivered_by_two_workers_at_once_is_claimed_once(running_run):
    for number in range(ROUNDS):
        command = create_command(running_run, "signal", signal_name=f"nudge-{number}")

        def deliver(pk=str(command.pk)):
            return lambda: deliver_command.run(pk)

        assert run_together(deliver(), deliver()) == [None, None]
        command.refresh_from_db()
        assert (command.state, command.attempts) == ("dispatched", 1)


def test_two_long_polls_at_once_hand_a_command_out_once(running_run):
    for number in range(ROUNDS):
        command = create_command(running_run, "signal", signal_name=f"nudge-{number}")
        command.claim(lease_seconds=60)

        def poll(agent_id=running_run.agent_id):
            return lambda: [message["id"] for message in hand_out(agent_id)]

        first, second = run_together(poll(), poll())
        assert sorted(first + second) == [str(command.pk)]
        command.refresh_from_db()
        assert command.state == "delivered"
