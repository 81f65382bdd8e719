"""A Temporal command is applied once Temporal's record of it is in the followed history.

Flightdeck sends every command to Temporal with the identity `flightdeck/<user>/<command id>`
(`identity_for`), and Temporal writes that identity on the event it records for it (the
signal, the cancel request, the termination, the pause or unpause). Connected to
`history.signals.events_stored`, so it runs in the ingest transaction of the followed events,
like `interventions.effects`; each event is handled in a savepoint, and a failure is logged,
never costing the history its events.
"""

from __future__ import annotations

import logging
import re
import uuid

from django.db import transaction

log = logging.getLogger(__name__)

IDENTITY_PREFIX = "flightdeck/"
_IDENTITY = re.compile(
    r"flightdeck/.*/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
# Flightdeck event types Temporal records for a command (docs/temporal.md).
EFFECT_TYPES = frozenset({
    "signal.received", "workflow.cancel_requested", "workflow.terminated", "workflow.paused",
    "workflow.resumed",
})
MAX_IDENTITY = 255


def identity_for(command) -> str:
    """The identity a command is sent to Temporal with: who asked, and which command."""
    user = command.requested_by.get_username() if command.requested_by else "system"
    suffix = f"/{command.id}"
    return f"{IDENTITY_PREFIX}{user[:MAX_IDENTITY - len(IDENTITY_PREFIX) - len(suffix)]}{suffix}"


def command_id_in(identity: str | None) -> uuid.UUID | None:
    match = _IDENTITY.fullmatch(identity or "")
    return uuid.UUID(match.group(1)) if match else None


def on_events_stored(sender, events, **kwargs) -> None:
    run = sender
    for event in events:
        if event.type not in EFFECT_TYPES:
            continue
        command_id = command_id_in(event.identity)
        if command_id is None:
            continue
        try:
            with transaction.atomic():
                _confirm(run, command_id, event)
        except Exception:
            log.exception("could not confirm command %s from event %s of run %s", command_id,
                          event.event_id, run.uuid)


def _confirm(run, command_id: uuid.UUID, event) -> None:
    from interventions.commands import CommandRefused, acknowledge
    from interventions.models import Command

    command = Command.objects.filter(pk=command_id, run=run).first()
    if command is None:
        return  # another installation's command, or an imported history: nothing to move
    detail = f"Temporal recorded it as event {event.event_id} ({event.type})"
    try:
        acknowledge(command, "applied", detail)
    except CommandRefused as exc:
        log.info("event %s of run %s: %s", event.event_id, run.uuid, exc)
