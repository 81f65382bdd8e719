"""An export end to end through a real Celery worker on the `exports` queue: asked for on the
page, built by the worker process against the PostgreSQL test database over a private Redis,
followed on the progress page, downloaded, verified. And a digest signed by the worker."""

from __future__ import annotations

import base64

import pytest

from evidence.models import EvidenceExport, SignedDigest
from evidence.tasks import sign_digest
from history.models import Run
from tests.builders import history
from tests.evidence.conftest import TEST_SEED, run_standalone
from tests.interventions.services import CeleryWorker, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def exports_worker(request, service_env, evidence_settings, tmp_path):
    """A worker consuming only the exports queue, with this test's key and folders."""
    env = {
        **service_env,
        "EVIDENCE_SIGNING_KEY": base64.b64encode(TEST_SEED).decode(),
        "EVIDENCE_EXPORT_DIR": str(evidence_settings.EVIDENCE_EXPORT_DIR),
        "EVIDENCE_DIGEST_DIR": evidence_settings.EVIDENCE_DIGEST_DIR,
    }
    worker = CeleryWorker(env=env, log_path=tmp_path / "exports-worker.log", beat=False)
    worker.argv[worker.argv.index("commands,slow")] = "exports"
    request.node.started_services = [worker]  # its log is shown if the test fails
    worker.start()
    yield worker
    worker.kill()


def test_an_export_is_built_by_the_worker_and_downloaded(
    exports_worker, ingest, agent_token, as_ivy, fingerprint, tmp_path
):
    response = ingest(agent_token, history(3000))
    assert response.status_code == 200
    run = Run.objects.get()
    response = as_ivy.post("/evidence/export", {"scope": "run", "run": str(run.uuid)})
    assert response.status_code == 302
    export = EvidenceExport.objects.get()
    status_url = f"/evidence/exports/{export.id}/"
    assert response["Location"] == status_url

    def finished():
        export.refresh_from_db()
        return export.is_finished

    wait_until(finished, timeout=60, interval=0.2, what="the worker to build the bundle")
    assert export.state == "ready", export.error
    assert (export.events_done, export.events_total, export.runs_done) == (3000, 3000, 1)
    poll = as_ivy.get(status_url, headers={"HX-Request": "true", "HX-Target": "export-status"})
    assert poll.status_code == 286 and b"Download the bundle" in poll.content
    download = as_ivy.get(f"/evidence/exports/{export.id}/download")
    bundle = tmp_path / "downloaded.zip"
    bundle.write_bytes(b"".join(download.streaming_content))
    result = run_standalone(bundle, "--fingerprint", fingerprint)
    assert result.returncode == 0, result.stdout
    assert "VALID: 1 runs, 3000 events" in result.stdout


def test_the_worker_signs_a_digest(exports_worker, ingest, agent_token, evidence_settings):
    ingest(agent_token, history(5))
    sign_digest.delay()
    digest = wait_until(SignedDigest.objects.first, timeout=60, what="a signed digest")
    assert digest.run_count == 1
    wait_until(lambda: SignedDigest.objects.filter(written_at__isnull=False).exists(),
               timeout=30, what="the digest to be written to the folder")
