"""An export in a real browser: from the run page to the form, the progress region that htmx
polls until the worker is done, then the download, which verifies."""

from __future__ import annotations

import pytest

from evidence import exports
from evidence.models import EvidenceExport
from evidence.tasks import build_export
from tests.evidence.conftest import run_standalone

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_export_from_the_run_page_to_a_verified_download(
    browser_as, ivy, evidence_run, monkeypatch, fingerprint, tmp_path
):
    enqueued: list[str] = []
    monkeypatch.setattr(build_export, "delay_on_commit", enqueued.append)
    page = browser_as(ivy)
    page.goto(f"{page.base_url}/runs/{evidence_run.uuid}/")
    page.get_by_role("link", name="Export evidence of this run").click()
    assert "1 run, 12 events" in page.locator("main").inner_text()
    assert page.get_by_label("Redacted (default)", exact=False).is_checked()
    page.get_by_role("button", name="Export").click()
    page.wait_for_url("**/evidence/exports/*/")
    status = page.locator("#export-status")
    assert "Waiting for a worker" in status.inner_text()
    assert page.locator("#export-progress").get_attribute("value") == "0"

    # The worker's part, in this process: the page is polling meanwhile.
    (export_id,) = enqueued
    exports.build(exports.claim(export_id))
    link = page.get_by_role("link", name="Download the bundle")
    link.wait_for(timeout=10_000)
    page.shot("evidence-export-ready")
    with page.expect_download() as download:
        link.click()
    bundle = tmp_path / "from-browser.zip"
    download.value.save_as(bundle)
    result = run_standalone(bundle, "--fingerprint", fingerprint)
    assert result.returncode == 0, result.stdout
    assert EvidenceExport.objects.get().sha256 in page.locator("#export-status").inner_text()
