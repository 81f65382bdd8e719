"""The run list page (`GET /`): filters, keyset paging, status counts, scoping, escaping, htmx,
and its query count."""

from __future__ import annotations

import base64
import html
import random
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from access.models import Agent, Token
from history.models import Run
from history.run_filters import _encode_cursor
from history.seeding import bulk_load, scenario, small_history
from tests.builders import BASE_TIME, at, event

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true", "HX-Target": "run-list"}
# Measured on SQLite and PostgreSQL: session, user, the viewer's namespaces (read once, for the
# scope and the filter form), the page of runs, the status counts, agents, saved views. It
# must not grow with the number of runs listed.
RUN_LIST_QUERIES = 7
# The list alone (htmx: filters, live refresh): no agents or saved views for the sidebar.
RUN_LIST_PARTIAL_QUERIES = 5


def started(workflow_id: str, start: float, *, workflow_type: str = "support", labels=None,
            closing: str | None = None, close_after: float = 1, run_id: str = "r1"):
    events = [
        event(1, "workflow.started", workflow_id=workflow_id, run_id=run_id,
              workflow_type=workflow_type, time=at(start), attributes={"labels": labels or {}})
    ]
    if closing:
        events.append(event(2, closing, workflow_id=workflow_id, run_id=run_id,
                            time=at(start + close_after)))
    return events


@pytest.fixture
def team(django_user_model) -> Group:
    return Group.objects.create(name="billing-team")


@pytest.fixture
def fleet(ingest, alice, team, support_agent, agent_token, other_agent_token,
          foreign_agent_token) -> dict[str, Run]:
    """support-bot (acme, owned by alice), billing-bot (acme, owned by billing-team) and
    research-bot (globex) runs, by workflow id."""
    Agent.objects.filter(pk=support_agent.pk).update(owner_user=alice)
    Agent.objects.filter(name="billing-bot").update(owner_group=team)
    batches = [
        (agent_token, started("order-1", 100, labels={"team": "support", "tier": "gold"},
                              closing="workflow.completed", close_after=500)),
        (agent_token, started("order-2", 200, labels={"team": "support", "tier": "free"},
                              closing="workflow.failed", close_after=50)),
        (agent_token, started("refund-1", 300, workflow_type="billing",
                              labels={"team": "billing"})),
        (other_agent_token, started("invoice-1", 400, workflow_type="billing")),
        (foreign_agent_token, started("paper-1", 500, workflow_type="research",
                                      closing="workflow.completed")),
    ]
    for token, events in batches:
        assert ingest(token, events).status_code == 200
    return {run.workflow_id: run for run in Run.objects.all()}


def listed(response) -> list[str]:
    """Workflow ids of the runs listed, in order."""
    assert response.status_code == 200, response.content[:2000]
    text = response.content.decode()
    table = text.split('<tbody>', 1)[1].split('</tbody>', 1)[0]
    ids = []
    for chunk in table.split("<tr>")[1:]:
        if 'href="/runs/' not in chunk:
            continue
        link = chunk.split('href="/runs/', 1)[1]
        ids.append(html.unescape(link.split(">", 1)[1].split("</a>", 1)[0]))
    return ids



# --- the happy path, methods, sign-in ----------------------------------------------------------


def test_it_lists_the_runs_of_the_users_namespaces_newest_first(as_bob, fleet):
    response = as_bob.get("/")

    assert listed(response) == ["invoice-1", "refund-1", "order-2", "order-1"]
    assert b"<html" in response.content


def test_it_links_each_run_to_its_page(as_bob, fleet):
    response = as_bob.get("/")

    assert f'href="/runs/{fleet["order-1"].uuid}/"'.encode() in response.content


def test_each_row_shows_when_its_run_started_and_closed(as_bob, fleet):
    text = as_bob.get("/").content.decode()

    started, closed = fleet["order-1"].started_at, fleet["order-1"].closed_at
    assert f'<time datetime="{started.isoformat()}">{started:%Y-%m-%d %H:%M:%S}</time>' in text
    assert f'<time datetime="{closed.isoformat()}">{closed:%Y-%m-%d %H:%M:%S}</time>' in text
    open_row = text.split(">refund-1</a>", 1)[1].split("</tr>", 1)[0]
    assert open_row.count("<time ") == 1 and "<td>—</td>" in open_row


def test_it_shows_an_empty_list_for_a_user_with_no_runs(as_bob):
    response = as_bob.get("/")

    assert response.status_code == 200
    assert b"No runs match." in response.content


