"""Requesting, enqueueing and acknowledging commands: the one place each of these happens.

The run page, the API and the approvals path call `request_command` / `create_command`; the
pull channel and the effects of ingested events call `acknowledge` / `mark_received`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from access.permissions import has_capability
from access.roles import Capability
from audit.log import record
from history.models import Run
from history.vocabulary import RunStatus
from interventions.connectors import connector_for, connector_kind_for
from interventions.models import Command
from interventions.vocabulary import (
    OPEN_STATES,
    OPERATOR_KINDS,
    REASON_REQUIRED,
    TERMINAL_STATES,
    CommandKind,
    CommandState,
)

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_REASON_CHARS = 2000
MAX_SIGNAL_NAME_CHARS = 200


class CommandRefused(Exception):
    """A request that cannot be carried out; `field` names what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotAllowed(Exception):
    """The user lacks the capability for this verb in the run's namespace."""


def allowed_kinds(run: Run, user) -> list[str]:
    """The operator verbs the run's state and the user's roles allow now (for the form)."""
    if run.is_closed or not has_capability(user, run.namespace_id, Capability.OPERATE):
        return []
    kinds = []
    for kind in OPERATOR_KINDS:
        try:
            _check_state(run, kind)
        except CommandRefused:
            continue
        kinds.append(kind)
    return kinds


def _check_state(run: Run, kind: str) -> None:
    if run.is_closed:
        raise CommandRefused(
            "kind", f"the run is {run.get_status_display().lower()}; commands can only be "
            "sent to a run that is still open"
        )
    if kind == CommandKind.RESUME and run.status != RunStatus.PAUSED:
        raise CommandRefused(
            "kind", f"resume: the run is not paused (it is {run.get_status_display().lower()})"
        )
    if kind == CommandKind.PAUSE and run.status == RunStatus.PAUSED:
        raise CommandRefused("kind", "pause: the run is already paused")


def request_command(
    run: Run,
    user,
    kind: str,
    *,
    reason: str = "",
    payload=None,
    signal_name: str = "",
    command_id=None,
    request=None,
) -> tuple[Command, bool]:
    """An operator's command: checked, stored, audited, and enqueued after commit.

    Returns (command, created). A repeat of the same `command_id` by the same user for the same
    run and verb returns the first command (a double-clicked button makes one command).
    Raises NotAllowed, or CommandRefused naming the field.
    """
    if kind not in CommandKind.values:
        raise CommandRefused("kind", f"must be one of {', '.join(OPERATOR_KINDS)}")
    if kind not in OPERATOR_KINDS:
        raise CommandRefused(
            "kind", f"{kind} is decided in the approvals inbox, not sent as a command"
        )
    if not has_capability(user, run.namespace_id, Capability.OPERATE):
        raise NotAllowed(f"sending commands needs the operate capability in {run.namespace}")
    reason = (reason or "").strip()
    if kind in REASON_REQUIRED and not reason:
        raise CommandRefused("reason", f"a reason is required to {kind} a run")
    if len(reason) > MAX_REASON_CHARS:
        raise CommandRefused("reason", f"must be at most {MAX_REASON_CHARS} characters")
    payload = {} if payload is None else payload
    if not isinstance(payload, dict):
        raise CommandRefused("payload", "must be a JSON object")
    try:
        encoded = orjson.dumps(payload)
    except (TypeError, orjson.JSONEncodeError):
        raise CommandRefused(
            "payload", "must hold only JSON values (integers within 64 bits)"
        ) from None
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise CommandRefused("payload", f"must be at most {MAX_PAYLOAD_BYTES} bytes as JSON")
    # PostgreSQL's text and jsonb cannot hold U+0000; refuse it rather than fail on save.
    if "\x00" in reason:
        raise CommandRefused("reason", "must not contain the NUL character (U+0000)")
    if b"\\u0000" in encoded and _holds_nul(payload):
        raise CommandRefused("payload", "must not contain the NUL character (U+0000)")
    signal_name = (signal_name or "").strip()
    if len(signal_name) > MAX_SIGNAL_NAME_CHARS:
        raise CommandRefused(
            "signal_name", f"must be at most {MAX_SIGNAL_NAME_CHARS} characters"
        )
    if "\x00" in signal_name:
        raise CommandRefused("signal_name", "must not contain the NUL character (U+0000)")
    if kind == CommandKind.SIGNAL and not signal_name:
        raise CommandRefused("signal_name", "a signal needs a name")
    if kind != CommandKind.SIGNAL and signal_name:
        raise CommandRefused("signal_name", f"only a signal has a name, not {kind}")
    if command_id is not None:
        try:
            command_id = uuid.UUID(str(command_id))
        except ValueError:
            raise CommandRefused("command_id", "must be a UUID") from None

    with transaction.atomic():
        # The run's row lock serialises requests for one run: the state checks below and the
        # "already requested" check cannot both pass for two racing clicks.
        run = Run.objects.select_for_update().get(pk=run.pk)
        if command_id is not None:
            existing = Command.objects.filter(pk=command_id).first()
            if existing is not None:
                if (existing.run_id, existing.requested_by_id, existing.kind) == (
                    run.pk, user.pk, kind
                ):
                    return existing, False
                raise CommandRefused("command_id", "is already used by another command")
        _check_state(run, kind)
        if kind != CommandKind.SIGNAL:
            pending = Command.objects.filter(run=run, kind=kind, state__in=OPEN_STATES).first()
            if pending is not None:
                raise CommandRefused(
                    "kind", f"{kind} was already requested (command {pending.id} is "
                    f"{pending.state}); wait for its outcome"
                )
        connector_kind = connector_kind_for(run.agent)
        refusal = connector_for(connector_kind).refusal(kind, run.agent)
        if refusal:
            raise CommandRefused("kind", f"{kind} cannot be delivered: {refusal}")
        command = create_command(
            run, kind, requested_by=user, reason=reason, payload=payload,
            signal_name=signal_name, command_id=command_id, connector_kind=connector_kind,
        )
        record(
            "command.requested", actor=user, request=request, namespace=run.namespace,
            obj=command, object_repr=f"{command.label} on {run.workflow_id}",
            after={"kind": kind, "reason": reason, "run": str(run.uuid),
                   "signal_name": signal_name or None},
        )
    return command, True


