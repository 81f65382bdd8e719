"""The run page (`GET /runs/<uuid>/`) and its history region (`GET /runs/<uuid>/history`):
header, compact, full and JSON views, masking, search, jumping, paging, escaping, the
waterfall, htmx partials, access, and query counts."""

from __future__ import annotations

import html
import random
import uuid

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from access.models import Token
from history.models import Run
from history.seeding import bulk_load, long_history, scenario
from tests.builders import BASE_TIME, event

pytestmark = pytest.mark.django_db

# Built at run time so this file holds no literal that looks like a credential.
SECRET = "AKIA" + "ABCDEFGHIJKLMNOP"
MASK = "[REDACTED:aws_access_key_id]"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
# Measured on SQLite and PostgreSQL: session, user, the run, the investigate check, the page of
# events, and (compact view only) the outcomes of its activities beyond the page. They must not
# grow with the length of the history.
# Session, user, the viewer's namespace ids, the run, the page of events (and, compact, the
# outcomes beyond the page), the raw-payload permission; then the interventions region: the
# operate permission, the latest commands, the pending approval requests, and the commands and
# approval requests marked on the page's timeline.
RUN_PAGE_QUERIES = {"compact": 12, "full": 11, "json": 11}


def rich_history(workflow_id: str = "wf-rich", run_id: str = "r1", *, closed=True) -> list:
    """An activity retried once, a decision carrying a secret, a timer and a child run."""
    events = [
        event(1, "workflow.started", workflow_id=workflow_id, run_id=run_id,
              attributes={"labels": {"team": "support"}, "input": {"ticket": "T-1"}}),
        event(2, "activity.scheduled", workflow_id=workflow_id, run_id=run_id,
              attributes={"activity_type": "search_kb", "kind": "tool",
                          "input": {"query": "refund policy"}, "activity_key": "k-2"}),
        event(3, "activity.started", workflow_id=workflow_id, run_id=run_id,
              attributes={"attempt": 1}, identity="worker-a", refs={"scheduled": 2}),
        event(4, "activity.failed", workflow_id=workflow_id, run_id=run_id,
              attributes={"attempt": 1, "error": {"message": "upstream timeout"}},
              refs={"scheduled": 2, "started": 3}),
        event(5, "activity.started", workflow_id=workflow_id, run_id=run_id,
              attributes={"attempt": 2}, identity="worker-b", refs={"scheduled": 2}),
        event(6, "activity.completed", workflow_id=workflow_id, run_id=run_id,
              attributes={"attempt": 2, "output": {"articles": 3}, "activity_key": "k-2"},
              refs={"scheduled": 2, "started": 5}),
        event(7, "decision.made", workflow_id=workflow_id, run_id=run_id,
              attributes={"decision": "call the deploy tool", "note": f"key {SECRET}"}),
        event(8, "timer.started", workflow_id=workflow_id, run_id=run_id,
              attributes={"timer_id": "cool-down", "duration": "2s"}),
        event(9, "timer.fired", workflow_id=workflow_id, run_id=run_id,
              attributes={"timer_id": "cool-down"}, refs={"started": 8}),
        event(10, "child.started", workflow_id=workflow_id, run_id=run_id,
              attributes={"workflow_type": "summarise", "workflow_id": f"{workflow_id}-c"}),
        event(11, "child.completed", workflow_id=workflow_id, run_id=run_id,
              attributes={"result": "ok"}, refs={"started": 10}),
    ]
    if closed:
        events.append(event(12, "workflow.completed", workflow_id=workflow_id, run_id=run_id))
    return events


@pytest.fixture
def run(ingest, agent_token) -> Run:
    assert ingest(agent_token, rich_history()).status_code == 200
    return Run.objects.get(workflow_id="wf-rich")




def page(run: Run) -> str:
    return f"/runs/{run.uuid}/"


def text(response) -> str:
    assert response.status_code == 200, response.content[:2000]
    return response.content.decode()


def rows(response) -> list[int]:
    """The event ids heading the rows of the history table, in order."""
    body = text(response).split('<tbody id="history-rows">', 1)[1].split("</tbody>", 1)[0]
    return [int(part.split('"', 1)[0]) for part in body.split('<tr id="event-')[1:]]


# --- the happy path, methods, sign-in, access -------------------------------------------------


