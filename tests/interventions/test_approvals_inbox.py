"""The approvals inbox (`/approvals/`) and deciding from it (`/approvals/<id>/decide`).

Requests are opened the real way, by ingesting the agent's `approval.requested` event; the
rules themselves (approvers only, distinct people, not on one's own behalf, one reject ends
it) are `interventions.approvals.decide`'s, checked here through the page.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from access.models import Agent, Membership, Token
from audit.models import AuditEntry
from history.models import Run
from interventions.models import ApprovalPolicy, ApprovalRequest, Command
from tests.builders import event

pytestmark = pytest.mark.django_db

INBOX = "/approvals/"
WAITING = "/approvals/waiting"
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
HTMX = {"HX-Request": "true", "HX-Target": "approval"}


def decide_url(request: ApprovalRequest) -> str:
    return f"/approvals/{request.pk}/decide"


@pytest.fixture
def run(ingest, agent_token) -> Run:
    response = ingest(agent_token, [
        event(1, "workflow.started"),
        event(2, "activity.scheduled", attributes={"activity_type": "lookup_order"}),
    ])
    assert response.status_code == 200, response.content
    return Run.objects.get(workflow_id="wf-1")


@pytest.fixture
def ask(ingest, agent_token, run):
    """ask(event_id, **attributes) -> the request opened by an approval.requested event."""

    def open_request(event_id: int, *, workflow_id: str = "wf-1", token: str = agent_token,
                     **attributes) -> ApprovalRequest:
        attributes = {"request_id": f"r{event_id}", "action": "refund",
                      "arguments": {"amount": 10}, **attributes}
        response = ingest(token, [event(event_id, "approval.requested",
                                        workflow_id=workflow_id, attributes=attributes)])
        assert response.status_code == 200, response.content
        return ApprovalRequest.objects.get(
            run__workflow_id=workflow_id, request_id=attributes["request_id"]
        )

    return open_request


@pytest.fixture
def pam(django_user_model, acme):
    """Approver in acme."""
    user = django_user_model.objects.create_user("pam", email="pam@acme.test",
                                                 password="correct horse battery")
    Membership.objects.create(user=user, namespace=acme, role="approver")
    return user


@pytest.fixture
def quinn(django_user_model, acme):
    """A second approver in acme."""
    user = django_user_model.objects.create_user("quinn", password="correct horse battery")
    Membership.objects.create(user=user, namespace=acme, role="approver")
    return user


def signed_in(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def state_of(request: ApprovalRequest) -> str:
    request.refresh_from_db()
    return request.state


# --- the inbox ------------------------------------------------------------------------------


def test_an_approver_sees_what_the_agent_asks_with_its_context(as_alice, ask, alice):
    request = ask(3, risk="high", summary="Refund order 991", on_behalf_of="carol@example.com",
                  arguments={"order": 991, "amount": 120.5}, timeout_seconds=3600)

    response = as_alice.get(INBOX)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body
    assert f'id="approval-{request.pk}"' in body
    assert "<code>refund</code>" in body
    assert '<span class="risk risk-high">High risk</span>' in body
    assert "Refund order 991" in body
    assert "on behalf of <strong>carol@example.com</strong>" in body
    assert "acme/support-bot" in body
    assert f'href="/runs/{request.run.uuid}/?event=3#event-3"' in body
    assert "0 of 1" in body
    assert "none yet" in body
    assert f'datetime="{request.deadline.isoformat()}"' in body
    assert "in 59\xa0minutes" in body or "in 1\xa0hour" in body
    # Arguments as pretty JSON, and the run's latest steps, newest first.
    assert '{\n  &quot;order&quot;: 991,\n  &quot;amount&quot;: 120.5\n}' in body
    assert body.index("approval.requested") < body.index("activity.scheduled")
    assert body.index("activity.scheduled") < body.index("workflow.started")
    assert 'name="decision" value="approve"' in body
    assert 'name="decision" value="reject"' in body
    assert f'hx-post="{decide_url(request)}"' in body


def test_the_soonest_deadline_comes_first(as_alice, ask):
    later = ask(3, action="later_action", timeout_seconds=7200)
    sooner = ask(4, action="sooner_action", timeout_seconds=60)

    body = as_alice.get(INBOX).content.decode()

    assert body.index(f"approval-{sooner.pk}") < body.index(f"approval-{later.pk}")


def test_an_overdue_request_is_flagged(as_alice, ask):
    request = ask(3)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        deadline=timezone.now() - timedelta(minutes=1)
    )

    assert b'<span class="flag">overdue</span>' in as_alice.get(INBOX).content


def test_secrets_in_the_arguments_are_masked(as_alice, ask):
    ask(3, arguments={"db_password": "correct horse battery staple"})

    body = as_alice.get(INBOX).content.decode()

    assert "correct horse battery staple" not in body
    assert "[REDACTED:generic_secret]" in body


def test_agent_supplied_markup_is_shown_as_text(as_alice, ask):
    ask(3, action=SCRIPT, summary=SCRIPT, on_behalf_of=SCRIPT, arguments={"note": SCRIPT})

    body = as_alice.get(INBOX).content.decode()

    assert SCRIPT not in body
    assert ESCAPED in body


def test_the_inbox_costs_the_same_queries_for_one_request_or_many(
    as_alice, ask, ingest, agent_token
):
    ask(3)
    with CaptureQueriesContext(connection) as one:
        assert as_alice.get(INBOX).status_code == 200
    for number in range(2, 7):  # five more requests, each in a run of its own
        workflow_id = f"wf-{number}"
        ingest(agent_token, [event(1, "workflow.started", workflow_id=workflow_id)])
        ask(2, workflow_id=workflow_id)
    with CaptureQueriesContext(connection) as many:
        body = as_alice.get(INBOX).content.decode()

    assert body.count('class="approval-card') == 6
    assert len(many) == len(one), [q["sql"] for q in many.captured_queries]
    assert len(one) <= 10


def test_a_viewer_has_nothing_to_decide(as_bob, ask):
    ask(3)

    response = as_bob.get(INBOX)

    assert response.status_code == 200
    assert b"Nothing waits for a decision of yours." in response.content
    assert b"refund" not in response.content


def test_an_outsider_sees_nothing_of_acme(as_charlie, ask):
    ask(3, action="acme_secret_action")

    body = as_charlie.get(INBOX).content.decode()

    assert "acme_secret_action" not in body
    assert "acme/" not in body
    assert "Nothing waits for a decision of yours." in body


def test_the_inbox_refuses_other_methods(as_alice):
    assert as_alice.post(INBOX).status_code == 405
    assert as_alice.put(INBOX).status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get(INBOX)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={INBOX}"


# --- deciding -------------------------------------------------------------------------------


def test_approving_redirects_back_with_the_outcome(as_alice, ask):
    request = ask(3)

    response = as_alice.post(decide_url(request), {"decision": "approve", "comment": "ok"})

    assert response.status_code == 302
    assert response["Location"] == INBOX
    assert state_of(request) == "approved"
    command = Command.objects.get(approval=request)
    assert command.kind == "approve"
    assert command.payload["approvers"] == ["alice"]
    page = as_alice.get(INBOX).content.decode()
    assert "Approved refund: the agent is told." in page
    assert f'id="settled-{request.pk}"' in page
    assert f'id="approval-{request.pk}"' not in page


def test_approving_with_htmx_swaps_the_card(as_alice, ask):
    request = ask(3)

    response = as_alice.post(decide_url(request), {"decision": "approve"}, headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith(f'<article id="approval-{request.pk}"')
    assert "Approved: the agent is told." in body
    assert 'name="decision"' not in body
    assert "approvals-changed" in response["HX-Trigger"]
    assert state_of(request) == "approved"


def test_rejecting_sends_the_comment_to_the_agent(as_alice, ask):
    request = ask(3)

    response = as_alice.post(decide_url(request),
                             {"decision": "reject", "comment": "not for this customer"})

    assert response.status_code == 302
    assert state_of(request) == "rejected"
    command = Command.objects.get(approval=request)
    assert (command.kind, command.payload["comment"]) == ("reject", "not for this customer")


def test_rejecting_needs_a_comment(as_alice, ask):
    request = ask(3)

    response = as_alice.post(decide_url(request), {"decision": "reject", "comment": "  "})

    body = response.content.decode()
    assert response.status_code == 400
    assert "<html" in body
    assert "a comment is required to reject" in body
    assert state_of(request) == "pending"
    assert not request.decisions.exists()
    assert not Command.objects.exists()


def test_rejecting_without_a_comment_with_htmx_shows_why_in_the_card(as_alice, ask):
    request = ask(3)

    response = as_alice.post(decide_url(request), {"decision": "reject"}, headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 400
    assert "<html" not in body
    assert "a comment is required to reject" in body
    assert 'name="decision" value="reject"' in body  # the form is still there to retry
    assert "HX-Trigger" not in response
    assert state_of(request) == "pending"


def test_an_unknown_decision_is_refused(as_alice, ask):
    request = ask(3)

    response = as_alice.post(decide_url(request), {"decision": "maybe"})

    assert response.status_code == 400
    assert b"must be approve or reject" in response.content
    assert state_of(request) == "pending"


def test_a_refused_decision_keeps_the_comment_as_text(as_alice, ask):
    request = ask(3)

    response = as_alice.post(decide_url(request), {"decision": "maybe", "comment": SCRIPT})

    body = response.content.decode()
    assert response.status_code == 400
    assert SCRIPT not in body
    assert f'name="comment" rows="2" maxlength="2000">{ESCAPED}</textarea>' in body


def test_deciding_a_settled_request_is_a_conflict(as_alice, ask):
    request = ask(3)
    ApprovalRequest.objects.filter(pk=request.pk).update(state="approved")

    response = as_alice.post(decide_url(request), {"decision": "reject", "comment": "late"})

    assert response.status_code == 409
    assert b"the request is already approved" in response.content
    assert not request.decisions.exists()


def test_a_viewer_may_not_decide(as_bob, ask):
    request = ask(3)

    response = as_bob.post(decide_url(request), {"decision": "approve"})

    assert response.status_code == 403
    assert b"deciding needs the approve capability" in response.content
    assert state_of(request) == "pending"


def test_a_viewer_may_not_decide_with_htmx_either(as_bob, ask):
    request = ask(3)

    response = as_bob.post(decide_url(request), {"decision": "approve"}, headers=HTMX)

    assert response.status_code == 403
    assert b"deciding needs the approve capability" in response.content
    assert b"<html" not in response.content
    assert state_of(request) == "pending"


def test_an_outsider_gets_404(as_charlie, ask):
    request = ask(3)

    response = as_charlie.post(decide_url(request), {"decision": "approve"})

    assert response.status_code == 404
    assert b"refund" not in response.content
    assert state_of(request) == "pending"


def test_an_unknown_request_is_404(as_alice):
    assert as_alice.post("/approvals/00000000-0000-0000-0000-000000000000/decide",
                         {"decision": "approve"}).status_code == 404
    assert as_alice.post("/approvals/not-a-uuid/decide",
                         {"decision": "approve"}).status_code == 404


def test_deciding_refuses_get(as_alice, ask):
    request = ask(3)

    assert as_alice.get(decide_url(request)).status_code == 405
    assert state_of(request) == "pending"


def test_deciding_needs_the_csrf_token(alice, ask):
    request = ask(3)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    assert browser.post(decide_url(request), {"decision": "approve"}).status_code == 403
    assert state_of(request) == "pending"


def test_an_anonymous_visitor_cannot_decide(client, ask):
    request = ask(3)

    response = client.post(decide_url(request), {"decision": "approve"})

    assert response.status_code == 302
    assert state_of(request) == "pending"


# --- the rules, through the inbox ---------------------------------------------------------------


def test_nobody_decides_a_request_raised_on_their_own_behalf(ask, pam, quinn):
    request = ask(3, on_behalf_of="pam@acme.test")
    as_pam = signed_in(pam)

    page = as_pam.get(INBOX).content.decode()
    assert "Raised on your behalf: someone else must decide it." in page
    assert f'action="{decide_url(request)}"' not in page

    response = as_pam.post(decide_url(request), {"decision": "approve"})
    assert response.status_code == 403
    assert b"raised on your behalf" in response.content
    assert state_of(request) == "pending"

    assert signed_in(quinn).post(decide_url(request), {"decision": "approve"}).status_code == 302
    assert state_of(request) == "approved"


def test_two_required_approvals_need_two_people(ask, pam, quinn, support_agent):
    ApprovalPolicy.objects.create(agent=support_agent, tool="refund", min_approvals=2)
    request = ask(3)
    assert request.required_approvals == 2
    as_pam = signed_in(pam)

    first = as_pam.post(decide_url(request), {"decision": "approve"}, headers=HTMX)
    assert first.status_code == 200
    assert b"1 of 2" in first.content
    assert b"You have decided; it waits for another approver." in first.content
    assert state_of(request) == "pending"
    assert not Command.objects.exists()

    again = as_pam.post(decide_url(request), {"decision": "approve"})
    assert again.status_code == 409
    assert b"you have already decided this request" in again.content
    assert request.decisions.count() == 1

    second = signed_in(quinn).post(decide_url(request), {"decision": "approve"})
    assert second.status_code == 302
    assert state_of(request) == "approved"
    assert Command.objects.get(approval=request).payload["approvers"] == ["pam", "quinn"]


def test_one_reject_ends_the_request(ask, alice, pam, quinn):
    request = ask(3, approvals=2)
    signed_in(pam).post(decide_url(request), {"decision": "approve"})

    rejected = signed_in(quinn).post(decide_url(request),
                                     {"decision": "reject", "comment": "wrong account"})
    assert rejected.status_code == 302
    assert state_of(request) == "rejected"

    late = signed_in(alice).post(decide_url(request), {"decision": "approve"})
    assert late.status_code == 409
    assert b"the request is already rejected" in late.content
    assert Command.objects.filter(approval=request).count() == 1


def test_a_decision_after_the_deadline_is_refused_and_the_request_expires(as_alice, ask):
    request = ask(3)
    ApprovalRequest.objects.filter(pk=request.pk).update(
        deadline=timezone.now() - timedelta(seconds=1)
    )

    response = as_alice.post(decide_url(request), {"decision": "approve"})

    assert response.status_code == 409
    assert b"the request expired before this decision" in response.content
    assert state_of(request) == "expired"


def test_each_decision_is_audited_with_its_source_address(as_alice, ask):
    request = ask(3)

    as_alice.post(decide_url(request), {"decision": "reject", "comment": "no"},
                  REMOTE_ADDR="203.0.113.9")

    entry = AuditEntry.objects.get(action="approval.decided")
    assert (entry.actor_label, entry.object_id, entry.source_address) == (
        "alice", str(request.pk), "203.0.113.9"
    )
    assert entry.after["decision"] == "reject" and entry.after["state"] == "rejected"


# --- decided lately --------------------------------------------------------------------------


def test_decided_requests_show_outcome_deciders_and_a_claim_mismatch(
    as_alice, ask, ingest, agent_token
):
    request = ask(3)
    as_alice.post(decide_url(request), {"decision": "reject", "comment": "too much"})
    # The agent claims the opposite of the decision: flagged.
    ingest(agent_token, [event(4, "approval.granted", attributes={"request_id": "r3"})])

    body = as_alice.get(INBOX).content.decode()

    row = body[body.index(f'id="settled-{request.pk}"'):]
    row = row[: row.index("</tr>")]
    assert "Rejected" in row
    assert "alice rejected: <q>too much</q>" in row
    assert "claims granted: mismatch" in row


def test_decided_requests_of_other_namespaces_are_not_shown(as_charlie, ask, alice):
    request = ask(3, action="acme_only")
    signed_in(alice).post(decide_url(request), {"decision": "approve"})

    body = as_charlie.get(INBOX).content.decode()

    assert "acme_only" not in body
    assert "Nothing decided yet in your namespaces." in body


# --- the count in the nav --------------------------------------------------------------------


def test_the_nav_links_to_the_inbox_and_loads_the_count_after_the_page(as_alice):
    body = as_alice.get("/agents/").content.decode()

    assert '<a href="/approvals/">Approvals' in body
    assert f'hx-get="{WAITING}"' in body
    assert 'hx-trigger="load, approvals-changed from:body"' in body


def test_the_count_is_what_waits_for_this_person(ask, alice, pam, quinn):
    ask(3)
    ask(4, on_behalf_of="pam")
    decided_by_pam = ask(5, approvals=2)
    signed_in(pam).post(decide_url(decided_by_pam), {"decision": "approve"})

    assert signed_in(pam).get(WAITING).content.decode().strip() == (
        '<span class="badge" title="1 waiting for your decision">1</span>'
    )
    assert b">3</span>" in signed_in(quinn).get(WAITING).content


def test_the_count_is_empty_for_a_viewer(as_bob, ask):
    ask(3)

    response = as_bob.get(WAITING)

    assert response.status_code == 200
    assert response.content.strip() == b""


# --- the API answers refusals alike ----------------------------------------------------------


def test_the_api_maps_each_refusal_to_its_status(ask, bob, pam, quinn):
    request = ask(3, approvals=2)
    url = f"/api/v1/approvals/{request.pk}/decision"

    def post(user, **data):
        return signed_in(user).post(url, data, content_type="application/json")

    assert post(pam, decision="reject").status_code == 400
    assert post(bob, decision="approve").status_code == 403
    assert post(pam, decision="approve").status_code == 200
    assert post(pam, decision="approve").status_code == 409
    user_token = Token.issue(user=quinn)[1]
    response = Client().post(url, {"decision": "approve"}, content_type="application/json",
                             headers={"Authorization": f"Bearer {user_token}"})
    assert response.status_code == 200
    assert state_of(request) == "approved"


def test_requests_of_an_agent_in_another_namespace_never_reach_acme(as_alice, globex, ingest):
    token = Token.issue(agent=Agent.objects.create(namespace=globex, name="research-bot"))[1]
    ingest(token, [event(1, "workflow.started", workflow_id="g-1"),
                   event(2, "approval.requested", workflow_id="g-1",
                         attributes={"request_id": "g", "action": "globex_action"})])

    assert b"globex_action" not in as_alice.get(INBOX).content
