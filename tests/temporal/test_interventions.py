"""Interventions on Temporal workflows end to end: operators' commands and approval decisions
are Command rows, delivered by a real Celery worker through the Temporal connector to a real
Temporal dev server, and their effect comes back in the history the same worker follows (beat
starts follow sessions on the `temporal` queue), with the Flightdeck user as the identity.
"""

from __future__ import annotations

import pytest

from access.models import Membership
from history.models import Run
from interventions import approvals
from interventions.commands import request_command
from interventions.models import ApprovalRequest, Command
from interventions.tasks import deliver_command
from interventions.vocabulary import CommandState
from temporal.follow import follow_connection
from tests.interventions.services import wait_until
from tests.temporal.conftest import TASK_QUEUE, run_async, start_ticket
from tests.temporal.dev_server import ReferenceAgentWorker, TemporalDevServer

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def operator(django_user_model):
    """Operates and approves in every namespace the test makes (roles added per namespace)."""
    return django_user_model.objects.create_user("olga", password="correct horse battery")


def grant(user, namespace) -> None:
    for role in ("operator", "approver"):
        Membership.objects.get_or_create(user=user, namespace=namespace, role=role)


def applied(command: Command) -> Command | None:
    command.refresh_from_db()
    assert command.state not in (CommandState.FAILED, CommandState.EXPIRED), command.last_error
    return command if command.state == CommandState.APPLIED else None


def waiting_run(temporal_server, connection, operator) -> tuple[Run, ApprovalRequest]:
    """A reference-agent workflow that the worker's follower has found waiting for approval."""
    grant(operator, connection.namespace)
    workflow_id, _ = run_async(start_ticket(temporal_server.address))
    request = wait_until(
        lambda: ApprovalRequest.objects.filter(run__workflow_id=workflow_id).first(),
        timeout=90, what="the follower to open the workflow's approval request",
    )
    return request.run, request


@pytest.mark.postgres
@pytest.mark.redis
def test_pause_and_resume_reach_the_workflow_and_show_in_its_history(
    temporal_server, reference_worker, connected, temporal_celery_worker, operator
):
    connection = connected("ops-pause")
    run, _ = waiting_run(temporal_server, connection, operator)

    pause, _ = request_command(run, operator, "pause", reason="checking the refund")
    wait_until(lambda: applied(pause), timeout=90, what="the pause to be applied")
    run.refresh_from_db()
    assert run.status == "paused"
    paused = run.events.get(type="workflow.paused")
    assert paused.identity == f"flightdeck/olga/{pause.pk}"
    assert paused.attributes_for(raw=True)["reason"] == "checking the refund"

    resume, _ = request_command(run, operator, "resume")
    wait_until(lambda: applied(resume), timeout=90, what="the resume to be applied")
    run.refresh_from_db()
    assert run.status == "running"
    assert run.events.get(type="workflow.resumed").identity == f"flightdeck/olga/{resume.pk}"
    assert "Temporal recorded it as event" in Command.objects.get(pk=pause.pk).ack_detail


@pytest.mark.postgres
@pytest.mark.redis
def test_an_approval_decided_in_flightdeck_lets_the_workflow_finish(
    temporal_server, reference_worker, connected, temporal_celery_worker, operator
):
    connection = connected("ops-approve")
    run, request = waiting_run(temporal_server, connection, operator)
    approvals.decide(request, operator, "approve", "refund is fine")
    command = Command.objects.get(approval=request)
    assert command.connector == "temporal"
    wait_until(lambda: applied(command), timeout=90, what="the approval to be applied")
    wait_until(lambda: Run.objects.get(pk=run.pk).status == "completed", timeout=90,
               what="the workflow to complete")
    run.refresh_from_db()
    signal = run.events.get(type="signal.received")
    assert signal.identity == f"flightdeck/olga/{command.pk}"
    decision = signal.attributes_for(raw=True)
    assert decision["signal_name"] == "flightdeck.approval"
    assert {key: decision["input"][key] for key in ("request_id", "decision", "comment",
                                                    "approver")} == {
        "request_id": request.request_id, "decision": "approved",
        "comment": "refund is fine", "approver": "olga",
    }
    refund = run.events.filter(type="activity.completed").order_by("event_id")
    assert any(e.attributes_for(raw=True).get("output", {}) == {
        "refund_id": "rf-4321", "state": "issued", "amount_cents": 2500} for e in refund)


