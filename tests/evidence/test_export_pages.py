"""The evidence pages: who may export, see and download what; CSRF on the form; htmx
progress; the public key; the run list as CSV."""

from __future__ import annotations

import csv
import hashlib
import io

import pytest
from django.test import Client

from access.models import Membership
from audit.models import AuditEntry
from evidence import exports
from evidence.models import EvidenceExport
from evidence.scope import ExportScope
from history.models import Run
from tests.builders import event


def export_url(run: Run) -> str:
    return f"/evidence/export?run={run.uuid}"


def post_export(client, run: Run, **fields):
    return client.post("/evidence/export", {"scope": "run", "run": str(run.uuid), **fields})


@pytest.fixture
def queued(evidence_run, as_ivy, django_capture_on_commit_callbacks):
    """An export ivy asked for through the page (its task not run)."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_export(as_ivy, evidence_run)
    assert response.status_code == 302, response.content
    assert len(callbacks) == 1  # the build task, enqueued once the row is committed
    return EvidenceExport.objects.get()


@pytest.fixture
def ready(queued) -> EvidenceExport:
    exports.build(exports.claim(queued.id))
    queued.refresh_from_db()
    assert queued.state == "ready", queued.error
    return queued


# --- the evidence page -------------------------------------------------------------------------


def test_the_evidence_page_needs_a_sign_in(client):
    response = client.get("/evidence/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_evidence_page_shows_the_key_fingerprint_to_pin(as_bob, fingerprint):
    response = as_bob.get("/evidence/")
    assert response.status_code == 200
    assert fingerprint.encode() in response.content
    assert b"needs the investigator or admin role" in response.content


def test_the_evidence_page_says_when_no_signing_key_is_configured(as_bob, settings):
    settings.EVIDENCE_SIGNING_KEY = ""
    settings.DEBUG = False  # with DEBUG a development key would be made

    response = as_bob.get("/evidence/")

    assert response.status_code == 200
    assert b"No signing key is configured" in response.content


def test_the_evidence_page_offers_namespace_exports_to_investigators(as_ivy):
    response = as_ivy.get("/evidence/")
    assert b'name="namespace"' in response.content and b'value="acme"' in response.content


def test_the_evidence_page_refuses_a_post(as_ivy):
    assert as_ivy.post("/evidence/").status_code == 405


def test_the_public_key_downloads_as_pem(as_bob, client):
    response = as_bob.get("/evidence/public-key.pem")
    assert response.status_code == 200
    assert response.content.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert Client().get("/evidence/public-key.pem").status_code == 302


# --- the export form ---------------------------------------------------------------------------


def test_the_form_shows_what_an_export_covers(evidence_run, as_ivy):
    response = as_ivy.get(export_url(evidence_run))
    assert response.status_code == 200
    assert b"1 run, 12 events" in response.content
    assert b'name="csrfmiddlewaretoken"' in response.content


def test_a_viewer_may_not_export(evidence_run, as_bob):
    assert as_bob.get(export_url(evidence_run)).status_code == 403
    assert post_export(as_bob, evidence_run).status_code == 403
    assert not EvidenceExport.objects.exists()


def test_an_operator_or_approver_may_not_export_either(evidence_run, client, django_user_model,
                                                       acme):
    user = django_user_model.objects.create_user("opal")
    for role in ("operator", "approver"):
        Membership.objects.create(user=user, namespace=acme, role=role)
    client.force_login(user)
    assert client.get(export_url(evidence_run)).status_code == 403


def test_another_namespaces_run_is_not_found(evidence_run, as_charlie):
    assert as_charlie.get(export_url(evidence_run)).status_code == 404
    assert post_export(as_charlie, evidence_run).status_code == 404


def test_another_namespace_is_not_found(as_charlie, acme):
    response = as_charlie.get("/evidence/export?scope=namespace&namespace=acme")
    assert response.status_code == 404


@pytest.mark.parametrize("run_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_a_bad_run_id_is_not_found(as_ivy, run_id):
    assert as_ivy.get(f"/evidence/export?run={run_id}").status_code == 404


@pytest.mark.parametrize(("query", "field"), [
    ("scope=filter&status=bogus", b"status: &#x27;bogus&#x27; is not a run status"),
    ("scope=namespace", b"namespace: choose a namespace"),
    ("scope=namespace&namespace=acme&since=2026-02-01&until=2026-01-01",
     b"until: must be after since"),
    ("scope=namespace&namespace=acme&since=yesterday", b"since: must be a date"),
    ("scope=everything", b"scope: must be one of run, filter, namespace"),
    ("scope=filter&namespace=acme", b"runs: no run you may export matches"),
    # A NUL never reaches PostgreSQL, which would refuse it with an error (a 500).
    ("scope=namespace&namespace=ac%00me", b"namespace: must be a namespace&#x27;s slug"),
])
def test_bad_parameters_are_a_400_naming_the_field(as_ivy, acme, query, field):
    response = as_ivy.get(f"/evidence/export?{query}")
    assert response.status_code == 400
    assert field in response.content


def test_too_many_runs_are_refused(evidence_run, ingest, agent_token, as_ivy, settings):
    ingest(agent_token, [event(1, "workflow.started", workflow_id="second")])
    settings.EVIDENCE_EXPORT_MAX_RUNS = 1
    response = as_ivy.get("/evidence/export?scope=filter")
    assert response.status_code == 400
    assert b"more than 1 runs match; narrow the scope" in response.content


def test_a_post_with_too_many_runs_is_refused_too(evidence_run, ingest, agent_token, as_ivy,
                                                  settings):
    ingest(agent_token, [event(1, "workflow.started", workflow_id="second")])
    settings.EVIDENCE_EXPORT_MAX_RUNS = 1
    response = as_ivy.post("/evidence/export", {"scope": "filter", "payloads": "redacted"})
    assert response.status_code == 400
    assert b"more than 1 runs match; narrow the scope" in response.content
    assert not EvidenceExport.objects.exists()


def test_exporting_resolves_the_scope_once(evidence_run, as_ivy, monkeypatch):
    """The scope's runs are read (up to EVIDENCE_EXPORT_MAX_RUNS of them) by request_export,
    not a second time by the page first."""
    calls = []
    real = ExportScope.resolve

    def counted(self, user):
        calls.append(self.kind)
        return real(self, user)

    monkeypatch.setattr(ExportScope, "resolve", counted)
    assert post_export(as_ivy, evidence_run).status_code == 302
    assert calls == ["run"]


def test_exporting_starts_a_task_and_goes_to_the_progress_page(queued, as_ivy, evidence_run):
    assert queued.requested_by_label == "ivy" and queued.run_uuids == [str(evidence_run.uuid)]
    assert queued.state == "queued" and queued.raw is False and queued.events_total == 12
    entry = AuditEntry.objects.get(action="evidence.export_requested")
    assert entry.actor_label == "ivy" and entry.object_id == str(queued.id)


def test_the_form_needs_its_csrf_token(evidence_run, ivy):
    client = Client(enforce_csrf_checks=True)
    client.force_login(ivy)
    assert post_export(client, evidence_run).status_code == 403
    assert not EvidenceExport.objects.exists()


def test_the_form_refuses_other_methods(as_ivy):
    assert as_ivy.put("/evidence/export").status_code == 405


def test_payloads_must_be_redacted_or_raw(evidence_run, as_ivy):
    response = post_export(as_ivy, evidence_run, payloads="everything")
    assert response.status_code == 400 and b"payloads: must be redacted or raw" in response.content


# --- progress and download ---------------------------------------------------------------------


def test_the_progress_page_polls_until_the_export_is_finished(queued, as_ivy):
    url = f"/evidence/exports/{queued.id}/"
    page = as_ivy.get(url)
    assert page.status_code == 200 and b'hx-trigger="every 1s"' in page.content
    assert b"Waiting for a worker" in page.content
    partial = as_ivy.get(url, headers={"HX-Request": "true", "HX-Target": "export-status"})
    assert partial.status_code == 200
    assert partial.content.lstrip().startswith(b'<section id="export-status"')
    exports.build(exports.claim(queued.id))
    done = as_ivy.get(url, headers={"HX-Request": "true", "HX-Target": "export-status"})
    assert done.status_code == 286  # htmx stops polling, and swaps in the download link
    assert b"Download the bundle" in done.content and b"hx-trigger" not in done.content


def test_the_progress_page_shows_a_running_exports_progress(queued, as_ivy):
    EvidenceExport.objects.filter(pk=queued.pk).update(state="running", events_done=6)
    response = as_ivy.get(f"/evidence/exports/{queued.id}/")
    assert b'<progress id="export-progress" max="100" value="50">' in response.content
    assert b"6 of 12 events" in response.content


def test_an_export_is_only_for_the_person_who_asked(queued, client, alice, bob):
    for person in (alice, bob):  # an admin of the namespace too: the bundle is ivy's
        client.force_login(person)
        assert client.get(f"/evidence/exports/{queued.id}/").status_code == 404
        assert client.get(f"/evidence/exports/{queued.id}/download").status_code == 404


@pytest.mark.parametrize("export_id", ["nope", "00000000-0000-0000-0000-000000000000"])
def test_a_bad_export_id_is_not_found(as_ivy, export_id):
    assert as_ivy.get(f"/evidence/exports/{export_id}/").status_code == 404
    assert as_ivy.get(f"/evidence/exports/{export_id}/download").status_code == 404


def test_the_download_is_the_bundle_and_is_audited(ready, as_ivy):
    response = as_ivy.get(f"/evidence/exports/{ready.id}/download")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert f'filename="flightdeck-evidence-{ready.id}.zip"' in response["Content-Disposition"]
    body = b"".join(response.streaming_content)
    assert hashlib.sha256(body).hexdigest() == ready.sha256
    entry = AuditEntry.objects.get(action="evidence.downloaded")
    assert entry.actor_label == "ivy" and entry.after["bundle_sha256"] == ready.sha256


def test_a_bundle_not_ready_cannot_be_downloaded(queued, as_ivy):
    assert as_ivy.get(f"/evidence/exports/{queued.id}/download").status_code == 404
    assert not AuditEntry.objects.filter(action="evidence.downloaded").exists()


def test_someone_who_lost_the_role_cannot_download(ready, as_ivy, ivy):
    Membership.objects.filter(user=ivy).update(role="viewer")
    assert as_ivy.get(f"/evidence/exports/{ready.id}/download").status_code == 403


def test_the_download_refuses_a_post(ready, as_ivy):
    assert as_ivy.post(f"/evidence/exports/{ready.id}/download").status_code == 405


def test_the_download_needs_a_sign_in(ready):
    response = Client().get(f"/evidence/exports/{ready.id}/download")
    assert response.status_code == 302


# --- the run list as CSV -----------------------------------------------------------------------


def rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_run_list_csv_neutralises_formulas(ingest, agent_token, as_bob):
    for workflow_id in ("=1+1", "+SUM(A1)", "-2", "@cmd", "plain"):
        ingest(agent_token, [event(1, "workflow.started", workflow_id=workflow_id)])
    response = as_bob.get("/evidence/runs.csv")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    assert sorted(row["workflow_id"] for row in rows(response)) == [
        "'+SUM(A1)", "'-2", "'=1+1", "'@cmd", "plain",
    ]


def test_the_run_list_csv_holds_only_runs_the_person_may_see(evidence_run, as_charlie):
    assert rows(as_charlie.get("/evidence/runs.csv")) == []


def test_the_run_list_csv_takes_the_list_filters(evidence_run, ingest, agent_token, as_bob):
    ingest(agent_token, [event(1, "workflow.started", workflow_id="running")])
    found = rows(as_bob.get("/evidence/runs.csv?status=completed"))
    assert [row["workflow_id"] for row in found] == ["wf-ev"]
    assert found[0]["head_hash"] == evidence_run.head_hash
    bad = as_bob.get("/evidence/runs.csv?status=bogus")
    assert bad.status_code == 400 and b"status:" in bad.content


# --- where exports start -----------------------------------------------------------------------


def test_the_run_page_links_to_exporting_the_run(evidence_run, as_ivy):
    response = as_ivy.get(f"/runs/{evidence_run.uuid}/")
    assert f'href="/evidence/export?run={evidence_run.uuid}"'.encode() in response.content


def test_the_run_list_links_to_exporting_its_runs_with_its_filters(evidence_run, as_ivy):
    response = as_ivy.get("/?status=completed&agent=support-bot")
    assert b'href="/evidence/export?scope=filter&amp;status=completed&amp;agent=support-bot"' \
        in response.content
    assert b'href="/evidence/runs.csv?status=completed&amp;agent=support-bot"' in response.content
    follow = as_ivy.get("/evidence/export?scope=filter&agent=support-bot&status=completed")
    assert follow.status_code == 200 and b"1 run, 12 events" in follow.content


def test_a_poll_of_the_progress_region_costs_a_few_queries(queued, as_ivy,
                                                          django_assert_max_num_queries):
    with django_assert_max_num_queries(3):  # session, user, the export
        response = as_ivy.get(f"/evidence/exports/{queued.id}/",
                              headers={"HX-Request": "true", "HX-Target": "export-status"})
    assert response.status_code == 200


def test_the_evidence_page_costs_the_same_queries_for_one_export_or_many(
    queued, as_ivy, ivy, evidence_run, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from evidence import digests

    digests.sign_digest()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert as_ivy.get("/evidence/").status_code == 200
        return len(captured)

    one = queries()
    for _ in range(5):
        with django_capture_on_commit_callbacks(execute=False):
            post_export(as_ivy, evidence_run)
    digests.sign_digest()
    assert EvidenceExport.objects.count() == 6
    assert queries() == one