def test_it_refuses_post(as_bob, fleet):
    assert as_bob.post("/").status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client, fleet):
    response = client.get("/", {"status": "failed"})

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/")


# --- scoping ------------------------------------------------------------------------------------


def test_an_outsider_sees_only_their_own_namespaces_runs(client, charlie, fleet):
    client.force_login(charlie)

    assert listed(client.get("/")) == ["paper-1"]


def test_an_outsider_cannot_filter_their_way_into_another_namespace(client, charlie, fleet):
    client.force_login(charlie)

    assert listed(client.get("/", {"namespace": "acme"})) == []
    assert listed(client.get("/", {"q": str(fleet["order-1"].uuid)})) == []
    assert listed(client.get("/", {"agent": "support-bot"})) == []


def test_an_outsider_sees_no_other_namespace_in_the_filters(client, charlie, fleet):
    client.force_login(charlie)

    response = client.get("/")

    assert b'value="acme"' not in response.content
    assert b"support-bot" not in response.content
    assert b"order-1" not in response.content


def test_the_status_counts_leave_out_other_namespaces(client, charlie, fleet):
    client.force_login(charlie)

    response = client.get("/")

    assert response.context["counts"] == [
        (s, 1 if s == "completed" else 0) for s, _ in response.context["counts"]
    ]


# --- filters ------------------------------------------------------------------------------------


def test_it_filters_by_namespace(client, django_user_model, fleet):
    client.force_login(django_user_model.objects.create_superuser("root", password="x" * 12))

    assert listed(client.get("/", {"namespace": "globex"})) == ["paper-1"]
    assert listed(client.get("/", {"namespace": "acme"})) == [
        "invoice-1", "refund-1", "order-2", "order-1"
    ]


def test_it_filters_by_agent(as_bob, fleet):
    assert listed(as_bob.get("/", {"agent": "billing-bot"})) == ["invoice-1"]


def test_it_filters_by_workflow_type(as_bob, fleet):
    assert listed(as_bob.get("/", {"workflow_type": "billing"})) == ["invoice-1", "refund-1"]


def test_it_filters_by_one_status(as_bob, fleet):
    assert listed(as_bob.get("/", {"status": "failed"})) == ["order-2"]


def test_it_filters_by_several_statuses_as_repeated_parameters(as_bob, fleet):
    response = as_bob.get("/", {"status": ["completed", "failed"]})

    assert listed(response) == ["order-2", "order-1"]


def test_it_filters_by_several_statuses_separated_by_commas(as_bob, fleet):
    assert listed(as_bob.get("/", {"status": "running,failed"})) == [
        "invoice-1", "refund-1", "order-2"
    ]


def test_the_status_boxes_of_the_filter_stay_checked(as_bob, fleet):
    response = as_bob.get("/", {"status": ["completed", "failed"]})

    assert b'value="completed" checked' in response.content
    assert b'value="failed" checked' in response.content
    assert b'value="running" checked' not in response.content


def test_it_filters_by_an_owning_user(as_bob, fleet):
    assert listed(as_bob.get("/", {"owner": "alice"})) == ["refund-1", "order-2", "order-1"]


def test_it_filters_by_an_owning_group(as_bob, fleet):
    assert listed(as_bob.get("/", {"owner": "billing-team"})) == ["invoice-1"]


def test_an_unknown_owner_matches_nothing(as_bob, fleet):
    assert listed(as_bob.get("/", {"owner": "nobody"})) == []


def test_it_filters_by_start_time_in_rfc3339(as_bob, fleet):
    response = as_bob.get("/", {"started_after": at(200), "started_before": at(400)})

    assert listed(response) == ["refund-1", "order-2"]


def test_it_filters_by_start_time_as_a_browsers_datetime_local_input_sends_it(as_bob, fleet):
    # BASE_TIME is 09:00:00 UTC; order-2 starts at 09:03:20, refund-1 at 09:05:00.
    response = as_bob.get("/", {"started_after": "2026-11-01T09:03", "started_before":
                                "2026-11-01T09:06"})

    assert listed(response) == ["refund-1", "order-2"]
    assert b'value="2026-11-01T09:03"' in response.content


def test_it_filters_by_a_date_alone(as_bob, fleet):
    assert listed(as_bob.get("/", {"started_before": "2026-11-01"})) == []
    assert len(listed(as_bob.get("/", {"started_after": "2026-11-01"}))) == 4


