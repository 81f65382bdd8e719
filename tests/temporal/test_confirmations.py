"""A Temporal command is applied once Temporal's record of it, carrying the identity Flightdeck
sent it with, is stored in the run's history (temporal/confirmations.py)."""

from __future__ import annotations

import pytest

from access.models import Membership
from history.ingest import ingest_parsed
from history.models import Run
from interventions.commands import request_command
from interventions.vocabulary import CommandState
from temporal import importer, preparation
from temporal.confirmations import command_id_in, identity_for
from tests.temporal.samples import history_bytes


@pytest.fixture
def followed(acme, alice, monkeypatch):
    """An imported reference-agent run, opened again (as if still running), whose agent's
    connector accepts commands as a connection's would (nothing is sent here)."""
    from interventions.connectors.temporal import TemporalConnector

    monkeypatch.setattr(TemporalConnector, "refusal", lambda self, kind, agent: None)
    imp = importer.start_import(namespace=acme, user=None, content=history_bytes(),
                                inline=True)
    run = Run.objects.get(uuid=imp.runs[0]["uuid"])
    run.status = "running"
    run.save(update_fields=["status"])
    return run


def temporal_event(run: Run, event_id: int, temporal_type: str, identity: str):
    key = "".join(w.capitalize() for w in temporal_type.lower().split("_"))
    event = {"eventId": str(event_id), "eventTime": "2026-11-26T18:00:00Z",
             "eventType": f"EVENT_TYPE_{temporal_type}",
             f"{key[0].lower()}{key[1:]}EventAttributes": {"identity": identity,
                                                           "reason": "r"}}
    return preparation.parse_wire(event, run.workflow_id, run.run_id, event_id, "test")


def dispatched(run, user, kind, **options):
    command, _ = request_command(run, user, kind, **options)
    command.claim(60)
    return command


def test_identity_names_the_user_and_the_command(followed, alice):
    command = dispatched(followed, alice, "pause", reason="look")
    assert identity_for(command) == f"flightdeck/alice/{command.pk}"
    assert command_id_in(identity_for(command)) == command.pk
    assert command_id_in("12229@vm") is None and command_id_in(None) is None


def test_the_recorded_effect_applies_the_command(followed, alice):
    command = dispatched(followed, alice, "pause", reason="look")
    event = temporal_event(followed, followed.last_event_id + 1, "WORKFLOW_EXECUTION_PAUSED",
                           identity_for(command))
    ingest_parsed(importer.writer_token(followed.agent), [event])
    command.refresh_from_db()
    assert command.state == CommandState.APPLIED
    assert command.ack_detail == (
        f"Temporal recorded it as event {event.event_id} (workflow.paused)"
    )


def test_an_effect_naming_another_runs_command_moves_nothing(followed, alice, acme):
    other = Run.objects.create(namespace=acme, agent=followed.agent, workflow_id="other",
                               run_id="r", started_at=followed.started_at)
    Membership.objects.get_or_create(user=alice, namespace=acme, role="operator")
    command = dispatched(other, alice, "pause", reason="look")
    event = temporal_event(followed, followed.last_event_id + 1, "WORKFLOW_EXECUTION_PAUSED",
                           identity_for(command))
    ingest_parsed(importer.writer_token(followed.agent), [event])
    command.refresh_from_db()
    assert command.state == CommandState.DISPATCHED
