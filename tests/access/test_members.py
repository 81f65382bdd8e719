"""Namespace admin pages: members and their roles (`/namespaces/<slug>/members/`, removing a
role), and an agent's owner and declared tools (`/namespaces/<slug>/agents/<id>/`)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from access.models import Agent, Membership

pytestmark = pytest.mark.django_db

MEMBERS = "/namespaces/acme/members/"
SCRIPT = "<script>alert(1)</script>"




def roles(namespace_slug: str = "acme") -> set[tuple[str, str]]:
    return {
        (m.user.username, m.role)
        for m in Membership.objects.filter(namespace__slug=namespace_slug).select_related("user")
    }


def remove_url(membership: Membership) -> str:
    return f"{MEMBERS}{membership.pk}/remove"


# --- the members page ---------------------------------------------------------------------------


def test_an_admin_sees_the_members_and_the_controls(as_alice, bob, ivy):
    response = as_alice.get(MEMBERS)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body
    assert "<td>alice</td><td>Admin</td>" in body
    assert "<td>bob</td><td>Viewer</td>" in body
    assert "<td>ivy</td><td>Investigator</td>" in body
    assert "Add a member or a role" in body
    assert body.count("Remove role") == 3


def test_a_viewer_sees_the_members_without_controls(as_bob, alice):
    body = as_bob.get(MEMBERS).content.decode()

    assert "<td>alice</td><td>Admin</td>" in body
    assert "Remove role" not in body
    assert "Add a member" not in body
    assert 'name="username"' not in body


def test_an_outsider_gets_404(client, charlie, alice):
    client.force_login(charlie)

    response = client.get(MEMBERS)

    assert response.status_code == 404
    assert b"alice" not in response.content


def test_an_outsider_cannot_add_a_member(client, charlie, alice):
    client.force_login(charlie)

    response = client.post(MEMBERS, {"username": "charlie", "role": "admin"})

    assert response.status_code == 404
    assert ("charlie", "admin") not in roles()


def test_an_unknown_namespace_is_404(as_alice):
    assert as_alice.get("/namespaces/nowhere/members/").status_code == 404


def test_an_anonymous_visitor_is_sent_to_sign_in(client, alice):
    response = client.get(MEMBERS)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={MEMBERS}"


def test_it_refuses_other_methods(as_alice):
    assert as_alice.put(MEMBERS).status_code == 405
    assert as_alice.delete(MEMBERS).status_code == 405


def test_member_names_are_escaped(as_alice, django_user_model, acme):
    user = django_user_model.objects.create_user(SCRIPT, password="x" * 12)
    Membership.objects.create(user=user, namespace=acme, role="viewer")

    body = as_alice.get(MEMBERS).content.decode()

    assert SCRIPT not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


# --- adding a role ------------------------------------------------------------------------------


def test_an_admin_adds_a_member(as_alice, alice, django_user_model):
    django_user_model.objects.create_user("dana", password="x" * 12)

    response = as_alice.post(MEMBERS, {"username": "dana", "role": "operator"})

    assert response.status_code == 302
    assert response["Location"] == MEMBERS
    assert ("dana", "operator") in roles()
    assert b"Member added." in as_alice.get(MEMBERS).content


def test_an_admin_adds_a_second_role_to_a_member(as_alice, bob):
    response = as_alice.post(MEMBERS, {"username": "bob", "role": "approver"})

    assert response.status_code == 302
    assert {("bob", "viewer"), ("bob", "approver")} <= roles()


@pytest.mark.django_db(transaction=True)
def test_a_duplicate_role_is_a_form_error_not_a_server_error(acme, alice, bob):
    # A transactional test: the request runs in autocommit, as it does in production.
    browser = Client()
    browser.force_login(alice)

    response = browser.post(MEMBERS, {"username": "bob", "role": "viewer"})

    assert response.status_code == 400
    assert b"That user already holds this role here." in response.content
    assert Membership.objects.filter(user=bob, role="viewer").count() == 1


def test_a_duplicate_role_is_a_form_error_inside_a_transaction(as_alice, bob):
    """The same request inside an outer transaction (as ATOMIC_REQUESTS or a test gives):
    the failed INSERT must not break the rest of the request."""
    response = as_alice.post(MEMBERS, {"username": "bob", "role": "viewer"})

    assert response.status_code == 400
    assert b"That user already holds this role here." in response.content


def test_an_unknown_user_is_a_form_error(as_alice):
    response = as_alice.post(MEMBERS, {"username": "ghost", "role": "viewer"})

    assert response.status_code == 400
    assert b"No active user is named" in response.content
    assert b"ghost" in response.content


def test_an_inactive_user_cannot_be_added(as_alice, django_user_model):
    django_user_model.objects.create_user("gone", password="x" * 12, is_active=False)

    response = as_alice.post(MEMBERS, {"username": "gone", "role": "viewer"})

    assert response.status_code == 400
    assert ("gone", "viewer") not in roles()


def test_an_unknown_role_is_a_form_error(as_alice, bob):
    response = as_alice.post(MEMBERS, {"username": "bob", "role": "overlord"})

    assert response.status_code == 400
    assert ("bob", "overlord") not in roles()


def test_a_viewer_may_not_add_a_member(as_bob, django_user_model):
    django_user_model.objects.create_user("dana", password="x" * 12)

    response = as_bob.post(MEMBERS, {"username": "dana", "role": "admin"})

    assert response.status_code == 403
    assert ("dana", "admin") not in roles()


def test_a_viewer_may_not_promote_themself(as_bob):
    assert as_bob.post(MEMBERS, {"username": "bob", "role": "admin"}).status_code == 403
    assert ("bob", "admin") not in roles()


def test_an_investigator_may_not_add_a_member(client, ivy, bob):
    client.force_login(ivy)

    assert client.post(MEMBERS, {"username": "bob", "role": "admin"}).status_code == 403


def test_adding_a_member_needs_the_csrf_token(alice, bob):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    assert browser.post(MEMBERS, {"username": "bob", "role": "admin"}).status_code == 403
    assert ("bob", "admin") not in roles()


# --- removing a role ----------------------------------------------------------------------------


def test_an_admin_removes_a_role(as_alice, bob):
    membership = Membership.objects.get(user=bob)

    response = as_alice.post(remove_url(membership))

    assert response.status_code == 302
    assert response["Location"] == MEMBERS
    assert ("bob", "viewer") not in roles()
    assert b"Role removed." in as_alice.get(MEMBERS).content


def test_the_last_admin_cannot_be_removed(as_alice, alice, bob):
    membership = Membership.objects.get(user=alice)

    response = as_alice.post(remove_url(membership), follow=True)

    assert response.status_code == 200
    assert ("alice", "admin") in roles()
    assert b"A namespace keeps at least one admin." in response.content


def test_an_admin_can_be_removed_while_another_remains(as_alice, alice, bob):
    Membership.objects.create(user=bob, namespace=alice.memberships.get().namespace,
                              role="admin")

    as_alice.post(remove_url(Membership.objects.get(user=alice)))

    assert ("alice", "admin") not in roles()
    assert ("bob", "admin") in roles()


def test_admins_of_other_namespaces_do_not_count_towards_the_last_admin(
    as_alice, alice, charlie
):
    assert ("charlie", "admin") in roles("globex")

    as_alice.post(remove_url(Membership.objects.get(user=alice)))

    assert ("alice", "admin") in roles()


def test_a_viewer_may_not_remove_a_role(as_bob, alice, bob):
    response = as_bob.post(remove_url(Membership.objects.get(user=alice)))

    assert response.status_code == 403
    assert ("alice", "admin") in roles()


def test_an_outsider_gets_404_when_removing(client, charlie, alice):
    client.force_login(charlie)

    response = client.post(remove_url(Membership.objects.get(user=alice)))

    assert response.status_code == 404
    assert ("alice", "admin") in roles()


def test_a_membership_of_another_namespace_is_404_through_this_one(as_alice, charlie):
    theirs = Membership.objects.get(user=charlie)

    response = as_alice.post(remove_url(theirs))

    assert response.status_code == 404
    assert Membership.objects.filter(pk=theirs.pk).exists()


def test_an_unknown_membership_is_404(as_alice):
    assert as_alice.post(f"{MEMBERS}999999/remove").status_code == 404


def test_removing_refuses_get(as_alice, bob):
    assert as_alice.get(remove_url(Membership.objects.get(user=bob))).status_code == 405
    assert ("bob", "viewer") in roles()


def test_an_anonymous_visitor_cannot_remove(client, bob):
    response = client.post(remove_url(Membership.objects.get(user=bob)))

    assert response.status_code == 302
    assert ("bob", "viewer") in roles()


# --- editing an agent ---------------------------------------------------------------------------


@pytest.fixture
def team(alice) -> Group:
    """A group with a member in acme: acme's admins may make it an agent's owner."""
    group = Group.objects.create(name="support-team")
    group.user_set.add(alice)
    return group


def test_a_group_with_no_member_in_the_namespace_is_not_offered(as_alice, charlie,
                                                                 support_agent):
    outsiders = Group.objects.create(name="globex-secret-team")
    outsiders.user_set.add(charlie)

    page = as_alice.get(agent_url(support_agent))
    assert b"globex-secret-team" not in page.content
    response = as_alice.post(agent_url(support_agent), form(owner_group=outsiders.pk))
    assert response.status_code == 400
    support_agent.refresh_from_db()
    assert support_agent.owner_group is None


def agent_url(agent: Agent, slug: str = "acme") -> str:
    return f"/namespaces/{slug}/agents/{agent.pk}/"


def form(**fields) -> dict:
    return {"description": "", "owner_user": "", "owner_group": "", "allowed_tools": "",
            **fields}


def test_an_admin_sees_the_agent_form_with_its_tools_one_per_line(as_alice, support_agent):
    Agent.objects.filter(pk=support_agent.pk).update(allowed_tools=["search", "send_email"])

    response = as_alice.get(agent_url(support_agent))

    assert response.status_code == 200
    assert b"<html" in response.content
    assert b"Agent support-bot" in response.content
    assert b">\nsearch\nsend_email</textarea>" in response.content


def test_an_admin_sets_a_user_as_owner(as_alice, bob, support_agent):
    response = as_alice.post(agent_url(support_agent), form(owner_user=bob.pk))

    assert response.status_code == 302
    assert response["Location"] == "/agents/"
    support_agent.refresh_from_db()
    assert support_agent.owner_user == bob
    assert support_agent.owner_group is None


def test_an_admin_sets_a_group_as_owner(as_alice, team, support_agent):
    response = as_alice.post(agent_url(support_agent), form(owner_group=team.pk))

    assert response.status_code == 302
    support_agent.refresh_from_db()
    assert support_agent.owner_group == team
    assert support_agent.owner_user is None


def test_a_user_and_a_group_together_are_a_form_error(as_alice, bob, team, support_agent):
    response = as_alice.post(agent_url(support_agent),
                             form(owner_user=bob.pk, owner_group=team.pk))

    assert response.status_code == 400
    assert b"Choose a user or a group as owner, not both." in response.content
    support_agent.refresh_from_db()
    assert support_agent.owner is None


def test_the_owner_must_be_a_member_of_the_namespace(as_alice, charlie, support_agent):
    response = as_alice.post(agent_url(support_agent), form(owner_user=charlie.pk))

    assert response.status_code == 400
    support_agent.refresh_from_db()
    assert support_agent.owner_user is None


def test_allowed_tools_are_read_from_lines(as_alice, support_agent):
    tools = "  send_email \r\n\r\nsearch\nsearch\n   \nrefund"

    as_alice.post(agent_url(support_agent), form(allowed_tools=tools, description="Helps"))

    support_agent.refresh_from_db()
    assert support_agent.allowed_tools == ["refund", "search", "send_email"]
    assert support_agent.description == "Helps"


def test_no_lines_clear_the_tools(as_alice, support_agent):
    as_alice.post(agent_url(support_agent), form(allowed_tools=""))

    support_agent.refresh_from_db()
    assert support_agent.allowed_tools == []


def test_an_admin_marks_an_agent_privileged(as_alice, support_agent):
    as_alice.post(agent_url(support_agent), form(privileged="on"))
    support_agent.refresh_from_db()
    assert support_agent.privileged is True

    as_alice.post(agent_url(support_agent), form())
    support_agent.refresh_from_db()
    assert support_agent.privileged is False


def test_saving_leaves_the_name_and_namespace_alone(as_alice, support_agent, globex):
    as_alice.post(agent_url(support_agent), form(name="renamed", namespace=globex.pk))

    support_agent.refresh_from_db()
    assert (support_agent.name, support_agent.namespace.slug) == ("support-bot", "acme")


def test_a_viewer_gets_403_on_the_agent_form(as_bob, bob, support_agent):
    assert as_bob.get(agent_url(support_agent)).status_code == 403
    assert as_bob.post(agent_url(support_agent), form(owner_user=bob.pk)).status_code == 403
    support_agent.refresh_from_db()
    assert support_agent.owner is None


def test_an_outsider_gets_404_on_the_agent_form(client, charlie, support_agent):
    client.force_login(charlie)

    assert client.get(agent_url(support_agent)).status_code == 404
    assert client.post(agent_url(support_agent), form(allowed_tools="rm")).status_code == 404
    support_agent.refresh_from_db()
    assert support_agent.allowed_tools == ["search"]


def test_an_agent_of_another_namespace_is_404_through_this_one(as_alice, globex):
    theirs = Agent.objects.create(namespace=globex, name="research-bot")

    assert as_alice.get(agent_url(theirs)).status_code == 404
    assert as_alice.post(agent_url(theirs), form(allowed_tools="x")).status_code == 404


def test_an_unknown_agent_is_404(as_alice, acme):
    assert as_alice.get("/namespaces/acme/agents/999999/").status_code == 404


def test_the_agent_form_refuses_other_methods(as_alice, support_agent):
    assert as_alice.put(agent_url(support_agent)).status_code == 405


def test_an_anonymous_visitor_is_sent_to_sign_in_from_the_agent_form(client, support_agent):
    response = client.get(agent_url(support_agent))

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_agent_form_escapes_what_it_shows(as_alice, acme):
    agent = Agent.objects.create(namespace=acme, name=SCRIPT, description=SCRIPT,
                                 allowed_tools=[SCRIPT])

    body = as_alice.get(agent_url(agent)).content.decode()

    assert SCRIPT not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