def test_it_filters_by_a_label(as_bob, fleet):
    assert listed(as_bob.get("/", {"label": "team=support"})) == ["order-2", "order-1"]


def test_it_filters_by_several_labels_together(as_bob, fleet):
    response = as_bob.get("/", {"label": ["team=support", "tier=gold"]})

    assert listed(response) == ["order-1"]


def test_a_label_filter_needs_the_exact_value(as_bob, fleet):
    assert listed(as_bob.get("/", {"label": "team=supp"})) == []


def test_it_searches_a_substring_of_the_workflow_id(as_bob, fleet):
    assert listed(as_bob.get("/", {"q": "rder"})) == ["order-2", "order-1"]


def test_it_searches_a_substring_of_the_run_id(ingest, as_bob, agent_token, fleet):
    assert ingest(agent_token, started("other", 600, run_id="0195f3c2-abcd")).status_code == 200

    assert listed(as_bob.get("/", {"q": "f3c2-ab"})) == ["other"]


def test_it_finds_a_run_by_its_exact_uuid(as_bob, fleet):
    assert listed(as_bob.get("/", {"q": str(fleet["refund-1"].uuid)})) == ["refund-1"]


def test_it_finds_a_run_by_its_uuid_in_capitals(as_bob, fleet):
    assert listed(as_bob.get("/", {"q": str(fleet["refund-1"].uuid).upper()})) == ["refund-1"]


def _ids(ingest, token, *workflow_ids: str) -> None:
    for number, workflow_id in enumerate(workflow_ids):
        assert ingest(token, started(workflow_id, 600 + number)).status_code == 200


@pytest.mark.parametrize("q", ["ORDER-", "order-", "Order-2", "order-2"])
def test_a_search_from_the_start_of_an_id_ignores_case(as_bob, fleet, q):
    expected = ["order-2"] if q.endswith("2") else ["order-2", "order-1"]

    assert listed(as_bob.get("/", {"q": q})) == expected


@pytest.mark.parametrize(("q", "expected"), [
    ("Batch-7-00", ["batch-7-0012", "batch-7-0011"]),  # the start of the ids
    ("ATCH-7-001", ["batch-7-0012", "batch-7-0011"]),  # from their second character
    ("7-0012", ["batch-7-0012"]),  # in the middle
    ("-0011", ["batch-7-0011"]),
    ("BATCH-7-0012", ["batch-7-0012"]),  # the whole id
    ("batch-7-00123", []),  # longer than any id
    ("b", ["batch-7-0012", "batch-7-0011"]),  # one character, at the start only
    ("2", ["batch-7-0012", "order-2"]),  # one character, at the end only
])
def test_a_search_finds_the_text_wherever_it_starts_in_the_id(
    ingest, as_bob, agent_token, fleet, q, expected
):
    _ids(ingest, agent_token, "batch-7-0011", "batch-7-0012")

    assert listed(as_bob.get("/", {"q": q})) == expected


@pytest.mark.parametrize(("q", "expected"), [
    ("50%", ["50%-off"]),  # not "50 any characters"
    ("%-off", ["50%-off"]),
    ("%", ["50%-off"]),
    ("a_b", ["a_b"]),  # not "a, any character, b"
    ("_b", ["a_b"]),
    ("_", ["a_b"]),
    ("c\\d", ["c\\d"]),  # a backslash is a character, not an escape
    ("\\", ["c\\xd", "c\\d"]),
    ("\\d", ["c\\d"]),
])
def test_a_search_takes_like_wildcards_and_backslashes_literally(
    ingest, as_bob, agent_token, q, expected
):
    _ids(ingest, agent_token, "50%-off", "50x-off", "5000-off", "a_b", "axb", "c\\d", "cd", "c\\xd")

    assert listed(as_bob.get("/", {"q": q})) == expected


def test_a_search_typed_from_the_start_still_matches_run_ids_and_uuids(
    ingest, as_bob, agent_token, fleet
):
    assert ingest(agent_token, started("other", 600, run_id="Order-run")).status_code == 200

    assert listed(as_bob.get("/", {"q": "order-r"})) == ["other"]
    assert listed(as_bob.get("/", {"q": str(fleet["order-1"].uuid)})) == ["order-1"]


def test_the_counts_follow_an_id_search(as_bob, fleet):
    counts = dict(as_bob.get("/", {"q": "ORDER"}).context["counts"])

    assert counts["completed"] == 1
    assert counts["failed"] == 1
    assert counts["running"] == 0


