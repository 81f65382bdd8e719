"""The upload page and an import's progress page (temporal/views.py)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from history.models import Run
from temporal.models import TemporalImport
from temporal.tasks import import_history
from tests.temporal.samples import dumps, history, history_bytes

PAGE = "/namespaces/acme/temporal/import/"


def upload(content: bytes | None = None, name: str = "history.json", **fields) -> dict:
    return {"file": SimpleUploadedFile(name, history_bytes() if content is None else content),
            **fields}


def test_the_page_shows_the_form_and_recent_imports(as_ivy):
    as_ivy.post(PAGE, upload())
    response = as_ivy.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    assert 'enctype="multipart/form-data"' in text and "csrfmiddlewaretoken" in text
    assert "history.json" in text and "Done" in text


def test_an_upload_is_imported_and_leads_to_the_import_with_its_runs(as_ivy):
    response = as_ivy.post(PAGE, upload(), follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    run = Run.objects.get(workflow_id="ticket-A")
    assert f"/runs/{run.uuid}/" in text
    assert "Imported history.json: 39 new events" in text


def test_a_conflicting_history_is_refused_with_a_clear_message(as_ivy):
    as_ivy.post(PAGE, upload())
    changed = history()
    changed["events"][0]["eventTime"] = "2020-01-01T00:00:00Z"
    response = as_ivy.post(PAGE, upload(dumps(changed)))
    assert response.status_code == 409
    assert "already holds a different history: event 1 differs" in response.content.decode()


def test_a_malformed_file_is_refused_with_a_clear_message(as_ivy):
    response = as_ivy.post(PAGE, upload(b'{"nothing": "here"}'))
    assert response.status_code == 400
    assert "has no <code>events</code>" in response.content.decode() or (
        "has no `events`" in response.content.decode()
    )


def test_agent_supplied_strings_are_escaped(as_ivy):
    response = as_ivy.post(PAGE, upload(b'{"<script>x</script>": 1}'))
    assert "<script>x</script>" not in response.content.decode()
    assert "&lt;script&gt;" in response.content.decode()


def test_a_post_without_a_file_is_a_form_error(as_ivy):
    response = as_ivy.post(PAGE, {"agent": "x"})
    assert response.status_code == 400 and "This field is required" in response.content.decode()


def test_the_page_needs_a_login(client, acme):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_a_viewer_is_forbidden_and_an_outsider_sees_nothing(as_bob, client, charlie):
    assert as_bob.get(PAGE).status_code == 403
    assert as_bob.post(PAGE, upload()).status_code == 403
    client.force_login(charlie)
    assert client.get(PAGE).status_code == 404
    assert not Run.objects.exists()


def test_the_upload_needs_the_csrf_token(ivy):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(ivy)
    assert browser.post(PAGE, upload()).status_code == 403
    assert not TemporalImport.objects.exists()


def test_wrong_method_is_405(as_ivy):
    assert as_ivy.put(PAGE).status_code == 405


def test_a_large_upload_shows_progress_until_done(as_ivy, settings,
                                                  django_capture_on_commit_callbacks):
    settings.TEMPORAL_IMPORT_INLINE_MAX_BYTES = 1000
    with django_capture_on_commit_callbacks():
        response = as_ivy.post(PAGE, upload())
    imp = TemporalImport.objects.get()
    detail = f"/namespaces/acme/temporal/imports/{imp.uuid}/"
    assert response.status_code == 302 and response["Location"] == detail
    page = as_ivy.get(detail)
    assert page.status_code == 200 and 'hx-trigger="every 1s"' in page.content.decode()
    polled = as_ivy.get(detail, headers={"HX-Request": "true"})
    assert polled.status_code == 200 and "Queued" in polled.content.decode()
    import_history(imp.pk)
    done = as_ivy.get(detail, headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx stops polling
    text = done.content.decode()
    assert "<html" not in text and "39 of 39 events" in text and "every 1s" not in text


@pytest.mark.parametrize("path", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_an_unknown_import_is_404(as_ivy, path):
    assert as_ivy.get(f"/namespaces/acme/temporal/imports/{path}/").status_code == 404


def test_another_namespaces_import_is_404(as_ivy, client, charlie, globex):
    as_ivy.post(PAGE, upload())
    imp = TemporalImport.objects.get()
    client.force_login(charlie)
    assert client.get(f"/namespaces/globex/temporal/imports/{imp.uuid}/").status_code == 404


def test_an_imported_run_shows_on_its_run_page_with_unknown_events_generically(as_ivy):
    strange = history()
    strange["events"].insert(3, {
        "eventId": "4", "eventTime": strange["events"][2]["eventTime"],
        "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_TELEPORTED",
        "workflowExecutionTeleportedEventAttributes": {"to": "<b>moon</b>"},
    })
    for number, event in enumerate(strange["events"], start=1):
        event["eventId"] = str(number)
    as_ivy.post(PAGE, upload(dumps(strange)))
    run = Run.objects.get(workflow_id="ticket-A")
    page = as_ivy.get(f"/runs/{run.uuid}/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "temporal.unknown" in text and "SupportAgent" in text
    assert "<b>moon</b>" not in text


def test_the_waterfall_draws_activities_not_the_approval_activitys_lone_events(as_ivy):
    from django.utils import timezone

    from history.timeline import compact_rows, waterfall

    as_ivy.post(PAGE, upload())
    run = Run.objects.get(workflow_id="ticket-A")
    rows = compact_rows(list(run.events.order_by("event_id")), raw=False)
    drawn = waterfall(rows, now=timezone.now())
    labels = [bar.row.label for bar in drawn.bars]
    assert labels == ["llm.plan", "tool.lookup_order", "tool.issue_refund", "llm.reply"]
    assert all(bar.row.end is not None for bar in drawn.bars)  # none drawn up to "now"


def test_the_page_costs_the_same_queries_for_one_import_or_many(as_ivy, ivy, acme):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from access.models import Agent

    agent = Agent.objects.create(namespace=acme, name="importer")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert as_ivy.get(PAGE).status_code == 200
        return len(captured)

    TemporalImport.objects.create(namespace=acme, agent=agent, requested_by=ivy)
    one = queries()
    for _ in range(6):
        TemporalImport.objects.create(namespace=acme, agent=agent, requested_by=ivy,
                                      error="<b>refused</b>")
    assert queries() == one