@pytest.mark.postgres
@pytest.mark.redis
def test_a_cancel_reaches_the_workflow_which_cleans_up_and_ends_cancelled(
    temporal_server, reference_worker, connected, temporal_celery_worker, operator
):
    connection = connected("ops-cancel")
    run, _ = waiting_run(temporal_server, connection, operator)
    cancel, _ = request_command(run, operator, "cancel", reason="customer withdrew")
    wait_until(lambda: applied(cancel), timeout=90, what="the cancel request to be applied")
    wait_until(lambda: Run.objects.get(pk=run.pk).status == "cancelled", timeout=90,
               what="the workflow to end cancelled")
    run.refresh_from_db()
    requested = run.events.get(type="workflow.cancel_requested")
    assert requested.identity == f"flightdeck/olga/{cancel.pk}"
    assert requested.attributes_for(raw=True)["reason"] == "customer withdrew"
    cleanup = run.events.filter(type="activity.scheduled", event_id__gt=requested.event_id)
    assert [e.attributes_for(raw=True)["activity_type"] for e in cleanup] == ["tool.release_hold"]
    assert run.events.order_by("-event_id").first().type == "workflow.cancelled"


@pytest.fixture(scope="module")
def server_without_pause(tmp_path_factory, temporal_server):
    """A second dev server, with workflow pause left off (Temporal's default)."""
    server = TemporalDevServer(tmp_path_factory.mktemp("temporal-nopause"), pause=False)
    server.start()
    worker = ReferenceAgentWorker(server.address, TASK_QUEUE,
                                  tmp_path_factory.mktemp("agent-nopause") / "worker.log")
    worker.start()
    yield server
    worker.stop()
    server.stop()


def test_a_pause_is_refused_clearly_when_the_service_has_pause_disabled(
    server_without_pause, connected, operator
):
    connection = connected("nopause", address=server_without_pause.address)
    grant(operator, connection.namespace)
    workflow_id, _ = run_async(start_ticket(server_without_pause.address))
    for _ in range(10):
        follow_connection(connection.pk, seconds=1)
        if ApprovalRequest.objects.filter(run__workflow_id=workflow_id).exists():
            break
    run = Run.objects.get(workflow_id=workflow_id)
    pause, _ = request_command(run, operator, "pause", reason="try")
    deliver_command(str(pause.pk))  # the delivery task, in-process: the outcome is at once
    pause.refresh_from_db()
    assert pause.state == CommandState.FAILED
    assert "frontend.WorkflowPauseEnabled" in pause.last_error
    assert "Temporal refused pause" in pause.last_error


def test_a_run_imported_from_a_file_cannot_be_sent_commands(db, operator):
    from access.models import Namespace
    from interventions.commands import CommandRefused
    from temporal import importer
    from tests.temporal.samples import history_bytes

    namespace = Namespace.objects.create(slug="files")
    grant(operator, namespace)
    imp = importer.start_import(namespace=namespace, user=None, content=history_bytes(),
                                inline=True)
    run = Run.objects.get(uuid=imp.runs[0]["uuid"])
    run.status = "running"  # as if the file ended while it still ran
    run.save(update_fields=["status"])
    with pytest.raises(CommandRefused, match="no Temporal connection"):
        request_command(run, operator, "signal", signal_name="poke")


def test_a_signal_and_a_termination_reach_the_workflow(
    temporal_server, reference_worker, connected, operator
):
    """Delivered in-process (the task's code, without a worker): the signal with its name and
    payload, then the termination, each recorded by Temporal with the operator's identity."""
    workflow_id, _ = run_async(start_ticket(temporal_server.address))
    connection = connected("ops-terminate", workflow_query=f'WorkflowId = "{workflow_id}"')
    grant(operator, connection.namespace)
    for _ in range(10):
        follow_connection(connection.pk, seconds=1)
        if ApprovalRequest.objects.filter(run__workflow_id=workflow_id).exists():
            break
    run = Run.objects.get(workflow_id=workflow_id)
    signal, _ = request_command(run, operator, "signal", signal_name="poke",
                                payload={"note": "are you there?"})
    deliver_command(str(signal.pk))
    terminate, _ = request_command(run, operator, "terminate", reason="stuck ticket")
    deliver_command(str(terminate.pk))
    for _ in range(10):
        follow_connection(connection.pk, seconds=1)
        if Run.objects.get(pk=run.pk).status == "terminated":
            break
    run.refresh_from_db()
    assert run.status == "terminated"
    poke = run.events.get(type="signal.received")
    assert poke.identity == f"flightdeck/olga/{signal.pk}"
    assert poke.attributes_for(raw=True)["input"] == {"note": "are you there?"}
    ended = run.events.get(type="workflow.terminated")
    assert ended.identity == f"flightdeck/olga/{terminate.pk}"
    assert ended.attributes_for(raw=True)["reason"] == "stuck ticket"
    for command in (signal, terminate):
        command.refresh_from_db()
        assert command.state == CommandState.APPLIED, command.last_error
    # A second delivery of the termination (its answer lost) is harmless: still delivered.
    Command.objects.filter(pk=terminate.pk).update(state=CommandState.DISPATCHED,
                                                    claimed_until=None)
    deliver_command(str(terminate.pk))
    terminate.refresh_from_db()
    assert terminate.state == CommandState.DELIVERED, terminate.last_error