def test_filters_combine(as_bob, fleet):
    response = as_bob.get("/", {"agent": "support-bot", "status": "running", "q": "refund"})

    assert listed(response) == ["refund-1"]


def test_it_sorts_by_close_time_with_open_runs_first(as_bob, fleet):
    # order-1 closed at 600s, order-2 at 250s; refund-1 and invoice-1 are open.
    response = as_bob.get("/", {"sort": "closed"})

    assert listed(response) == ["invoice-1", "refund-1", "order-1", "order-2"]


def test_an_empty_sort_is_the_default(as_bob, fleet):
    assert listed(as_bob.get("/", {"sort": ""})) == [
        "invoice-1", "refund-1", "order-2", "order-1"
    ]


# --- bad filters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "bogus"}, "status"),
        ({"status": "completed,nope"}, "status"),
        ({"started_after": "yesterday"}, "started_after"),
        ({"started_before": "2026-13-45"}, "started_before"),
        ({"label": "no-equals-sign"}, "label"),
        ({"label": "=value"}, "label"),
        ({"sort": "name"}, "sort"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"q": "x" * 256}, "q"),
    ],
)
def test_a_bad_filter_value_is_a_400_that_names_the_parameter(as_bob, fleet, params, named):
    response = as_bob.get("/", params)

    assert response.status_code == 400
    assert f"<p>{named}: ".encode() in response.content
    assert response.context["runs"] == []
    assert b"order-1" not in response.content


def test_a_bad_filter_value_answers_the_htmx_partial_with_400(as_bob, fleet):
    response = as_bob.get("/", {"status": "bogus"}, headers=HX)

    assert response.status_code == 400
    assert b"<html" not in response.content
    assert b"status: " in response.content


def test_a_bad_filter_value_is_escaped_in_the_error(as_bob, fleet):
    response = as_bob.get("/", {"status": "<img src=x onerror=alert(1)>"})

    assert response.status_code == 400
    assert b"<img src=x" not in response.content
    assert b"&lt;img src=x onerror=alert(1)&gt;" in response.content


def test_a_cursor_of_the_closed_sort_is_refused_by_the_started_sort(as_bob, fleet):
    response = as_bob.get("/", {"cursor": _encode_cursor("closed", None, 10)})

    assert response.status_code == 400
    assert b"cursor: " in response.content


def test_a_forged_cursor_beyond_the_calendar_is_a_400(as_bob, fleet):
    # 9999-12-31T23:00-05:00 is past the last moment a datetime can hold in UTC.
    forged = base64.urlsafe_b64encode(b'["started","9999-12-31T23:00:00-05:00",1]').decode()

    assert as_bob.get("/", {"cursor": forged}).status_code == 400


def test_a_nul_in_a_filter_is_a_400_naming_it(as_bob, fleet):
    response = as_bob.get("/", {"q": "a\x00b"})

    assert response.status_code == 400
    assert b"q: must not contain the NUL character" in response.content


# --- status counts --------------------------------------------------------------------------


def test_it_counts_runs_per_status_over_the_filters_but_not_the_status(as_bob, fleet):
    response = as_bob.get("/", {"status": "failed"})

    counts = dict(response.context["counts"])
    assert counts["running"] == 2
    assert counts["completed"] == 1
    assert counts["failed"] == 1
    assert counts["paused"] == 0
    assert response.context["counts_capped"] is False


def test_the_counts_follow_the_other_filters(as_bob, fleet):
    counts = dict(as_bob.get("/", {"agent": "support-bot"}).context["counts"])

    assert (counts["running"], counts["completed"], counts["failed"]) == (1, 1, 1)


def test_each_count_links_to_its_status(as_bob, fleet):
    response = as_bob.get("/", {"agent": "support-bot"})

    assert b'href="?agent=support-bot&status=failed"' in response.content


def _count_links(response) -> dict[str, str]:
    """status -> the query string its count links to."""
    counts = response.content.decode().split('<p class="counts">', 1)[1].split("</p>", 1)[0]
    queries = [html.unescape(part.split('"', 1)[0]) for part in counts.split('href="?')[1:]]
    return {QueryDict(query).getlist("status")[-1]: query for query in queries}