def test_it_shows_the_run_to_a_viewer(as_bob, run):
    response = as_bob.get(page(run))

    body = text(response)
    assert "<html" in body
    assert 'id="run-header"' in body
    assert 'id="timeline"' in body
    assert 'id="history"' in body
    assert 'id="durability-slot"' in body


def test_it_refuses_post(as_bob, run):
    assert as_bob.post(page(run)).status_code == 405


def test_the_history_region_refuses_post(as_bob, run):
    assert as_bob.post(f"/runs/{run.uuid}/history").status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client, run):
    response = client.get(page(run))

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next=/runs/{run.uuid}/"


def test_an_anonymous_visitor_is_sent_to_sign_in_from_the_history_region(client, run):
    response = client.get(f"/runs/{run.uuid}/history", headers={"HX-Request": "true"})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_an_outsider_gets_404_and_nothing_of_the_run(client, charlie, run):
    client.force_login(charlie)

    response = client.get(page(run))

    assert response.status_code == 404
    assert b"wf-rich" not in response.content


def test_an_outsider_gets_404_for_the_history_region(client, charlie, run):
    client.force_login(charlie)

    for headers in ({}, {"HX-Request": "true"}, {"HX-Request": "true", "HX-Target": "history"}):
        response = client.get(f"/runs/{run.uuid}/history", {"view": "json"}, headers=headers)
        assert response.status_code == 404
        assert b"wf-rich" not in response.content


def test_a_malformed_uuid_is_404(as_bob, run):
    assert as_bob.get("/runs/not-a-uuid/").status_code == 404
    assert as_bob.get("/runs/not-a-uuid/history", headers={"HX-Request": "true"}).status_code \
        == 404


def test_an_unknown_uuid_is_404(as_bob, run):
    assert as_bob.get(f"/runs/{uuid.uuid4()}/").status_code == 404
    assert as_bob.get(f"/runs/{uuid.uuid4()}/history",
                      headers={"HX-Request": "true"}).status_code == 404


def test_a_viewer_gets_no_raw_payload_switch(as_bob, run):
    assert 'name="raw"' not in text(as_bob.get(page(run)))


def test_an_investigator_gets_the_raw_payload_switch(as_ivy, run):
    assert 'name="raw"' in text(as_ivy.get(page(run)))


# --- the header -------------------------------------------------------------------------------


def test_the_header_shows_status_event_count_and_chain(as_bob, run):
    header = text(as_bob.get(page(run))).split('id="run-header"', 1)[1].split("</header>")[0]

    assert "status-completed" in header
    assert "<dt>Events</dt><dd>12</dd>" in header
    assert "<dt>Gaps</dt><dd>none</dd>" in header
    assert f"chained through 12 · head <span class=\"mono\">{run.head_hash[:12]}" in header
    assert "support-bot" in header
    assert "no owner" in header
    assert "team=support" in header


def test_the_header_shows_a_missing_event_and_where_the_chain_stops(ingest, agent_token,
                                                                    as_bob):
    events = [e for e in rich_history("wf-gap", closed=False) if e["event_id"] != 5]
    assert ingest(agent_token, events).status_code == 200
    run = Run.objects.get(workflow_id="wf-gap")

    header = text(as_bob.get(page(run))).split('id="run-header"', 1)[1].split("</header>")[0]

    assert "status-running" in header
    assert "<dt>Events</dt><dd>10</dd>" in header
    assert '<span class="flag">missing 5</span>' in header
    assert "chained through 4" in header


def test_the_header_shows_ranges_of_missing_events(ingest, agent_token, as_bob):
    events = [e for e in rich_history("wf-gaps") if e["event_id"] not in (3, 4, 5, 8)]
    assert ingest(agent_token, events).status_code == 200
    run = Run.objects.get(workflow_id="wf-gaps")

    # The first range, and how many more events are missing (the durability panel lists them).
    assert '<span class="flag">missing 3\u20135 and 1 more</span>' in text(as_bob.get(page(run)))


def test_the_header_says_when_nothing_is_chained_yet(ingest, agent_token, as_bob):
    events = [e for e in rich_history("wf-late") if e["event_id"] != 1]
    assert ingest(agent_token, events).status_code == 200
    run = Run.objects.get(workflow_id="wf-late")

    assert "nothing chained yet" in text(as_bob.get(page(run)))


def test_the_header_counts_events_with_secrets(as_bob, run):
    assert "1 events with findings (masked)" in text(as_bob.get(page(run)))


