"""Personas and helpers shared by the interventions tests (tests/conftest.py has the rest).

A test module loads them with `pytest_plugins = ["tests.interventions.personas"]` and takes
them as arguments; it imports nothing from here (pytest could then no longer rewrite this
module's asserts, and the linter would count each fixture argument as a redefinition).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from access.models import Membership
from history.models import Run
from interventions.models import ApprovalRequest
from tests.builders import event


def member(django_user_model, name: str, namespace, role: str, email: str = ""):
    # No password: these personas act through force_login and tokens, and hashing one costs
    # a good part of a second per test.
    user = django_user_model.objects.create_user(name, email=email)
    Membership.objects.create(user=user, namespace=namespace, role=role)
    return user


@pytest.fixture
def olga(django_user_model, acme):
    """Operator in acme: sends commands, decides nothing."""
    return member(django_user_model, "olga", acme, "operator", "olga@acme.test")


@pytest.fixture
def dora(django_user_model, acme):
    """Approver in acme: decides approval requests, sends no commands."""
    return member(django_user_model, "dora", acme, "approver", "dora@acme.test")


@pytest.fixture
def report(ingest, agent_token):
    """report(type, workflow_id="wf-1", **attributes): the support agent reports one event;
    event ids count up per workflow. Fails the test unless ingest answers 200."""
    counters: dict[str, itertools.count] = {}

    def send(type: str, workflow_id: str = "wf-1", **attributes):
        event_id = next(counters.setdefault(workflow_id, itertools.count(1)))
        response = ingest(agent_token, [event(
            event_id, type, workflow_id=workflow_id, attributes=attributes
        )])
        assert response.status_code == 200, response.content
        return response

    return send


@pytest.fixture
def running_run(report) -> Run:
    """Run wf-1 of the support agent (namespace acme), started and running."""
    report("workflow.started")
    report("decision.made")
    return Run.objects.get(workflow_id="wf-1")


@pytest.fixture
def erin(django_user_model, acme):
    """A second approver in acme, for requests that need more people than dora and alice."""
    return member(django_user_model, "erin", acme, "approver", "erin@acme.test")


@pytest.fixture
def ask_approval(running_run, report):
    """ask_approval(**attributes): the support agent asks for approval on wf-1 (action
    "refund" unless given, request ids r1, r2 ... unless given); the request it opened."""
    numbers = itertools.count(1)

    def ask(**attributes) -> ApprovalRequest:
        attributes.setdefault("request_id", f"r{next(numbers)}")
        attributes.setdefault("action", "refund")
        report("approval.requested", **attributes)
        return ApprovalRequest.objects.get(run=running_run, request_id=attributes["request_id"])

    return ask


@dataclass
class Broker:
    """What would have gone to Celery: delivery tasks and notifications, in order."""

    deliveries: list[tuple[str, str]] = field(default_factory=list)
    notifications: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def broker(monkeypatch) -> Broker:
    """Keeps tests off the real broker (the filesystem queue under var/ that a development
    worker may be reading) and records what was sent instead."""
    sent = Broker()

    def enqueue(command_id, connector_kind):
        sent.deliveries.append((str(command_id), connector_kind))

    def notify_later(kind, object_id):
        sent.notifications.append((kind, str(object_id)))

    monkeypatch.setattr("interventions.commands.enqueue", enqueue)
    monkeypatch.setattr("interventions.tasks.enqueue", enqueue)
    monkeypatch.setattr("interventions.tasks.notify_later", notify_later)
    return sent
