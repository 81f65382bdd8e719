"""Approval policies of a namespace (`/namespaces/<slug>/approval-policies/`): listing, adding,
editing and removing, for the namespace's admins only, each change audited."""

from __future__ import annotations

import pytest
from django.test import Client

from access.models import Agent
from audit.models import AuditEntry
from interventions.models import ApprovalPolicy

pytestmark = pytest.mark.django_db

POLICIES = "/namespaces/acme/approval-policies/"
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
HTMX = {"HX-Request": "true", "HX-Target": "policies"}


def form(agent: Agent, **fields) -> dict:
    return {"agent": agent.pk, "tool": "refund", "min_approvals": 2, "min_risk": "high",
            **fields}


def edit_url(policy: ApprovalPolicy, slug: str = "acme") -> str:
    return f"/namespaces/{slug}/approval-policies/{policy.pk}/"


def delete_url(policy: ApprovalPolicy, slug: str = "acme") -> str:
    return f"{edit_url(policy, slug)}delete"


@pytest.fixture
def policy(support_agent, alice) -> ApprovalPolicy:
    return ApprovalPolicy.objects.create(agent=support_agent, tool="refund", min_approvals=2,
                                         min_risk="high", updated_by=alice)


def changes() -> list[tuple]:
    return [
        (entry.actor_label, entry.before, entry.after)
        for entry in AuditEntry.objects.filter(action="policy.changed").order_by("seq")
    ]


# --- the list ---------------------------------------------------------------------------------


def test_an_admin_sees_the_policies_and_the_form(as_alice, policy):
    response = as_alice.get(POLICIES)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body
    assert f'id="policy-{policy.pk}"' in body
    assert "<code>refund</code>" in body
    assert '<span class="risk risk-high">High</span>' in body
    assert "by alice" in body
    assert "Add a policy" in body


def test_only_the_namespaces_agents_are_offered(as_alice, support_agent, globex):
    Agent.objects.create(namespace=globex, name="research-bot")

    body = as_alice.get(POLICIES).content.decode()

    assert "support-bot" in body
    assert "research-bot" not in body


def test_a_viewer_gets_403(as_bob, policy, support_agent):
    assert as_bob.get(POLICIES).status_code == 403
    assert as_bob.post(POLICIES, form(support_agent, tool="x")).status_code == 403
    assert as_bob.post(edit_url(policy), form(support_agent, min_approvals=1)).status_code == 403
    assert as_bob.post(delete_url(policy)).status_code == 403
    policy.refresh_from_db()
    assert policy.min_approvals == 2
    assert ApprovalPolicy.objects.count() == 1


def test_an_approver_or_investigator_is_no_admin(client, ivy, policy):
    client.force_login(ivy)

    assert client.get(POLICIES).status_code == 403


def test_an_outsider_gets_404(as_charlie, policy, support_agent):
    assert as_charlie.get(POLICIES).status_code == 404
    assert as_charlie.post(POLICIES, form(support_agent, tool="x")).status_code == 404
    assert as_charlie.get(edit_url(policy)).status_code == 404
    assert as_charlie.post(delete_url(policy)).status_code == 404
    assert ApprovalPolicy.objects.filter(pk=policy.pk).exists()


def test_an_unknown_namespace_is_404(as_alice):
    assert as_alice.get("/namespaces/nowhere/approval-policies/").status_code == 404


def test_the_list_refuses_other_methods(as_alice):
    assert as_alice.put(POLICIES).status_code == 405
    assert as_alice.delete(POLICIES).status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get(POLICIES)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# --- adding -------------------------------------------------------------------------------------


def test_an_admin_adds_a_policy(as_alice, support_agent):
    response = as_alice.post(POLICIES, form(support_agent), REMOTE_ADDR="198.51.100.4")

    assert response.status_code == 302
    assert response["Location"] == POLICIES
    policy = ApprovalPolicy.objects.get()
    assert (policy.agent, policy.tool, policy.min_approvals, policy.min_risk) == (
        support_agent, "refund", 2, "high"
    )
    assert policy.updated_by.username == "alice"
    assert changes() == [("alice", None, {"agent": "support-bot", "tool": "refund",
                                          "min_approvals": 2, "min_risk": "high"})]
    entry = AuditEntry.objects.get(action="policy.changed")
    assert (entry.namespace_slug, entry.source_address) == ("acme", "198.51.100.4")
    assert b"Policy added." in as_alice.get(POLICIES).content


