"""Migration interventions 0003: approval requests stored before ingest masked the agent's text
get their action, summary and on_behalf_of masked; requests without a secret are untouched."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from history.models import Run
from interventions.models import ApprovalRequest

pytest_plugins = ["tests.interventions.personas"]
pytestmark = pytest.mark.django_db

KEY = "sk-proj-" + "Q7vX2mK9pL4wR8tZ3nB6cF1hJ5sD0gYa"
MASK = "[REDACTED:openai_api_key]"
migration = importlib.import_module("interventions.migrations.0003_mask_approval_text")


def stored(run: Run, request_id: str, **text) -> ApprovalRequest:
    """A request as an older Flightdeck stored it: the agent's text as sent."""
    return ApprovalRequest.objects.create(
        run=run, request_id=request_id, event_id=1, risk="medium", required_approvals=1,
        deadline=timezone.now() + timedelta(hours=1), **{"action": "refund", **text})


def test_old_requests_get_their_text_masked_and_clean_ones_stay_as_they_are(running_run):
    run = running_run
    leaky = stored(run, "r1", action=f"call {KEY}", summary=f"Refund; key {KEY}",
                   on_behalf_of=f"ops {KEY}", arguments={"amount": 20})
    clean = stored(run, "r2", summary="Refund 20 EUR", on_behalf_of="carol@example.com")

    migration.mask_stored_text(apps, None)

    leaky.refresh_from_db()
    assert (leaky.action, leaky.summary, leaky.on_behalf_of) == (
        f"call {MASK}", f"Refund; key {MASK}", f"ops {MASK}")
    assert leaky.arguments == {"amount": 20} and leaky.request_id == "r1"
    clean.refresh_from_db()
    assert (clean.action, clean.summary, clean.on_behalf_of) == (
        "refund", "Refund 20 EUR", "carol@example.com")
