"""The audit log cannot be rewritten: the database itself refuses UPDATE, DELETE and (on
PostgreSQL) TRUNCATE; rows hold plain copies, so deleting a user or a namespace never touches
them; entries written before the copies existed still verify; `manage.py verify_audit`."""

from __future__ import annotations

import hashlib
from io import StringIO

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from access.models import Membership, Namespace
from audit.chain import verify
from audit.log import record
from audit.models import GENESIS, AuditEntry
from tests.audit.guard import guard_lifted

pytestmark = pytest.mark.django_db


def refused(statement: str, params=()) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), \
            connection.cursor() as cursor:
        cursor.execute(statement, params)


# --- the guard, on both databases ---------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE audit_auditentry SET action = 'nothing.happened'",
    "UPDATE audit_auditentry SET namespace_slug = 'elsewhere' WHERE seq = %s",
    "DELETE FROM audit_auditentry WHERE seq = %s",
    "DELETE FROM audit_auditentry",
])
def test_the_database_refuses_to_rewrite_the_log(acme, statement):
    entry = record("test.step", namespace=acme)

    refused(statement, [entry.seq] if "%s" in statement else [])

    assert AuditEntry.objects.get(seq=entry.seq).action == "test.step"
    assert verify().intact


def test_the_orm_is_refused_too(acme):
    entry = record("test.step", namespace=acme)

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(actor_label="someone else")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()

    assert AuditEntry.objects.get(pk=entry.pk).actor_label == "system"


def test_appending_is_allowed(acme):
    record("test.step", namespace=acme)
    record("test.step", namespace=acme)

    assert AuditEntry.objects.count() == 2
    assert verify().intact


@pytest.mark.postgres
def test_postgresql_refuses_truncate(acme):
    record("test.step", namespace=acme)

    refused("TRUNCATE audit_auditentry")
    refused("TRUNCATE audit_auditentry, audit_audithead")

    assert AuditEntry.objects.count() == 1


@pytest.mark.postgres
def test_postgresql_refuses_truncate_of_an_empty_log_too(db):
    # A statement trigger: it fires whatever the table holds.
    refused("TRUNCATE audit_auditentry")


# --- plain copies -------------------------------------------------------------------------------


def test_deleting_a_user_leaves_their_entries_intact(acme, django_user_model):
    dana = django_user_model.objects.create_user("dana", password="correct horse battery")
    Membership.objects.create(user=dana, namespace=acme, role="operator")
    entry = record("test.step", actor=dana, namespace=acme, after={"n": 1})

    dana.delete()

    kept = AuditEntry.objects.get(pk=entry.pk)
    assert (kept.actor_id_copy, kept.actor_label) == (entry.actor_id_copy, "dana")
    assert kept.hash == entry.hash
    assert verify().intact


def test_deleting_a_namespace_leaves_its_entries_intact(alice):
    gone = Namespace.objects.create(slug="gone", name="Short-lived")
    Membership.objects.create(user=alice, namespace=gone, role="admin")
    entry = record("member.role_added", actor=alice, namespace=gone)
    gone_id = gone.pk

    gone.delete()

    kept = AuditEntry.objects.get(pk=entry.pk)
    assert (kept.namespace_id_copy, kept.namespace_slug) == (gone_id, "gone")
    assert verify().intact


def test_a_new_namespace_with_an_old_slug_does_not_inherit_its_entries(client, alice):
    gone = Namespace.objects.create(slug="gone")
    record("policy.changed", namespace=gone, object_repr="the_old_namespaces_policy")
    gone.delete()
    again = Namespace.objects.create(slug="gone")
    Membership.objects.create(user=alice, namespace=again, role="investigator")
    client.force_login(alice)

    response = client.get("/audit/", {"namespace": "gone"})

    assert response.status_code == 200
    assert b"the_old_namespaces_policy" not in response.content