def test_an_admin_adds_a_policy_with_htmx(as_alice, support_agent):
    response = as_alice.post(POLICIES, form(support_agent, tool="*"), headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith('<section id="policies"')
    assert "Policy added." in body
    assert "every tool (*)" in body
    assert ApprovalPolicy.objects.get().tool == "*"


@pytest.mark.parametrize("approvals", [0, 6, "two", ""])
def test_the_number_of_approvals_is_one_to_five(as_alice, support_agent, approvals):
    response = as_alice.post(POLICIES, form(support_agent, min_approvals=approvals))

    assert response.status_code == 400
    assert not ApprovalPolicy.objects.exists()
    assert not changes()


def test_an_unknown_risk_is_a_form_error(as_alice, support_agent):
    assert as_alice.post(POLICIES, form(support_agent, min_risk="apocalyptic")).status_code == 400
    assert not ApprovalPolicy.objects.exists()


def test_an_agent_of_another_namespace_cannot_be_chosen(as_alice, globex):
    theirs = Agent.objects.create(namespace=globex, name="research-bot")

    response = as_alice.post(POLICIES, form(theirs))

    assert response.status_code == 400
    assert not ApprovalPolicy.objects.exists()


def test_a_duplicate_is_a_form_error(as_alice, policy, support_agent):
    response = as_alice.post(POLICIES, form(support_agent))

    assert response.status_code == 400
    assert b"already exists" in response.content
    assert ApprovalPolicy.objects.count() == 1
    assert not changes()


def test_a_duplicate_with_htmx_comes_back_in_the_region(as_alice, policy, support_agent):
    response = as_alice.post(POLICIES, form(support_agent), headers=HTMX)

    assert response.status_code == 400
    assert b"<html" not in response.content
    assert b"already exists" in response.content
    assert b"data-swap-errors" in response.content


def test_an_empty_tool_is_a_form_error(as_alice, support_agent):
    assert as_alice.post(POLICIES, form(support_agent, tool="  ")).status_code == 400


def test_tool_names_are_shown_as_text(as_alice, support_agent):
    as_alice.post(POLICIES, form(support_agent, tool=SCRIPT))

    body = as_alice.get(POLICIES).content.decode()

    assert SCRIPT not in body
    assert ESCAPED in body


def test_adding_needs_the_csrf_token(alice, support_agent):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    assert browser.post(POLICIES, form(support_agent)).status_code == 403
    assert not ApprovalPolicy.objects.exists()


def test_a_policy_raises_the_bar_of_new_requests(as_alice, support_agent, ingest, agent_token):
    from interventions.models import ApprovalRequest
    from tests.builders import event

    as_alice.post(POLICIES, form(support_agent, tool="*", min_approvals=3, min_risk="critical"))
    ingest(agent_token, [event(1, "workflow.started"), event(2, "approval.requested", attributes={
        "request_id": "r", "action": "anything", "risk": "low", "approvals": 1})])

    request = ApprovalRequest.objects.get()
    assert (request.required_approvals, request.risk) == (3, "critical")


# --- editing and removing -----------------------------------------------------------------------


def test_an_admin_edits_a_policy(as_alice, policy, support_agent):
    page = as_alice.get(edit_url(policy))
    assert page.status_code == 200
    assert b"Approval policy for support-bot" in page.content

    response = as_alice.post(edit_url(policy), form(support_agent, min_approvals=3,
                                                    min_risk="critical"))

    assert response.status_code == 302
    assert response["Location"] == POLICIES
    policy.refresh_from_db()
    assert (policy.min_approvals, policy.min_risk) == (3, "critical")
    assert changes() == [(
        "alice",
        {"agent": "support-bot", "tool": "refund", "min_approvals": 2, "min_risk": "high"},
        {"agent": "support-bot", "tool": "refund", "min_approvals": 3, "min_risk": "critical"},
    )]


def test_an_invalid_edit_changes_nothing(as_alice, policy, support_agent):
    response = as_alice.post(edit_url(policy), form(support_agent, min_approvals=9))

    assert response.status_code == 400
    policy.refresh_from_db()
    assert policy.min_approvals == 2
    assert not changes()


def test_a_policy_of_another_namespace_is_404_through_this_one(as_alice, globex):
    theirs = ApprovalPolicy.objects.create(
        agent=Agent.objects.create(namespace=globex, name="research-bot"), tool="*"
    )

    assert as_alice.get(edit_url(theirs)).status_code == 404
    assert as_alice.post(delete_url(theirs)).status_code == 404
    assert as_alice.get(edit_url(theirs, slug="globex")).status_code == 404
    assert ApprovalPolicy.objects.filter(pk=theirs.pk).exists()


def test_an_unknown_policy_is_404(as_alice, acme):
    assert as_alice.get("/namespaces/acme/approval-policies/999999/").status_code == 404
    assert as_alice.post("/namespaces/acme/approval-policies/999999/delete").status_code == 404


def test_an_admin_removes_a_policy(as_alice, policy):
    response = as_alice.post(delete_url(policy))

    assert response.status_code == 302
    assert not ApprovalPolicy.objects.exists()
    assert changes() == [("alice", {"agent": "support-bot", "tool": "refund",
                                    "min_approvals": 2, "min_risk": "high"}, None)]


def test_an_admin_removes_a_policy_with_htmx(as_alice, policy):
    response = as_alice.post(delete_url(policy), headers=HTMX)

    assert response.status_code == 200
    assert b"<html" not in response.content
    assert b"Policy removed." in response.content
    assert f'id="policy-{policy.pk}"'.encode() not in response.content
    assert not ApprovalPolicy.objects.exists()


def test_removing_refuses_get(as_alice, policy):
    assert as_alice.get(delete_url(policy)).status_code == 405
    assert ApprovalPolicy.objects.filter(pk=policy.pk).exists()
