"""`manage.py verify_digests`: the database checked against the signed digests, from the
database's copies or, better, from the published folder."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from audit.log import record
from audit.models import AuditEntry
from evidence import digests
from evidence.models import DigestEntry, SignedDigest
from history.models import Run
from history.verification import verify_run
from tests.builders import event
from tests.evidence.test_tampering import rewrite_history_consistently


def verify_digests(*args) -> tuple[bool, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_digests", *map(str, args), stdout=out, stderr=err)
    except CommandError as exc:
        return False, err.getvalue() + str(exc)
    return True, out.getvalue()


@pytest.fixture
def digested(evidence_run, ingest, agent_token):
    """Two runs and three digests, the second recording a change to the second run."""
    ingest(agent_token, [event(1, "workflow.started", workflow_id="second")])
    digests.sign_digest()
    ingest(agent_token, [event(2, workflow_id="second")])
    digests.sign_digest()
    digests.sign_digest()
    digests.publish_pending()
    return evidence_run


def test_an_untouched_database_agrees_with_its_digests(digested):
    verified, output = verify_digests()
    assert verified, output
    assert "3 digests checked, 3 run states compared with the database, 0 problems" in output


def test_a_history_rewritten_consistently_after_a_digest_is_named(digested):
    rewrite_history_consistently(digested, 5, {"decision": "something else"})
    digested.refresh_from_db()
    assert verify_run(digested) == []
    verified, output = verify_digests()
    assert not verified
    assert f"run {digested.uuid} (wf-ev / run-1): digest 1 (database) signed head hash" in output
    assert "events 1…12 were rewritten or removed after it" in output


def test_a_digest_deleted_from_the_database_breaks_the_chain(digested):
    DigestEntry.objects.filter(digest__seq=2).delete()
    SignedDigest.objects.filter(seq=2).delete()
    verified, output = verify_digests()
    assert not verified and "digest 3 (database): digests 2…2 are missing" in output


def test_the_published_folder_catches_what_deleting_the_database_copies_hides(digested,
                                                                              settings):
    rewrite_history_consistently(digested, 5, {"decision": "something else"})
    DigestEntry.objects.all().delete()
    SignedDigest.objects.all().delete()
    assert verify_digests()[0]  # no digests left in the database, nothing to compare
    verified, output = verify_digests("--digest-dir", settings.EVIDENCE_DIGEST_DIR)
    assert not verified
    assert "digest-00000001.json signed head hash" in output


def rewrite_audit_entry(seq: int, new_hash: str) -> None:
    """What the owner of the database can do despite the append-only guard: switch its
    triggers off, rewrite, switch them on again."""
    table = AuditEntry._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Deferred foreign key checks of this test's transaction would block ALTER TABLE.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            cursor.execute(f"UPDATE {table} SET hash = %s WHERE seq = %s", [new_hash, seq])  # noqa: S608 - the model's own table name
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
            return
        cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                       "AND tbl_name = %s", [table])
        triggers = cursor.fetchall()
        for name, _ in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')
        cursor.execute(f"UPDATE {table} SET hash = %s WHERE seq = %s", [new_hash, seq])  # noqa: S608 - the model's own table name
        for _, sql in triggers:
            cursor.execute(sql)


def test_an_audit_log_rewritten_after_a_digest_is_named(digested, alice):
    record("test.action", actor=alice)
    digest = digests.sign_digest()
    rewrite_audit_entry(digest.audit_seq, "f" * 64)
    verified, output = verify_digests()
    assert not verified
    assert f"digest 4 (database): recorded audit entry {digest.audit_seq} with hash" in output
    assert "the audit log was rewritten after the digest" in output


def test_a_run_deleted_since_is_noted_not_failed(ingest, agent_token):
    ingest(agent_token, [event(1, "workflow.started", workflow_id="gone")])
    digests.sign_digest()
    Run.objects.get(workflow_id="gone").delete()
    out = StringIO()
    call_command("verify_digests", "-v", "2", stdout=out)
    assert "deleted since digest 1 (database) recorded it" in out.getvalue()


def test_only_a_trusted_key_is_accepted(digested):
    verified, output = verify_digests("--trusted-key", "ab" * 32)
    assert not verified and "its signature does not verify with a trusted key" in output
