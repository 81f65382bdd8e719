"""API tokens: their format, what is stored, how they authenticate, and the three ways to make
them (two management commands and the admin)."""

from __future__ import annotations

import hashlib
import re
from io import StringIO

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, transaction

from access.models import Agent, Namespace, Token
from tests.builders import event

pytestmark = pytest.mark.django_db

AGENT_TOKEN = re.compile(r"fda_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")
USER_TOKEN = re.compile(r"fdu_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def secret_of(token: str) -> str:
    return token.split("_", 2)[2]


# --- issue ----------------------------------------------------------------------------------


def test_an_agent_token_has_the_documented_format(support_agent):
    row, token = Token.issue(agent=support_agent)

    assert AGENT_TOKEN.fullmatch(token)
    assert token.split("_")[1] == row.prefix
    assert (row.kind, row.agent, row.user) == ("agent", support_agent, None)


def test_a_user_token_has_the_documented_format(alice):
    row, token = Token.issue(user=alice)

    assert USER_TOKEN.fullmatch(token)
    assert (row.kind, row.user, row.agent) == ("user", alice, None)


def test_each_token_is_different(support_agent):
    tokens = {Token.issue(agent=support_agent)[1] for _ in range(20)}
    prefixes = {token.split("_")[1] for token in tokens}

    assert len(tokens) == len(prefixes) == 20


def test_only_a_sha256_of_the_secret_is_stored(support_agent):
    row, token = Token.issue(agent=support_agent, name="ci")
    secret = secret_of(token)

    stored = Token.objects.filter(pk=row.pk).values().get()

    assert stored["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    for column, value in stored.items():
        assert secret not in str(value), column
        assert token not in str(value), column


# --- authenticate ---------------------------------------------------------------------------


def test_it_authenticates_the_right_token(support_agent):
    row, token = Token.issue(agent=support_agent)

    assert Token.authenticate(token) == row


def test_it_rejects_a_wrong_secret_with_the_right_prefix(support_agent):
    _, token = Token.issue(agent=support_agent)
    kind, prefix, secret = token.split("_", 2)
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    assert Token.authenticate(f"{kind}_{prefix}_{wrong}") is None


def test_it_rejects_an_agent_token_presented_as_a_user_token(support_agent):
    _, token = Token.issue(agent=support_agent)

    assert Token.authenticate("fdu" + token[3:]) is None


def test_it_rejects_a_user_token_presented_as_an_agent_token(alice):
    _, token = Token.issue(user=alice)

    assert Token.authenticate("fda" + token[3:]) is None


def test_it_rejects_a_revoked_token(support_agent):
    row, token = Token.issue(agent=support_agent)
    row.revoke()

    assert Token.authenticate(token) is None


def test_revoking_twice_keeps_the_first_time(support_agent):
    row, _ = Token.issue(agent=support_agent)
    row.revoke()
    first = row.revoked_at

    row.revoke()

    row.refresh_from_db()
    assert row.revoked_at == first


@pytest.mark.parametrize(
    "presented",
    ["", "fda", "fda_", "fda__", "fda_1234567_x", "fda_123456789_x", "fdx_12345678_x",
     "fda_12345678_"],
)
def test_it_rejects_malformed_tokens(support_agent, presented):
    assert Token.authenticate(presented) is None


def test_it_accepts_a_secret_containing_underscores(support_agent):
    row = Token.objects.create(
        kind="agent", agent=support_agent, prefix="0123abcd",
        secret_hash=Token.hash_secret("with_under_scores"),
    )

    assert Token.authenticate("fda_0123abcd_with_under_scores") == row


def test_a_token_cannot_belong_to_both_an_agent_and_a_user(support_agent, alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        Token.objects.create(kind="agent", agent=support_agent, user=alice, prefix="aaaabbbb",
                             secret_hash="0" * 64)


# --- management commands --------------------------------------------------------------------


def _create_agent_token(**options) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_agent_token", stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_create_agent_token_creates_the_namespace_and_the_agent(db):
    out, _ = _create_agent_token(namespace="ops", agent="deploy-bot")

    namespace = Namespace.objects.get(slug="ops")
    agent = Agent.objects.get(namespace=namespace, name="deploy-bot")
    token = out.strip().splitlines()[-1]
    assert AGENT_TOKEN.fullmatch(token)
    assert Token.authenticate(token).agent == agent


def test_create_agent_token_reuses_an_existing_agent(support_agent):
    out, _ = _create_agent_token(namespace="acme", agent="support-bot", name="second")

    assert Agent.objects.filter(name="support-bot").count() == 1
    assert Token.authenticate(out.strip().splitlines()[-1]).agent == support_agent


def test_create_agent_token_prints_the_token_last_even_when_quiet(db):
    out, err = _create_agent_token(namespace="ops", agent="deploy-bot", verbosity=0)

    assert AGENT_TOKEN.fullmatch(out.strip().splitlines()[-1])
    assert err == ""


def test_a_token_from_the_command_can_ingest(client, db):
    out, _ = _create_agent_token(namespace="ops", agent="deploy-bot")
    token = out.strip().splitlines()[-1]

    response = client.post(
        "/api/v1/ingest",
        data=orjson.dumps({"events": [event(1, "workflow.started")]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 200
    assert Agent.objects.get(name="deploy-bot").runs.count() == 1


@pytest.mark.parametrize("slug", ["not a slug", "acme/prod", ""])
def test_create_agent_token_rejects_a_bad_namespace_slug(db, slug):
    with pytest.raises(CommandError, match="--namespace"):
        _create_agent_token(namespace=slug, agent="deploy-bot")

    assert not Namespace.objects.exists()
    assert not Token.objects.exists()


def test_create_agent_token_rejects_an_empty_agent_name(db):
    with pytest.raises(CommandError, match="--agent"):
        _create_agent_token(namespace="ops", agent="  ")

    assert not Namespace.objects.exists()


def test_create_user_token_prints_a_token_for_the_user(alice):
    out = StringIO()
    call_command("create_user_token", user="alice", stdout=out, stderr=StringIO())

    token = out.getvalue().strip().splitlines()[-1]
    assert USER_TOKEN.fullmatch(token)
    assert Token.authenticate(token).user == alice


def test_create_user_token_rejects_an_unknown_user(db):
    with pytest.raises(CommandError, match="nobody"):
        call_command("create_user_token", user="nobody", stdout=StringIO(), stderr=StringIO())

    assert not Token.objects.exists()


# --- the admin ------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(
        django_user_model.objects.create_superuser("root", password="correct horse battery")
    )
    return client


def test_the_admin_shows_a_new_token_once_and_stores_its_hash(admin_client, support_agent):
    response = admin_client.post(
        "/admin/access/token/add/",
        {"kind": "agent", "agent": support_agent.pk, "user": "", "name": "from the admin"},
        follow=True,
    )

    assert response.status_code == 200
    shown = AGENT_TOKEN.findall(response.content.decode())
    assert len(shown) == 1
    token = shown[0]
    row = Token.objects.get(name="from the admin")
    assert Token.authenticate(token) == row
    assert row.created_by.username == "root"
    assert row.secret_hash == hashlib.sha256(secret_of(token).encode()).hexdigest()
    assert secret_of(token) not in str(Token.objects.filter(pk=row.pk).values().get())


def test_the_admin_never_shows_the_token_again(admin_client, support_agent):
    row, token = Token.issue(agent=support_agent)

    page = admin_client.get(f"/admin/access/token/{row.pk}/change/").content.decode()

    assert page.count(row.prefix) >= 1
    assert secret_of(token) not in page
    assert row.secret_hash not in page


def test_the_admin_issues_a_user_token(admin_client, alice):
    response = admin_client.post(
        "/admin/access/token/add/",
        {"kind": "user", "agent": "", "user": alice.pk, "name": "alice's laptop"},
        follow=True,
    )

    (token,) = USER_TOKEN.findall(response.content.decode())
    assert Token.authenticate(token).user == alice


def test_the_admin_refuses_a_token_for_both_an_agent_and_a_user(
    admin_client, support_agent, alice
):
    response = admin_client.post(
        "/admin/access/token/add/",
        {"kind": "agent", "agent": support_agent.pk, "user": alice.pk, "name": "both"},
    )

    assert response.status_code == 200  # the form again, with an error
    assert not Token.objects.filter(name="both").exists()


def test_the_admin_revoke_action_revokes(admin_client, support_agent):
    row, token = Token.issue(agent=support_agent)

    response = admin_client.post(
        "/admin/access/token/", {"action": "revoke_tokens", "_selected_action": [row.pk]}
    )

    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert Token.authenticate(token) is None


def test_the_admin_revoke_action_keeps_an_earlier_revocation(admin_client, support_agent):
    row, _ = Token.issue(agent=support_agent)
    row.revoke()
    first = row.revoked_at

    admin_client.post(
        "/admin/access/token/", {"action": "revoke_tokens", "_selected_action": [row.pk]}
    )

    row.refresh_from_db()
    assert row.revoked_at == first


def test_the_admin_cannot_delete_a_token(admin_client, support_agent):
    row, _ = Token.issue(agent=support_agent)

    response = admin_client.post(f"/admin/access/token/{row.pk}/delete/", {"post": "yes"})

    assert response.status_code == 403
    assert Token.objects.filter(pk=row.pk).exists()