def test_a_secret_in_a_label_is_masked_in_the_header_for_a_viewer(ingest, agent_token, as_bob):
    """Labels are attributes of workflow.started: the scanner flags a credential there, and a
    viewer must not read it in the header either."""
    events = [event(1, "workflow.started", workflow_id="wf-label",
                    attributes={"labels": {"team": "ops", "deploy_key": SECRET}})]
    assert ingest(agent_token, events).status_code == 200
    run = Run.objects.get(workflow_id="wf-label")
    assert run.events.get().secret_findings

    body = text(as_bob.get(page(run)))

    assert "team=ops" in body
    assert SECRET not in body


def test_an_open_run_has_a_live_tail_from_its_last_received_event(ingest, agent_token, as_bob):
    assert ingest(agent_token, rich_history("wf-open", closed=False)).status_code == 200
    run = Run.objects.get(workflow_id="wf-open")

    body = text(as_bob.get(page(run)))

    assert 'id="tail-poller"' in body
    assert f'hx-get="/runs/{run.uuid}/tail?seq={run.received_seq}"' in body


def test_a_closed_run_has_no_live_tail(as_bob, run):
    assert 'id="tail-poller"' not in text(as_bob.get(page(run)))


# --- the compact view ---------------------------------------------------------------------------


def test_the_compact_view_groups_an_activity_into_one_row(as_bob, run):
    response = as_bob.get(page(run))

    assert rows(response) == [1, 2, 7, 8, 10, 12]
    activity = text(response).split('<tr id="event-2"', 1)[1].split("</tr>", 1)[0]
    assert '<span class="kind tool">tool</span> search_kb' in activity
    assert "→ completed · attempt 2 · 1 failed" in activity
    assert '<td class="num">4.0s</td>' in activity
    for member in (2, 3, 4, 5, 6):
        assert f'href="/runs/{run.uuid}/events/{member}"' in activity


def test_the_compact_view_groups_timers_and_child_runs(as_bob, run):
    body = text(as_bob.get(page(run)))

    timer = body.split('<tr id="event-8"', 1)[1].split("</tr>", 1)[0]
    child = body.split('<tr id="event-10"', 1)[1].split("</tr>", 1)[0]
    assert '<span class="kind">timer</span> cool-down' in timer
    assert "→ fired" in timer
    assert '<span class="kind">child</span> summarise' in child
    assert "→ completed" in child


def test_the_compact_view_shows_an_open_activity(ingest, agent_token, as_bob):
    events = [e for e in rich_history("wf-running", closed=False) if e["event_id"] <= 5]
    assert ingest(agent_token, events).status_code == 200
    run = Run.objects.get(workflow_id="wf-running")

    activity = text(as_bob.get(page(run))).split('<tr id="event-2"', 1)[1].split("</tr>")[0]

    assert "→ open · attempt 2 · 1 failed" in activity


def test_the_compact_view_finds_an_outcome_beyond_the_page(ingest, agent_token, as_bob):
    """An activity scheduled on the first page and completed on the second shows its outcome."""
    events = [event(1, "workflow.started", workflow_id="wf-far")]
    events += [event(n, "decision.made", workflow_id="wf-far") for n in range(2, 100)]
    events.append(event(100, "activity.scheduled", workflow_id="wf-far",
                        attributes={"activity_type": "slow_tool", "kind": "tool"}))
    events += [event(n, "decision.made", workflow_id="wf-far") for n in range(101, 150)]
    events.append(event(150, "activity.completed", workflow_id="wf-far",
                        refs={"scheduled": 100}))
    assert ingest(agent_token, events).status_code == 200
    run = Run.objects.get(workflow_id="wf-far")

    activity = text(as_bob.get(page(run))).split('<tr id="event-100"', 1)[1].split("</tr>")[0]

    assert "→ completed" in activity
    assert '<td class="num">50.0s</td>' in activity


# --- the full and JSON views ------------------------------------------------------------------


def test_the_full_view_lists_every_event(as_bob, run):
    response = as_bob.get(page(run), {"view": "full"})

    assert rows(response) == list(range(1, 13))
    assert "activity.failed" in text(response)
    assert 'aria-current="page">Full</a>' in text(response)