def _holds_nul(value) -> bool:
    """Whether any key or string in a JSON value contains U+0000 (iterative: no depth limit)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def create_command(
    run: Run,
    kind: str,
    *,
    requested_by=None,
    reason: str = "",
    payload=None,
    signal_name: str = "",
    approval=None,
    command_id=None,
    connector_kind: str | None = None,
) -> Command:
    """Insert the outbox row and enqueue its delivery once the transaction commits."""
    now = timezone.now()
    command = Command.objects.create(
        id=command_id or uuid.uuid4(),
        run=run,
        agent_id=run.agent_id,
        kind=kind,
        signal_name=signal_name,
        payload=payload or {},
        reason=reason,
        requested_by=requested_by,
        approval=approval,
        connector=connector_kind or connector_kind_for(run.agent),
        created_at=now,
        deadline=now + timedelta(seconds=settings.COMMAND_DELIVERY_DEADLINE_SECONDS),
        next_attempt_at=now + timedelta(seconds=settings.COMMAND_STUCK_AFTER_SECONDS),
    )
    transaction.on_commit(lambda: enqueue(command.pk, command.connector))
    return command


def enqueue(command_id, connector_kind: str) -> None:
    """Send the delivery task. If the broker is unreachable the row stays queued and the
    sweeper enqueues it later: logged, never lost."""
    from interventions.tasks import deliver_command

    try:
        deliver_command.apply_async(
            args=[str(command_id)], queue=connector_for(connector_kind).queue
        )
    except Exception as exc:  # any broker error: the sweeper is the safety net
        log.warning("could not enqueue command %s (the sweeper will retry): %s", command_id, exc)


def mark_received(command: Command) -> bool:
    return command.advance(CommandState.DELIVERED)


def acknowledge(command: Command, status: str, detail: str = "") -> tuple[Command, bool]:
    """The agent's verdict: applied or rejected. Returns (command, changed). A repeat of the
    same verdict changes nothing; a different verdict after the first raises CommandRefused."""
    target = {"applied": CommandState.APPLIED, "rejected": CommandState.REJECTED}.get(status)
    if target is None:
        raise CommandRefused("status", "must be applied or rejected")
    detail = (detail or "")[:MAX_REASON_CHARS]
    if command.advance(target, ack_detail=detail):
        return command, True
    if command.state == target:
        return command, False
    if command.state in TERMINAL_STATES:
        raise CommandRefused(
            "status", f"the command is already {command.state}; {status} cannot replace it"
        )
    raise CommandRefused("status", f"the command is {command.state} and cannot be {status} yet")
