"""The per-day counts (governance.counts) stay equal to the findings they count, through every
path that stores or deletes findings: detection, a replayed batch, durability re-checks,
retention, a backfill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from governance import backfill, counts, durability_checks, retention
from governance.findings import for_namespace
from governance.models import Finding, FindingDay, RetentionPolicy, WorkflowCheck
from tests.governance.streams import Stream

pytestmark = pytest.mark.django_db

OPENAI_KEY = "sk-proj-" + "Q7vX2mK9pL4wR8tZ3nB6cF1hJ5sD0gYa"


def stored_counts(namespace) -> dict:
    return {(row.day, row.rule): row.count
            for row in FindingDay.objects.filter(namespace=namespace) if row.count}


def recounted(namespace) -> dict:
    before = stored_counts(namespace)
    counts.recount(namespace)
    after = stored_counts(namespace)
    return {"kept": before, "recounted": after}


def assert_in_step(namespace) -> None:
    both = recounted(namespace)
    assert both["kept"] == both["recounted"]
    assert sum(both["kept"].values()) == Finding.objects.filter(namespace=namespace).count()


def test_counts_follow_detection_rechecks_retention_and_backfill(acme, send, ingest,
                                                                 support_token):
    stream = Stream("wf-1").start()
    stream.call("shell_exec", {"n": 1})
    stream.call("search_kb", {"api_key": OPENAI_KEY})
    stream.call("search_kb", {"q": 1}, key="same")
    stream.call("search_kb", {"q": 1}, key="same")
    events = stream.take()
    assert ingest(support_token, events[:6]).status_code == 200
    assert ingest(support_token, events).status_code == 200  # replayed: duplicates
    for_namespace(acme)  # the durability check
    assert Finding.objects.count() == 3
    assert_in_step(acme)

    check = WorkflowCheck.objects.get()
    durability_checks.check_workflow(check.pk)  # replaces its findings
    backfill.examine_stored(namespace=acme)  # replays every batch again
    for_namespace(acme)
    assert_in_step(acme)

    stream.finish()
    run = send(support_token, stream)
    RetentionPolicy.objects.create(namespace=acme, keep_days=1)
    assert [r["uuid"] for r in retention.apply_retention(
        now=timezone.now() + timedelta(days=5)
    ).deleted] == [str(run.uuid)]
    assert not Finding.objects.exists()
    assert stored_counts(acme) == {}


def test_the_page_counts_come_from_the_day_rows(acme, send, support_token):
    stream = Stream().start()
    for n in range(4):
        stream.call("shell_exec", {"n": n})
    send(support_token, stream)

    report = for_namespace(acme, days=7)

    assert report.counts["tool_outside_allow_list"] == 4
    assert report.days[-1].total == 4
    assert len(report.days) == 8


def test_stored_findings_are_counted_by_the_utc_day_whatever_the_time_zone(acme, send,
                                                                         support_token, settings):
    stream = Stream().start()
    stream.call("shell_exec")
    send(support_token, stream)
    Finding.objects.update(received_at=datetime(2025, 1, 2, 1, 30, tzinfo=UTC))
    settings.TIME_ZONE = "America/New_York"  # 2025-01-01 there

    findings = Finding.objects.filter(namespace=acme)

    assert counts.of_stored(findings) == counts.of(findings)
