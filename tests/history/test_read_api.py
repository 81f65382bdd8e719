"""The read API: GET /api/v1/runs (scoping, filters, paging), a run's detail and its events, and
the OpenAPI schema and docs."""

from __future__ import annotations

import pytest

from access.models import Token
from history.models import Run
from tests.builders import at, event

pytestmark = pytest.mark.django_db


def started(workflow_id: str, start: float, *, workflow_type: str = "support", labels=None,
            closing: str | None = None, run_id: str = "r1") -> list[dict]:
    """A run's workflow.started at `start` seconds, and optionally a closing event after it."""
    events = [
        event(1, "workflow.started", workflow_id=workflow_id, run_id=run_id,
              workflow_type=workflow_type, time=at(start),
              attributes={"labels": labels or {}})
    ]
    if closing:
        events.append(event(2, closing, workflow_id=workflow_id, run_id=run_id,
                            time=at(start + 1)))
    return events


@pytest.fixture
def fleet(ingest, agent_token, other_agent_token, foreign_agent_token) -> dict[str, Run]:
    """Runs of support-bot, billing-bot (both acme) and research-bot (globex), by workflow id."""
    batches = [
        (agent_token, started("order-1", 100, labels={"team": "support", "tier": "gold"},
                              closing="workflow.completed")),
        (agent_token, started("order-2", 200, labels={"team": "support", "tier": "free"},
                              closing="workflow.failed")),
        (agent_token, started("refund-1", 300, workflow_type="billing",
                              labels={"team": "billing"})),
        (other_agent_token, started("invoice-1", 400, workflow_type="billing")),
        (foreign_agent_token, started("paper-1", 500, workflow_type="research",
                                      closing="workflow.completed")),
    ]
    for token, events in batches:
        assert ingest(token, events).status_code == 200
    return {run.workflow_id: run for run in Run.objects.all()}


