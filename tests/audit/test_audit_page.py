"""The audit log page (`/audit/`): for investigators and admins of the namespaces concerned,
newest first, filtered in the address, paged by sequence, the hash chain checked on demand."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import log, views
from audit.log import record
from audit.models import AuditEntry
from tests.audit.guard import guard_lifted

pytestmark = pytest.mark.django_db

AUDIT = "/audit/"
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture
def entries(acme, globex, alice, charlie):
    """A few entries in acme, one in globex and one site-wide (a sign-in)."""
    made = {
        "paused": record("command.requested", actor=alice, namespace=acme,
                         object_type="interventions.command", object_id="c-1",
                         object_repr="pause on wf-1", after={"kind": "pause", "reason": "look"}),
        "policy": record("policy.changed", actor=alice, namespace=acme,
                         object_type="interventions.approvalpolicy", object_id="7",
                         before={"min_approvals": 1}, after={"min_approvals": 2}),
        "decided": record("approval.decided", actor=alice, namespace=acme,
                          object_type="interventions.approvalrequest", object_id="r-1",
                          after={"decision": "approve"}),
        "globex": record("policy.changed", actor=charlie, namespace=globex,
                         object_repr="globex_private_policy"),
        "sign_in": record("auth.signed_in", actor=alice, object_repr="site_wide_sign_in"),
    }
    return made


def rows(response) -> list[int]:
    """The sequence numbers shown, in page order."""
    body = response.content.decode()
    found, start = [], 0
    while (at := body.find('<tr id="entry-', start)) != -1:
        end = body.index('"', at + 14)
        found.append(int(body[at + 14:end]))
        start = end
    return found


# --- who may see what ---------------------------------------------------------------------------


def test_an_investigator_sees_their_namespaces_entries_newest_first(as_ivy, entries):
    response = as_ivy.get(AUDIT, REMOTE_ADDR="192.0.2.1")

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" in body
    acme_entries = [entries[k].seq for k in ("decided", "policy", "paused")]
    assert rows(response) == acme_entries
    assert "globex_private_policy" not in body
    assert "site_wide_sign_in" not in body
    assert "<code>policy.changed</code>" in body
    assert "{&quot;min_approvals&quot;:1}" in body
    assert "{&quot;min_approvals&quot;:2}" in body
    assert "pause on wf-1" in body
    assert "interventions.command c-1" in body


def test_an_admin_investigates_too(as_alice, entries):
    assert len(rows(as_alice.get(AUDIT))) == 3


def test_a_superuser_sees_site_wide_entries(client, django_user_model, entries):
    client.force_login(django_user_model.objects.create_superuser("root", password="x" * 12))
    own_sign_in = AuditEntry.objects.get(action="auth.signed_in", actor_label="root").seq

    response = client.get(AUDIT)

    assert rows(response) == [own_sign_in, *sorted((e.seq for e in entries.values()),
                                                   reverse=True)]
    assert b"site_wide_sign_in" in response.content
    assert rows(client.get(AUDIT, {"namespace": "-"})) == [own_sign_in, entries["sign_in"].seq]


def test_a_viewer_gets_403(as_bob, entries):
    response = as_bob.get(AUDIT)

    assert response.status_code == 403
    assert b"pause on wf-1" not in response.content


def test_an_outsider_sees_nothing_of_acme(as_charlie, entries):
    response = as_charlie.get(AUDIT)

    assert response.status_code == 200
    assert rows(response) == [entries["globex"].seq]
    assert b"pause on wf-1" not in response.content
    filtered = as_charlie.get(AUDIT, {"namespace": "acme"})
    assert filtered.status_code == 400
    assert rows(filtered) == []


def test_only_superusers_may_ask_for_site_wide_entries(as_ivy, entries):
    response = as_ivy.get(AUDIT, {"namespace": "-"})

    assert response.status_code == 400
    assert b"site_wide_sign_in" not in response.content


def test_an_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get(AUDIT)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={AUDIT}"


def test_it_refuses_other_methods(as_ivy):
    assert as_ivy.post(AUDIT).status_code == 405
    assert as_ivy.delete(AUDIT).status_code == 405


def test_what_was_recorded_is_shown_as_text(as_ivy, acme):
    record(f"agent.{SCRIPT}"[:60], namespace=acme, object_repr=SCRIPT, after={"note": SCRIPT},
           object_id=SCRIPT[:100])

    body = as_ivy.get(AUDIT).content.decode()

    assert SCRIPT not in body
    assert ESCAPED in body


# --- filters ------------------------------------------------------------------------------------


def test_filter_by_action_exact_or_by_prefix(as_ivy, entries):
    assert rows(as_ivy.get(AUDIT, {"action": "policy.changed"})) == [entries["policy"].seq]
    assert rows(as_ivy.get(AUDIT, {"action": "approval."})) == [entries["decided"].seq]
    assert rows(as_ivy.get(AUDIT, {"action": "approval"})) == []


def test_filter_by_actor_object_and_namespace(as_ivy, entries, acme, bob):
    record("member.role_added", actor=bob, namespace=acme)

    assert len(rows(as_ivy.get(AUDIT, {"actor": "ALICE"}))) == 3
    assert rows(as_ivy.get(AUDIT, {"object": "c-1"})) == [entries["paused"].seq]
    assert len(rows(as_ivy.get(AUDIT, {"namespace": "acme"}))) == 4


def test_filter_by_time(as_ivy, entries, acme):
    # Entries cannot be back-dated (the log is append-only): windows are set around now.
    recent = record("recent.action", namespace=acme)
    now = timezone.now()
    since = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    until = (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")

    assert recent.seq in rows(as_ivy.get(AUDIT, {"since": since, "until": until}))
    assert rows(as_ivy.get(AUDIT, {"until": since})) == []
    assert rows(as_ivy.get(AUDIT, {"since": until})) == []


@pytest.mark.parametrize("query", [
    {"since": "yesterday"},
    {"until": "2026-13-40T99:00"},
    {"before": "-3"},
    {"before": "x"},
    {"namespace": "nowhere"},
    {"actor": "a\x00b"},
])
def test_bad_filters_are_a_400_that_says_why(as_ivy, entries, query):
    response = as_ivy.get(AUDIT, query)

    assert response.status_code == 400
    assert b'class="error"' in response.content
    assert rows(response) == []


def test_the_filters_refresh_the_entries_alone_with_htmx(as_ivy, entries):
    response = as_ivy.get(AUDIT, {"action": "policy.changed"},
                          headers={"HX-Request": "true", "HX-Target": "audit-entries"})

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith('<section id="audit-entries"')
    assert rows(response) == [entries["policy"].seq]


# --- paging -------------------------------------------------------------------------------------


def test_pages_go_back_by_sequence(as_ivy, acme):
    made = [record("bulk.entry", namespace=acme, object_id=str(n)).seq for n in range(60)]

    first = as_ivy.get(AUDIT)
    assert rows(first) == made[::-1][:50]
    older = f"before={made[10]}"
    assert older in first.content.decode()

    second = as_ivy.get(f"{AUDIT}?{older}")
    assert rows(second) == made[::-1][50:]
    assert b"Older entries" not in second.content


def test_paging_keeps_the_filters(as_ivy, acme):
    for n in range(55):
        record("bulk.entry", namespace=acme, object_id=str(n))
    record("other.entry", namespace=acme)

    body = as_ivy.get(AUDIT, {"action": "bulk.entry"}).content.decode()

    assert "?action=bulk.entry&amp;before=" in body


def test_the_page_costs_a_fixed_number_of_queries(as_ivy, acme, entries):
    with CaptureQueriesContext(connection) as few:
        as_ivy.get(AUDIT)
    for n in range(40):
        record("bulk.entry", namespace=acme, object_id=str(n))
    with CaptureQueriesContext(connection) as many:
        as_ivy.get(AUDIT)

    assert len(many) == len(few) <= 6


# --- the hash chain, on demand ------------------------------------------------------------------


def test_the_chain_is_verified_only_when_asked(as_ivy, entries, monkeypatch):
    def must_not_run():
        raise AssertionError("the chain was verified without being asked")

    monkeypatch.setattr(views, "verify", must_not_run)

    body = as_ivy.get(AUDIT).content.decode()

    assert "Verify the hash chain" in body


def test_verifying_an_intact_chain(as_ivy, entries):
    response = as_ivy.get(AUDIT, {"verify": "1"})

    assert response.status_code == 200
    assert b"Hash chain intact" in response.content


def test_verifying_with_htmx_answers_the_status_alone(as_ivy, entries):
    response = as_ivy.get(AUDIT, {"verify": "1"},
                          headers={"HX-Request": "true", "HX-Target": "chain-status"})

    body = response.content.decode()
    assert "<html" not in body
    assert body.lstrip().startswith('<div id="chain-status"')
    assert "Hash chain intact" in body


@pytest.fixture
def tampered(entries):
    """Rewrite an entry behind the application's back (the guard lifted, as only the table's
    owner can; the application itself is refused: see test_append_only)."""
    with guard_lifted(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditentry SET action = 'nothing.happened' WHERE seq = %s",
                       [entries["policy"].seq])
    return entries


def test_verifying_a_tampered_chain_names_the_entry(as_ivy, tampered):
    body = as_ivy.get(AUDIT, {"verify": "1"}).content.decode()

    assert f"Hash chain broken at entry #{tampered['policy'].seq}" in body


def test_a_break_outside_ones_namespaces_is_not_located(as_charlie, tampered):
    body = as_charlie.get(AUDIT, {"verify": "1"}).content.decode()

    assert "Hash chain broken at an entry outside your namespaces" in body
    assert f"#{tampered['policy'].seq}" not in body


def test_verify_chain_is_the_one_used(entries):
    assert log.verify_chain() == (True, None)
    # The head check is audit.chain's: the old re-hash alone found nothing wrong here.
    with guard_lifted(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE seq = %s", [entries["sign_in"].seq])
    assert log.verify_chain() == (False, None)


def test_entries_cut_off_the_end_are_reported(as_ivy, entries):
    with guard_lifted(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditentry WHERE seq = %s", [entries["sign_in"].seq])

    body = as_ivy.get(AUDIT, {"verify": "1"}).content.decode()

    assert "Hash chain broken at its end" in body