def test_following_a_count_lists_as_many_runs_as_it_says(as_bob, fleet):
    # The counts ignore the status filter, so each link must replace it, not add to it.
    response = as_bob.get("/", {"status": "failed"})
    counts = dict(response.context["counts"])
    links = _count_links(response)

    for status in ("running", "completed"):
        assert len(listed(as_bob.get("/", QueryDict(links[status])))) == counts[status], status


def test_counts_are_capped_past_the_cap(as_bob, fleet, ingest, agent_token, monkeypatch):
    for number in range(4):
        assert ingest(agent_token, started(f"done-{number}", 700 + number,
                                           closing="workflow.completed")).status_code == 200
    monkeypatch.setattr("history.views.COUNT_CAP", 3)

    response = as_bob.get("/")

    counts = dict(response.context["counts"])
    assert response.context["counts_capped"] is True
    assert counts["completed"] == 4  # 5 completed runs, counted up to the cap and one more
    assert counts["running"] == 2
    assert counts["failed"] == 1
    assert b"(counts capped at 3)" in response.content
    assert b"4+" in response.content


def test_counts_are_exact_at_the_cap(as_bob, fleet, monkeypatch):
    monkeypatch.setattr("history.views.COUNT_CAP", 4)

    response = as_bob.get("/")

    assert response.context["counts_capped"] is False
    assert b"counts capped" not in response.content


# --- keyset paging ------------------------------------------------------------------------------


def _bulk(agent: Agent, count: int, *, same_start: bool = False, prefix: str = "bulk") -> None:
    token = Token.issue(agent=agent)[0]
    rng = random.Random(7)

    def histories():
        for number in range(count):
            start = BASE_TIME if same_start else BASE_TIME + timedelta(minutes=number)
            yield small_history(f"{prefix}-{number:03d}", f"run-{number}", start, rng)

    bulk_load(token, histories())


def _walk(client, params: dict) -> list[list[str]]:
    pages, query = [], dict(params)
    for _ in range(20):
        response = client.get("/", query)
        pages.append(listed(response))
        next_url = response.context["next_url"]
        if next_url is None:
            return pages
        assert next_url.startswith("?")
        query = QueryDict(next_url[1:]).dict()
    raise AssertionError("paging did not end")


def test_paging_walks_every_run_exactly_once(as_bob, support_agent):
    _bulk(support_agent, 123)

    pages = _walk(as_bob, {})

    assert [len(page) for page in pages] == [50, 50, 23]
    flat = [wf for page in pages for wf in page]
    assert flat == [f"bulk-{n:03d}" for n in range(122, -1, -1)]


def test_paging_walks_runs_that_start_at_the_same_moment(as_bob, support_agent):
    _bulk(support_agent, 110, same_start=True)

    pages = _walk(as_bob, {})

    flat = [wf for page in pages for wf in page]
    assert len(flat) == 110
    assert sorted(flat) == sorted({f"bulk-{n:03d}" for n in range(110)})


def test_paging_by_close_time_walks_open_and_closed_runs_once(as_bob, support_agent, acme):
    _bulk(support_agent, 70)
    open_agent = Agent.objects.create(namespace=acme, name="open-bot")
    token = Token.issue(agent=open_agent)[0]
    rng = random.Random(3)
    bulk_load(token, (
        scenario("support", f"open-{n:02d}", "r", BASE_TIME + timedelta(hours=n), rng,
                 steps=1, close=False)
        for n in range(60)
    ))

    pages = _walk(as_bob, {"sort": "closed"})

    flat = [wf for page in pages for wf in page]
    assert len(flat) == 130
    assert len(set(flat)) == 130
    assert all(wf.startswith("open-") for wf in flat[:60])
    closed = list(Run.objects.filter(workflow_id__startswith="bulk-")
                  .order_by("-closed_at", "-id").values_list("workflow_id", flat=True))
    assert flat[60:] == closed


def test_paging_keeps_the_filters(as_bob, support_agent):
    _bulk(support_agent, 120)
    even = [f"bulk-{n:03d}" for n in range(0, 120, 2)]
    Run.objects.filter(workflow_id__in=even).update(workflow_type="even")

    pages = _walk(as_bob, {"workflow_type": "even"})

    assert [len(page) for page in pages] == [50, 10]
    assert [wf for page in pages for wf in page] == even[::-1]


def test_the_next_link_keeps_the_filters_and_carries_the_cursor(as_bob, support_agent):
    _bulk(support_agent, 60)

    response = as_bob.get("/", {"workflow_type": "batch", "q": "bulk"})

    next_url = response.context["next_url"]
    assert "workflow_type=batch" in next_url
    assert "q=bulk" in next_url
    assert "cursor=" in next_url
    assert b'rel="next"' in response.content


