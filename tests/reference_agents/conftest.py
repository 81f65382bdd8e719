"""Reference agents against a live Flightdeck: Django's `live_server` (in-process, any
database) where no worker is needed, uvicorn with a real Celery worker on a private Redis
(PostgreSQL only) where a decision must travel back to the agent.

The demo's own set-up (`manage.py bootstrap_demo`) registers the agents with their scope and
policies and hands out their tokens, as in the demo.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from reference_agents.catalogue import AGENTS
from reference_agents.jobs import Session
from tests.interventions.conftest import (  # noqa: F401
    asgi_server,
    celery_worker_process,
    on_private_redis,
    private_redis,
    service_env,
    start_worker,
)


@pytest.fixture
def demo_tokens(settings, tmp_path, transactional_db) -> dict[str, str]:
    """bootstrap_demo's work, committed (servers in other threads and processes read it):
    {agent name: token}."""
    settings.DEBUG = True
    tokens_file = tmp_path / "tokens.json"
    call_command("bootstrap_demo", "--tokens-file", str(tokens_file), stdout=StringIO())
    return json.loads(tokens_file.read_text())["agents"]


@pytest.fixture
def quiet_live_server(settings, live_server):
    """`live_server` with the pull channel's wake-ups off: its long-polls re-read the database
    instead of subscribing on the shared Redis at REDIS_URL, which tests must not use.

    On SQLite the live server cannot serve the long-poll at all (an async view's database
    calls run on another thread than the shared in-memory connection allows), so sessions
    made for it poll no commands (`session_for(..., poll_commands=False)`); agents started as
    separate processes poll, get a 500 and back off, which is harmless."""
    settings.REDIS_URL = ""
    from interventions import wakeups

    wakeups._client.cache_clear()
    yield live_server
    wakeups._client.cache_clear()


@pytest.fixture
def session_for(request, demo_tokens, tmp_path):
    """session_for(agent name, url, **options) -> a Session with that agent's demo token and
    its own work folder; every session is closed (its spool flushed) at the end."""
    sessions: list[Session] = []

    def make(name: str, url: str, **options) -> Session:
        assert name in AGENTS, name
        if "live_server" in request.fixturenames:
            options.setdefault("poll_commands", False)  # see quiet_live_server
        session = Session(url=url, token=demo_tokens[name], work_dir=tmp_path / "agents" / name,
                          **options)
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close(timeout=10)
