"""Fixtures for the SDK's tests: a live Flightdeck (uvicorn, a Celery worker with its sweeper,
a private Redis, the test database) from tests/interventions, personas that decide and
operate, and SDK clients pointed at the server with a spool in the test's folder.

Tests against the live server need PostgreSQL and Redis (`live`); the others run anywhere.
"""

from __future__ import annotations

import json

import pytest

from access.models import Membership, Token
from history.models import Event, Run
from tests.interventions.conftest import (  # noqa: F401 - fixtures and the log-on-failure hook
    asgi_server,
    celery_worker_process,
    on_private_redis,
    private_redis,
    pytest_runtest_makereport,
    service_env,
    start_worker,
)
from tests.interventions.services import request


def live(test):
    """Against a live server: PostgreSQL and Redis, committed rows other processes read."""
    for mark in (pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)):
        test = mark(test)
    return test


def _member(django_user_model, name: str, namespace, role: str):
    user = django_user_model.objects.create_user(name, email=f"{name}@acme.test")
    Membership.objects.create(user=user, namespace=namespace, role=role)
    return user


@pytest.fixture
def dora(django_user_model, acme):
    """Approver in acme."""
    return _member(django_user_model, "dora", acme, "approver")


@pytest.fixture
def olga(django_user_model, acme):
    """Operator in acme."""
    return _member(django_user_model, "olga", acme, "operator")


class UserApi:
    """A person's calls to the live server's API with their user token."""

    def __init__(self, base_url: str, user):
        self.base_url = base_url
        self.token = Token.issue(user=user)[1]

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, _, raw = request(self.base_url, method, path, body=body,
                                 headers={"Authorization": f"Bearer {self.token}"})
        return status, json.loads(raw) if raw else {}


@pytest.fixture
def as_user(asgi_server):  # noqa: F811 - the fixture imported above
    return lambda user: UserApi(asgi_server.url, user)


@pytest.fixture
def sdk_client(asgi_server, agent_token, tmp_path):  # noqa: F811
    """An SDK client of the support agent, on the live server, spooling under tmp_path."""
    from flightdeck_sdk import Client

    clients = []

    def make(**options):
        options.setdefault("url", asgi_server.url)
        options.setdefault("token", agent_token)
        options.setdefault("spool_dir", tmp_path / "spool")
        options.setdefault("command_wait", 10)
        client = Client(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=5)


def stored(workflow_id: str, run_id: str) -> list[Event]:
    """The run's events as Flightdeck stored them, by event id."""
    run = Run.objects.filter(workflow_id=workflow_id, run_id=run_id).first()
    if run is None:
        return []
    return list(run.events.order_by("event_id"))


def attributes(event: Event) -> dict:
    return json.loads(event.attributes)


@pytest.fixture
def offline_client(tmp_path):
    """offline_client(**options): a client whose Flightdeck is unreachable (a closed port):
    everything stays in the spool under tmp_path, where the test reads it back."""
    from flightdeck_sdk import Client

    from tests.interventions.services import free_port

    clients = []

    def make(**options):
        options.setdefault("url", f"http://127.0.0.1:{free_port()}")
        options.setdefault("token", "fda_testtest_secret")
        options.setdefault("spool_dir", tmp_path / "spool")
        options.setdefault("poll_commands", False)
        client = Client(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close(timeout=0)


def journal(client, workflow_id: str, run_id: str) -> list[dict]:
    """Every event the run's journal holds, in the order written."""
    return client._spool.folder(workflow_id, run_id).journal.read()[0]


def command(kind: str, run, **fields) -> dict:
    """A command as the pull channel hands it out, for `run`."""
    import uuid

    return {"id": str(uuid.uuid4()), "kind": kind, "signal_name": None, "payload": {},
            "reason": "", "run": {"uuid": None, "workflow_id": run.workflow_id,
                                  "run_id": run.run_id}, **fields}
