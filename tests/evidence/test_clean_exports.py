"""Clean-up: expired bundles are deleted, stalled exports enqueued again, a repeated or late
task message changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from evidence import exports
from evidence.models import EvidenceExport
from evidence.tasks import build_export


@pytest.fixture
def enqueued(monkeypatch) -> list[str]:
    sent: list[str] = []
    monkeypatch.setattr(build_export, "delay", lambda export_id: sent.append(export_id))
    return sent


def test_an_expired_bundle_is_deleted(evidence_run, alice, build_bundle, enqueued):
    export, path = build_bundle(alice, run=str(evidence_run.uuid))
    assert exports.clean()["expired"] == 0 and path.exists()
    later = export.expires_at + timedelta(seconds=1)
    assert exports.clean(later) == {"expired": 1, "requeued": 0, "partials_removed": 0}
    export.refresh_from_db()
    assert export.state == "expired" and not path.exists()


def test_a_stalled_export_is_enqueued_again(evidence_run, alice, build_bundle, enqueued,
                                            settings):
    _export, _ = build_bundle(alice, run=str(evidence_run.uuid))
    stuck_queued = EvidenceExport.objects.create(requested_by_label="x", kind="run",
                                                 run_uuids=[str(evidence_run.uuid)])
    stuck_running = EvidenceExport.objects.create(
        requested_by_label="x", kind="run", run_uuids=[str(evidence_run.uuid)], state="running",
        heartbeat_at=timezone.now(),
    )
    later = timezone.now() + timedelta(seconds=settings.EVIDENCE_EXPORT_STALL_SECONDS + 1)
    assert exports.clean(later)["requeued"] == 2
    assert sorted(enqueued) == sorted([str(stuck_queued.id), str(stuck_running.id)])


def test_a_worker_that_died_mid_export_leaves_it_to_be_claimed_again(evidence_run, alice,
                                                                   build_bundle, settings):
    export, _ = build_bundle(alice, run=str(evidence_run.uuid))
    assert exports.claim(export.id) is None  # ready: a repeated message does nothing
    EvidenceExport.objects.filter(pk=export.pk).update(state="running",
                                                       heartbeat_at=timezone.now())
    assert exports.claim(export.id) is None  # a live worker holds it
    EvidenceExport.objects.filter(pk=export.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.EVIDENCE_EXPORT_STALL_SECONDS)
    )
    assert exports.claim(export.id) is not None


def test_an_export_whose_run_was_deleted_meanwhile_fails_with_a_reason(
    ingest, agent_token, alice, django_capture_on_commit_callbacks
):
    from django.http import QueryDict

    from evidence.scope import ExportScope
    from history.models import Run
    from tests.builders import event

    ingest(agent_token, [event(1, "workflow.started")])
    run = Run.objects.get()
    with django_capture_on_commit_callbacks(execute=False):
        export = exports.request_export(alice, ExportScope.from_query(QueryDict(f"run={run.uuid}")),
                                        raw=False, reason="")
    run.delete()
    with pytest.raises(LookupError):
        exports.build(exports.claim(export.id))
    export.refresh_from_db()
    assert export.state == "failed" and f"run {run.uuid} no longer exists" in export.error
