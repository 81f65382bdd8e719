"""Durability across a namespace (governance.durability_checks): each workflow id checked as a
whole when its runs change, by the rules of docs/durability.md, with what became of it after an
interruption; repeatable, bounded, and linear in the runs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from governance import durability_checks, tasks
from governance.findings import for_namespace
from governance.models import Finding, WorkflowCheck
from governance.vocabulary import Outcome, Rule
from tests.governance.streams import Stream

pytestmark = pytest.mark.django_db


def rules(namespace) -> list[tuple[str, str, int]]:
    return [(f.rule, f.run.run_id, f.event_id)
            for f in for_namespace(namespace).findings().order_by("run__run_id", "event_id")]


def outcome(workflow_id: str) -> str:
    return WorkflowCheck.objects.get(workflow_id=workflow_id).outcome


def test_ingest_marks_the_workflow_id_due_and_a_check_clears_it(acme, send, support_token):
    send(support_token, Stream("wf-a").start())

    check = WorkflowCheck.objects.get(workflow_id="wf-a")
    assert check.due and check.checked_at is None
    assert tasks.refresh_findings() == 1
    check.refresh_from_db()
    assert not check.due and check.checked_at is not None
    assert check.outcome == Outcome.NOT_INTERRUPTED
    assert tasks.refresh_findings() == 0


def test_a_restart_from_scratch_redoing_completed_work_is_found(acme, send, support_token):
    first = Stream("wf-r", "run-1").start()
    first.call("search_kb", {"q": "refund"})
    first.call("get_customer", {"id": "C-1"})
    first.finish("workflow.failed")
    send(support_token, first)
    second = Stream("wf-r", "run-2").start()  # starts over instead of resuming
    second.call("search_kb", {"q": "refund"})
    second.call("get_customer", {"id": "C-1"})
    second.call("issue_refund", {"amount": 1})
    send(support_token, second)

    (finding,) = for_namespace(acme).findings(Rule.RESTART_FROM_SCRATCH)
    assert finding.run.run_id == "run-2"
    assert "repeats 2 completed activities of run run-1" in finding.summary
    assert finding.event_ids == [4, 7]  # run-2's two repeated completions
    assert outcome("wf-r") == Outcome.RESTARTED_FROM_SCRATCH


def test_a_run_resumed_after_a_crash_without_redoing_work_yields_nothing(
    acme, send, support_token
):
    stream = Stream("wf-crash").start()
    stream.call("search_kb", {"q": "refund"})
    in_flight = stream.call("get_customer", {"id": "C-1"}, complete=False)
    send(support_token, stream)  # the process is killed here
    stream.retry_attempt(in_flight)  # restarted: the same run carries on
    stream.call("send_email", {"to": "customer"})
    stream.finish()
    send(support_token, stream)

    assert rules(acme) == []
    assert outcome("wf-crash") == Outcome.RESUMED


def test_a_workflow_carried_on_by_a_new_run_after_a_failure_resumed(acme, send, support_token):
    first = Stream("wf-next", "run-1").start()
    first.call("search_kb", {"q": "x"})
    first.finish("workflow.terminated")
    send(support_token, first)
    second = Stream("wf-next", "run-2").start()
    second.call("send_email", {"to": "customer"})
    second.finish()
    send(support_token, second)

    assert rules(acme) == []
    assert outcome("wf-next") == Outcome.RESUMED


def test_redoing_completed_work_within_a_run_lost_its_state(acme, send, support_token):
    stream = Stream("wf-lost").start()
    stream.call("search_kb", {"q": "refund"})
    stream.call("get_customer", {"id": "C-1"})
    stream.call("search_kb", {"q": "refund"})  # restarted in place, without its results
    stream.finish()
    send(support_token, stream)

    assert [(r, run) for r, run, _ in rules(acme)] == [(Rule.REDONE_WORK, "run-1")]
    assert outcome("wf-lost") == Outcome.LOST_STATE


def test_a_gap_is_found_and_goes_once_filled(acme, ingest, support_token):
    stream = Stream("wf-gap").start()
    stream.call("search_kb", {"q": "x"})
    events = stream.take()
    assert ingest(support_token, events[:2] + events[3:]).status_code == 200

    assert rules(acme) == [(Rule.GAP, "run-1", 2)]
    assert ingest(support_token, [events[2]]).status_code == 200
    assert rules(acme) == []


def test_an_abandoned_attempt_in_a_closed_run_is_an_interruption(acme, send, support_token):
    stream = Stream("wf-abandoned").start()
    stream.call("get_customer", {"id": 1}, complete=False)
    stream.finish("workflow.failed")
    send(support_token, stream)

    for_namespace(acme)
    assert outcome("wf-abandoned") == Outcome.RESUMED  # interrupted, nothing redone


def test_the_inventory_counts_workflow_ids_by_type_and_outcome(acme, send, support_token):
    for n in range(2):
        send(support_token, Stream(f"clean-{n}", workflow_type="support").start())
    lost = Stream("lost", workflow_type="billing").start()
    lost.call("charge", {"n": 1}, key="charge-1")
    lost.call("charge", {"n": 1}, key="charge-1")
    send(support_token, lost)

    inventory = {row.workflow_type: row for row in for_namespace(acme).inventory}

    assert inventory["support"].counts == {Outcome.NOT_INTERRUPTED: 2}
    assert inventory["support"].did_not_survive == 0
    assert (inventory["billing"].counts[Outcome.LOST_STATE], inventory["billing"].did_not_survive,
            inventory["billing"].interrupted) == (1, 1, 1)


def test_a_batch_stored_during_a_check_keeps_the_workflow_id_due(acme, send, support_token,
                                                                 monkeypatch):
    run = send(support_token, Stream("wf-busy").start())
    check = WorkflowCheck.objects.get(workflow_id="wf-busy")
    real = durability_checks.analyse_workflow

    def analyse_while_a_batch_arrives(runs):
        durability_checks.mark_due(run)  # what ingest does for a batch committed meanwhile
        return real(runs)

    monkeypatch.setattr(durability_checks, "analyse_workflow", analyse_while_a_batch_arrives)
    durability_checks.check_workflow(check.pk)

    check.refresh_from_db()
    assert check.due and check.checked_at is not None


def test_a_check_is_bounded_and_says_so(acme, send, support_token, monkeypatch):
    monkeypatch.setattr(durability_checks, "MAX_RUNS", 2)
    for n in range(3):
        send(support_token, Stream("wf-many", f"run-{n}").start())

    report = for_namespace(acme)

    assert report.checks_bounded == 1
    assert WorkflowCheck.objects.get(workflow_id="wf-many").runs == 2


def test_a_check_costs_the_same_queries_for_many_runs_as_for_few(acme, send, support_token):
    def cost(workflow_id: str, runs: int) -> int:
        for n in range(runs):
            stream = Stream(workflow_id, f"run-{n}").start()
            stream.call("search_kb", {"q": n})
            stream.finish()
            send(support_token, stream)
        check = WorkflowCheck.objects.get(workflow_id=workflow_id)
        with CaptureQueriesContext(connection) as queries:
            durability_checks.check_workflow(check.pk)
        return len(queries)

    assert cost("few", 2) == cost("many", 12)


def test_checks_replace_their_findings_instead_of_adding(acme, send, support_token):
    stream = Stream("wf-twice").start()
    stream.call("search_kb", {"q": 1}, key="k")
    stream.call("search_kb", {"q": 1}, key="k")
    send(support_token, stream)
    for_namespace(acme)
    check = WorkflowCheck.objects.get(workflow_id="wf-twice")

    durability_checks.check_workflow(check.pk)
    durability_checks.check_workflow(check.pk)

    assert Finding.objects.filter(rule=Rule.REDONE_WORK).count() == 1


def test_a_failing_check_stays_due_and_does_not_stop_the_others(acme, send, support_token,
                                                                monkeypatch, caplog):
    send(support_token, Stream("wf-bad").start())
    send(support_token, Stream("wf-good").start())
    bad = WorkflowCheck.objects.get(workflow_id="wf-bad")
    real = durability_checks.check_workflow

    def check(check_id):
        if check_id == bad.pk:
            raise RuntimeError("a run went away")
        real(check_id)

    monkeypatch.setattr(durability_checks, "check_workflow", check)

    assert durability_checks.run_pending() == 1
    assert list(WorkflowCheck.objects.filter(due=True).values_list("workflow_id", flat=True)) == [
        "wf-bad"
    ]
    assert "could not check workflow check" in caplog.text
