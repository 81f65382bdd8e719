"""Celery tasks of the Temporal app, on the `temporal` queue: follow sessions and large
history imports. Each takes an id and returns quietly when there is nothing to do."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from temporal import follow, importer
from temporal.models import ImportState, TemporalConnection, TemporalImport

log = logging.getLogger(__name__)


@shared_task(name="temporal.follow_connections", soft_time_limit=30, time_limit=60)
def follow_connections() -> int:
    """Periodic (beat): start a follow session for each enabled connection nobody follows."""
    due = list(TemporalConnection.objects.due_for_following().values_list("pk", flat=True))
    for pk in due:
        follow_connection.delay(pk)
    return len(due)


def _session_limit(margin: int) -> int:
    return settings.TEMPORAL_FOLLOW_SESSION_SECONDS + margin


@shared_task(
    name="temporal.follow_connection",
    # A session ends by itself after TEMPORAL_FOLLOW_SESSION_SECONDS; the limits only stop a
    # hung one. A session lost with its worker is started again by beat once its lease ends.
    soft_time_limit=_session_limit(60), time_limit=_session_limit(90),
)
def follow_connection(connection_id: int) -> dict | None:
    return follow.follow_connection(connection_id)


@shared_task(
    name="temporal.import_history", bind=True, acks_late=True, reject_on_worker_lost=True,
    soft_time_limit=1800, time_limit=1900, max_retries=None,
)
def import_history(self, import_id: int) -> None:
    """Import a large uploaded file. A message delivered again while another worker holds the
    import's lease (a redelivery while the first worker is alive, or after it died) is put
    back until the lease ends: then the import is finished, or stalled and taken over (the
    events stored so far are duplicates, the rest follow). Retries are bounded by the lease:
    a worker renews it only while it makes progress, within this task's time limit."""
    imp = TemporalImport.objects.select_related("namespace", "agent", "requested_by").filter(
        pk=import_id, state__in=[ImportState.QUEUED, ImportState.RUNNING]
    ).first()
    if imp is None:
        return
    imp = importer.perform(imp)
    if imp.state == ImportState.RUNNING and imp.claimed_until is not None:
        wait = (imp.claimed_until - timezone.now()).total_seconds()
        raise self.retry(countdown=max(1.0, wait + 1.0))