def as_agent(token: str) -> dict:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def listed(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [run["workflow_id"] for run in response.json()["results"]]


# --- the list: who sees what ----------------------------------------------------------------


def test_a_viewer_sees_the_runs_of_their_namespace(client, bob, fleet):
    client.force_login(bob)

    assert listed(client.get("/api/v1/runs")) == ["invoice-1", "refund-1", "order-2", "order-1"]


def test_an_outsider_sees_none_of_another_namespaces_runs(client, charlie, fleet):
    client.force_login(charlie)

    assert listed(client.get("/api/v1/runs")) == ["paper-1"]


def test_an_outsider_cannot_filter_their_way_into_another_namespace(client, charlie, fleet):
    client.force_login(charlie)

    assert listed(client.get("/api/v1/runs", {"namespace": "acme"})) == []


def test_a_superuser_sees_every_run(client, django_user_model, fleet):
    root = django_user_model.objects.create_superuser("root", password="correct horse battery")
    client.force_login(root)

    assert len(listed(client.get("/api/v1/runs"))) == 5


def test_a_user_without_a_role_sees_no_runs(client, django_user_model, fleet):
    client.force_login(django_user_model.objects.create_user("nobody", password="x" * 12))

    assert listed(client.get("/api/v1/runs")) == []


def test_a_user_token_sees_what_its_user_sees(client, bob, fleet):
    _, token = Token.issue(user=bob)

    response = client.get("/api/v1/runs", **as_agent(token))

    assert len(listed(response)) == 4


def test_an_agent_token_sees_only_its_agents_runs(client, agent_token, fleet):
    response = client.get("/api/v1/runs", **as_agent(agent_token))

    assert listed(response) == ["refund-1", "order-2", "order-1"]


def test_an_anonymous_caller_gets_401(client, fleet):
    assert client.get("/api/v1/runs").status_code == 401


def test_a_run_has_the_documented_fields(client, bob, fleet):
    client.force_login(bob)

    run = client.get("/api/v1/runs", {"workflow_id": "order-1"}).json()["results"][0]

    assert set(run) == {
        "uuid", "namespace", "agent", "workflow_id", "run_id", "workflow_type", "status",
        "started_at", "closed_at", "event_count", "last_event_id", "contiguous_through",
        "has_gaps", "head_hash", "events_with_secrets", "labels", "updated_at",
    }
    assert run["uuid"] == str(fleet["order-1"].uuid)
    assert (run["namespace"], run["agent"], run["status"]) == ("acme", "support-bot", "completed")
    assert run["labels"] == {"team": "support", "tier": "gold"}


# --- the list: filters ----------------------------------------------------------------------


@pytest.fixture
def root_client(client, django_user_model, fleet):
    client.force_login(
        django_user_model.objects.create_superuser("root", password="correct horse battery")
    )
    return client


def test_it_filters_by_namespace(root_client):
    assert listed(root_client.get("/api/v1/runs", {"namespace": "globex"})) == ["paper-1"]


def test_it_filters_by_agent(root_client):
    response = root_client.get("/api/v1/runs", {"agent": "billing-bot"})

    assert listed(response) == ["invoice-1"]


def test_it_filters_by_workflow_type(root_client):
    response = root_client.get("/api/v1/runs", {"workflow_type": "billing"})

    assert listed(response) == ["invoice-1", "refund-1"]


def test_it_filters_by_one_status(root_client):
    response = root_client.get("/api/v1/runs", {"status": "completed"})

    assert listed(response) == ["paper-1", "order-1"]


def test_it_filters_by_several_statuses(root_client):
    response = root_client.get("/api/v1/runs", {"status": "failed,running"})

    assert listed(response) == ["invoice-1", "refund-1", "order-2"]


def test_it_filters_by_a_workflow_id_prefix(root_client):
    response = root_client.get("/api/v1/runs", {"workflow_id": "order-"})

    assert listed(response) == ["order-2", "order-1"]


def test_the_workflow_id_prefix_is_case_sensitive(root_client):
    assert listed(root_client.get("/api/v1/runs", {"workflow_id": "ORDER"})) == []


def test_the_workflow_id_prefix_is_not_a_pattern(root_client):
    assert listed(root_client.get("/api/v1/runs", {"workflow_id": "%"})) == []
    assert listed(root_client.get("/api/v1/runs", {"workflow_id": "order_"})) == []


def test_it_filters_by_start_time_with_an_inclusive_lower_bound(root_client):
    response = root_client.get("/api/v1/runs", {"started_after": at(200)})

    assert listed(response) == ["paper-1", "invoice-1", "refund-1", "order-2"]


def test_it_filters_by_start_time_with_an_exclusive_upper_bound(root_client):
    response = root_client.get("/api/v1/runs", {"started_before": at(200)})

    assert listed(response) == ["order-1"]


def test_it_filters_by_a_start_time_window(root_client):
    response = root_client.get(
        "/api/v1/runs", {"started_after": at(200), "started_before": at(400)}
    )

    assert listed(response) == ["refund-1", "order-2"]


def test_it_reads_a_start_time_with_an_offset(root_client):
    # 09:03:20Z, written as 10:03:20 at +01:00.
    response = root_client.get(
        "/api/v1/runs", {"started_before": "2026-11-01T10:03:20+01:00"}
    )

    assert listed(response) == ["order-1"]


def test_it_filters_by_a_label(root_client):
    response = root_client.get("/api/v1/runs", {"label": "team=support"})

    assert listed(response) == ["order-2", "order-1"]


def test_it_requires_every_repeated_label(root_client):
    response = root_client.get("/api/v1/runs", {"label": ["team=support", "tier=gold"]})

    assert listed(response) == ["order-1"]


def test_it_combines_filters(root_client):
    response = root_client.get(
        "/api/v1/runs", {"namespace": "acme", "workflow_type": "billing", "status": "running",
                         "agent": "support-bot"},
    )

    assert listed(response) == ["refund-1"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"status": "bogus"}, "status"),
        ({"status": "completed,bogus"}, "status"),
        ({"started_after": "yesterday"}, "started_after"),
        ({"started_before": "2026-13-01T00:00:00Z"}, "started_before"),
        ({"label": "nokey"}, "label"),
        ({"label": "=value"}, "label"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
    ],
    ids=lambda value: str(value),
)
def test_it_rejects_a_bad_filter_naming_the_parameter(root_client, params, parameter):
    response = root_client.get("/api/v1/runs", params)

    assert response.status_code == 400, response.content
    assert parameter in response.json()


