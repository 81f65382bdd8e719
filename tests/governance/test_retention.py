"""Retention and legal holds (governance.retention, the beat task, `manage.py apply_retention`,
the retention page): old closed runs go with everything that depends on them, each deletion
audited; open, young and held runs stay; the audit chain still verifies afterwards."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db.models import ProtectedError
from django.utils import timezone

from audit.chain import verify
from audit.models import AuditEntry
from governance import retention, tasks
from governance.findings import for_namespace
from governance.models import Finding, LegalHold, PrivilegedCall, RetentionPolicy
from history.models import Event, Run
from interventions.approvals import decide
from interventions.models import ApprovalDecision, ApprovalRequest, Command
from tests.governance.streams import Stream

pytest_plugins = ["tests.interventions.personas"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker")]

LATER = timedelta(days=400)  # "now" for a retention pass, long after the runs closed
PAGE = "/namespaces/acme/governance/retention/"
HOLDS = "/namespaces/acme/governance/holds/"


@pytest.fixture
def keep_30_days(acme):
    return RetentionPolicy.objects.create(namespace=acme, keep_days=30)


def closed_run(send, token, workflow_id: str, *, close: bool = True) -> Run:
    stream = Stream(workflow_id).start()
    stream.call("shell_exec", {"n": 1})
    if close:
        stream.finish()
    return send(token, stream)


def rich_run(send, token, approver) -> Run:
    """A closed run with a command, an approved request and its decision, findings and a
    judged privileged call: everything that refers to a run."""
    stream = Stream("wf-rich").start()
    stream.ask("refund-1", "issue_refund")
    run = send(token, stream)
    decide(ApprovalRequest.objects.get(run=run), approver, "approve", "ok")
    stream.call("issue_refund", {"amount": 1})
    stream.call("issue_refund", {"amount": 2})  # uncovered: a finding
    stream.finish()
    return send(token, stream)


def later_pass(**kwargs) -> retention.RetentionReport:
    return retention.apply_retention(now=timezone.now() + LATER, **kwargs)


# --- what goes --------------------------------------------------------------------------------


def test_an_old_run_goes_with_everything_that_refers_to_it(acme, send, support_token, approver,
                                                         keep_30_days):
    run = rich_run(send, support_token, approver)
    for_namespace(acme)
    facts = (str(run.uuid), run.workflow_id, run.run_id, run.head_hash, run.event_count)
    assert Command.objects.filter(run=run).exists() and Finding.objects.filter(run=run).exists()
    assert PrivilegedCall.objects.filter(run=run).count() == 2

    report = later_pass()

    assert [r["uuid"] for r in report.deleted] == [facts[0]]
    assert not Run.objects.exists() and not Event.objects.exists()
    for model in (Command, ApprovalRequest, ApprovalDecision, Finding, PrivilegedCall):
        assert not model.objects.exists(), model
    (entry,) = AuditEntry.objects.filter(action="retention.run_deleted")
    assert (entry.object_id, entry.namespace_slug, entry.actor_label) == (facts[0], "acme",
                                                                          "system")
    assert (entry.before["uuid"], entry.before["workflow_id"], entry.before["run_id"],
            entry.before["head_hash"], entry.before["event_count"]) == facts
    assert entry.after["keep_days"] == 30
    assert entry.after["removed"]["history.event"] == facts[4]
    assert entry.after["removed"]["interventions.command"] == 1
    assert verify().intact


def test_an_open_run_stays_however_old(acme, send, support_token, keep_30_days):
    still_open = closed_run(send, support_token, "wf-open", close=False)
    Run.objects.filter(pk=still_open.pk).update(updated_at=timezone.now() - timedelta(days=999))

    assert later_pass().deleted == []
    assert Run.objects.filter(pk=still_open.pk).exists()


def test_young_runs_stay_and_old_ones_go(acme, send, support_token, keep_30_days):
    old = closed_run(send, support_token, "wf-old")
    Run.objects.filter(pk=old.pk).update(closed_at=timezone.now() - timedelta(days=31),
                                         updated_at=timezone.now() - timedelta(days=31))
    young = closed_run(send, support_token, "wf-young")

    report = retention.apply_retention()

    assert [r["workflow_id"] for r in report.deleted] == ["wf-old"]
    assert list(Run.objects.all()) == [young]


def test_a_back_dated_close_does_not_delete_a_run_early(acme, send, support_token, keep_30_days):
    """The agent reports a close time years ago; Flightdeck stored it just now."""
    run = closed_run(send, support_token, "wf-backdated")
    assert run.closed_at < timezone.now() - timedelta(days=20)  # tests.builders' 2026-11-01
    Run.objects.filter(pk=run.pk).update(closed_at=timezone.now() - timedelta(days=3000))

    assert retention.apply_retention().deleted == []


def test_a_namespace_without_retention_keeps_everything(acme, send, support_token):
    closed_run(send, support_token, "wf-1")

    assert later_pass().deleted == []
    RetentionPolicy.objects.create(namespace=acme, keep_days=None)
    assert later_pass().deleted == []


def test_events_go_in_chunks(acme, send, support_token, keep_30_days, monkeypatch):
    monkeypatch.setattr(retention, "EVENT_CHUNK", 3)
    stream = Stream().start()
    for n in range(5):
        stream.call("search_kb", {"n": n})
    stream.finish()
    run = send(support_token, stream)

    (deleted,) = later_pass().deleted

    assert deleted["event_count"] == run.event_count == 17
    assert not Event.objects.exists()


def test_the_audit_chain_verifies_after_many_deletions(acme, send, support_token, keep_30_days,
                                                       alice):
    for n in range(5):
        closed_run(send, support_token, f"wf-{n}")

    assert len(later_pass().deleted) == 5
    assert AuditEntry.objects.filter(action="retention.run_deleted").count() == 5
    assert verify().intact


# --- what is held ------------------------------------------------------------------------------


def test_a_held_run_stays_and_goes_once_released(acme, send, support_token, keep_30_days,
                                                 ivy):
    held = closed_run(send, support_token, "wf-held")
    other = closed_run(send, support_token, "wf-other")
    hold = retention.place_hold(acme, run=held, reason="litigation 2026-17", actor=ivy)

    assert [r["workflow_id"] for r in later_pass().deleted] == ["wf-other"]
    assert list(Run.objects.all()) == [held]
    assert not Run.objects.filter(pk=other.pk).exists()

    retention.release_hold(hold, reason="case closed", actor=ivy)
    assert [r["workflow_id"] for r in later_pass().deleted] == ["wf-held"]
    assert verify().intact


def test_a_namespace_hold_keeps_every_run(acme, send, support_token, keep_30_days, alice):
    for n in range(3):
        closed_run(send, support_token, f"wf-{n}")
    retention.place_hold(acme, run=None, reason="regulator's request", actor=alice)

    report = later_pass()

    assert (report.deleted, report.held_namespaces) == ([], ["acme"])
    assert Run.objects.count() == 3


def test_a_run_held_after_it_was_listed_is_not_deleted(acme, send, support_token, keep_30_days,
                                                       ivy):
    run = closed_run(send, support_token, "wf-raced")
    cutoff = timezone.now() + LATER - timedelta(days=30)
    assert list(retention.expired_runs(acme, cutoff)) == [run]
    retention.place_hold(acme, run=run, reason="just in time", actor=ivy)

    assert retention.delete_run(run.pk, cutoff=cutoff, keep_days=30) is None
    assert Run.objects.filter(pk=run.pk).exists()


def test_the_database_protects_a_held_run_too(acme, send, support_token, ivy):
    run = closed_run(send, support_token, "wf-1")
    retention.place_hold(acme, run=run, reason="keep", actor=ivy)
    Event.objects.filter(run=run).delete()

    with pytest.raises(ProtectedError):
        Run.objects.filter(pk=run.pk).delete()


def test_holds_are_audited_with_their_reasons(acme, send, support_token, ivy):
    run = closed_run(send, support_token, "wf-1")
    hold = retention.place_hold(acme, run=run, reason="case 42", actor=ivy)
    retention.release_hold(hold, reason="case 42 closed", actor=ivy)

    placed, released = AuditEntry.objects.filter(action__startswith="hold.").order_by("seq")
    assert (placed.action, placed.actor_label, placed.after["reason"], placed.after["run"]) == (
        "hold.placed", "ivy", "case 42", str(run.uuid)
    )
    assert (released.action, released.after["release_reason"]) == ("hold.released",
                                                                   "case 42 closed")


def test_a_hold_needs_a_reason_and_is_not_placed_twice(acme, send, support_token, ivy):
    run = closed_run(send, support_token, "wf-1")
    with pytest.raises(retention.HoldRefused, match="reason"):
        retention.place_hold(acme, run=run, reason="  ", actor=ivy)
    retention.place_hold(acme, run=run, reason="once", actor=ivy)
    with pytest.raises(retention.HoldRefused, match="held already"):
        retention.place_hold(acme, run=run, reason="twice", actor=ivy)


# --- the command, the task, the schedule --------------------------------------------------------


def test_apply_retention_dry_run_lists_and_deletes_nothing(acme, send, support_token,
                                                           keep_30_days):
    run = closed_run(send, support_token, "wf-1")
    Run.objects.filter(pk=run.pk).update(closed_at=timezone.now() - timedelta(days=40),
                                         updated_at=timezone.now() - timedelta(days=40))
    out = StringIO()

    call_command("apply_retention", "--dry-run", stdout=out)

    assert f"would delete {run.uuid} wf-1 / run-1 ({run.event_count} events" in out.getvalue()
    assert "would delete 1 run" in out.getvalue()
    assert Run.objects.exists()
    call_command("apply_retention", "--namespace", "acme", stdout=out)
    assert not Run.objects.exists()


def test_apply_retention_refuses_an_unknown_namespace():
    with pytest.raises(CommandError, match="no such namespace: nowhere"):
        call_command("apply_retention", "--namespace", "nowhere", stdout=StringIO())


def test_the_task_applies_retention(acme, send, support_token, keep_30_days):
    run = closed_run(send, support_token, "wf-1")
    Run.objects.filter(pk=run.pk).update(closed_at=timezone.now() - timedelta(days=40),
                                         updated_at=timezone.now() - timedelta(days=40))

    assert tasks.apply_retention()["deleted"] == 1


def test_beat_runs_both_tasks_on_the_slow_queue():
    scheduled = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert scheduled["governance.apply_retention"]["options"]["queue"] == "slow"
    assert scheduled["governance.refresh_findings"]["options"]["queue"] == "slow"
    assert settings.CELERY_TASK_ROUTES["governance.apply_retention"]["queue"] == "slow"


def test_retention_knows_every_model_that_refers_to_a_run():
    """A model added later with a foreign key to Run must be added to RUN_DEPENDANTS (in an
    order its own foreign keys allow), or retention would fail on it or skip it."""
    referring = {
        field.related_model for field in Run._meta.get_fields(include_hidden=True)
        if field.auto_created and not field.concrete
    }

    assert referring == set(retention.RUN_DEPENDANTS)


# --- the page ----------------------------------------------------------------------------------


def test_every_member_sees_the_period_and_the_holds(as_bob, acme, keep_30_days, alice):
    retention.place_hold(acme, run=None, reason="<b>audit 2026</b>", actor=alice)

    body = as_bob.get(PAGE).content.decode()

    assert "Closed runs are kept for <strong>30 days</strong>" in body
    assert "&lt;b&gt;audit 2026&lt;/b&gt;" in body
    assert 'name="keep_days"' not in body and 'name="reason"' not in body  # no forms for bob


def test_an_admin_sets_the_period_audited(as_alice, acme):
    response = as_alice.post(PAGE, {"keep_days": "90"})

    assert response.status_code == 302
    assert RetentionPolicy.objects.get(namespace=acme).keep_days == 90
    (entry,) = AuditEntry.objects.filter(action="retention.changed")
    assert (entry.actor_label, entry.before, entry.after) == (
        "alice", {"keep_days": None}, {"keep_days": 90}
    )
    as_alice.post(PAGE, {"keep_days": ""})
    assert RetentionPolicy.objects.get(namespace=acme).keep_days is None


@pytest.mark.parametrize("value", ["0", "-1", "x", "99999999"])
def test_a_bad_period_is_a_400_naming_the_field(as_alice, acme, value):
    response = as_alice.post(PAGE, {"keep_days": value})

    assert response.status_code == 400
    assert b'id="id_keep_days"' in response.content
    assert not AuditEntry.objects.filter(action="retention.changed").exists()


def test_viewers_and_investigators_may_not_set_the_period(client, bob, ivy, acme):
    for user in (bob, ivy):
        client.force_login(user)
        assert client.post(PAGE, {"keep_days": "1"}).status_code == 403
    assert not RetentionPolicy.objects.exists()


def test_an_investigator_places_and_releases_a_hold(as_ivy, acme, send, support_token):
    run = closed_run(send, support_token, "wf-1")

    placed = as_ivy.post(HOLDS, {"run": str(run.uuid), "reason": "case 7"})
    hold = LegalHold.objects.get()
    released = as_ivy.post(f"{HOLDS}{hold.pk}/release", {"reason": "done"},
                           headers={"HX-Request": "true"})

    assert placed.status_code == 302
    assert (hold.run, hold.reason, hold.placed_by_label) == (run, "case 7", "ivy")
    assert released.status_code == 200
    assert released.content.decode().lstrip().startswith('<div id="retention"')
    assert "Hold released." in released.content.decode()
    hold.refresh_from_db()
    assert (hold.released_by_label, hold.release_reason) == ("ivy", "done")
    assert as_ivy.post(f"{HOLDS}{hold.pk}/release", {"reason": "again"}).status_code == 409


@pytest.mark.parametrize(("form", "field"), [
    ({"run": "", "reason": ""}, "reason"),
    ({"run": "not-a-uuid", "reason": "x"}, "run"),
    ({"run": "00000000-0000-0000-0000-000000000000", "reason": "x"}, "run"),
])
def test_a_bad_hold_is_a_400_naming_the_field(as_ivy, acme, form, field):
    response = as_ivy.post(HOLDS, form)

    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode() or \
        f"id_{field}" in response.content.decode()
    assert not LegalHold.objects.exists()


def test_a_run_of_another_namespace_cannot_be_held_here(as_ivy, globex, send):
    from access.models import Agent, Token

    agent = Agent.objects.create(namespace=globex, name="other")
    run = closed_run(send, Token.issue(agent=agent)[1], "wf-globex")

    response = as_ivy.post(HOLDS, {"run": str(run.uuid), "reason": "x"})

    assert response.status_code == 400
    assert b"no such run in this namespace" in response.content


def test_a_viewer_may_not_hold_and_an_outsider_gets_404(client, bob, charlie, acme):
    client.force_login(bob)
    assert client.post(HOLDS, {"reason": "x"}).status_code == 403
    client.force_login(charlie)
    assert client.post(HOLDS, {"reason": "x"}).status_code == 404
    assert client.get(PAGE).status_code == 404
    assert not LegalHold.objects.exists()


def test_the_hold_actions_refuse_get(as_ivy, acme):
    assert as_ivy.get(HOLDS).status_code == 405
    assert as_ivy.get(f"{HOLDS}1/release").status_code == 405


def test_a_hold_of_another_namespace_cannot_be_released_here(as_ivy, globex, charlie):
    hold = retention.place_hold(globex, run=None, reason="theirs", actor=charlie)

    assert as_ivy.post(f"{HOLDS}{hold.pk}/release", {"reason": "x"}).status_code == 404
    hold.refresh_from_db()
    assert hold.is_active


def test_an_anonymous_visitor_signs_in(client, acme):
    assert client.get(PAGE).status_code == 302
    assert client.post(HOLDS, {"reason": "x"}).status_code == 302
