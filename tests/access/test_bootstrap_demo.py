"""manage.py bootstrap_demo: DEBUG only; a user per role with a printed password; the reference
agents registered with their declared scope and approval policies; agent tokens written to a
private file, never printed, and replaced (the old ones revoked) on every run."""

from __future__ import annotations

import json
import stat
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from access.management.commands.bootstrap_demo import DEMO_NAMESPACES
from access.models import Agent, Membership, Namespace, Token
from audit.models import AuditEntry
from interventions.models import ApprovalPolicy
from reference_agents.catalogue import AGENTS

pytestmark = pytest.mark.django_db

ROLES = ("admin", "viewer", "operator", "approver", "investigator")


def bootstrap(tmp_path, *args) -> tuple[str, dict]:
    out = StringIO()
    tokens_file = tmp_path / "tokens.json"
    call_command("bootstrap_demo", "--tokens-file", str(tokens_file), *args, stdout=out)
    tokens = json.loads(tokens_file.read_text())["agents"] if tokens_file.exists() else {}
    return out.getvalue(), tokens


def test_it_refuses_when_debug_is_off(settings, tmp_path):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG"):
        bootstrap(tmp_path)

    assert not get_user_model().objects.exists()
    assert not (tmp_path / "tokens.json").exists()


def test_it_creates_a_user_for_each_role_in_each_demo_namespace(settings, tmp_path):
    settings.DEBUG = True

    bootstrap(tmp_path)

    users = get_user_model().objects
    assert sorted(users.values_list("username", flat=True)) == sorted(ROLES)
    assert users.get(username="admin").is_superuser
    assert not users.filter(is_superuser=True).exclude(username="admin").exists()
    assert {"demo", "support", "research"} <= set(DEMO_NAMESPACES)
    for slug in DEMO_NAMESPACES:
        namespace = Namespace.objects.get(slug=slug)
        held = set(Membership.objects.filter(namespace=namespace)
                   .values_list("user__username", "role"))
        assert held == {(role, role) for role in ROLES}


def test_each_password_is_printed_once_and_signs_in(settings, tmp_path, client):
    settings.DEBUG = True

    output, _ = bootstrap(tmp_path)
    passwords = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ROLES:
            passwords[parts[0]] = parts[1]

    assert sorted(passwords) == sorted(ROLES)
    assert len(set(passwords.values())) == len(ROLES)
    for name, password in passwords.items():
        assert client.login(username=name, password=password), name
    again, _ = bootstrap(tmp_path)
    assert not any(password in again for password in passwords.values())
    assert "exist already" in again
    assert get_user_model().objects.count() == len(ROLES)


def test_each_reference_agent_is_registered_with_its_declared_scope(settings, tmp_path):
    settings.DEBUG = True

    bootstrap(tmp_path)

    for name, module in AGENTS.items():
        agent = Agent.objects.get(name=name)
        assert agent.namespace.slug == module.NAMESPACE
        assert agent.allowed_tools == list(module.TOOLS)
        assert agent.owner_user.username == "admin"
        assert agent.privileged == bool(module.PRIVILEGED)
        policies = set(ApprovalPolicy.objects.filter(agent=agent).values_list("tool", flat=True))
        assert policies == set(module.PRIVILEGED)
    assert ApprovalPolicy.objects.filter(tool="issue_refund").count() >= 2


def test_agent_tokens_go_to_a_private_file_and_are_not_printed(settings, tmp_path):
    settings.DEBUG = True

    output, tokens = bootstrap(tmp_path)

    assert sorted(tokens) == sorted(AGENTS)
    mode = stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode)
    assert mode == 0o600
    for name, token in tokens.items():
        assert token not in output
        found = Token.authenticate(token)
        assert found is not None and found.agent.name == name


def test_a_second_run_revokes_the_previous_agent_tokens(settings, tmp_path):
    settings.DEBUG = True
    _, first = bootstrap(tmp_path)

    _, second = bootstrap(tmp_path)

    for name in AGENTS:
        assert first[name] != second[name]
        assert Token.authenticate(first[name]) is None
        assert Token.authenticate(second[name]) is not None
    assert AuditEntry.objects.filter(action="token.revoked").count() == len(AGENTS)


def test_it_leaves_agent_tokens_alone_when_asked(settings, tmp_path):
    settings.DEBUG = True
    _, first = bootstrap(tmp_path)
    (tmp_path / "tokens.json").unlink()

    bootstrap(tmp_path, "--no-agent-tokens")

    assert not (tmp_path / "tokens.json").exists()
    assert all(Token.authenticate(token) is not None for token in first.values())


def test_a_scope_changed_by_hand_is_put_back_and_audited(settings, tmp_path):
    settings.DEBUG = True
    bootstrap(tmp_path)
    agent = Agent.objects.get(name="support-agent")
    changes = AuditEntry.objects.filter(action="agent.changed", object_id=str(agent.pk))
    assert not changes.exists()
    agent.allowed_tools = ["search_kb"]
    agent.save()

    bootstrap(tmp_path)

    agent.refresh_from_db()
    assert agent.allowed_tools == list(AGENTS["support-agent"].TOOLS)
    assert changes.get().before["allowed_tools"] == ["search_kb"]


def test_the_printed_example_names_the_address_the_demo_serves_on(settings, tmp_path):
    settings.DEBUG = True
    out, _ = bootstrap(tmp_path, "--base-url", "http://127.0.0.1:8799")
    assert "http://127.0.0.1:8799/api/v1/ingest" in out
    assert ":8000" not in out
