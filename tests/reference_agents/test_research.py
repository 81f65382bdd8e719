"""The research agent: dozens of steps, fetches failing at a flaky upstream retried as further
attempts of the same activity, durable timers between search rounds, all within its declared
tools."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model

from access.models import Token
from history.models import Run
from history.wire import parse_time
from interventions.models import Command
from reference_agents import library, research
from reference_agents.model import FakeModel
from tests.interventions.services import request, wait_until
from tests.reference_agents.histories import assert_clean, assert_complete, only_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_question_takes_dozens_of_activities_with_retries_and_timers(
    quiet_live_server, session_for
):
    session = session_for(research.NAME, quiet_live_server.url)
    job = research.job(0, session)
    pages = [result["url"] for step in session.model.plan_research(
        job.input["question"], job.input["depth"])["steps"]
        for result in library.search(step, research.RESULTS_PER_SEARCH)]
    flaky = {url for url in pages if library.is_flaky(url)}
    assert flaky, "the chosen question must reach the flaky upstream"

    result = research.execute(session, job)
    assert session.client.flush(timeout=30)

    history = only_run(job.workflow_id)
    assert_complete(history)
    assert_clean(history)
    depth = job.input["depth"]
    # plan; per round a search, and a fetch and a summary per result; synthesis and the report
    expected = 1 + depth * (1 + 2 * research.RESULTS_PER_SEARCH) + 2
    assert len(history.activities()) == expected >= 24
    assert set(history.tools_called()) == set(research.TOOLS)
    failed = history.activities("activity.failed")
    assert len(failed) == len(flaky)
    assert all(attrs["attempt"] == 1 and attrs["activity_type"] == "fetch_source"
               for attrs in failed)
    retried = [attrs for attrs in history.activities() if attrs.get("attempt") == 2]
    assert len(retried) == len(flaky)
    for failure in history.of_type("activity.failed"):
        scheduled = failure.refs["scheduled"]
        completions = [e for e in history.of_type("activity.completed")
                       if e.refs.get("scheduled") == scheduled]
        assert len(completions) == 1, "a retry is another attempt of the same activity"
    assert not history.activities(kind="timer")  # waits are timers, not activities
    # A rate-limit timer between rounds: each fired at its recorded time, after its search.
    started, fired = history.of_type("timer.started"), history.of_type("timer.fired")
    assert [history.attributes(e)["timer_id"] for e in started] == [
        f"rate-limit-{n}" for n in range(1, depth)]
    assert [e.refs["started"] for e in fired] == [e.event_id for e in started]
    for begun, done in zip(started, fired, strict=True):
        attrs = history.attributes(begun)
        assert attrs["duration_seconds"] == research.RATE_LIMIT_PAUSE
        assert done.time >= parse_time(attrs["fire_at"])
    searches = [e.event_id for e in history.of_type("activity.scheduled")
                if history.attributes(e)["activity_type"] == "web_search"]
    assert all(searches[n] < started[n].event_id < searches[n + 1] for n in range(depth - 1))
    assert result["sources"] == depth * research.RESULTS_PER_SEARCH


@pytest.mark.postgres
@pytest.mark.redis
def test_an_operator_cancels_a_research_run_mid_way(asgi_server, celery_worker_process,
                                                   session_for):
    session = session_for(research.NAME, asgi_server.url, model=FakeModel(pace=0.3))
    job = research.job(1, session)
    worker = threading.Thread(target=lambda: outcome.append(research.execute(session, job)))
    outcome: list[dict] = []
    worker.start()

    run = wait_until(lambda: Run.objects.filter(workflow_id=job.workflow_id,
                                                event_count__gte=10).first(),
                     timeout=60, what="the research run under way")
    operator = get_user_model().objects.get(username="operator")  # made by bootstrap_demo
    status, _, body = request(
        asgi_server.url, "POST", f"/api/v1/runs/{run.uuid}/commands",
        headers={"Authorization": f"Bearer {Token.issue(user=operator)[1]}"},
        body={"kind": "cancel", "reason": "wrong question"},
    )
    assert status == 201, body
    worker.join(90)
    assert not worker.is_alive() and outcome, "the agent did not stop"
    assert session.client.flush(timeout=30)

    history = only_run(job.workflow_id)
    assert_complete(history, status="cancelled")
    assert outcome[0] == {"outcome": "cancelled"}
    assert not [a for a in history.activities() if a["activity_type"] == "write_report"]
    assert Command.objects.get(run=run).state == "applied"
