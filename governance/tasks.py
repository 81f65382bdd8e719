"""Governance's periodic tasks (Celery beat, dashboard/settings.py): bring durability findings
up to date, and apply each namespace's retention. Both are safe to run twice or at once: a
check is repeatable, and a run is deleted under its row lock after its conditions are read
again."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from governance import durability_checks, retention

log = logging.getLogger(__name__)


@shared_task(name="governance.refresh_findings", soft_time_limit=300, time_limit=360)
def refresh_findings() -> int:
    """Check the workflow ids whose runs changed (bounded per pass; the rest wait a pass)."""
    checked = durability_checks.run_pending(limit=settings.GOVERNANCE_CHECKS_PER_PASS,
                                            seconds=240)
    if checked:
        log.info("governance: %d workflow ids checked", checked)
    return checked


@shared_task(name="governance.apply_retention", soft_time_limit=900, time_limit=960)
def apply_retention() -> dict:
    """Delete runs past their namespace's retention, not held (bounded per pass)."""
    report = retention.apply_retention(seconds=840)
    if report.deleted or report.failed:
        log.info("retention: %s", report.as_dict())
    return report.as_dict()
