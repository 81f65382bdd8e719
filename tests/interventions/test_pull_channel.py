"""The long-poll's hand-out against the rows' locks, on PostgreSQL. (Through a real server and
worker: test_delivery_worker.py; two polls at once: test_races.py.)"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from interventions.models import Command
from interventions.pull_channel import hand_out
from tests.builders import event


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_poll_woken_while_the_worker_still_writes_the_row_waits_for_it(
    ingest, agent_token, support_agent
):
    """The worker publishes the wake-up, then updates the row once more (its claim); a poll
    woken in between must wait for that write, not skip the row and miss the command."""
    ingest(agent_token, [event(1, "workflow.started")])
    now = timezone.now()
    command = Command.objects.create(
        run=support_agent.runs.get(), agent=support_agent, kind="pause", connector="pull",
        state="dispatched", dispatched_at=now, deadline=now + timedelta(hours=1),
    )
    locked, release = threading.Event(), threading.Event()

    def worker_still_writing():
        try:
            with transaction.atomic():
                Command.objects.filter(pk=command.pk).update(claimed_until=now)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    writer = threading.Thread(target=worker_still_writing)
    writer.start()
    assert locked.wait(10)
    threading.Timer(0.3, release.set).start()
    handed_out = hand_out(support_agent.pk)
    writer.join(10)
    assert [message["id"] for message in handed_out] == [str(command.pk)]
    command.refresh_from_db()
    assert command.state == "delivered"
