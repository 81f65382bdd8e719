"""Temporal: each command becomes one call to the Temporal service that runs the workflow.

pause / resume -> PauseWorkflowExecution / UnpauseWorkflowExecution (the service must allow it:
`frontend.WorkflowPauseEnabled`); cancel -> RequestCancelWorkflowExecution; terminate ->
TerminateWorkflowExecution; signal -> SignalWorkflowExecution with the command's name and
payload; approve / reject -> a signal named by the connection (default `flightdeck.approval`)
with `{request_id, decision, comment, approver, approvers}`. Each call carries the identity
`flightdeck/<user>/<command id>` and, where Temporal takes one, the command id as request id,
so a second delivery of the same command is deduplicated by Temporal.

The service's acceptance is the receipt (delivered); the command is applied once the event
Temporal recorded for it is in the followed history (`temporal.confirmations`). Calls run on
the `slow` queue with temporalio's asyncio client, one `asyncio.run` per delivery.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from django.conf import settings

from interventions.connectors.base import QUEUE_SLOW, Connector, Outcome
from interventions.vocabulary import CommandKind, ConnectorKind

# Answers worth another attempt: the service is down, overloaded or slow.
RETRY_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED",
                         "INTERNAL", "UNKNOWN", "CANCELLED"})


class TemporalConnector(Connector):
    kind = ConnectorKind.TEMPORAL
    queue = QUEUE_SLOW

    def refusal(self, command_kind: str, agent) -> str | None:
        from temporal.models import TemporalConnection

        connection = TemporalConnection.objects.filter(agent=agent).first()
        if connection is None:
            return (f"the agent {agent} has no Temporal connection (runs imported from a file "
                    "cannot be reached)")
        return None

    def dispatch(self, command) -> Outcome:
        from access.encryption import UnreadableSecret
        from temporal.models import TemporalConnection

        connection = TemporalConnection.objects.filter(agent_id=command.agent_id).first()
        if connection is None:
            return Outcome(error="the agent no longer has a Temporal connection")
        try:
            return asyncio.run(_deliver(connection, command))
        except UnreadableSecret as exc:
            return Outcome(error=f"Temporal connection {connection.name}: {exc}")


async def _deliver(connection, command) -> Outcome:
    from temporalio.service import RPCError

    from temporal.client import connect
    from temporal.confirmations import identity_for

    identity = identity_for(command)
    try:
        client = await connect(connection, identity=identity)
    except Exception as exc:  # unreachable, TLS or authentication trouble: retried
        return Outcome(retry=True, error=f"Temporal at {connection.address}: {exc}"[:500])
    try:
        await _call(client, connection, command, identity)
    except RPCError as exc:
        return await _answer(client, connection, command, exc)
    return Outcome(delivered=True)


async def _call(client, connection, command, identity: str) -> None:
    from temporalio.api.common.v1 import Payloads, WorkflowExecution
    from temporalio.api.workflowservice.v1 import (
        PauseWorkflowExecutionRequest,
        RequestCancelWorkflowExecutionRequest,
        SignalWorkflowExecutionRequest,
        TerminateWorkflowExecutionRequest,
        UnpauseWorkflowExecutionRequest,
    )
    from temporalio.converter import default

    service = client.workflow_service
    namespace = connection.temporal_namespace
    run = command.run
    execution = WorkflowExecution(workflow_id=run.workflow_id, run_id=run.run_id)
    request_id = str(command.id)
    timeout = timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT_SECONDS)
    reason = command.reason or f"{command.kind} from Flightdeck"
    kind = command.kind
    if kind in (CommandKind.PAUSE, CommandKind.RESUME):
        request_type = (PauseWorkflowExecutionRequest if kind == CommandKind.PAUSE
                        else UnpauseWorkflowExecutionRequest)
        call = (service.pause_workflow_execution if kind == CommandKind.PAUSE
                else service.unpause_workflow_execution)
        await call(request_type(
            namespace=namespace, workflow_id=run.workflow_id, run_id=run.run_id,
            identity=identity, reason=reason, request_id=request_id,
        ), timeout=timeout)
    elif kind == CommandKind.CANCEL:
        await service.request_cancel_workflow_execution(RequestCancelWorkflowExecutionRequest(
            namespace=namespace, workflow_execution=execution, identity=identity,
            request_id=request_id, reason=reason,
        ), timeout=timeout)
    elif kind == CommandKind.TERMINATE:
        await service.terminate_workflow_execution(TerminateWorkflowExecutionRequest(
            namespace=namespace, workflow_execution=execution, reason=reason, identity=identity,
        ), timeout=timeout)
    else:  # signal, approve, reject
        name = command.signal_name if kind == CommandKind.SIGNAL else connection.approval_signal
        payloads = await default().encode([command.payload])
        await service.signal_workflow_execution(SignalWorkflowExecutionRequest(
            namespace=namespace, workflow_execution=execution, signal_name=name,
            input=Payloads(payloads=payloads), identity=identity, request_id=request_id,
        ), timeout=timeout)


async def _answer(client, connection, command, exc) -> Outcome:
    """What a refusal by the service means for the command, in words an operator can act on."""
    code = exc.status.name if exc.status is not None else "UNKNOWN"
    message = f"Temporal refused {command.kind}: {exc.message} ({code})"[:1000]
    if code in RETRY_CODES:
        return Outcome(retry=True, error=message)
    if command.kind in (CommandKind.PAUSE, CommandKind.RESUME) and (
        code in ("UNIMPLEMENTED", "PERMISSION_DENIED")
        or ("pause" in exc.message.lower() and "enabled" in exc.message.lower())
        or "disabled" in exc.message.lower()
    ):
        return Outcome(error=(
            f"{message}. Workflow pause is disabled on this Temporal service "
            "(dynamic config frontend.WorkflowPauseEnabled)"
        ))
    if command.kind == CommandKind.TERMINATE and await _terminated_already(client, connection,
                                                                          command):
        return Outcome(delivered=True)  # an earlier attempt of this command got through
    return Outcome(error=message)


async def _terminated_already(client, connection, command) -> bool:
    """Whether the run is terminated already (a repeated delivery after a lost answer; a
    termination carries no request id for Temporal to deduplicate it by)."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.enums.v1 import WorkflowExecutionStatus
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
    from temporalio.service import RPCError

    try:
        answer = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=connection.temporal_namespace,
                execution=WorkflowExecution(workflow_id=command.run.workflow_id,
                                            run_id=command.run.run_id),
            ),
            timeout=timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT_SECONDS),
        )
    except RPCError:
        return False
    terminated = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED
    return answer.workflow_execution_info.status == terminated