def test_the_json_view_shows_the_events_as_json(as_bob, run):
    body = text(as_bob.get(page(run), {"view": "json"}))

    json_text = body.split('<pre class="json" tabindex="0">', 1)[1].split("</pre>")[0]
    events = orjson.loads(html.unescape(json_text))
    assert [e["event_id"] for e in events] == list(range(1, 13))
    assert events[5]["refs"] == {"scheduled": 2, "started": 5}
    assert events[6]["secret_findings"] == [{"rule": "aws_access_key_id", "path": "/note"}]


def test_an_unknown_view_falls_back_to_compact(as_bob, run):
    assert rows(as_bob.get(page(run), {"view": "bogus"})) == [1, 2, 7, 8, 10, 12]


def test_the_json_view_is_masked_for_a_viewer_even_when_asking_raw(as_bob, run):
    body = text(as_bob.get(page(run), {"view": "json", "raw": "1"}))

    assert SECRET not in body
    assert MASK in body


def test_the_json_view_is_raw_for_an_investigator_who_asks(as_ivy, run):
    body = text(as_ivy.get(page(run), {"view": "json", "raw": "1"}))

    assert f"key {SECRET}" in body


def test_the_json_view_is_masked_for_an_investigator_by_default(as_ivy, run):
    body = text(as_ivy.get(page(run), {"view": "json"}))

    assert SECRET not in body
    assert MASK in body


@pytest.mark.parametrize("view", ["compact", "full", "json"])
def test_a_viewer_never_sees_the_secret(as_bob, run, view):
    for params in ({"view": view}, {"view": view, "raw": "1"},
                   {"view": view, "event": "7"}, {"view": view, "category": "decision"},
                   {"view": view, "q": "deploy"}):
        body = text(as_bob.get(page(run), params))
        assert SECRET not in body, params
        hx = as_bob.get(f"/runs/{run.uuid}/history", params, headers={"HX-Request": "true"})
        assert SECRET not in text(hx), params


def test_a_viewer_never_sees_the_secret_anywhere_on_the_run(ingest, agent_token, as_bob):
    """Every page and partial of the run, for an open run that later receives more secrets."""
    assert ingest(agent_token, rich_history("wf-sweep", closed=False)).status_code == 200
    run = Run.objects.get(workflow_id="wf-sweep")
    assert ingest(agent_token, [event(12, "marker.recorded", workflow_id="wf-sweep", run_id="r1",
                                      identity="worker", attributes={"aws_access_key_id": SECRET,
                                                                     "nested": [f"x {SECRET}"]})
                                ]).status_code == 200
    hx = {"HX-Request": "true"}
    urls = [(page(run), {"view": view, "raw": "1"}) for view in ("compact", "full", "json")]
    urls += [(f"/runs/{run.uuid}/history", {"view": "json", "q": "REDACTED"})]
    urls += [(f"/runs/{run.uuid}/events/{n}", {"raw": "1"}) for n in range(1, 13)]
    urls += [(f"/runs/{run.uuid}/tail", {"seq": "0"}), (f"/runs/{run.uuid}/durability", {})]
    urls += [("/", {}), ("/", {"q": "wf-sweep"})]

    for url, params in urls:
        for headers in ({}, hx):
            response = as_bob.get(url, params, headers=headers)
            assert response.status_code in (200, 302), (url, response.status_code)
            assert SECRET not in response.content.decode(), (url, params, headers)


def test_the_full_view_is_raw_for_an_investigator_who_asks(as_ivy, run):
    assert SECRET in text(as_ivy.get(page(run), {"view": "full", "raw": "1"}))


def test_the_view_tabs_keep_the_filters(as_bob, run):
    body = text(as_bob.get(page(run), {"category": "activity", "q": "x"}))

    assert f'href="/runs/{run.uuid}/?category=activity&amp;q=x&amp;view=json"' in body


# --- filters and search -------------------------------------------------------------------------


def test_it_filters_by_category(as_bob, run):
    assert rows(as_bob.get(page(run), {"view": "full", "category": "activity"})) == [2, 3, 4, 5, 6]


def test_a_category_is_a_whole_first_word(ingest, agent_token, as_bob, run):
    events = [event(1, "workflow.started", workflow_id="wf-cat"),
              event(2, "activityx.custom", workflow_id="wf-cat")]
    assert ingest(agent_token, events).status_code == 200
    other = Run.objects.get(workflow_id="wf-cat")

    assert rows(as_bob.get(page(other), {"view": "full", "category": "activity"})) == []


def test_it_filters_by_type(as_bob, run):
    assert rows(as_bob.get(page(run), {"view": "full", "type": "activity.started"})) == [3, 5]


