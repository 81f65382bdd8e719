"""What goes into the audit log, and how it holds: sign-ins, tokens made and revoked (admin and
management commands), roles added and removed, agents' owners changed; the chain of hashes;
PostgreSQL's refusal to rewrite it; the read-only admin."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from access.models import Agent, Membership, Token
from audit.chain import verify
from audit.log import record, verify_chain
from audit.models import GENESIS, AuditEntry
from tests.audit.guard import guard_lifted

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"fd[au]_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")
PASSWORD = "correct horse battery"


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("seq"))


def everything_recorded() -> str:
    return "\n".join(str(entry.content()) for entry in AuditEntry.objects.all())


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password=PASSWORD)


@pytest.fixture
def as_root(client, root):
    client.force_login(root)
    return client


# --- the chain ----------------------------------------------------------------------------------


def test_entries_chain_each_to_the_one_before(acme, alice):
    made = [record("test.step", actor=alice, namespace=acme, after={"n": n}) for n in range(5)]

    assert made[0].prev_hash == GENESIS
    assert [entry.prev_hash for entry in made[1:]] == [entry.hash for entry in made[:-1]]
    assert all(entry.hash == entry.compute_hash() for entry in made)
    assert verify_chain() == (True, None)


def test_secrets_in_reasons_comments_and_names_are_kept_masked(acme, alice):
    key = "AKIA" + "QWERTYUIOPASDFGH"  # built here, so that no scanner flags this file
    entry = record("test.step", actor=alice, namespace=acme, object_repr=f"tool {key}",
                   before={"state": "pending"},
                   after={"reason": f"rotate {key} now", "nested": {"comment": key}})

    stored = AuditEntry.objects.get(seq=entry.seq)
    assert key not in str(stored.content())
    assert stored.after["reason"].startswith("rotate ") and stored.before == {"state": "pending"}
    assert stored.hash == stored.compute_hash()
    assert verify_chain() == (True, None)


def test_a_rewritten_entry_breaks_the_chain_there(acme):
    made = [record("test.step", namespace=acme, after={"n": n}) for n in range(3)]
    with guard_lifted(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET after = '{\"n\": 9}' WHERE seq = %s",
                       [made[1].seq])

    assert verify_chain() == (False, made[1].seq)


def test_a_removed_entry_breaks_the_chain_after_it(acme):
    made = [record("test.step", namespace=acme, after={"n": n}) for n in range(3)]
    with guard_lifted(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE seq = %s", [made[1].seq])

    assert verify_chain() == (False, made[2].seq)


def test_entries_cut_off_the_end_are_noticed_by_the_head(acme):
    made = [record("test.step", namespace=acme, after={"n": n}) for n in range(3)]
    with guard_lifted(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE seq = %s", [made[2].seq])

    check = verify()
    assert not check.intact
    assert check.broken_at is None
    assert f"records entry #{made[2].seq}" in check.problem


def test_entries_written_during_a_check_are_left_to_the_next_one(acme, monkeypatch):
    import audit.chain

    made = [record("test.step", namespace=acme, after={"n": n}) for n in range(3)]
    real_head = audit.chain._head
    calls = []

    def head_then_a_new_entry():
        found = real_head()
        if not calls:  # the check has read the head: someone records meanwhile
            calls.append(record("test.step", namespace=acme, after={"n": "late"}))
        return found

    monkeypatch.setattr(audit.chain, "_head", head_then_a_new_entry)
    check = verify()

    assert check.intact, check.problem
    assert check.entries == len(made) and check.head_hash == made[-1].hash


def test_an_entry_written_around_the_head_is_noticed(acme):
    made = [record("test.step", namespace=acme, after={"n": n}) for n in range(2)]
    forged = AuditEntry(action="test.forged", prev_hash=made[-1].hash, actor_label="x")
    forged.hash = forged.compute_hash()
    forged.save(force_insert=True)  # the head is not moved

    check = verify()
    assert not check.intact and "does not record" in check.problem


# --- sign-ins -----------------------------------------------------------------------------------


def test_a_sign_in_is_recorded_with_the_address(alice):
    response = Client().post("/accounts/login/", {"username": "alice", "password": PASSWORD},
                             REMOTE_ADDR="203.0.113.7")

    assert response.status_code == 302
    (entry,) = entries("auth.signed_in")
    assert (entry.actor_id_copy, entry.actor_label, entry.source_address) == (
        alice.pk, "alice", "203.0.113.7"
    )
    assert entry.namespace_id_copy is None  # site-wide: superusers see it


def test_a_failed_sign_in_is_recorded_without_the_password(alice):
    response = Client().post("/accounts/login/",
                             {"username": "alice", "password": "wrong-guess-42"},
                             REMOTE_ADDR="203.0.113.8")

    assert response.status_code == 200  # the form again
    (entry,) = entries("auth.sign_in_failed")
    assert (entry.actor_id_copy, entry.actor_label, entry.object_repr, entry.source_address) == (
        None, "system", "alice", "203.0.113.8"
    )
    assert "wrong-guess-42" not in everything_recorded()
    assert not entries("auth.signed_in")


def test_a_sign_out_is_recorded(client, alice):
    client.force_login(alice)

    client.post("/accounts/logout/")

    assert [e.actor_label for e in entries("auth.signed_out")] == ["alice"]


# --- tokens -------------------------------------------------------------------------------------


def test_a_token_made_in_the_admin_is_recorded_without_its_secret(as_root, support_agent):
    response = as_root.post(
        "/admin/access/token/add/",
        {"kind": "agent", "agent": support_agent.pk, "user": "", "name": "ci"},
        follow=True, REMOTE_ADDR="198.51.100.2",
    )

    (secret,) = TOKEN.findall(response.content.decode())
    token = Token.objects.get(name="ci")
    (entry,) = entries("token.created")
    assert (entry.actor_label, entry.namespace_slug, entry.object_id, entry.source_address) == (
        "root", "acme", str(token.pk), "198.51.100.2"
    )
    assert entry.after == {"kind": "agent", "prefix": token.prefix, "name": "ci",
                           "agent": "acme/support-bot", "user": None}
    assert secret.split("_", 2)[2] not in everything_recorded()


def test_a_user_token_made_in_the_admin_is_site_wide(as_root, alice):
    as_root.post("/admin/access/token/add/",
                 {"kind": "user", "agent": "", "user": alice.pk, "name": "laptop"})

    (entry,) = entries("token.created")
    assert entry.namespace_id_copy is None
    assert entry.after["user"] == "alice"


def test_revoking_in_the_admin_records_each_token_once(as_root, support_agent):
    first, _ = Token.issue(agent=support_agent, name="one")
    second, _ = Token.issue(agent=support_agent, name="two")
    gone, _ = Token.issue(agent=support_agent, name="gone")
    gone.revoke()

    response = as_root.post("/admin/access/token/", {
        "action": "revoke_tokens", "index": 0,
        "_selected_action": [first.pk, second.pk, gone.pk],
    })

    assert response.status_code == 302
    assert sorted(e.object_id for e in entries("token.revoked")) == sorted(
        [str(first.pk), str(second.pk)]
    )
    assert all(e.actor_label == "root" for e in entries("token.revoked"))
    assert not Token.objects.active().exists()


def test_create_agent_token_is_recorded_as_the_system(acme):
    out = StringIO()

    call_command("create_agent_token", namespace="acme", agent="support-bot", name="deploy",
                 stdout=out, stderr=StringIO())

    secret = out.getvalue().strip()
    (entry,) = entries("token.created")
    assert (entry.actor_id_copy, entry.actor_label, entry.namespace_id_copy) == (
        None, "system", acme.pk
    )
    assert entry.after["agent"] == "acme/support-bot"
    assert secret.split("_", 2)[2] not in everything_recorded()


def test_create_user_token_is_recorded_as_the_system(alice):
    out = StringIO()

    call_command("create_user_token", user="alice", stdout=out, stderr=StringIO())

    (entry,) = entries("token.created")
    assert (entry.actor_label, entry.namespace_id_copy, entry.after["user"]) == (
        "system", None, "alice"
    )
    assert out.getvalue().strip().split("_", 2)[2] not in everything_recorded()


# --- members and agents -------------------------------------------------------------------------


def test_adding_a_role_is_recorded(as_alice, acme, django_user_model):
    django_user_model.objects.create_user("dana", password=PASSWORD)

    as_alice.post("/namespaces/acme/members/", {"username": "dana", "role": "approver"},
                  REMOTE_ADDR="192.0.2.44")

    (entry,) = entries("member.role_added")
    assert (entry.actor_label, entry.namespace_slug, entry.source_address, entry.after) == (
        "alice", "acme", "192.0.2.44", {"user": "dana", "role": "approver"}
    )


def test_a_refused_duplicate_role_records_nothing(as_alice, bob):
    as_alice.post("/namespaces/acme/members/", {"username": "bob", "role": "viewer"})

    assert not entries("member.role_added")


def test_removing_a_role_is_recorded(as_alice, acme, bob):
    membership = Membership.objects.get(user=bob)

    as_alice.post(f"/namespaces/acme/members/{membership.pk}/remove")

    (entry,) = entries("member.role_removed")
    assert (entry.actor_label, entry.object_id, entry.before, entry.after) == (
        "alice", str(membership.pk), {"user": "bob", "role": "viewer"}, None
    )


def test_keeping_the_last_admin_records_nothing(as_alice, alice):
    as_alice.post(f"/namespaces/acme/members/{Membership.objects.get(user=alice).pk}/remove")

    assert not entries("member.role_removed")


def agent_form(**fields) -> dict:
    return {"description": "", "owner_user": "", "owner_group": "", "allowed_tools": "",
            **fields}


def test_changing_an_agents_owner_is_recorded(as_alice, bob, support_agent):
    Agent.objects.filter(pk=support_agent.pk).update(allowed_tools=[])
    url = f"/namespaces/acme/agents/{support_agent.pk}/"

    as_alice.post(url, agent_form(owner_user=bob.pk))

    (entry,) = entries("agent.owner_changed")
    assert (entry.actor_label, entry.object_id, entry.namespace_slug) == (
        "alice", str(support_agent.pk), "acme"
    )
    assert entry.before == {"owner": None, "owner_kind": None}
    assert entry.after == {"owner": "bob", "owner_kind": "user"}


def test_other_agent_changes_are_recorded_without_claiming_an_owner_change(
    as_alice, support_agent
):
    as_alice.post(f"/namespaces/acme/agents/{support_agent.pk}/",
                  agent_form(allowed_tools="search\nrefund", privileged="on"))

    assert not entries("agent.owner_changed")
    (entry,) = entries("agent.changed")
    assert entry.before == {"allowed_tools": ["search"], "privileged": False}
    assert entry.after == {"allowed_tools": ["refund", "search"], "privileged": True}


def test_saving_an_agent_unchanged_records_nothing(as_alice, support_agent):
    as_alice.post(f"/namespaces/acme/agents/{support_agent.pk}/",
                  agent_form(allowed_tools="search"))

    assert not entries("agent.changed") and not entries("agent.owner_changed")


def test_a_refused_agent_form_records_nothing(as_bob, bob, support_agent):
    as_bob.post(f"/namespaces/acme/agents/{support_agent.pk}/", agent_form(owner_user=bob.pk))

    assert not entries("agent.owner_changed")


# --- the admin: read-only ---------------------------------------------------------------------


def test_the_admin_shows_entries_but_changes_none(as_root, acme):
    entry = record("test.step", namespace=acme, object_repr="visible in the admin")

    listing = as_root.get("/admin/audit/auditentry/")
    page = as_root.get(f"/admin/audit/auditentry/{entry.pk}/change/")

    assert listing.status_code == 200 and b"visible in the admin" in listing.content
    assert page.status_code == 200
    assert b'name="action"' not in page.content  # no editable field
    assert as_root.get("/admin/audit/auditentry/add/").status_code == 403
    assert as_root.post(f"/admin/audit/auditentry/{entry.pk}/change/",
                        {"action": "forged"}).status_code == 403
    assert as_root.post(f"/admin/audit/auditentry/{entry.pk}/delete/",
                        {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.action == "test.step"
    assert verify_chain() == (True, None)


def test_staff_see_only_their_namespaces_entries_in_the_admin(client, ivy, acme, globex):
    from django.contrib.auth.models import Permission

    ivy.is_staff = True
    ivy.save()
    ivy.user_permissions.add(Permission.objects.get(codename="view_auditentry"))
    record("test.step", namespace=acme, object_repr="acme_entry")
    record("test.step", namespace=globex, object_repr="globex_entry")
    client.force_login(ivy)

    listing = client.get("/admin/audit/auditentry/")

    assert listing.status_code == 200
    assert b"acme_entry" in listing.content
    assert b"globex_entry" not in listing.content
