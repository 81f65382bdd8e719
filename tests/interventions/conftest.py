"""Fixtures for end-to-end delivery tests: a private Redis, real Celery workers, a uvicorn server
and a webhook receiver, all around the pytest-django test database.

The worker and server processes read the test database, so tests that use them need
`transactional_db`: their rows must be committed to be seen. Each test gets its own Redis
(never the shared one from REDIS_URL, which is neither flushed nor stopped here), so a test
may restart it or kill a worker without disturbing another. When a test fails, the logs of the
processes it started are shown with the failure.
"""

from __future__ import annotations

import contextlib
import os

import pytest
from django.db import connection

from dashboard.celery import app as celery_app
from interventions import signing, wakeups
from tests.conftest import service_unavailable
from tests.interventions.services import (
    FAST_TIMEOUTS,
    REDIS_SERVER,
    AsgiServer,
    CeleryWorker,
    RedisServer,
    WebhookReceiver,
    app_environment,
    database_url,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for service in getattr(item, "started_services", []):
            report.sections.append(
                (f"{service.name} log ({service.log_path})", service.log_tail())
            )
    return report


def _show_log_on_failure(request, service) -> None:
    if not hasattr(request.node, "started_services"):
        request.node.started_services = []
    request.node.started_services.append(service)


@pytest.fixture
def private_redis(request, tmp_path):
    """A redis-server of this test's own, on a free port, without persistence."""
    if not os.access(REDIS_SERVER, os.X_OK):
        service_unavailable(
            "redis", f"no redis-server binary at {REDIS_SERVER} to start a private Redis "
            "(apt-get install redis-server, or set FLIGHTDECK_REDIS_SERVER)"
        )
    server = RedisServer(tmp_path / "redis")
    _show_log_on_failure(request, server)
    server.start()
    yield server
    server.stop()


def _drop_broker_connections() -> None:
    """Forget the Celery app's pooled broker connections, so that the next publish connects
    to whatever `broker_url` says now."""
    if celery_app._pool is not None:
        with contextlib.suppress(Exception):
            celery_app._pool.force_close_all()
    celery_app._pool = None
    if "amqp" in celery_app.__dict__:
        celery_app.amqp._producer_pool = None


@pytest.fixture
def on_private_redis(settings, private_redis):
    """Point this process at the private Redis too: commands it creates are enqueued there
    (the Celery app read its broker settings at import) and wake-ups published there. The
    shortened timeouts apply here as in the worker, since `create_command` reads them."""
    settings.REDIS_URL = private_redis.url
    settings.CELERY_BROKER_URL = private_redis.url
    for name, value in FAST_TIMEOUTS.items():
        setattr(settings, name, value)
    options = {"visibility_timeout": FAST_TIMEOUTS["CELERY_BROKER_VISIBILITY_TIMEOUT"]}
    saved = (celery_app.conf.broker_url, celery_app.conf.broker_transport_options)
    _drop_broker_connections()
    celery_app.conf.broker_url = private_redis.url
    celery_app.conf.broker_transport_options = options
    wakeups._client.cache_clear()
    yield private_redis
    _drop_broker_connections()
    celery_app.conf.broker_url, celery_app.conf.broker_transport_options = saved
    wakeups._client.cache_clear()


@pytest.fixture
def service_env(transactional_db, on_private_redis, settings, tmp_path) -> dict[str, str]:
    """The environment of worker and server processes: the test database, the private Redis,
    this process's SECRET_KEY, the shortened timeouts, webhooks allowed to 127.0.0.1."""
    return app_environment(
        database_url=database_url(connection.settings_dict),
        redis_url=on_private_redis.url,
        var_dir=tmp_path / "var",
        secret_key=settings.SECRET_KEY,
    )


@pytest.fixture
def start_worker(request, service_env, tmp_path):
    """start_worker(beat=True) -> a running CeleryWorker (`-B`: the sweeper runs every
    second). Every worker started is stopped at the end of the test."""
    workers: list[CeleryWorker] = []

    def start(beat: bool = True) -> CeleryWorker:
        worker = CeleryWorker(
            env=service_env, log_path=tmp_path / f"worker-{len(workers) + 1}.log", beat=beat
        )
        workers.append(worker)
        _show_log_on_failure(request, worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.kill()  # nothing of a test's worker needs a clean shutdown; saves seconds


@pytest.fixture
def celery_worker_process(start_worker) -> CeleryWorker:
    return start_worker()


@pytest.fixture
def asgi_server(request, service_env, tmp_path):
    server = AsgiServer(env=service_env, log_path=tmp_path / "uvicorn.log")
    _show_log_on_failure(request, server)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def webhook_receiver():
    receiver = WebhookReceiver(signing.new_secret()).start()
    yield receiver
    receiver.release()
    receiver.stop()
