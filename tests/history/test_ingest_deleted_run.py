"""A batch for an old closed run that retention deletes while the batch is being stored: ingest
found the run (its insert met the existing row) and then, when it came to lock it, the row was
gone. The batch is stored in a run created anew, never answered with a 500.

The deletion is placed deterministically between ingest's two steps (finding or creating the
runs, then locking them) by wrapping the first: on PostgreSQL it is made by another thread on
its own connection and committed, as retention's beat task would; on SQLite, where a second
writer would wait for the batch's own write lock, by the batch's connection itself."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from governance import retention
from history.models import Run
from history.verification import verify_run
from tests.builders import event, history

pytestmark = pytest.mark.django_db(transaction=True)


def post(token: str, events: list[dict]):
    return Client(headers={"Authorization": f"Bearer {token}"}).post(
        "/api/v1/ingest", data={"events": events}, content_type="application/json"
    )


def delete_by_retention(run_pk: int) -> None:
    deleted = retention.delete_run(run_pk, cutoff=timezone.now() + timedelta(days=1), keep_days=1)
    assert deleted is not None, "retention left the run alone"


def in_another_connection(work) -> None:
    errors: list[BaseException] = []

    def body():
        try:
            work()
        except BaseException as exc:  # re-raised below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the deletion waited on the batch's locks"
    if errors:
        raise errors[0]


@pytest.fixture
def deleted_after_runs_are_found(monkeypatch):
    """Delete `target[0]` (a run's pk) right after ingest's run insert, once."""
    target: list[int] = []
    original = QuerySet.bulk_create

    def bulk_create(self, objs, *args, **kwargs):
        created = original(self, objs, *args, **kwargs)
        if self.model is Run and target:
            run_pk = target.pop()
            if connection.vendor == "postgresql":
                in_another_connection(lambda: delete_by_retention(run_pk))
            else:
                delete_by_retention(run_pk)
        return created

    monkeypatch.setattr(QuerySet, "bulk_create", bulk_create)
    return target


def test_a_batch_for_a_run_deleted_meanwhile_is_stored_in_a_new_run(
    agent_token, deleted_after_runs_are_found
):
    assert post(agent_token, history(5)).status_code == 200
    old = Run.objects.get()
    deleted_after_runs_are_found.append(old.pk)

    late = [event(6, "decision.made", attributes={"late": True})]
    response = post(agent_token, late)

    assert response.status_code == 200, response.content
    assert response.json()["stored"] == 1
    assert AuditEntry.objects.filter(action="retention.run_deleted",
                                     object_id=str(old.uuid)).exists()
    new = Run.objects.get()
    assert new.pk != old.pk and (new.workflow_id, new.run_id) == (old.workflow_id, old.run_id)
    assert list(new.events.values_list("event_id", flat=True)) == [6]
    assert new.contiguous_through == 0  # events 1 to 5 went with the old run
    assert verify_run(new) == []


def test_a_batch_for_two_runs_stores_both_when_one_is_deleted_meanwhile(
    agent_token, deleted_after_runs_are_found
):
    assert post(agent_token, history(3, run_id="a") + history(3, run_id="b")).status_code == 200
    deleted_after_runs_are_found.append(Run.objects.get(run_id="a").pk)
    kept = Run.objects.get(run_id="b")

    response = post(agent_token, [event(4, run_id="a"), event(4, run_id="b")])

    assert response.status_code == 200, response.content
    assert response.json()["stored"] == 2
    assert Run.objects.get(run_id="b").pk == kept.pk
    assert Run.objects.get(run_id="b").events.count() == 4
    assert list(Run.objects.get(run_id="a").events.values_list("event_id", flat=True)) == [4]
