"""Findings made as events are stored (governance.detection), on streams built the way the SDK
emits them and ingested through the API with the agent's token: each misbehaviour is found,
a well-behaved stream yields nothing."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from access.models import Agent, Token
from governance.findings import for_namespace
from governance.models import Finding, PrivilegedCall, WorkflowCheck
from governance.vocabulary import Rule
from history.ingest import ingest_batch
from history.models import Event
from interventions.approvals import decide
from interventions.models import ApprovalPolicy, ApprovalRequest
from tests.governance.streams import Stream

pytest_plugins = ["tests.interventions.personas"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker")]

OPENAI_KEY = "sk-proj-" + "Q7vX2mK9pL4wR8tZ3nB6cF1hJ5sD0gYa"


def found(namespace, rule: str = "") -> list[Finding]:
    return list(for_namespace(namespace).findings(rule).order_by("event_id", "id"))


def approve(run, request_id: str, approver) -> ApprovalRequest:
    request = ApprovalRequest.objects.get(run=run, request_id=request_id)
    return decide(request, approver, "approve", "fine")


def well_behaved(send, token, approver, *, workflow_id="wf-good") -> Stream:
    """Searches, reads the customer, asks for the refund, waits for the decision, claims it
    truthfully, refunds, e-mails, completes."""
    stream = Stream(workflow_id).start()
    stream.call("search_kb", {"q": "refund policy"})
    stream.call("get_customer", {"id": "C-1"}, kind="tool")
    stream.call("plan", {"prompt": "what next"}, kind="llm")
    stream.ask("refund-1", "issue_refund", {"amount": 30})
    run = send(token, stream)
    approve(run, "refund-1", approver)
    stream.claim("refund-1", "granted")
    stream.call("issue_refund", {"amount": 30})
    stream.call("send_email", {"to": "customer"}, attempts=2)
    stream.finish()
    send(token, stream)
    return stream


# --- a well-behaved agent ------------------------------------------------------------------------


def test_a_well_behaved_stream_yields_nothing(acme, send, support_token, approver):
    well_behaved(send, support_token, approver)

    report = for_namespace(acme)

    assert report.rules_found() == set()
    assert list(report.findings()) == []
    (judged,) = PrivilegedCall.objects.all()
    assert (judged.tool, judged.approval.request_id) == ("issue_refund", "refund-1")


def test_a_call_spread_over_batches_is_judged_once(acme, ingest, support_bot):
    token = Token.issue(agent=support_bot)[1]
    Agent.objects.filter(pk=support_bot.pk).update(allowed_tools=["search_kb"])
    stream = Stream().start()
    stream.call("issue_refund", {"amount": 5}, attempts=2)
    for event in stream.take():  # one event per batch: scheduled, each attempt, completed
        assert ingest(token, [event]).status_code == 200

    assert [f.rule for f in found(acme)] == [Rule.TOOL_OUTSIDE_ALLOW_LIST,
                                              Rule.PRIVILEGED_WITHOUT_APPROVAL]
    assert PrivilegedCall.objects.count() == 1


def test_a_completion_that_arrives_before_its_scheduled_event_is_the_same_call(
    acme, ingest, support_token
):
    stream = Stream().start()
    stream.call("delete_account", {"id": "C-9"})
    started, scheduled, attempt, completed = stream.take()
    assert ingest(support_token, [started, completed]).status_code == 200
    assert ingest(support_token, [scheduled, attempt]).status_code == 200

    (finding,) = found(acme, Rule.TOOL_OUTSIDE_ALLOW_LIST)
    assert finding.key == f"call:{scheduled['event_id']}"


# --- tools outside the allow-list --------------------------------------------------------------


def test_a_tool_outside_the_allow_list_is_found(acme, send, support_token):
    stream = Stream().start()
    stream.call("search_kb", {"q": "x"})
    outside = stream.call("shell_exec", {"cmd": "rm -rf /tmp/x"})
    stream.call("summarise", {"text": "..."}, kind="llm")  # not a tool: not judged
    stream.finish()
    run = send(support_token, stream)

    (finding,) = found(acme)
    assert (finding.rule, finding.run, finding.event_id, finding.subject) == (
        Rule.TOOL_OUTSIDE_ALLOW_LIST, run, outside, "shell_exec"
    )
    assert "shell_exec" in finding.summary
    assert finding.detail["allowed_tools"] == sorted(
        ["search_kb", "get_customer", "issue_refund", "send_email"]
    )


def test_an_agent_without_an_allow_list_is_reported_as_undeclared(acme, alice, send):
    agent = Agent.objects.create(namespace=acme, name="free-bot", owner_user=alice)
    stream = Stream().start()
    stream.call("anything_at_all")
    stream.call("something_else")
    send(Token.issue(agent=agent)[1], stream)

    report = for_namespace(acme, days=30)

    assert report.rules_found() == {Rule.TOOLS_UNDECLARED}
    (undeclared,) = report.agent_findings
    assert (undeclared.agent, undeclared.recent_runs) == (agent, 1)


# --- privileged tools and approvals ---------------------------------------------------------------


def test_a_privileged_tool_without_any_approval_is_found(acme, send, support_token):
    stream = Stream().start()
    refund = stream.call("issue_refund", {"amount": 900})
    stream.finish()
    send(support_token, stream)

    (finding,) = found(acme)
    assert (finding.rule, finding.event_id, finding.subject) == (
        Rule.PRIVILEGED_WITHOUT_APPROVAL, refund, "issue_refund"
    )


def test_the_agents_claim_is_no_approval(acme, send, support_token):
    """It asks, never waits for the decision, claims it was granted and refunds."""
    stream = Stream().start()
    stream.ask("refund-1", "issue_refund", {"amount": 900})
    stream.claim("refund-1", "granted")
    refund = stream.call("issue_refund", {"amount": 900})
    send(support_token, stream)

    assert [(f.rule, f.event_id) for f in found(acme)] == [
        (Rule.CLAIM_CONTRADICTS_DECISION, 3), (Rule.PRIVILEGED_WITHOUT_APPROVAL, refund),
    ]
    claim = found(acme, Rule.CLAIM_CONTRADICTS_DECISION)[0]
    assert claim.detail == {"claimed": "granted", "decided": "pending", "request_id": "refund-1"}
    assert claim.event_ids == [2, 3]  # the claim, and the request it names
    assert ApprovalRequest.objects.get().claim_mismatch  # interventions' own flag agrees


def test_an_approval_decided_after_the_call_does_not_cover_it(acme, send, support_token,
                                                             approver):
    stream = Stream().start()
    stream.ask("refund-1", "issue_refund")
    stream.call("issue_refund", {"amount": 1})
    run = send(support_token, stream)
    approve(run, "refund-1", approver)

    assert [f.rule for f in found(acme)] == [Rule.PRIVILEGED_WITHOUT_APPROVAL]


def test_a_rejected_request_covers_nothing(acme, send, support_token, approver):
    stream = Stream().start()
    stream.ask("refund-1", "issue_refund")
    run = send(support_token, stream)
    decide(ApprovalRequest.objects.get(run=run), approver, "reject", "too much")
    stream.claim("refund-1", "rejected")
    stream.call("issue_refund", {"amount": 1})
    send(support_token, stream)

    assert [f.rule for f in found(acme)] == [Rule.PRIVILEGED_WITHOUT_APPROVAL]


def test_an_approval_for_another_tool_covers_nothing(acme, send, support_token, approver):
    stream = Stream().start()
    stream.ask("mail-1", "send_email")
    run = send(support_token, stream)
    approve(run, "mail-1", approver)
    stream.call("issue_refund", {"amount": 1})
    send(support_token, stream)

    assert [f.subject for f in found(acme, Rule.PRIVILEGED_WITHOUT_APPROVAL)] == ["issue_refund"]


def test_one_approval_covers_one_call(acme, send, support_token, approver):
    stream = Stream().start()
    stream.ask("refund-1", "issue_refund")
    run = send(support_token, stream)
    approve(run, "refund-1", approver)
    stream.call("issue_refund", {"amount": 10})
    second = stream.call("issue_refund", {"amount": 10_000})
    send(support_token, stream)

    assert [(f.rule, f.event_id) for f in found(acme)] == [
        (Rule.PRIVILEGED_WITHOUT_APPROVAL, second)
    ]


def test_an_agent_marked_privileged_needs_approval_only_for_its_policies_tools(
    acme, send, support_bot
):
    Agent.objects.filter(pk=support_bot.pk).update(privileged=True)
    stream = Stream().start()
    stream.call("search_kb", {"q": "x"})
    stream.call("issue_refund", {"amount": 10})
    send(Token.issue(agent=support_bot)[1], stream)

    assert [f.subject for f in found(acme, Rule.PRIVILEGED_WITHOUT_APPROVAL)] == ["issue_refund"]


def test_a_policy_for_every_tool_makes_every_tool_privileged(acme, send, support_bot):
    ApprovalPolicy.objects.create(agent=support_bot, tool="*")
    stream = Stream().start()
    stream.call("get_customer", {"id": 1})
    send(Token.issue(agent=support_bot)[1], stream)

    assert [f.subject for f in found(acme, Rule.PRIVILEGED_WITHOUT_APPROVAL)] == ["get_customer"]


def test_a_tool_without_a_policy_needs_no_approval(acme, send, support_token):
    stream = Stream().start()
    stream.call("send_email", {"to": "x"})
    send(support_token, stream)

    assert found(acme) == []


# --- claims -----------------------------------------------------------------------------------


def test_a_claim_of_rejection_against_an_approval_is_found(acme, send, support_token, approver):
    stream = Stream().start()
    stream.ask("refund-1", "issue_refund")
    run = send(support_token, stream)
    approve(run, "refund-1", approver)
    claim = stream.claim("refund-1", "rejected")
    send(support_token, stream)

    (finding,) = found(acme)
    assert (finding.rule, finding.event_id, finding.subject) == (
        Rule.CLAIM_CONTRADICTS_DECISION, claim, "issue_refund"
    )
    assert "Flightdeck's decision is approved" in finding.summary


def test_a_claim_about_a_request_that_does_not_exist_is_found(acme, send, support_token):
    stream = Stream().start()
    claim = stream.claim("never-asked", "granted")
    send(support_token, stream)

    (finding,) = found(acme)
    assert (finding.rule, finding.event_id) == (Rule.CLAIM_CONTRADICTS_DECISION, claim)
    assert finding.detail["decided"] is None
    assert "no such request" in finding.summary


# --- secrets ------------------------------------------------------------------------------------


def test_an_api_key_in_a_tools_arguments_is_found_without_the_key(acme, send, support_token):
    stream = Stream().start()
    leaked = stream.call("search_kb", {"q": "refunds", "api_key": OPENAI_KEY,
                                       "headers": {"Authorization": f"Bearer {OPENAI_KEY}"}})
    send(support_token, stream)

    (finding,) = found(acme)
    assert (finding.rule, finding.event_id) == (Rule.SECRET_EXPOSURE, leaked)
    assert {(f["rule"], f["path"]) for f in finding.detail["findings"]} == {
        ("openai_api_key", "/input/api_key"), ("openai_api_key", "/input/headers/Authorization"),
    }
    assert "openai_api_key at /input/api_key" in finding.summary
    everything = f"{finding.summary}{finding.subject}{finding.detail}"
    assert OPENAI_KEY not in everything and OPENAI_KEY[8:20] not in everything


# --- owners ---------------------------------------------------------------------------------------


def test_an_agent_without_an_owner_and_its_runs_are_found(acme, send, support_bot):
    Agent.objects.filter(pk=support_bot.pk).update(owner_user=None)
    token = Token.issue(agent=support_bot)[1]
    for n in range(3):
        send(token, Stream(f"wf-{n}").start())

    report = for_namespace(acme, days=30)

    assert report.rules_found() == {Rule.AGENT_WITHOUT_OWNER}
    assert report.runs_without_owner == 3


def test_a_group_owner_is_an_owner(acme, send, support_bot):
    from django.contrib.auth.models import Group

    Agent.objects.filter(pk=support_bot.pk).update(
        owner_user=None, owner_group=Group.objects.create(name="support-team")
    )

    assert for_namespace(acme).rules_found() == set()


# --- robustness -----------------------------------------------------------------------------------


def test_a_failure_in_detection_never_costs_the_agent_its_events(send, support_token,
                                                                 monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("detection exploded")

    monkeypatch.setattr("governance.detection.examine_batch", broken)
    stream = Stream().start()
    stream.call("shell_exec")

    run = send(support_token, stream)

    assert Event.objects.filter(run=run).count() == 4
    assert "governance could not examine" in caplog.text
    assert not Finding.objects.exists()
    # The durability check is still due: its mark is not rolled back with detection.
    assert WorkflowCheck.objects.filter(workflow_id=run.workflow_id, due=True).exists()


def test_another_namespaces_runs_are_not_in_this_namespaces_findings(acme, globex, send):
    agent = Agent.objects.create(namespace=globex, name="research-bot", allowed_tools=["web"])
    stream = Stream().start()
    stream.call("shell_exec")
    send(Token.issue(agent=agent)[1], stream)

    assert for_namespace(globex).rules_found() == {Rule.AGENT_WITHOUT_OWNER,
                                                   Rule.TOOL_OUTSIDE_ALLOW_LIST}
    assert for_namespace(acme).rules_found() == set()


# --- batches of several runs ----------------------------------------------------------------------


def test_one_batch_of_several_runs_judges_each_run_by_its_own_approvals_and_claims(
    acme, ingest, send, support_token, approver
):
    covered, uncovered = Stream("wf-a", "run-a").start(), Stream("wf-b", "run-b").start()
    covered.ask("refund-1", "issue_refund")
    uncovered.ask("refund-1", "issue_refund")  # the same request id, in another run
    run_a, run_b = send(support_token, covered), send(support_token, uncovered)
    approve(run_a, "refund-1", approver)
    covered.claim("refund-1")
    covered.call("issue_refund", {"amount": 1})
    uncovered.claim("refund-1")  # still pending in its run
    refund = uncovered.call("issue_refund", {"amount": 1})
    uncovered.call("shell_exec")

    response = ingest(support_token, covered.take() + uncovered.take())

    assert response.status_code == 200, response.content
    assert sorted((f.run_id, f.rule) for f in found(acme)) == [
        (run_b.pk, Rule.CLAIM_CONTRADICTS_DECISION),
        (run_b.pk, Rule.PRIVILEGED_WITHOUT_APPROVAL),
        (run_b.pk, Rule.TOOL_OUTSIDE_ALLOW_LIST),
    ]
    assert found(acme, Rule.PRIVILEGED_WITHOUT_APPROVAL)[0].event_id == refund
    assert PrivilegedCall.objects.get(run=run_a).approval.request_id == "refund-1"
    assert PrivilegedCall.objects.get(run=run_b).approval is None


def governance_queries(ingest, token, events) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert ingest(token, events).status_code == 200
    return [q["sql"] for q in queries.captured_queries
            if "governance_" in q["sql"] or "approvalpolicy" in q["sql"]]


def test_detection_costs_the_same_queries_for_one_run_or_many(acme, ingest, support_token):
    def streams(n: int, prefix: str) -> list[dict]:
        events = []
        for i in range(n):
            stream = Stream(f"{prefix}-{i}").start()
            stream.call("issue_refund", {"amount": 1})
            stream.call("shell_exec")
            events += stream.take()
        return events

    one = governance_queries(ingest, support_token, streams(1, "one"))
    many = governance_queries(ingest, support_token, streams(4, "many"))

    # the checks, the policies, three for privileged calls, three to store the findings
    assert len(many) == len(one) == 8
    assert len(found(acme, Rule.PRIVILEGED_WITHOUT_APPROVAL)) == 5
    assert len(found(acme, Rule.TOOL_OUTSIDE_ALLOW_LIST)) == 5


def test_the_allow_list_is_read_as_it_stands_when_the_call_is_stored(acme, support_bot):
    token, _ = Token.issue(agent=support_bot)
    assert "get_customer" in token.agent.allowed_tools  # loaded, as a long follow session's
    Agent.objects.filter(pk=support_bot.pk).update(allowed_tools=["search_kb"])
    stream = Stream().start()
    stream.call("get_customer", {"id": 1})

    ingest_batch(token, stream.take(), max_attributes_bytes=256 * 1024)

    assert [f.subject for f in found(acme, Rule.TOOL_OUTSIDE_ALLOW_LIST)] == ["get_customer"]