def test_it_walks_every_run_exactly_once_two_at_a_time(client, ingest, agent_token, bob):
    # Seven runs, three of which start at the same moment.
    for number, start in enumerate([10, 20, 20, 20, 30, 40, 50]):
        assert ingest(agent_token, started(f"wf-{number}", start)).status_code == 200
    client.force_login(bob)

    seen = []
    url = "/api/v1/runs?limit=2"
    pages = 0
    while url:
        page = client.get(url)
        assert page.status_code == 200
        results = page.json()["results"]
        assert len(results) <= 2
        seen.extend(run["workflow_id"] for run in results)
        url = page.json()["next"]
        pages += 1
        assert pages <= 10

    assert sorted(seen) == [f"wf-{number}" for number in range(7)]
    assert len(seen) == 7
    assert pages == 4


# --- one run --------------------------------------------------------------------------------


def test_it_shows_one_run_by_uuid(client, bob, fleet):
    client.force_login(bob)

    response = client.get(f"/api/v1/runs/{fleet['order-1'].uuid}")

    assert response.status_code == 200
    assert response.json()["workflow_id"] == "order-1"
    assert response.json()["missing_ranges"] == []


def test_it_lists_the_missing_ranges_of_a_run_with_gaps(client, ingest, agent_token, bob):
    ingest(agent_token, [event(1, "workflow.started"), event(2), event(5), event(8)])
    client.force_login(bob)
    run = Run.objects.get()

    answer = client.get(f"/api/v1/runs/{run.uuid}").json()

    assert answer["missing_ranges"] == [[3, 4], [6, 7]]
    assert (answer["contiguous_through"], answer["last_event_id"], answer["has_gaps"]) == (
        2, 8, True,
    )


@pytest.mark.parametrize(
    "uuid",
    ["not-a-uuid", "0" * 36, "-" * 36, "00000000-0000-0000-0000-000000000000"],
)
def test_it_answers_404_for_a_malformed_or_unknown_uuid(client, bob, fleet, uuid):
    client.force_login(bob)

    assert client.get(f"/api/v1/runs/{uuid}").status_code == 404
    assert client.get(f"/api/v1/runs/{uuid}/events").status_code == 404


