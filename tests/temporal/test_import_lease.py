"""The lease an import is carried out under (temporal/importer.py `perform`, the task in
temporal/tasks.py): one worker at a time, and a stalled import taken over once its lease ends."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from temporal import importer, tasks
from temporal.models import ImportState, TemporalImport
from tests.temporal.samples import history, history_bytes

EVENTS = len(history()["events"])


class WorkerDied(BaseException):
    """Stands for the end of a worker process in the middle of an import."""


@pytest.fixture
def queued(acme, ivy, monkeypatch):
    monkeypatch.setattr(importer, "CHUNK", 10)  # progress (and the lease) moves every 10 events
    return importer.start_import(namespace=acme, user=ivy, content=history_bytes(),
                                 filename="h.json", inline=False)


def stalled(imp: TemporalImport) -> TemporalImport:
    """Run the import until its first progress write, then let its worker die there."""

    def die(done: int, total: int) -> None:
        raise WorkerDied

    with pytest.raises(WorkerDied):
        importer.perform(imp, progress=die)
    imp.refresh_from_db()
    assert (imp.state, imp.events_done) == (ImportState.RUNNING, 10)
    return imp


def test_a_redelivered_message_while_the_import_runs_does_not_start_it_twice(queued):
    retried = []

    def redelivered(done: int, total: int) -> None:
        if done == 10:  # the broker hands the same message to another worker meanwhile
            # It is put back to come again after the lease, in case this worker dies.
            with pytest.raises(Retry):
                tasks.import_history(queued.pk)
            retried.append(done)

    imp = importer.perform(queued, progress=redelivered)
    assert (imp.state, imp.stored, imp.duplicates, imp.events_done) == (
        ImportState.DONE, EVENTS, 0, EVENTS
    )
    imp.refresh_from_db()
    assert (imp.stored, imp.duplicates) == (EVENTS, 0)
    assert retried == [10]


def test_a_second_claim_within_the_lease_is_refused(queued):
    imp = stalled(queued)
    again = importer.perform(TemporalImport.objects.get(pk=imp.pk))
    assert (again.state, again.events_done, again.stored) == (ImportState.RUNNING, 10, 0)


def test_an_import_whose_lease_ended_is_taken_over_and_finished(queued):
    imp = stalled(queued)
    TemporalImport.objects.filter(pk=imp.pk).update(
        claimed_until=timezone.now() - timedelta(seconds=1)
    )
    assert tasks.import_history(imp.pk) is None
    imp.refresh_from_db()
    # The dead worker's 10 events were stored; the new one finds them as duplicates.
    assert (imp.state, imp.stored, imp.duplicates, imp.events_done) == (
        ImportState.DONE, EVENTS - 10, 10, EVENTS
    )
    assert imp.claimed_until is None


def test_a_worker_that_lost_its_lease_stops_without_overwriting_the_outcome(queued):
    def overtaken(done: int, total: int) -> None:
        if done == 10:  # this worker stalled past its lease; another took the import over
            TemporalImport.objects.filter(pk=queued.pk).update(
                claimed_until=timezone.now() - timedelta(seconds=1)
            )
            importer.perform(TemporalImport.objects.get(pk=queued.pk))

    imp = importer.perform(queued, progress=overtaken)
    assert imp.state == ImportState.DONE
    imp.refresh_from_db()
    assert (imp.state, imp.stored, imp.duplicates) == (ImportState.DONE, EVENTS - 10, 10)


def test_a_finished_import_is_not_claimed_again(queued):
    importer.perform(queued)
    TemporalImport.objects.filter(pk=queued.pk).update(claimed_until=None)
    assert tasks.import_history(queued.pk) is None
    imp = TemporalImport.objects.get(pk=queued.pk)
    assert (imp.state, imp.stored) == (ImportState.DONE, EVENTS)
