"""Celery tasks of evidence: build an export, sign the next digest, clean up old bundles.

They run on the `exports` queue (CELERY_TASK_ROUTES), so a long export never holds up command
delivery. Each takes ids, re-reads its rows and returns quietly when there is nothing to do.
"""

from __future__ import annotations

from celery import shared_task

from evidence import digests, exports


@shared_task(name="evidence.build_export", acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=3600, time_limit=3700)
def build_export(export_id: str) -> None:
    """Build one bundle. A repeated message finds it claimed or done and returns."""
    export = exports.claim(export_id)
    if export is None:
        return
    exports.build(export)


@shared_task(name="evidence.sign_digest", soft_time_limit=1800, time_limit=1900)
def sign_digest() -> dict:
    """Periodic (Celery beat, EVIDENCE_DIGEST_INTERVAL_SECONDS): sign the next digest, then
    publish it, and any earlier one not yet published, outside the database."""
    digest = digests.sign_digest()
    published = digests.publish_pending()
    return {"seq": digest.seq if digest else None, "published": published}


@shared_task(name="evidence.clean_exports", soft_time_limit=600, time_limit=700)
def clean_exports() -> dict:
    return exports.clean()