ENDPOINTS = ["/api/v1/runs/{uuid}", "/api/v1/runs/{uuid}/events",
             "/api/v1/runs/{uuid}/events?raw=true"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_outsider_gets_404_for_another_namespaces_run(client, charlie, fleet, endpoint):
    client.force_login(charlie)

    response = client.get(endpoint.format(uuid=fleet["order-1"].uuid))

    assert response.status_code == 404


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_foreign_agent_gets_404_for_another_namespaces_run(
    client, foreign_agent_token, fleet, endpoint
):
    response = client.get(endpoint.format(uuid=fleet["order-1"].uuid),
                          **as_agent(foreign_agent_token))

    assert response.status_code == 404


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_another_agent_of_the_namespace_gets_404_for_a_run_not_its_own(
    client, other_agent_token, fleet, endpoint
):
    response = client.get(endpoint.format(uuid=fleet["order-1"].uuid),
                          **as_agent(other_agent_token))

    assert response.status_code == 404


def test_an_agent_may_read_its_own_run(client, agent_token, fleet):
    response = client.get(f"/api/v1/runs/{fleet['order-1'].uuid}", **as_agent(agent_token))

    assert response.status_code == 200


def test_the_api_is_read_only(client, alice, fleet):
    client.force_login(alice)
    url = f"/api/v1/runs/{fleet['order-1'].uuid}"

    assert client.delete(url).status_code == 405
    assert client.patch(url, {}, content_type="application/json").status_code == 405
    assert Run.objects.filter(pk=fleet["order-1"].pk).exists()


# --- a run's events -------------------------------------------------------------------------


@pytest.fixture
def long_run(ingest, agent_token) -> Run:
    events = [event(1, "workflow.started")] + [event(n) for n in range(2, 8)]
    # Arriving out of order, so that arrival order and event_id order differ.
    assert ingest(agent_token, list(reversed(events))).status_code == 200
    return Run.objects.get()


def test_it_pages_events_by_event_id(client, bob, long_run):
    client.force_login(bob)

    seen = []
    after = 0
    while after is not None:
        page = client.get(f"/api/v1/runs/{long_run.uuid}/events", {"after": after, "limit": 3})
        assert page.status_code == 200
        seen.extend(item["event_id"] for item in page.json()["events"])
        after = page.json()["next_after"]

    assert seen == [1, 2, 3, 4, 5, 6, 7]


def test_it_ends_the_last_page_with_no_next_after(client, bob, long_run):
    client.force_login(bob)

    answer = client.get(f"/api/v1/runs/{long_run.uuid}/events", {"after": 4, "limit": 3}).json()

    assert [item["event_id"] for item in answer["events"]] == [5, 6, 7]
    assert answer["next_after"] is None


def test_it_returns_events_with_the_documented_fields(client, bob, long_run):
    client.force_login(bob)

    first = client.get(f"/api/v1/runs/{long_run.uuid}/events").json()["events"][0]

    assert set(first) == {
        "event_id", "type", "time", "timestamp", "identity", "refs", "attributes", "masked",
        "secret_findings", "received_at", "received_seq", "chain_hash",
    }
    assert first["time"] == at(1)
    assert first["masked"] is False


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"after": "-1"}, "after"),
        ({"after": "abc"}, "after"),
        ({"after": "1.5"}, "after"),
    ],
    ids=lambda value: str(value),
)
def test_it_rejects_bad_paging_parameters_for_events(client, bob, long_run, params, parameter):
    client.force_login(bob)

    response = client.get(f"/api/v1/runs/{long_run.uuid}/events", params)

    assert response.status_code == 400
    assert parameter in response.json()


def test_it_accepts_the_largest_page_of_events(client, bob, long_run):
    client.force_login(bob)

    response = client.get(f"/api/v1/runs/{long_run.uuid}/events", {"limit": 1000})

    assert response.status_code == 200
    assert len(response.json()["events"]) == 7


# --- OpenAPI --------------------------------------------------------------------------------


def test_the_schema_describes_ingest_and_runs(client, bob):
    client.force_login(bob)

    response = client.get("/api/schema/")

    assert response.status_code == 200
    content = response.content.decode()
    assert "/api/v1/ingest" in content
    assert "/api/v1/runs" in content


def test_the_api_docs_render_for_a_signed_in_user(client, bob):
    client.force_login(bob)

    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_the_schema_and_docs_are_not_public(client, db, url):
    response = client.get(url)

    assert response.status_code in (302, 401, 403)


def test_a_forged_api_cursor_is_a_400_not_a_500(client, bob, acme):
    import base64

    client.force_login(bob)
    for forged in ("cD1nYXJiYWdl", base64.urlsafe_b64encode(b'["started","x",1]').decode()):
        response = client.get("/api/v1/runs", {"cursor": forged})
        assert response.status_code == 400
        assert "cursor" in response.json()


def test_the_api_pages_by_close_time_too(client, bob, ingest, agent_token):
    from tests.builders import history

    for number in range(5):
        assert ingest(agent_token, history(4, workflow_id=f"wf-{number}")).status_code == 200
    client.force_login(bob)
    seen, url = [], "/api/v1/runs?sort=closed&limit=2"
    while url:
        page = client.get(url).json()
        seen += [run["workflow_id"] for run in page["results"]]
        url = page["next"]
    assert sorted(seen) == [f"wf-{n}" for n in range(5)]
    assert len(seen) == 5