def test_a_filtered_compact_view_shows_single_rows(as_bob, run):
    response = as_bob.get(page(run), {"type": "activity.completed"})

    assert rows(response) == [6]


def test_it_searches_a_substring_of_the_attributes(as_bob, run):
    assert rows(as_bob.get(page(run), {"view": "full", "q": "UPSTREAM time"})) == [4]


def test_it_searches_the_identity_and_the_type(as_bob, run):
    assert rows(as_bob.get(page(run), {"view": "full", "q": "worker-b"})) == [5]
    assert rows(as_bob.get(page(run), {"view": "full", "q": "timer.fi"})) == [9]


def test_it_searches_the_masked_form_of_an_event_with_a_secret(as_bob, run):
    assert rows(as_bob.get(page(run), {"view": "full", "q": "deploy tool"})) == [7]
    assert rows(as_bob.get(page(run), {"view": "full", "q": "REDACTED"})) == [7]


@pytest.mark.parametrize("who", ["bob", "ivy", "alice"])
def test_searching_for_a_secrets_value_finds_nothing_for_anyone(client, request, run, who):
    client.force_login(request.getfixturevalue(who))

    for params in ({"view": "full", "q": SECRET}, {"view": "full", "q": SECRET, "raw": "1"},
                   {"view": "json", "q": SECRET[4:], "raw": "1"}, {"q": SECRET}):
        response = client.get(page(run), params)
        assert response.context["events"] == [], params
        if params.get("view") == "json":
            assert '<pre class="json" tabindex="0">[]</pre>' in text(response)
        else:
            assert "No events match." in text(response)


def test_a_search_with_like_wildcards_is_literal(as_bob, run):
    assert rows(as_bob.get(page(run), {"view": "full", "q": "%"})) == []
    assert rows(as_bob.get(page(run), {"view": "full", "q": "search_kb"})) == [2]


def test_filters_are_kept_in_the_form(as_bob, run):
    body = text(as_bob.get(page(run), {"type": "activity.failed", "q": "upstream"}))

    assert 'name="type" value="activity.failed"' in body
    assert 'name="q" value="upstream"' in body


# --- jumping and paging -----------------------------------------------------------------------


def test_jumping_to_an_event_shows_it_first_and_highlighted(as_bob, run):
    response = as_bob.get(page(run), {"view": "full", "event": "7"})

    assert rows(response)[0] == 7
    assert '<tr id="event-7" class="cat-decision focus">' in text(response)


def test_jumping_to_an_event_in_the_compact_view(as_bob, run):
    response = as_bob.get(page(run), {"event": "8"})

    assert rows(response) == [8, 10, 12]
    assert '<tr id="event-8" class=" focus">' in text(response)
    assert 'name="event" min="1" value="8"' in text(response)


@pytest.fixture
def long_run(support_agent) -> Run:
    token = Token.issue(agent=support_agent)[0]
    bulk_load(token, [long_history("wf-long", "r1", 300, BASE_TIME, random.Random(1))])
    return Run.objects.get(workflow_id="wf-long")


def test_the_first_page_holds_100_events_and_links_to_the_next(as_bob, long_run):
    response = as_bob.get(page(long_run), {"view": "full"})

    assert rows(response) == list(range(1, 101))
    assert f'href="/runs/{long_run.uuid}/?view=full&amp;after=100"' in text(response)
    assert f'hx-get="/runs/{long_run.uuid}/history?view=full&amp;after=100"' in text(response)


def test_a_later_page_starts_after_the_cursor(as_bob, long_run):
    response = as_bob.get(page(long_run), {"view": "full", "after": "100"})

    assert rows(response) == list(range(101, 201))
    assert "after=200" in text(response)


def test_the_last_page_has_no_next_link(as_bob, long_run):
    response = as_bob.get(page(long_run), {"view": "full", "after": "200"})

    assert rows(response) == list(range(201, 301))
    assert "Load more events" not in text(response)


def test_a_page_never_loads_more_than_the_page_size(as_bob, long_run):
    for view in ("compact", "full", "json"):
        with CaptureQueriesContext(connection) as captured:
            response = as_bob.get(page(long_run), {"view": view, "after": "50"})
        assert len(response.context["events"]) == 100
        reads = [q["sql"] for q in captured if '"history_event"' in q["sql"]]
        assert reads, view
        assert all("LIMIT" in sql or "event_id\" <=" in sql for sql in reads), reads


