"""The Temporal connector's answers that need no Temporal service
(interventions/connectors/temporal.py)."""

from __future__ import annotations

from history.models import Run
from interventions.commands import request_command
from interventions.models import Command
from interventions.tasks import deliver_command
from interventions.vocabulary import CommandState
from temporal import importer
from temporal.connections import save_connection
from temporal.preparation import prepare
from tests.temporal.samples import history_bytes


def test_an_address_outside_the_allowed_networks_fails_the_command_at_once(acme, alice,
                                                                           settings):
    """Saved while allowed, refused when the command is delivered: no attempt can succeed
    while the setting stands, so the command fails on its first attempt, saying why."""
    settings.TEMPORAL_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    connection = save_connection(acme, {"name": "local", "address": "127.0.0.1:1"},
                                 actor=alice)
    # The run as the follower would store it (an import may not write into this agent).
    importer.store(importer.writer_token(connection.agent), prepare(history_bytes()))
    run = Run.objects.get(agent=connection.agent)
    Run.objects.filter(pk=run.pk).update(status="running")
    command, _ = request_command(Run.objects.get(pk=run.pk), alice, "pause", reason="look")
    settings.TEMPORAL_ALLOWED_NETWORKS = []

    deliver_command(str(command.pk))  # no Retry raised: nothing is worth another attempt

    command = Command.objects.get(pk=command.pk)
    assert (command.state, command.attempts) == (CommandState.FAILED, 1)
    assert "TEMPORAL_ALLOWED_NETWORKS" in command.last_error
    assert "127.0.0.1" in command.last_error and "local" in command.last_error
