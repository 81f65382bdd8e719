"""The Temporal app's Celery tasks (temporal/tasks.py), run in-process."""

from __future__ import annotations

from temporal import tasks
from temporal.connections import save_connection
from temporal.models import TemporalConnection


def test_beat_starts_a_session_only_for_enabled_connections_nobody_follows(acme, monkeypatch):
    started = []
    monkeypatch.setattr(tasks.follow_connection, "delay", started.append)
    free = save_connection(acme, {"name": "a", "address": "127.0.0.1:1"})
    busy = save_connection(acme, {"name": "b", "address": "127.0.0.1:1"})
    off = save_connection(acme, {"name": "c", "address": "127.0.0.1:1", "enabled": False})
    assert busy.claim(60)
    assert tasks.follow_connections() == 1
    assert started == [free.pk]
    assert off.pk not in started


def test_a_session_against_an_unreachable_service_records_the_error(acme):
    connection = save_connection(acme, {"name": "down", "address": "127.0.0.1:1"})
    report = tasks.follow_connection(connection.pk)
    assert report["errors"] and report["events_stored"] == 0
    connection.refresh_from_db()
    assert connection.last_error and connection.claimed_until is None
    assert connection.last_followed_at is not None


def test_a_task_for_a_gone_connection_or_import_does_nothing(db):
    assert tasks.follow_connection(999) is None
    assert tasks.import_history(999) is None
    assert not TemporalConnection.objects.exists()
