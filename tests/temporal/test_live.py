"""The reference agent on a real Temporal dev server: its history exported with
`temporal workflow show -o json` and imported into one namespace, and followed live into
another, must come out the same: the same events, in the same order, with the same attributes.

The follower runs in-process here (follow sessions, as the Celery task runs them); the
approval it opens is decided in Flightdeck and delivered by the real Temporal connector.
test_interventions.py does the same through a real Celery worker.
"""

from __future__ import annotations

import pytest

from history.models import Run
from interventions import approvals
from interventions.models import ApprovalRequest, Command
from interventions.tasks import deliver_command
from interventions.vocabulary import ApprovalState, CommandState
from temporal import importer
from temporal.follow import follow_connection
from tests.temporal.conftest import run_async, start_ticket

pytestmark = [pytest.mark.temporal, pytest.mark.django_db(transaction=True)]


def stored(run: Run) -> list[tuple]:
    return [
        (e.event_id, e.type, e.time_text, e.identity, e.refs, e.attributes)
        for e in run.events.order_by("event_id")
    ]


def follow_until(connection, predicate, what: str, rounds: int = 10):
    """Follow sessions of a few seconds until `predicate()` holds."""
    for _ in range(rounds):
        report = follow_connection(connection.pk, seconds=2)
        assert report is not None and not report["errors"], report
        if predicate():
            return
    raise AssertionError(f"following never reached: {what}")


def test_an_imported_and_a_followed_copy_of_the_reference_agent_are_the_same(
    temporal_server, reference_worker, connected, django_user_model
):
    connection = connected("live")
    workflow_id, run_id = run_async(start_ticket(temporal_server.address))

    # Live: the follower finds the workflow while it waits for approval.
    follow_until(
        connection, lambda: ApprovalRequest.objects.filter(run__workflow_id=workflow_id).exists(),
        "the approval request of the running workflow",
    )
    run = Run.objects.get(namespace=connection.namespace, workflow_id=workflow_id)
    assert run.run_id == run_id and run.status == "running"
    assert run.agent == connection.agent and run.workflow_type == "SupportAgent"
    request = ApprovalRequest.objects.get(run=run)
    assert (request.action, request.risk, request.request_id) == (
        "issue_refund", "high", f"issue_refund-{workflow_id}"
    )
    assert request.arguments == {"order_id": "4321", "amount_cents": 2500}

    # Approve in Flightdeck; the Temporal connector signals the workflow.
    approver = django_user_model.objects.create_superuser("ada", "ada@example.com", "x" * 12)
    approvals.decide(request, approver, "approve", "fine")
    command = Command.objects.get(approval=request)
    assert command.connector == "temporal"
    deliver_command(str(command.pk))
    command.refresh_from_db()
    assert command.state in (CommandState.DELIVERED, CommandState.APPLIED), command.last_error

    follow_until(connection, lambda: Run.objects.get(pk=run.pk).status == "completed",
                 "the workflow's completion")
    command.refresh_from_db()
    assert command.state == CommandState.APPLIED
    request.refresh_from_db()
    assert request.state == ApprovalState.APPROVED
    run.refresh_from_db()
    signal = run.events.get(type="signal.received")
    assert signal.identity == f"flightdeck/ada/{command.pk}"
    assert signal.attributes_for(raw=True)["input"]["decision"] == "approved"

    # The same workflow exported by the CLI and imported into another namespace.
    exported = temporal_server.export_history(workflow_id)
    from access.models import Namespace

    archive = Namespace.objects.create(slug="archive")
    imp = importer.start_import(namespace=archive, user=None, content=exported,
                                filename="export.json")
    assert imp.state == "done", imp.error
    imported = Run.objects.get(namespace=archive, workflow_id=workflow_id)
    assert imported.run_id == run.run_id
    assert (imported.status, imported.workflow_type, imported.labels, imported.event_count) == (
        run.status, run.workflow_type, run.labels, run.event_count
    )
    assert (imported.started_at, imported.closed_at) == (run.started_at, run.closed_at)
    for mine, theirs in zip(stored(imported), stored(run), strict=True):
        assert mine == theirs
    assert imported.head_hash != "" and imported.contiguous_through == run.event_count

    # The imported run had ended: its approval.requested event opens no request to decide.
    assert not ApprovalRequest.objects.filter(run=imported).exists()
    types = [row[1] for row in stored(run)]
    assert types[0] == "workflow.started" and types[-1] == "workflow.completed"
    assert {"decision.made", "activity.scheduled", "activity.completed", "approval.requested",
            "signal.received"} <= set(types)