def test_a_bad_cursor_is_read_as_the_start(as_bob, long_run):
    for after in ("-5", "abc", ""):
        assert rows(as_bob.get(page(long_run), {"view": "full", "after": after}))[0] == 1


def test_a_cursor_beyond_any_event_id_is_an_empty_page(as_bob, run):
    for params in ({"after": "9" * 25}, {"event": "9" * 25}, {"after": str(2**63)}):
        response = as_bob.get(page(run), {"view": "full", **params})
        assert rows(response) == [], params


def test_the_compact_next_page_via_htmx_is_only_rows(as_bob, long_run):
    response = as_bob.get(f"/runs/{long_run.uuid}/history", {"after": "100"},
                          headers={"HX-Request": "true"})

    body = text(response)
    assert "<html" not in body
    assert 'id="history"' not in body
    assert body.lstrip().startswith("<tr")
    assert "Load more events" in body
    assert "HX-Push-Url" not in response.headers


def test_the_json_next_page_via_htmx_replaces_the_history_with_json(as_bob, long_run):
    """The JSON view's "Next events" link swaps the whole #history section (hx-target
    #history, outerHTML), so its answer must be that section holding JSON, not table rows."""
    first = text(as_bob.get(page(long_run), {"view": "json"}))
    link = first.split("Next events", 1)[0].rsplit('hx-get="', 1)[1].split('"', 1)[0]
    assert 'hx-target="#history" hx-swap="outerHTML">Next events' in first

    response = as_bob.get(html.unescape(link), headers={"HX-Request": "true"})

    body = text(response)
    assert body.lstrip().startswith('<section id="history"')
    assert '<pre class="json"' in body


# --- htmx ---------------------------------------------------------------------------------------


def test_the_history_region_via_htmx_is_only_the_region(as_bob, run):
    response = as_bob.get(f"/runs/{run.uuid}/history", {"view": "full"},
                          headers={"HX-Request": "true", "HX-Target": "history"})

    body = text(response)
    assert "<html" not in body
    assert body.lstrip().startswith('<section id="history"')
    assert 'id="run-header"' not in body
    assert response["HX-Push-Url"] == f"/runs/{run.uuid}/?view=full"


def test_the_run_page_targeting_the_history_is_only_the_region(as_bob, run):
    response = as_bob.get(page(run), {"view": "full"},
                          headers={"HX-Request": "true", "HX-Target": "history"})

    body = text(response)
    assert "<html" not in body
    assert body.lstrip().startswith('<section id="history"')


def test_the_run_page_via_htmx_for_another_target_is_the_whole_page(as_bob, run):
    response = as_bob.get(page(run), headers={"HX-Request": "true", "HX-Target": "main"})

    assert "<html" in text(response)


def test_the_history_region_without_htmx_redirects_to_the_run_page(as_bob, run):
    response = as_bob.get(f"/runs/{run.uuid}/history", {"view": "full", "q": "x"})

    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.uuid}/?view=full&q=x"


def test_jumping_via_htmx_answers_the_whole_region(as_bob, run):
    response = as_bob.get(f"/runs/{run.uuid}/history", {"event": "7", "after": "3"},
                          headers={"HX-Request": "true", "HX-Target": "history"})

    assert text(response).lstrip().startswith('<section id="history"')
    assert rows(response)[0] == 7


# --- escaping -----------------------------------------------------------------------------------


@pytest.fixture
def marked_up(ingest, agent_token) -> Run:
    events = [
        event(1, "workflow.started", workflow_id=SCRIPT, run_id=IMG, workflow_type=SCRIPT,
              attributes={"labels": {"note": IMG, IMG: "v"}}),
        event(2, "activity.scheduled", workflow_id=SCRIPT, run_id=IMG,
              attributes={"activity_type": SCRIPT, "kind": IMG, "input": IMG}),
        event(3, "activity.completed", workflow_id=SCRIPT, run_id=IMG, identity=IMG,
              refs={"scheduled": 2}, attributes={"output": SCRIPT}),
        event(4, "decision.made", workflow_id=SCRIPT, run_id=IMG, identity=SCRIPT,
              attributes={SCRIPT: IMG}),
    ]
    assert ingest(agent_token, events).status_code == 200
    return Run.objects.get(workflow_id=SCRIPT)


