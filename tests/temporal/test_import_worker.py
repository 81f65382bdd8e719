"""A large history upload imported by a real Celery worker on the `temporal` queue, its
progress read through the API while it runs (PostgreSQL and Redis: the worker reads the rows
this test commits)."""

from __future__ import annotations

import pytest

from history.models import Run
from tests.interventions.services import wait_until
from tests.temporal.samples import history_bytes

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_a_large_upload_is_imported_by_the_worker(client, ivy, settings,
                                                  temporal_celery_worker):
    settings.TEMPORAL_IMPORT_INLINE_MAX_BYTES = 1000
    client.force_login(ivy)
    response = client.post("/api/v1/import/temporal?namespace=acme", data=history_bytes(),
                           content_type="application/json")
    assert response.status_code == 202, response.content
    status_url = response["Location"]

    def finished():
        body = client.get(status_url).json()
        return body if body["state"] in ("done", "failed") else None

    body = wait_until(finished, timeout=90, interval=0.2, what="the worker to import the file")
    assert (body["state"], body["events_done"], body["error"]) == ("done", 39, None)
    run = Run.objects.get(uuid=body["runs"][0]["uuid"])
    assert run.contiguous_through == 39 and run.status == "completed"
