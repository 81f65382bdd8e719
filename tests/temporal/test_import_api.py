"""POST /api/v1/import/temporal and GET /api/v1/import/temporal/<uuid> (temporal/api.py)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from access.models import Agent, Token
from history.models import Event, Run
from interventions.models import ApprovalRequest
from temporal.importer import DEFAULT_AGENT
from temporal.models import TemporalImport
from temporal.tasks import import_history
from tests.temporal.samples import dumps, events, history, history_bytes, legacy

URL = "/api/v1/import/temporal"
EVENTS = len(history()["events"])


@pytest.fixture
def post(client):
    def send(content: bytes, *, user=None, token: str | None = None, **params):
        if user is not None:
            client.force_login(user)
        query = "&".join(f"{k}={v}" for k, v in {"namespace": "acme", **params}.items())
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.post(f"{URL}?{query}", data=content, content_type="application/json",
                           headers=headers)

    return send


def test_an_investigator_imports_the_cli_export(post, ivy):
    response = post(history_bytes(), user=ivy)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["stored"], body["duplicates"]) == ("done", EVENTS, 0)
    assert body["agent"] == DEFAULT_AGENT
    [run] = body["runs"]
    assert (run["workflow_id"], run["events"], run["status"]) == ("ticket-A", EVENTS, "completed")
    stored = Run.objects.get(uuid=run["uuid"])
    assert stored.namespace.slug == "acme" and stored.agent.name == DEFAULT_AGENT
    assert stored.contiguous_through == EVENTS and stored.workflow_type == "SupportAgent"
    assert Event.objects.filter(run=stored).values("token__name").distinct().count() == 1
    # The workflow's approval.requested is in its history; as the run had ended, nobody is
    # asked to decide it.
    assert stored.events.filter(type="approval.requested").count() == 1
    assert not ApprovalRequest.objects.filter(run=stored).exists()


def test_an_imported_open_run_opens_its_approval_request(post, ivy):
    running = history()
    running["events"] = running["events"][:20]  # exported while it waited for approval
    response = post(dumps(running), user=ivy)
    assert response.status_code == 200, response.content
    run = Run.objects.get(uuid=response.json()["runs"][0]["uuid"])
    assert run.status == "running"
    request = ApprovalRequest.objects.get(run=run)
    assert (request.action, request.risk, request.state) == ("issue_refund", "high", "pending")


def test_importing_the_same_history_again_changes_nothing(post, ivy):
    first = post(history_bytes(), user=ivy).json()
    run = Run.objects.get(uuid=first["runs"][0]["uuid"])
    before = (run.head_hash, run.event_count, run.received_seq)
    again = post(history_bytes(), user=ivy)
    assert again.status_code == 200
    assert (again.json()["stored"], again.json()["duplicates"]) == (0, EVENTS)
    run.refresh_from_db()
    assert (run.head_hash, run.event_count, run.received_seq) == before


def test_the_older_spelling_of_the_same_history_is_a_duplicate_not_a_conflict(post, ivy):
    post(history_bytes("kitchen_sink"), user=ivy)
    again = post(dumps(legacy(history("kitchen_sink"))), user=ivy)
    assert again.status_code == 200, again.content
    assert again.json()["stored"] == 0


def test_a_different_history_for_the_same_run_is_a_conflict_and_stores_nothing(post, ivy):
    post(history_bytes(), user=ivy)
    changed = history()
    changed["events"][3]["eventTime"] = "2020-01-01T00:00:00Z"
    changed["events"].append({**changed["events"][-1], "eventId": str(EVENTS + 1)})
    response = post(dumps(changed), user=ivy)
    assert response.status_code == 409
    assert "already holds a different history: event 4 differs" in response.json()["detail"]
    assert Event.objects.filter(run__workflow_id="ticket-A").count() == EVENTS


def test_a_run_of_another_agent_is_a_conflict(post, alice):
    post(history_bytes(), user=alice)
    response = post(history_bytes(), user=alice, agent="someone-else")
    assert response.status_code == 409
    assert "already belongs to agent 'temporal-import'" in response.json()["detail"]


def test_an_unknown_event_type_is_imported_and_kept(post, ivy):
    strange = history()
    strange["events"].insert(5, {
        "eventId": "0", "eventTime": strange["events"][4]["eventTime"],
        "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_TELEPORTED",
        "workflowExecutionTeleportedEventAttributes": {"to": "moon"},
    })
    for number, event in enumerate(strange["events"], start=1):
        event["eventId"] = str(number)
    response = post(dumps(strange), user=ivy, workflow_id="x")
    assert response.status_code == 200, response.content
    event = Event.objects.get(run__workflow_id="ticket-A", event_id=6)
    assert event.type == "temporal.unknown"
    assert event.attributes_for(raw=True)["temporal"]["event_type"] == (
        "EVENT_TYPE_WORKFLOW_EXECUTION_TELEPORTED"
    )


def test_multipart_upload_with_form_fields(client, ivy):
    client.force_login(ivy)
    upload = SimpleUploadedFile("later.json", dumps({"events": events()[4:]}))
    response = client.post(URL, {"file": upload, "namespace": "acme", "workflow_id": "wf-x",
                                 "run_id": "run-x"})
    assert response.status_code == 200, response.content
    assert response.json()["filename"] == "later.json"
    run = Run.objects.get(workflow_id="wf-x", run_id="run-x")
    assert run.has_gaps and run.contiguous_through == 0 and run.last_event_id == EVENTS


@pytest.mark.parametrize("content, status, message", [
    (b"{not json", 400, "the file is not JSON"),
    (b'{"foo": 1}', 400, "has no `events`"),
    (b'{"events": [{"eventId": "1", "eventType": "EVENT_TYPE_TIMER_FIRED", '
     b'"eventTime": "yesterday"}]}', 400, "events[0]: eventTime: must be an RFC 3339 time"),
    (b'{"events": [{"workflow_id": "w", "run_id": "r", "event_id": 1, "type": "x.y", '
     b'"time": "2026-01-01T00:00:00Z"}]}', 400, "Flightdeck's own event format"),
    (b"", 400, "the body is empty"),
])
def test_a_file_that_is_not_a_temporal_history_gets_a_clear_400(post, ivy, content, status,
                                                                 message):
    response = post(content, user=ivy, workflow_id="w", run_id="r")
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_a_refused_import_is_recorded_with_its_reason(post, ivy):
    post(b'{"foo": 1}', user=ivy)
    imp = TemporalImport.objects.get()
    assert (imp.state, imp.error_status) == ("failed", 400)
    assert bytes(imp.content) == b""


def test_a_large_file_is_imported_by_the_task_with_progress(post, ivy, settings, client,
                                                            django_capture_on_commit_callbacks):
    settings.TEMPORAL_IMPORT_INLINE_MAX_BYTES = 1000
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(history_bytes(), user=ivy)
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "queued" and response["Location"] == body["url"]
    assert len(callbacks) == 1  # the task is enqueued after commit
    import_history(TemporalImport.objects.get(uuid=body["uuid"]).pk)  # what the worker runs
    status = client.get(f"{URL}/{body['uuid']}").json()
    assert (status["state"], status["events_done"], status["events_total"]) == (
        "done", EVENTS, EVENTS
    )


def test_an_import_over_the_limit_is_413(post, ivy, settings):
    settings.TEMPORAL_IMPORT_MAX_BYTES = 1024
    assert post(history_bytes(), user=ivy).status_code == 413


def test_a_viewer_may_not_import(post, bob):
    assert post(history_bytes(), user=bob).status_code == 403


def test_an_outsider_gets_404_for_the_namespace(post, charlie):
    assert post(history_bytes(), user=charlie).status_code == 404


def test_anonymous_is_refused(post, db):
    assert post(history_bytes()).status_code in (401, 403)


def test_an_agent_token_may_not_import(post, agent_token):
    response = post(history_bytes(), token=agent_token)
    assert response.status_code == 403
    assert "agent token" in response.json()["detail"]


def test_a_user_token_of_an_investigator_may_import(post, ivy):
    token = Token.issue(user=ivy)[1]
    assert post(history_bytes(), token=token).status_code == 200


def test_the_namespace_is_required(client, ivy):
    client.force_login(ivy)
    response = client.post(URL, data=history_bytes(), content_type="application/json")
    assert response.status_code == 400 and "namespace: is required" in response.json()["detail"]


@pytest.mark.parametrize("slug", ["ac%00me", "a%20b", "x" * 64])
def test_a_namespace_that_is_not_a_slug_is_a_400_naming_it(post, ivy, slug):
    # PostgreSQL refuses a NUL in a lookup with an error: it must never reach the database.
    response = post(history_bytes(), user=ivy, namespace=slug)
    assert response.status_code == 400 and "namespace: must be" in response.json()["detail"]


@pytest.mark.parametrize("field", ["workflow_id", "run_id"])
@pytest.mark.parametrize("value", ["w%00x", "w" * 256])
def test_a_workflow_or_run_id_that_cannot_be_stored_is_a_400_naming_it(post, ivy, field, value):
    response = post(history_bytes(), user=ivy, **{field: value})
    assert response.status_code == 400 and f"{field}: must be" in response.json()["detail"]
    assert not TemporalImport.objects.exists()


def test_a_new_agent_name_needs_an_admin(post, ivy, alice):
    response = post(history_bytes(), user=ivy, agent="archive-bot")
    assert response.status_code == 403 and "administer" in response.json()["detail"]
    assert post(history_bytes(), user=alice, agent="archive-bot").status_code == 200
    agent = Agent.objects.get(name="archive-bot")
    assert agent.connector.kind == "temporal"


def test_an_import_may_not_write_into_a_followed_connections_agent(post, ivy, acme):
    from temporal.connections import save_connection

    connection = save_connection(acme, {"name": "live", "address": "127.0.0.1:7233",
                                        "temporal_namespace": "default"})

    response = post(history_bytes(), user=ivy, agent=connection.agent.name)

    assert response.status_code == 403 and "live Temporal connection" in response.json()["detail"]
    assert not Run.objects.filter(agent=connection.agent).exists()


def test_a_nul_in_a_files_key_is_a_400_and_the_import_ends_failed(post, ivy):
    response = post(b'{"a\\u0000": 1}', user=ivy)

    assert response.status_code == 400, response.content
    imp = TemporalImport.objects.get()
    assert (imp.state, imp.error_status) == ("failed", 400) and "\x00" not in imp.error


def test_the_status_of_another_namespaces_import_is_404(post, ivy, client, charlie):
    body = post(history_bytes(), user=ivy).json()
    client.force_login(charlie)
    assert client.get(f"{URL}/{body['uuid']}").status_code == 404


def test_wrong_method_is_405(client, ivy):
    client.force_login(ivy)
    assert client.get(URL).status_code == 405


@pytest.mark.parametrize("shape", [
    lambda h: {"history": h},
    lambda h: h["events"],
    lambda h: list(reversed(h["events"])),
    lambda h: [h],
    lambda h: legacy(h),
    lambda h: list(reversed(legacy(h)["events"])),
], ids=["history.events", "bare array", "newest first", "array of histories",
        "PascalCase enums, numeric ids", "old spelling, newest first"])
def test_every_shape_and_spelling_stores_the_same_events(post, ivy, shape):
    first = post(history_bytes("kitchen_sink"), user=ivy)
    assert first.status_code == 200 and first.json()["stored"] == 36
    again = post(dumps(shape(history("kitchen_sink"))), user=ivy)
    assert again.status_code == 200, again.content
    # Every event is a duplicate: the same envelope and the same attribute bytes.
    assert (again.json()["stored"], again.json()["duplicates"]) == (0, 36)


def test_an_array_of_histories_imports_each_run(post, ivy):
    response = post(dumps([history(), history("kitchen_sink")]), user=ivy)
    assert response.status_code == 200, response.content
    assert sorted(run["workflow_id"] for run in response.json()["runs"]) == ["exp-1",
                                                                              "ticket-A"]
    assert Run.objects.count() == 2


def test_attributes_nested_deeper_than_storable_are_a_400(post, ivy):
    deep = {"x": 1}
    for _ in range(300):
        deep = {"cause": deep}
    event = {"eventId": "1", "eventTime": "2026-01-01T00:00:00Z",
             "eventType": "EVENT_TYPE_TIMER_FIRED", "timerFiredEventAttributes": {"failure": deep}}
    response = post(dumps({"events": [event]}), user=ivy, workflow_id="w", run_id="r")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("events[0]: attributes: cannot be stored")