def test_the_last_page_has_no_next_link(as_bob, fleet):
    response = as_bob.get("/")

    assert response.context["next_url"] is None
    assert b'rel="next"' not in response.content


# --- htmx ---------------------------------------------------------------------------------------


def test_an_htmx_request_for_the_list_gets_only_the_list(as_bob, fleet):
    response = as_bob.get("/", {"status": "failed"}, headers=HX)

    assert response.status_code == 200
    assert b"<html" not in response.content
    assert b'id="run-list"' in response.content
    assert b"order-2" in response.content
    assert b'name="started_after"' not in response.content


def test_an_htmx_request_for_another_target_gets_the_whole_page(as_bob, fleet):
    response = as_bob.get("/", headers={"HX-Request": "true"})

    assert b"<html" in response.content
    assert b'name="started_after"' in response.content


def test_the_first_page_refreshes_itself_while_a_run_is_open(as_bob, fleet):
    response = as_bob.get("/")

    assert b'hx-trigger="every 10s' in response.content


def test_a_list_of_closed_runs_does_not_refresh_itself(as_bob, fleet):
    response = as_bob.get("/", {"status": "completed"})

    assert b'hx-trigger="every 10s"' not in response.content


# --- escaping -----------------------------------------------------------------------------------


SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def test_agent_supplied_ids_and_types_are_escaped(ingest, as_bob, agent_token):
    events = started(SCRIPT, 10, workflow_type=f"t{IMG}", run_id=f"r{IMG}")
    assert ingest(agent_token, events).status_code == 200

    response = as_bob.get("/")

    assert SCRIPT.encode() not in response.content
    assert b"<img src=x" not in response.content
    assert html.escape(SCRIPT).encode() in response.content
    assert b"&lt;img src=x onerror=alert(1)&gt;" in response.content


def test_a_reflected_search_and_label_filter_are_escaped(as_bob, fleet):
    response = as_bob.get("/", {"q": IMG, "workflow_type": IMG, "owner": IMG})

    assert response.status_code == 200
    assert b"<img src=x" not in response.content
    assert b"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in response.content


def test_the_label_filter_finds_a_label_with_markup_and_shows_it_escaped(
    ingest, as_bob, agent_token
):
    assert ingest(agent_token, started("tagged", 10, labels={"note": IMG})).status_code == 200

    response = as_bob.get("/", {"label": f"note={IMG}"})

    assert listed(response) == ["tagged"]
    assert b"<img src=x" not in response.content


def test_a_saved_views_name_is_escaped(as_bob, bob, fleet):
    from history.models import SavedView

    SavedView.objects.create(owner=bob, name=SCRIPT, query="status=failed")

    response = as_bob.get("/")

    assert SCRIPT.encode() not in response.content
    assert html.escape(SCRIPT).encode() in response.content


# --- queries ------------------------------------------------------------------------------------


def _queries(client, params=None, headers=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/", params or {}, headers=headers or {}).status_code == 200
    return len(captured)


def test_the_list_alone_skips_the_sidebars_queries(as_bob, support_agent):
    _bulk(support_agent, 3)

    assert _queries(as_bob, headers=HX) == RUN_LIST_PARTIAL_QUERIES
    assert _queries(as_bob, headers={"HX-Request": "true", "HX-Target": "run-rows"}) == (
        RUN_LIST_PARTIAL_QUERIES
    )


def test_the_list_takes_a_fixed_number_of_queries(
    as_bob, support_agent, django_assert_max_num_queries
):
    _bulk(support_agent, 3, prefix="few")
    few = _queries(as_bob)
    _bulk(support_agent, 30, prefix="many")
    with django_assert_max_num_queries(RUN_LIST_QUERIES):
        response = as_bob.get("/")
    assert len(listed(response)) == 33

    assert _queries(as_bob) == few == RUN_LIST_QUERIES


def test_a_filtered_second_page_takes_no_more_queries(
    as_bob, support_agent, django_assert_max_num_queries
):
    _bulk(support_agent, 120)
    cursor = as_bob.get("/", {"workflow_type": "batch"}).context["next_url"]
    params = QueryDict(cursor[1:]).dict()
    with django_assert_max_num_queries(RUN_LIST_QUERIES):
        response = as_bob.get("/", {**params, "owner": "alice", "status": "completed"})
    assert response.status_code == 200