@pytest.mark.parametrize("view", ["compact", "full", "json"])
def test_agent_supplied_markup_is_escaped_everywhere_on_the_page(as_bob, marked_up, view):
    body = text(as_bob.get(page(marked_up), {"view": view}))

    assert SCRIPT not in body
    assert "<img src=x" not in body
    assert html.escape(SCRIPT) in body or "&lt;script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_agent_supplied_markup_is_escaped_in_the_htmx_region(as_bob, marked_up):
    response = as_bob.get(f"/runs/{marked_up.uuid}/history", {"view": "full"},
                          headers={"HX-Request": "true"})

    assert SCRIPT not in text(response)
    assert "<img src=x" not in text(response)


def test_an_event_type_cannot_carry_markup(ingest, agent_token):
    response = ingest(agent_token, [event(1, "workflow.started", workflow_id="wf-t"),
                                    event(2, "<b>.x", workflow_id="wf-t")])

    assert response.json()["invalid"] == 1
    assert not Run.objects.get(workflow_id="wf-t").events.filter(event_id=2).exists()


def test_a_reflected_search_is_escaped(as_bob, run):
    body = text(as_bob.get(page(run), {"q": IMG, "type": SCRIPT, "category": SCRIPT}))

    assert "<img src=x" not in body
    assert SCRIPT not in body


# --- the waterfall --------------------------------------------------------------------------


def test_the_waterfall_draws_a_bar_for_each_activity_timer_and_child(as_bob, run):
    body = text(as_bob.get(page(run)))

    svg = body.split('<svg class="waterfall"', 1)[1].split("</svg>", 1)[0]
    assert svg.count('class="wf-row"') == 3
    assert 'class="bar activity tool retried"' in svg
    assert 'class="bar timer ' in svg
    assert 'class="bar child ' in svg
    assert "#2 search_kb (tool) · completed · 4.0s · 2 attempts · 1 failed" in svg


def test_the_waterfall_bars_stay_inside_the_drawing(as_bob, run):
    response = as_bob.get(page(run))

    for bar in response.context["waterfall"].bars:
        assert bar.x >= 260
        assert bar.x + bar.width <= 1000.01


def test_the_waterfall_is_drawn_for_the_full_view_too(as_bob, run):
    body = text(as_bob.get(page(run), {"view": "full"}))

    assert body.count('class="wf-row"') == 3


def test_a_run_without_activities_says_so_instead_of_a_waterfall(ingest, agent_token, as_bob):
    events = [event(1, "workflow.started", workflow_id="wf-plain"),
              event(2, "decision.made", workflow_id="wf-plain")]
    assert ingest(agent_token, events).status_code == 200
    run = Run.objects.get(workflow_id="wf-plain")

    body = text(as_bob.get(page(run)))

    assert "<svg" not in body
    assert "No activities, timers or child runs on this page" in body


# --- queries ------------------------------------------------------------------------------------


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        text(client.get(url, params or {}))
    return len(captured)


@pytest.fixture
def sized_runs(support_agent) -> tuple[Run, Run]:
    token = Token.issue(agent=support_agent)[0]
    bulk_load(token, [
        long_history("wf-10", "r1", 10, BASE_TIME, random.Random(1)),
        long_history("wf-300", "r1", 300, BASE_TIME, random.Random(1)),
    ])
    return Run.objects.get(workflow_id="wf-10"), Run.objects.get(workflow_id="wf-300")


@pytest.mark.parametrize("view", ["compact", "full", "json"])
def test_the_run_page_takes_a_fixed_number_of_queries(
    as_bob, sized_runs, view, django_assert_max_num_queries
):
    short, long = sized_runs

    few = _queries(as_bob, page(short), {"view": view})
    with django_assert_max_num_queries(RUN_PAGE_QUERIES[view]):
        text(as_bob.get(page(long), {"view": view}))

    assert _queries(as_bob, page(long), {"view": view}) == few == RUN_PAGE_QUERIES[view]


def test_a_realistic_run_takes_no_more_queries(as_bob, support_agent,
                                               django_assert_max_num_queries):
    token = Token.issue(agent=support_agent)[0]
    rng = random.Random(5)
    bulk_load(token, [scenario("support", "wf-real", "r1", BASE_TIME, rng, steps=40)])
    run = Run.objects.get(workflow_id="wf-real")

    with django_assert_max_num_queries(RUN_PAGE_QUERIES["compact"]):
        text(as_bob.get(page(run)))
