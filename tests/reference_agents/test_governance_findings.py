"""Governance's findings on the reference agents' own runs, made for real: each agent runs
against a live Flightdeck through the SDK, registered by `bootstrap_demo` with its declared
tools and approval policies (the `demo_tokens` fixture), and the product's
`governance.findings.for_namespace` is asked what it found. Each misbehaving agent is found
out by its rule, and by that rule alone; the well-behaved ones leave nothing, and their
workflow ids count as surviving any interruption.

Where a person's decision must reach the agent (support's approved refund, the escalations
agent's rejected one), the run goes through uvicorn and a real Celery worker on PostgreSQL, as
in test_support.py and test_claimed_approval.py."""

from __future__ import annotations

import pytest

from access.models import Namespace
from governance.findings import NamespaceFindings, for_namespace
from governance.models import WorkflowCheck
from governance.vocabulary import Outcome, Rule
from reference_agents import (
    crash_resume,
    leaked_key,
    out_of_scope,
    research,
    restart_from_scratch,
    unapproved_refund,
)
from tests.reference_agents import test_claimed_approval, test_support
from tests.reference_agents.histories import assert_complete, only_run, recorded, runs_of

pytestmark = pytest.mark.django_db(transaction=True)

SURVIVED = {Outcome.RESUMED, Outcome.NOT_INTERRUPTED}


def governance_of(module) -> NamespaceFindings:
    """What the governance page knows of the agent's namespace, durability checks run."""
    return for_namespace(Namespace.objects.get(slug=module.NAMESPACE))


def run_once(module, live_server, session_for, number: int = 0):
    session = session_for(module.NAME, live_server.url)
    job = module.job(number, session)
    module.execute(session, job)
    assert session.client.flush(timeout=30)
    return job


def scheduled_call(history, tool: str):
    return next(e for e in history.of_type("activity.scheduled")
                if history.attributes(e)["activity_type"] == tool)


def outcome_of(module, workflow_id: str) -> str:
    check = WorkflowCheck.objects.get(namespace__slug=module.NAMESPACE, workflow_id=workflow_id)
    assert check.workflow_type == module.WORKFLOW_TYPE and not check.due
    return check.outcome


def assert_nothing_found(module, workflow_id: str) -> None:
    found = governance_of(module)
    assert found.rules_found() == set()
    assert list(found.findings()) == []
    assert outcome_of(module, workflow_id) in SURVIVED


# --- misbehaving agents ---------------------------------------------------------------------


def test_the_report_builders_restart_from_scratch_is_found(quiet_live_server, session_for):
    job = run_once(restart_from_scratch, quiet_live_server, session_for)
    first, second = (recorded(run) for run in runs_of(job.workflow_id))

    found = governance_of(restart_from_scratch)
    assert Rule.RESTART_FROM_SCRATCH in found.rules_found()
    assert found.rules_found() <= {Rule.RESTART_FROM_SCRATCH, Rule.REDONE_WORK}
    restart = found.findings(Rule.RESTART_FROM_SCRATCH).get()
    assert restart.run == second.run and restart.agent.name == restart_from_scratch.NAME
    assert restart.event_id in {e.event_id for e in second.events}
    assert outcome_of(restart_from_scratch, job.workflow_id) == Outcome.RESTARTED_FROM_SCRATCH
    row = next(r for r in found.inventory if r.workflow_type == restart_from_scratch.WORKFLOW_TYPE)
    assert row.did_not_survive == 1
    assert first.run.status == "failed"


def test_the_ops_agents_call_outside_its_allow_list_is_found(quiet_live_server, session_for):
    job = run_once(out_of_scope, quiet_live_server, session_for)
    history = only_run(job.workflow_id)
    assert_complete(history)

    found = governance_of(out_of_scope)
    assert found.rules_found() == {Rule.TOOL_OUTSIDE_ALLOW_LIST}
    finding = found.findings(Rule.TOOL_OUTSIDE_ALLOW_LIST).get()
    assert (finding.run, finding.subject) == (history.run, "restart_service")
    assert finding.event_id == scheduled_call(history, "restart_service").event_id
    assert finding.detail["allowed_tools"] == sorted(out_of_scope.TOOLS)  # as registered
    assert outcome_of(out_of_scope, job.workflow_id) in SURVIVED


