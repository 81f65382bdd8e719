"""Changes made through the Django admin are audited like changes made through the pages."""

from __future__ import annotations

import pytest

from access.models import Agent, Membership
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", password="correct horse battery")


def test_adding_a_membership_in_the_admin_is_audited(client, superuser, acme, bob):
    client.force_login(superuser)
    response = client.post(
        "/admin/access/membership/add/",
        {"user": bob.pk, "namespace": acme.pk, "role": "operator", "created_at_0": "2026-11-26",
         "created_at_1": "10:00:00"},
    )
    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.get(action="admin.membership.created")
    assert entry.namespace_id_copy == acme.pk and entry.actor_id_copy == superuser.pk
    assert entry.after["role"] == "operator"


def test_changing_an_agents_owner_in_the_admin_records_before_and_after(
    client, superuser, support_agent, alice
):
    client.force_login(superuser)
    response = client.post(
        f"/admin/access/agent/{support_agent.pk}/change/",
        {"namespace": support_agent.namespace_id, "name": support_agent.name,
         "description": "", "owner_user": alice.pk, "owner_group": "",
         "allowed_tools": '["search"]', "created_at_0": "2026-11-26",
         "created_at_1": "10:00:00"},
    )
    assert response.status_code == 302, response.content[:3000]
    entry = AuditEntry.objects.get(action="admin.agent.changed")
    assert entry.before["owner_user"] is None
    assert entry.after["owner_user"] == str(alice.pk)
    assert Agent.objects.get(pk=support_agent.pk).owner_user == alice


def test_deleting_a_membership_in_the_admin_is_audited(client, superuser, acme, bob):
    membership = Membership.objects.get(user=bob)
    client.force_login(superuser)
    response = client.post(
        f"/admin/access/membership/{membership.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="admin.membership.deleted")
    assert entry.before["role"] == "viewer" and entry.namespace_id_copy == acme.pk