def test_following_again_after_a_restart_stores_nothing_twice_and_leaves_no_gap(
    temporal_server, reference_worker, connected
):
    workflow_id, _ = run_async(start_ticket(temporal_server.address,
                                            text="Where is order 777?"))
    # Only this workflow (the session's server holds other tests' workflows too).
    connection = connected("restart", workflow_query=f'WorkflowId = "{workflow_id}"')
    follow_until(connection, lambda: Run.objects.filter(
        workflow_id=workflow_id, status="completed").exists(), "the completed question")
    run = Run.objects.get(workflow_id=workflow_id)
    before = stored(run)
    # A new session (as after a worker restart) reads the same history again.
    report = follow_connection(connection.pk, seconds=1)
    assert report["events_stored"] == 0
    run.refresh_from_db()
    assert stored(run) == before and not run.has_gaps
    assert run.event_count == run.last_event_id == run.contiguous_through


def test_a_session_is_not_started_twice_for_one_connection(connected):
    connection = connected("lease")
    assert connection.claim(60)
    assert follow_connection(connection.pk, seconds=1) is None


def test_a_run_imported_into_the_namespace_first_is_not_written_by_the_follower(
    temporal_server, reference_worker, connected
):
    workflow_id, _ = run_async(start_ticket(temporal_server.address, text="Order 55 status?"))
    connection = connected("shared", workflow_query=f'WorkflowId = "{workflow_id}"')
    follow_until(connection, lambda: Run.objects.filter(
        workflow_id=workflow_id, status="completed").exists(), "the completed question")
    import json

    exported = json.loads(temporal_server.export_history(workflow_id))
    exported["events"] = exported["events"][:10]  # exported while it still ran
    Run.objects.filter(workflow_id=workflow_id).delete()  # as if imported before following
    importer.start_import(namespace=connection.namespace, user=None,
                          content=json.dumps(exported).encode())
    imported = Run.objects.get(workflow_id=workflow_id)
    report = follow_connection(connection.pk, seconds=1)
    assert "belongs to another agent" in " ".join(report["errors"])
    connection.refresh_from_db()
    assert "belongs to another agent" in connection.last_error
    assert Run.objects.get(workflow_id=workflow_id).agent == imported.agent


def test_a_paused_workflow_is_still_followed_by_later_sessions(
    temporal_server, reference_worker, connected, django_user_model
):
    workflow_id, _ = run_async(start_ticket(temporal_server.address))
    connection = connected("paused", workflow_query=f'WorkflowId = "{workflow_id}"')
    follow_until(connection, lambda: ApprovalRequest.objects.filter(
        run__workflow_id=workflow_id).exists(), "the approval request")
    run = Run.objects.get(workflow_id=workflow_id)
    operator = django_user_model.objects.create_superuser("otto", "o@example.com", "x" * 12)
    from interventions.commands import request_command

    pause, _ = request_command(run, operator, "pause", reason="hold on")
    deliver_command(str(pause.pk))
    follow_until(connection, lambda: Run.objects.get(pk=run.pk).status == "paused", "paused")
    resume, _ = request_command(Run.objects.get(pk=run.pk), operator, "resume")
    deliver_command(str(resume.pk))
    # Each follow_until round is a new session: it must list the paused workflow to see this.
    follow_until(connection, lambda: Run.objects.get(pk=run.pk).status == "running", "resumed")
    pause.refresh_from_db()
    resume.refresh_from_db()
    assert (pause.state, resume.state) == (CommandState.APPLIED, CommandState.APPLIED)