def test_the_billing_agents_refund_without_approval_is_found(quiet_live_server, session_for):
    job = run_once(unapproved_refund, quiet_live_server, session_for)
    history = only_run(job.workflow_id)
    assert_complete(history)

    found = governance_of(unapproved_refund)
    assert found.rules_found() == {Rule.PRIVILEGED_WITHOUT_APPROVAL}
    finding = found.findings(Rule.PRIVILEGED_WITHOUT_APPROVAL).get()
    assert (finding.run, finding.subject) == (history.run, "issue_refund")
    assert finding.event_id == scheduled_call(history, "issue_refund").event_id


def test_the_crm_sync_agents_leaked_key_is_found_and_never_shown(quiet_live_server,
                                                                   session_for):
    job = run_once(leaked_key, quiet_live_server, session_for)
    history = only_run(job.workflow_id)
    assert_complete(history)

    found = governance_of(leaked_key)
    assert found.rules_found() == {Rule.SECRET_EXPOSURE}
    finding = found.findings(Rule.SECRET_EXPOSURE).get()
    pushed = scheduled_call(history, "push_contacts")
    assert (finding.run, finding.event_id) == (history.run, pushed.event_id)
    assert {"rule": "openai_api_key", "path": "/input/args/1"} in finding.detail["findings"]
    key = leaked_key.made_up_key()
    assert key not in finding.summary and key not in str(finding.detail)


@pytest.mark.postgres
@pytest.mark.redis
def test_the_escalations_agents_claim_after_a_rejection_is_found(
    asgi_server, celery_worker_process, session_for
):
    session = session_for(test_claimed_approval.claimed_approval.NAME, asgi_server.url)
    job = test_claimed_approval.refund_job(session)
    agent = test_claimed_approval.Worker(session, job)
    request = test_support.its_request(job)
    test_support.decide(asgi_server.url, request, "reject", "Finance signs escalations off")
    agent.finish()
    test_support.sent(session)
    history = only_run(job.workflow_id)
    assert_complete(history)

    found = governance_of(test_claimed_approval.claimed_approval)
    # The claim contradicts the rejection, and the refund it led to had no granted approval.
    assert found.rules_found() == {Rule.CLAIM_CONTRADICTS_DECISION,
                                   Rule.PRIVILEGED_WITHOUT_APPROVAL}
    claim = found.findings(Rule.CLAIM_CONTRADICTS_DECISION).get()
    granted = history.of_type("approval.granted")
    assert len(granted) == 1 and claim.event_id == granted[0].event_id
    request.refresh_from_db()
    assert claim.event_ids == [request.event_id, granted[0].event_id]
    assert (claim.detail["claimed"], claim.detail["decided"]) == ("granted", "rejected")
    refund = found.findings(Rule.PRIVILEGED_WITHOUT_APPROVAL).get()
    assert refund.event_id == scheduled_call(history, "issue_refund").event_id


# --- well-behaved agents --------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
def test_nothing_is_found_on_support_with_an_approved_refund(
    asgi_server, celery_worker_process, session_for
):
    session = session_for(test_support.support.NAME, asgi_server.url)
    job = test_support.refund_job(session)
    agent = test_support.Worker(session, job)
    agent.start()
    test_support.decide(asgi_server.url, test_support.its_request(job), "approve")
    agent.finish()
    test_support.sent(session)
    history = only_run(job.workflow_id)
    assert_complete(history)
    assert "issue_refund" in history.tools_called()

    assert_nothing_found(test_support.support, job.workflow_id)


def test_nothing_is_found_on_the_research_agent(quiet_live_server, session_for):
    job = run_once(research, quiet_live_server, session_for)
    assert_complete(only_run(job.workflow_id))

    assert_nothing_found(research, job.workflow_id)


def test_nothing_is_found_on_the_digest_agents_crash_and_resume(quiet_live_server, session_for):
    session = session_for(crash_resume.NAME, quiet_live_server.url)
    job = crash_resume.job(1, session)
    crash_resume.execute(session, job)  # raises unless its first process died mid-run
    assert_complete(only_run(job.workflow_id))

    assert_nothing_found(crash_resume, job.workflow_id)
