"""The approvals inbox in a real browser: a refused reject shows its reason in the card (htmx
swaps the 400), deciding swaps the card in place and the nav's count follows, and markup the
agent sent stays text."""

from __future__ import annotations

import pytest
from django.conf import settings

from access.models import Token
from history.ingest import ingest_batch
from interventions.models import ApprovalRequest
from tests.builders import event

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MARKUP = '<img src=x onerror="window.__xss=1">'


def _ask(token: Token, workflow_id: str, **attributes) -> ApprovalRequest:
    attributes = {"request_id": workflow_id, "action": "refund", "arguments": {"amount": 5},
                  **attributes}
    outcome = ingest_batch(token, [
        event(1, "workflow.started", workflow_id=workflow_id),
        event(2, "approval.requested", workflow_id=workflow_id, attributes=attributes),
    ], max_attributes_bytes=settings.INGEST_MAX_ATTRIBUTES_BYTES)
    assert outcome.all_accepted
    return ApprovalRequest.objects.get(request_id=workflow_id)


def test_deciding_in_the_inbox(browser_as, alice, support_agent):
    token = Token.issue(agent=support_agent)[0]
    first = _ask(token, "wf-a", summary=MARKUP)
    second = _ask(token, "wf-b", action=MARKUP)
    page = browser_as(alice)
    badge = page.locator("#approvals-waiting .badge")
    badge.wait_for()
    assert badge.inner_text() == "2"

    page.get_by_role("link", name="Approvals").click()
    page.wait_for_url(f"{page.base_url}/approvals/")
    card = page.locator(f"#approval-{first.pk}")
    marker = page.evaluate("() => (window.__sameDocument = Math.random())")
    page.shot("approvals_inbox_pending")

    # Reject without a comment: the card says why, the page stays.
    card.get_by_role("button", name="Reject").click()
    page.locator(f"#approval-{first.pk} .error").wait_for()
    assert "a comment is required to reject" in card.inner_text()

    # With a comment: the card shows the outcome, the count goes down.
    card.get_by_label("Comment").fill("not this one")
    card.get_by_role("button", name="Reject").click()
    page.locator(f"#approval-{first.pk}", has_text="Rejected: the agent is told").wait_for()
    page.locator("#approvals-waiting .badge", has_text="1").wait_for()
    page.locator(f"#approval-{second.pk}").get_by_role("button", name="Approve").click()
    page.locator(f"#approval-{second.pk}", has_text="Approved: the agent is told").wait_for()
    page.locator("#approvals-waiting .badge").wait_for(state="detached")

    assert page.evaluate("() => window.__sameDocument") == marker
    assert page.evaluate("() => typeof window.__xss") == "undefined"
    assert MARKUP in page.locator(f"#approval-{second.pk} h3").inner_text()
    page.shot("approvals_inbox")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, second.state) == ("rejected", "approved")
