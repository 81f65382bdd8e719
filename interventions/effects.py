"""What ingested events mean for Flightdeck's own records.

Connected to `history.signals.events_stored`, so it runs inside the ingest transaction: a
command's receipt or acknowledgement and an approval request commit with the event that
reports them. Each event is handled in a savepoint; a failure is logged and never costs the
agent its events.
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction

from interventions import approvals
from interventions.commands import CommandRefused, acknowledge, mark_received
from interventions.models import Command

log = logging.getLogger(__name__)

APPROVAL_CLAIMS = ("approval.granted", "approval.rejected", "approval.expired")
COMMAND_EVENTS = ("command.received", "command.applied", "command.rejected")


def on_events_stored(sender, events, **kwargs) -> None:
    run = sender
    for event in events:
        if event.type not in COMMAND_EVENTS and event.type != "approval.requested" and (
            event.type not in APPROVAL_CLAIMS
        ):
            continue
        try:
            with transaction.atomic():
                _apply(run, event)
        except Exception:
            log.exception("could not apply %s (event %s of run %s)", event.type,
                          event.event_id, run.uuid)


def _apply(run, event) -> None:
    if event.type == "approval.requested":
        approvals.open_from_event(run, event)
    elif event.type in APPROVAL_CLAIMS:
        approvals.record_claim(run, event)
    else:
        _command_effect(run, event)


def _command_effect(run, event) -> None:
    try:
        command_id = uuid.UUID(str(event.attributes.get("command_id")))
    except ValueError:
        log.warning("%s event %s of run %s has no valid command_id", event.type,
                    event.event_id, run.uuid)
        return
    command = Command.objects.filter(pk=command_id, run=run).first()
    if command is None:
        log.warning("%s event %s of run %s names unknown command %s", event.type,
                    event.event_id, run.uuid, command_id)
        return
    if event.type == "command.received":
        mark_received(command)
        return
    status = "applied" if event.type == "command.applied" else "rejected"
    try:
        acknowledge(command, status, str(event.attributes.get("detail") or ""))
    except CommandRefused as exc:
        log.warning("event %s of run %s: %s", event.event_id, run.uuid, exc)