def test_the_hash_covers_the_copies(acme, alice):
    entry = record("test.step", actor=alice, namespace=acme)
    content = entry.content()

    assert (content["v"], content["actor_id"], content["namespace_slug"]) == (2, alice.pk, "acme")
    with guard_lifted(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET namespace_slug = 'globex' WHERE seq = %s",
                       [entry.seq])

    assert verify().broken_at == entry.seq


# --- manage.py verify_audit ---------------------------------------------------------------------


def test_verify_audit_says_the_chain_is_intact(acme):
    made = [record("test.step", namespace=acme, after={"n": n}) for n in range(3)]
    out = StringIO()

    call_command("verify_audit", stdout=out)

    assert f"audit chain intact: 3 entries, head {made[-1].hash}" in out.getvalue()


def test_verify_audit_names_the_first_bad_entry(acme):
    made = [record("test.step", namespace=acme, after={"n": n}) for n in range(4)]
    with guard_lifted(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET object_repr = 'forged' WHERE seq IN (%s, %s)",
                       [made[1].seq, made[2].seq])

    with pytest.raises(CommandError, match=rf"entry #{made[1].seq} does not match its hash"):
        call_command("verify_audit", stdout=StringIO())


def test_verify_audit_exits_non_zero(acme, tmp_path):
    """Through the real command line: a broken chain is exit status 1."""
    record("test.step", namespace=acme)
    with guard_lifted(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET action = 'forged'")

    with pytest.raises(SystemExit) as exited:
        call_command_line("verify_audit")

    assert exited.value.code == 1


def call_command_line(*argv: str) -> None:
    from django.core.management import ManagementUtility

    ManagementUtility(["manage.py", *argv]).execute()


# --- entries written before the copies still verify ---------------------------------------------


def _version_1_hash(prev_hash: str, **content) -> str:
    """How audit.0001/0002's code hashed an entry (its canonical content had these keys)."""
    body = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


@pytest.mark.django_db(transaction=True)
def test_entries_written_before_the_copies_keep_verifying(django_user_model):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("audit")
    executor.migrate([("audit", "0002_append_only")])
    try:
        old_apps = MigrationExecutor(connection).loader.project_state(
            [("audit", "0002_append_only")]
        ).apps
        old_entry = old_apps.get_model("audit", "AuditEntry")
        old_head = old_apps.get_model("audit", "AuditHead")
        acme = Namespace.objects.create(slug="acme")
        olga = django_user_model.objects.create_user("olga", password="correct horse battery")
        prev = GENESIS
        for n, (namespace_id, actor_id) in enumerate([(acme.pk, olga.pk), (None, None)]):
            entry = old_entry(actor_id=actor_id, actor_label="olga" if actor_id else "system",
                              action="test.before", namespace_id=namespace_id,
                              after={"n": n}, prev_hash=prev)
            entry.hash = prev = _version_1_hash(
                prev, time=entry.time.isoformat(), actor=entry.actor_label,
                action="test.before", namespace=namespace_id, object_type="", object_id="",
                object_repr="", before=None, after={"n": n}, source_address=None,
            )
            entry.save()
        last_seq = old_entry.objects.order_by("-seq").values_list("seq", flat=True)[0]
        old_head.objects.create(pk=1, hash=prev, seq=last_seq)

        executor = MigrationExecutor(connection)
        executor.migrate(latest)

        first, second = AuditEntry.objects.order_by("seq")
        assert (first.content_version, first.namespace_id_copy, first.namespace_slug,
                first.actor_id_copy) == (1, acme.pk, "acme", olga.pk)
        assert (second.content_version, second.namespace_id_copy, second.namespace_slug) == (
            1, None, ""
        )
        record("test.after", namespace=acme)  # a version 2 entry chained after them
        assert verify().intact
        assert AuditEntry.objects.order_by("-seq").first().content_version == 2
    finally:
        MigrationExecutor(connection).migrate(latest)
