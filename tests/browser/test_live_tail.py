"""Following a live run: events posted to the ingest API appear in the Live table without a
reload (a late one included), and polling stops once the run has closed."""

from __future__ import annotations

import urllib.request

import orjson
import pytest

from tests.builders import event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

IDS = {"workflow_id": "live-support-9", "run_id": "run-live-1"}
TAIL_ROWS = "#tail-rows > tr[id^=event-]"


def _post(live_server, token: str, events: list[dict]) -> dict:
    """POST a batch to the live server's ingest API, as an agent does."""
    request = urllib.request.Request(  # noqa: S310 (the local live server)
        f"{live_server.url}/api/v1/ingest",
        data=orjson.dumps({"events": events}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
        assert response.status == 200
        return orjson.loads(response.read())


def _tail_ids(page) -> list[int]:
    return page.eval_on_selector_all(TAIL_ROWS, "rows => rows.map(tr => Number(tr.id.slice(6)))")


def _gaps(page) -> str:
    return page.locator("#run-header dt:text-is('Gaps') + dd").inner_text()


def test_new_and_late_events_stream_in_and_polling_stops_when_the_run_closes(
    browser_as, alice, live_server, agent_token
):
    body = _post(live_server, agent_token, [
        event(1, "workflow.started", attributes={"labels": {"team": "support"}}, **IDS),
        event(2, "activity.scheduled", attributes={"activity_type": "search_kb", "kind": "tool"},
              **IDS),
        event(3, "activity.started", attributes={"attempt": 1}, refs={"scheduled": 2}, **IDS),
    ])
    run_uuid = body["runs"][0]["uuid"]
    page = browser_as(alice)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    tail_requests: list[str] = []
    page.on("request", lambda r: tail_requests.append(r.url) if "/tail" in r.url else None)
    page.goto(f"{page.base_url}/runs/{run_uuid}/")
    page.locator("#live").wait_for()
    assert "running" in page.locator("#run-header").inner_text()
    marker = page.evaluate("() => (window.__sameDocument = Math.random())")
    page.shot("live_tail_open")

    # Event 5 arrives before event 4: shown at once, and the header reports the gap.
    _post(live_server, agent_token, [event(5, "decision.made", attributes={"note": "escalate"},
                                           **IDS)])
    page.locator(f"{TAIL_ROWS}#event-5").wait_for()
    page.wait_for_function("() => document.querySelector('#run-header').textContent"
                           ".includes('missing 4')")
    assert _gaps(page) == "missing 4"
    page.shot("live_tail_event_5_before_4")

    _post(live_server, agent_token, [
        event(4, "activity.completed", attributes={"attempt": 1, "output": {"hits": 3}},
              refs={"scheduled": 2, "started": 3}, **IDS),
    ])
    page.locator(f"{TAIL_ROWS}#event-4").wait_for()
    assert _tail_ids(page) == [5, 4]  # arrival order
    page.wait_for_function("() => !document.querySelector('#run-header').textContent"
                           ".includes('missing')")
    assert _gaps(page) == "none"
    page.shot("live_tail_late_event_4")

    # The run completes: the header follows and the poller gets its 286 and stops.
    with page.expect_response(lambda r: "/tail" in r.url and r.status == 286, timeout=10_000):
        _post(live_server, agent_token, [
            event(6, "workflow.completed", attributes={"result": {"resolved": True}}, **IDS),
        ])
    page.locator(f"{TAIL_ROWS}#event-6").wait_for()
    page.wait_for_function("() => document.querySelector('#run-header .status')"
                           "?.textContent.includes('completed')")
    assert _tail_ids(page) == [5, 4, 6]
    polls_after_stop = len(tail_requests)
    page.wait_for_timeout(5_000)  # more than two poll intervals (every 2s)
    assert len(tail_requests) == polls_after_stop, tail_requests[polls_after_stop:]
    assert page.evaluate("() => window.__sameDocument") == marker  # never reloaded
    assert page_errors == []
    page.shot("live_tail_completed")
