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
from dataclasses import dataclass
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
        from temporal.confirmations import identity_for
        from temporal.models import TemporalConnection

        connection = TemporalConnection.objects.filter(agent_id=command.agent_id).first()
        if connection is None:
            return Outcome(error="the agent no longer has a Temporal connection")
        run = command.run
        # Everything the calls need, read here: no database access from the event loop.
        call = Call(
            kind=command.kind, workflow_id=run.workflow_id, run_id=run.run_id,
            identity=identity_for(command), request_id=str(command.id),
            reason=command.reason or f"{command.kind} from Flightdeck",
            signal_name=(command.signal_name if command.kind == CommandKind.SIGNAL
                         else connection.approval_signal),
            payload=command.payload, namespace=connection.temporal_namespace,
        )
        try:
            return asyncio.run(_deliver(connection, call))
        except UnreadableSecret as exc:
            return Outcome(error=f"Temporal connection {connection.name}: {exc}")


@dataclass(frozen=True)
class Call:
    kind: str
    workflow_id: str
    run_id: str
    identity: str
    request_id: str
    reason: str
    signal_name: str
    payload: dict
    namespace: str


async def _deliver(connection, call: Call) -> Outcome:
    from temporalio.service import RPCError

    from interventions.outbound import RefusedAddress, UnresolvableHost
    from temporal.client import connect

    try:
        client = await connect(connection, identity=call.identity)
    except UnresolvableHost as exc:  # DNS may answer later: retried
        return Outcome(retry=True, error=f"Temporal connection {connection.name}: {exc}"[:500])
    except RefusedAddress as exc:
        # Outside TEMPORAL_ALLOWED_NETWORKS: no later attempt can pass while the setting
        # stands, so the command fails now rather than after all its attempts.
        return Outcome(error=f"Temporal connection {connection.name}: {exc}"[:500])
    except Exception as exc:  # unreachable, TLS or authentication trouble: retried
        return Outcome(retry=True, error=f"Temporal at {connection.address}: {exc}"[:500])
    try:
        await _call(client, call)
    except RPCError as exc:
        return await _answer(client, call, exc)
    return Outcome(delivered=True)


async def _call(client, call: Call) -> None:
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
    execution = WorkflowExecution(workflow_id=call.workflow_id, run_id=call.run_id)
    timeout = timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT_SECONDS)
    if call.kind in (CommandKind.PAUSE, CommandKind.RESUME):
        pause = call.kind == CommandKind.PAUSE
        request_type = PauseWorkflowExecutionRequest if pause else UnpauseWorkflowExecutionRequest
        method = (service.pause_workflow_execution if pause
                  else service.unpause_workflow_execution)
        await method(request_type(
            namespace=call.namespace, workflow_id=call.workflow_id, run_id=call.run_id,
            identity=call.identity, reason=call.reason, request_id=call.request_id,
        ), timeout=timeout)
    elif call.kind == CommandKind.CANCEL:
        await service.request_cancel_workflow_execution(RequestCancelWorkflowExecutionRequest(
            namespace=call.namespace, workflow_execution=execution, identity=call.identity,
            request_id=call.request_id, reason=call.reason,
        ), timeout=timeout)
    elif call.kind == CommandKind.TERMINATE:
        await service.terminate_workflow_execution(TerminateWorkflowExecutionRequest(
            namespace=call.namespace, workflow_execution=execution, reason=call.reason,
            identity=call.identity,
        ), timeout=timeout)
    else:  # signal, approve, reject
        payloads = await default().encode([call.payload])
        await service.signal_workflow_execution(SignalWorkflowExecutionRequest(
            namespace=call.namespace, workflow_execution=execution,
            signal_name=call.signal_name, input=Payloads(payloads=payloads),
            identity=call.identity, request_id=call.request_id,
        ), timeout=timeout)


async def _answer(client, call: Call, exc) -> Outcome:
    """What a refusal by the service means for the command, in words an operator can act on."""
    code = exc.status.name if exc.status is not None else "UNKNOWN"
    message = f"Temporal refused {call.kind}: {exc.message} ({code})"[:1000]
    if code in RETRY_CODES:
        return Outcome(retry=True, error=message)
    text = exc.message.lower()
    if call.kind in (CommandKind.PAUSE, CommandKind.RESUME) and (
        code in ("UNIMPLEMENTED", "PERMISSION_DENIED") or "disabled" in text
        or ("pause" in text and "enabled" in text)
    ):
        return Outcome(error=(
            f"{message}. Workflow pause is disabled on this Temporal service "
            "(dynamic config frontend.WorkflowPauseEnabled)"
        ))
    if call.kind == CommandKind.TERMINATE and await _terminated_already(client, call):
        return Outcome(delivered=True)  # an earlier attempt of this command got through
    return Outcome(error=message)


async def _terminated_already(client, call: Call) -> bool:
    """Whether the run is terminated already (a repeated delivery after a lost answer; a
    termination carries no request id for Temporal to deduplicate it by)."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.enums.v1 import WorkflowExecutionStatus
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
    from temporalio.service import RPCError

    try:
        answer = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=call.namespace,
                execution=WorkflowExecution(workflow_id=call.workflow_id, run_id=call.run_id),
            ),
            timeout=timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT_SECONDS),
        )
    except RPCError:
        return False
    terminated = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED
    return answer.workflow_execution_info.status == terminated
