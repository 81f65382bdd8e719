"""The misbehaving agents leave in their histories what the governance views must find: a tool
outside the agent's declared scope, a privileged tool called with no approval request, and an
API key in a tool's arguments (found by secret scanning, masked). Apart from that their runs
are complete and clean."""

from __future__ import annotations

import pytest

from access.models import Agent
from interventions.models import ApprovalPolicy, ApprovalRequest
from reference_agents import leaked_key, out_of_scope, unapproved_refund
from tests.reference_agents.histories import assert_complete, findings, only_run

pytestmark = pytest.mark.django_db(transaction=True)


def run_once(module, live_server, session_for, number: int = 0):
    session = session_for(module.NAME, live_server.url)
    job = module.job(number, session)
    module.execute(session, job)
    assert session.client.flush(timeout=30)
    history = only_run(job.workflow_id)
    assert_complete(history)
    assert findings(history) == []
    return history


def test_the_ops_agent_calls_a_tool_outside_its_declared_scope(quiet_live_server, session_for):
    history = run_once(out_of_scope, quiet_live_server, session_for)

    declared = Agent.objects.get(name=out_of_scope.NAME).allowed_tools
    assert declared == list(out_of_scope.TOOLS)
    outside = [tool for tool in history.tools_called() if tool not in declared]
    assert outside == ["restart_service"]
    assert history.run.events_with_secrets == 0


def test_the_billing_agent_refunds_without_asking(quiet_live_server, session_for):
    history = run_once(unapproved_refund, quiet_live_server, session_for)

    agent = Agent.objects.get(name=unapproved_refund.NAME)
    assert ApprovalPolicy.objects.filter(agent=agent, tool="issue_refund").exists()
    assert "issue_refund" in history.tools_called()
    assert set(history.tools_called()) <= set(agent.allowed_tools)
    assert not history.of_type("approval.requested")
    assert not ApprovalRequest.objects.filter(run=history.run).exists()
    assert history.run.events_with_secrets == 0


def test_the_crm_sync_agent_puts_an_api_key_in_a_tools_arguments(quiet_live_server, session_for):
    history = run_once(leaked_key, quiet_live_server, session_for)

    key = leaked_key.made_up_key()
    pushed = next(e for e in history.of_type("activity.scheduled")
                  if history.attributes(e)["activity_type"] == "push_contacts")
    assert history.attributes(pushed)["input"]["args"][1] == key
    assert {"rule": "openai_api_key", "path": "/input/args/1"} in pushed.secret_findings
    masked = pushed.attributes_for(raw=False)
    assert masked["input"]["args"][1] == "[REDACTED:openai_api_key]"
    assert key not in pushed.masked_attributes
    assert history.run.events_with_secrets >= 1
    assert set(history.tools_called()) <= set(leaked_key.TOOLS)
