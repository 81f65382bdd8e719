"""Who sees which namespaces and runs, and who holds which capability: the querysets and the
one permission check every view relies on."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from access.authentication import AgentPrincipal
from access.models import Agent, Membership, Namespace, Token
from access.permissions import has_capability
from access.roles import Capability
from history.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def research_agent(globex) -> Agent:
    return Agent.objects.create(namespace=globex, name="research-bot")


@pytest.fixture
def runs(support_agent, research_agent, acme) -> dict[str, Run]:
    billing = Agent.objects.create(namespace=acme, name="billing-bot")

    def run(agent: Agent, workflow_id: str) -> Run:
        return Run.objects.create(namespace=agent.namespace, agent=agent,
                                  workflow_id=workflow_id, run_id="r1", started_at=timezone.now())

    return {
        "support": run(support_agent, "support-1"),
        "billing": run(billing, "billing-1"),
        "research": run(research_agent, "research-1"),
    }


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password="correct horse battery")


def slugs(namespaces) -> list[str]:
    return sorted(namespace.slug for namespace in namespaces)


def workflow_ids(queryset) -> list[str]:
    return sorted(queryset.values_list("workflow_id", flat=True))


def agent_principal(agent: Agent) -> AgentPrincipal:
    return AgentPrincipal(agent=agent, token=Token.issue(agent=agent)[0])


# --- namespaces -----------------------------------------------------------------------------


def test_an_admin_sees_their_namespace(alice, globex):
    assert slugs(Namespace.objects.visible_to(alice)) == ["acme"]


def test_a_viewer_sees_their_namespace(bob, globex):
    assert slugs(Namespace.objects.visible_to(bob)) == ["acme"]


def test_an_outsider_sees_only_their_own_namespace(charlie, acme):
    assert slugs(Namespace.objects.visible_to(charlie)) == ["globex"]


def test_a_superuser_sees_every_namespace(root, acme, globex):
    assert slugs(Namespace.objects.visible_to(root)) == ["acme", "globex"]


def test_an_anonymous_user_sees_no_namespace(acme):
    assert slugs(Namespace.objects.visible_to(AnonymousUser())) == []


def test_an_inactive_member_sees_no_namespace(alice):
    alice.is_active = False
    alice.save()

    assert slugs(Namespace.objects.visible_to(alice)) == []


def test_an_inactive_superuser_sees_no_namespace(root, acme):
    root.is_active = False
    root.save()

    assert slugs(Namespace.objects.visible_to(root)) == []


def test_a_member_of_two_namespaces_sees_both(bob, globex):
    Membership.objects.create(user=bob, namespace=globex, role="viewer")

    assert slugs(Namespace.objects.visible_to(bob)) == ["acme", "globex"]


def test_several_roles_in_one_namespace_list_it_once(bob, acme):
    Membership.objects.create(user=bob, namespace=acme, role="operator")
    Membership.objects.create(user=bob, namespace=acme, role="approver")

    assert slugs(Namespace.objects.visible_to(bob)) == ["acme"]


def test_a_viewer_has_no_namespace_to_investigate(bob):
    assert slugs(Namespace.objects.visible_to(bob, Capability.INVESTIGATE)) == []


def test_an_investigator_has_a_namespace_to_investigate(ivy):
    assert slugs(Namespace.objects.visible_to(ivy, Capability.INVESTIGATE)) == ["acme"]


def test_an_investigator_has_no_namespace_to_administer(ivy):
    assert slugs(Namespace.objects.visible_to(ivy, Capability.ADMINISTER)) == []


def test_an_admin_has_a_namespace_for_every_capability(alice):
    for capability in Capability.values:
        assert slugs(Namespace.objects.visible_to(alice, capability)) == ["acme"], capability


# --- runs -----------------------------------------------------------------------------------


def test_a_viewer_sees_every_run_of_their_namespace(bob, runs):
    assert workflow_ids(Run.objects.visible_to(bob)) == ["billing-1", "support-1"]


def test_an_outsider_sees_none_of_another_namespaces_runs(charlie, runs):
    assert workflow_ids(Run.objects.visible_to(charlie)) == ["research-1"]


def test_a_superuser_sees_every_run(root, runs):
    assert workflow_ids(Run.objects.visible_to(root)) == ["billing-1", "research-1", "support-1"]


def test_an_anonymous_user_sees_no_run(runs):
    assert workflow_ids(Run.objects.visible_to(AnonymousUser())) == []


def test_a_user_without_a_role_sees_no_run(django_user_model, runs):
    nobody = django_user_model.objects.create_user("nobody", password="correct horse battery")

    assert workflow_ids(Run.objects.visible_to(nobody)) == []


def test_an_inactive_member_sees_no_run(alice, runs):
    alice.is_active = False
    alice.save()

    assert workflow_ids(Run.objects.visible_to(alice)) == []


def test_an_inactive_superuser_sees_no_run(root, runs):
    root.is_active = False
    root.save()

    assert workflow_ids(Run.objects.visible_to(root)) == []


def test_a_viewer_has_no_run_to_investigate(bob, runs):
    assert workflow_ids(Run.objects.visible_to(bob, Capability.INVESTIGATE)) == []


def test_an_investigator_has_runs_to_investigate(ivy, runs):
    assert workflow_ids(Run.objects.visible_to(ivy, Capability.INVESTIGATE)) == [
        "billing-1", "support-1",
    ]


def test_an_agent_sees_only_its_own_runs(support_agent, runs):
    principal = agent_principal(support_agent)

    assert workflow_ids(Run.objects.visible_to(principal)) == ["support-1"]


def test_an_agent_has_no_run_for_any_other_capability(support_agent, runs):
    principal = agent_principal(support_agent)

    for capability in Capability.values:
        if capability != Capability.VIEW:
            assert workflow_ids(Run.objects.visible_to(principal, capability)) == [], capability


# --- has_capability -------------------------------------------------------------------------


def test_a_viewer_may_only_view(bob, acme):
    held = {c for c in Capability.values if has_capability(bob, acme.pk, c)}

    assert held == {Capability.VIEW}


def test_roles_held_together_add_up(bob, acme):
    Membership.objects.create(user=bob, namespace=acme, role="operator")

    held = {c for c in Capability.values if has_capability(bob, acme.pk, c)}

    assert held == {Capability.VIEW, Capability.OPERATE}


def test_an_operator_and_approver_may_not_investigate(django_user_model, acme):
    user = django_user_model.objects.create_user("olga", password="correct horse battery")
    Membership.objects.create(user=user, namespace=acme, role="operator")
    Membership.objects.create(user=user, namespace=acme, role="approver")

    held = {c for c in Capability.values if has_capability(user, acme.pk, c)}

    assert held == {Capability.VIEW, Capability.OPERATE, Capability.APPROVE}


def test_an_investigator_may_view_and_investigate(ivy, acme):
    held = {c for c in Capability.values if has_capability(ivy, acme.pk, c)}

    assert held == {Capability.VIEW, Capability.INVESTIGATE}


def test_an_admin_may_do_everything_in_their_namespace(alice, acme):
    assert all(has_capability(alice, acme.pk, c) for c in Capability.values)


def test_an_admin_of_one_namespace_may_do_nothing_in_another(charlie, acme):
    assert not any(has_capability(charlie, acme.pk, c) for c in Capability.values)


def test_a_superuser_may_do_everything_everywhere(root, acme, globex):
    for namespace in (acme, globex):
        assert all(has_capability(root, namespace.pk, c) for c in Capability.values)


def test_an_inactive_admin_may_do_nothing(alice, acme):
    alice.is_active = False
    alice.save()

    assert not any(has_capability(alice, acme.pk, c) for c in Capability.values)


def test_an_inactive_superuser_may_do_nothing(root, acme):
    root.is_active = False
    root.save()

    assert not any(has_capability(root, acme.pk, c) for c in Capability.values)


def test_an_anonymous_user_may_do_nothing(acme):
    assert not any(has_capability(AnonymousUser(), acme.pk, c) for c in Capability.values)


def test_an_agent_holds_no_capability_even_in_its_namespace(support_agent, acme):
    principal = agent_principal(support_agent)

    assert not any(has_capability(principal, acme.pk, c) for c in Capability.values)
