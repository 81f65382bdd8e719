"""Examining runs already stored, as ingest would have when their events arrived: for runs
stored before the governance app existed, or loaded in bulk (history.seeding), which sends no
`events_stored`. Events are replayed in arrival order, batch by batch (a batch being the events
received at one moment), so that "decided before Flightdeck received the call" reads as it did.
"""

from __future__ import annotations

from itertools import groupby

from django.db import transaction

from governance import durability_checks
from governance.detection import StoredEvent, examine
from history.models import Event, Run


def examine_stored(*, namespace=None) -> int:
    """Examine every run (of `namespace`); returns how many. Safe to repeat: findings and
    judged calls are stored once."""
    runs = Run.objects.select_related("agent").order_by("pk")
    if namespace is not None:
        runs = runs.filter(namespace=namespace)
    count = 0
    for run in runs.iterator(chunk_size=200):
        examine_run(run)
        count += 1
    return count


def examine_run(run: Run) -> None:
    events = (
        Event.objects.filter(run=run).order_by("received_seq")
        .only("event_id", "type", "refs", "attributes", "received_at").iterator(2000)
    )
    with transaction.atomic():
        # Ingest's lock: a batch arriving meanwhile waits, and findings are counted once.
        run = Run.objects.select_for_update().select_related("agent").get(pk=run.pk)
        durability_checks.mark_due(run)
        for received_at, batch in groupby(events, key=lambda event: event.received_at):
            examine(run, [StoredEvent.of(event) for event in batch], received_at=received_at)
