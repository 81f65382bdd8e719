"""The server's rules for approval requests (docs/approvals.md): the bar is the stricter of the
agent's ask and the policy, only approvers decide, distinct people for each approval, nobody
decides their own request, one reject ends it, deadlines hold, and the agent's own claims about
the outcome are checked. Whatever the agent sends, ingest keeps its events."""

from __future__ import annotations

import itertools
from datetime import timedelta

import orjson
import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from access.models import Agent
from audit.models import AuditEntry
from history.models import Event, Run
from interventions import approvals
from interventions.approvals import DecisionRefused, decide, effective_bar, expire_overdue
from interventions.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest, Command
from interventions.vocabulary import RISK_ORDER, Risk
from tests.builders import event

pytest_plugins = ["tests.interventions.personas"]
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker")]

OPENAI_KEY = "sk-proj-" + "Q7vX2mK9pL4wR8tZ3nB6cF1hJ5sD0gYa"


def policy(agent, tool: str = "*", approvals: int = 1, risk: str = "low") -> ApprovalPolicy:
    return ApprovalPolicy.objects.create(
        agent=agent, tool=tool, min_approvals=approvals, min_risk=risk
    )


def decision_commands(request: ApprovalRequest) -> list[tuple[str, str]]:
    return [(c.kind, c.payload["decision"]) for c in Command.objects.filter(approval=request)]


# --- the bar: the stricter of the agent's ask and the policy --------------------------------


@pytest.mark.parametrize(
    ("policies", "asked", "expected"),
    [
        ([], ("low", 1), ("low", 1)),
        ([("*", 2, "high")], ("low", 1), ("high", 2)),
        ([("refund", 3, "critical"), ("*", 2, "medium")], ("low", 1), ("critical", 3)),
        ([("refund", 1, "low"), ("*", 2, "high")], ("low", 1), ("high", 2)),
        ([("search", 4, "critical")], ("medium", 1), ("medium", 1)),
        ([("*", 2, "medium")], ("critical", 4), ("critical", 4)),
    ],
    ids=["no policy", "any tool", "tool and any tool", "any tool stricter than the tool's",
         "another tool's policy", "the agent asks for more"],
)
def test_the_bar_is_the_stricter_of_the_agents_ask_and_each_matching_policy(
    support_agent, policies, asked, expected
):
    for tool, approvals_needed, risk in policies:
        policy(support_agent, tool, approvals_needed, risk)
    assert effective_bar(support_agent, "refund", *asked) == expected


def test_another_agents_policy_does_not_apply(support_agent, acme):
    policy(Agent.objects.create(namespace=acme, name="billing-bot"), "*", 3, "critical")
    assert effective_bar(support_agent, "refund", "low", 1) == ("low", 1)


def test_an_agent_can_raise_the_bar_but_never_lower_it(support_agent, ask_approval):
    policy(support_agent, "refund", 2, "high")
    lowered = ask_approval(action="refund", risk="low", approvals=1)
    assert (lowered.risk, lowered.required_approvals) == ("high", 2)
    assert (lowered.asked_risk, lowered.asked_approvals) == ("low", 1)
    raised = ask_approval(action="refund", risk="critical", approvals=3)
    assert (raised.risk, raised.required_approvals) == ("critical", 3)


def test_no_request_needs_more_than_five_approvals(support_agent, ask_approval):
    policy(support_agent, "*", 5, "low")
    assert ask_approval(approvals=50).required_approvals == 5


# --- who decides ------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["bob", "olga", "ivy", "charlie"],
                         ids=["viewer", "operator", "investigator", "outsider"])
def test_only_approvers_decide(request, ask_approval, persona):
    user = request.getfixturevalue(persona)
    pending = ask_approval()
    with pytest.raises(DecisionRefused) as refused:
        decide(pending, user, "approve")
    assert "approve capability" in refused.value.message
    pending.refresh_from_db()
    assert pending.state == "pending"
    assert not pending.decisions.exists() and decision_commands(pending) == []


@pytest.mark.parametrize("persona", ["dora", "alice"], ids=["approver", "admin"])
def test_an_approver_or_admin_approves_and_the_agent_is_sent_the_decision(
    request, ask_approval, persona
):
    user = request.getfixturevalue(persona)
    decided = decide(ask_approval(), user, "approve", "fine")
    assert decided.state == "approved" and decided.decided_at is not None
    (command,) = Command.objects.filter(approval=decided)
    assert command.kind == "approve" and command.requested_by == user
    assert command.payload == {
        "request_id": decided.request_id, "decision": "approved", "comment": "fine",
        "approver": persona, "approvers": [persona],
    }


def test_two_required_approvals_come_from_two_people(ask_approval, dora, alice):
    pending = ask_approval(approvals=2)
    assert decide(pending, dora, "approve").state == "pending"
    assert decision_commands(pending) == []
    with pytest.raises(DecisionRefused) as refused:
        decide(pending, dora, "approve")
    assert refused.value.message == "you have already decided this request"
    assert pending.decisions.count() == 1
    assert decide(pending, alice, "approve").state == "approved"
    assert decision_commands(pending) == [("approve", "approved")]
    assert Command.objects.get(approval=pending).payload["approvers"] == ["dora", "alice"]


def test_the_database_keeps_one_decision_per_person_and_request(ask_approval, dora):
    pending = ask_approval(approvals=2)
    ApprovalDecision.objects.create(request=pending, user=dora, decision="approve")
    with pytest.raises(IntegrityError), transaction.atomic():
        ApprovalDecision.objects.create(request=pending, user=dora, decision="approve")


@pytest.mark.parametrize("on_behalf_of", ["dora", "dora@acme.test"],
                         ids=["by user name", "by e-mail"])
def test_nobody_decides_a_request_raised_on_their_behalf(ask_approval, dora, alice, on_behalf_of):
    pending = ask_approval(on_behalf_of=on_behalf_of)
    for verdict, comment in (("approve", ""), ("reject", "no")):
        with pytest.raises(DecisionRefused) as refused:
            decide(pending, dora, verdict, comment)
        assert "on your behalf" in refused.value.message
    assert not pending.decisions.exists()
    assert decide(pending, alice, "approve").state == "approved"


def test_one_reject_ends_the_request_whatever_approvals_came_before(
    ask_approval, dora, alice, erin
):
    pending = ask_approval(approvals=2)
    decide(pending, dora, "approve")
    assert decide(pending, alice, "reject", "not this customer").state == "rejected"
    assert decision_commands(pending) == [("reject", "rejected")]
    assert Command.objects.get(approval=pending).reason == "not this customer"
    with pytest.raises(DecisionRefused) as refused:
        decide(pending, erin, "approve")
    assert refused.value.message == "the request is already rejected"
    assert decision_commands(pending) == [("reject", "rejected")]


@pytest.mark.parametrize("comment", ["", "   \n"], ids=["empty", "blank"])
def test_a_reject_needs_a_comment_for_the_agent(ask_approval, dora, comment):
    pending = ask_approval()
    with pytest.raises(DecisionRefused) as refused:
        decide(pending, dora, "reject", comment)
    assert refused.value.field == "comment"
    pending.refresh_from_db()
    assert pending.state == "pending" and not pending.decisions.exists()


def test_a_decision_is_approve_or_reject(ask_approval, dora):
    with pytest.raises(DecisionRefused) as refused:
        decide(ask_approval(), dora, "maybe")
    assert refused.value.field == "decision"


# --- deadlines --------------------------------------------------------------------------------


def overdue(request: ApprovalRequest) -> ApprovalRequest:
    ApprovalRequest.objects.filter(pk=request.pk).update(
        deadline=timezone.now() - timedelta(seconds=1)
    )
    request.refresh_from_db()
    return request


def test_a_decision_after_the_deadline_expires_the_request_and_is_refused(ask_approval, dora):
    pending = overdue(ask_approval())
    with pytest.raises(DecisionRefused) as refused:
        decide(pending, dora, "approve")
    assert "expired" in refused.value.message
    pending.refresh_from_db()
    assert pending.state == "expired" and not pending.decisions.exists()
    assert decision_commands(pending) == [("reject", "expired")]


def test_expire_overdue_expires_pending_requests_past_their_deadline_and_tells_the_agent(
    ask_approval, dora
):
    late = overdue(ask_approval())
    waiting = ask_approval()
    decided = ask_approval()
    decide(decided, dora, "approve")
    overdue(decided)

    assert expire_overdue() == 1
    late.refresh_from_db()
    assert late.state == "expired" and late.decided_at is not None
    (command,) = Command.objects.filter(approval=late)
    assert command.kind == "reject" and command.requested_by is None
    assert command.payload == {
        "request_id": late.request_id, "decision": "expired", "comment": "", "approver": None,
        "approvers": [],
    }
    assert AuditEntry.objects.filter(action="approval.expired", object_id=str(late.pk)).exists()
    waiting.refresh_from_db()
    assert waiting.state == "pending" and decision_commands(waiting) == []
    assert decision_commands(decided) == [("approve", "approved")]
    assert expire_overdue() == 0


def test_a_request_of_a_run_that_closed_expires_without_a_command(ask_approval, report):
    late = overdue(ask_approval())
    report("workflow.completed")
    assert expire_overdue() == 1
    late.refresh_from_db()
    assert late.state == "expired" and decision_commands(late) == []


# --- the agent's claims -----------------------------------------------------------------------


def test_an_agent_claiming_a_grant_nobody_gave_is_flagged(ask_approval, report):
    pending = ask_approval()
    report("approval.granted", request_id=pending.request_id)
    pending.refresh_from_db()
    assert pending.state == "pending"
    assert (pending.claimed_outcome, pending.claim_mismatch) == ("granted", True)
    assert pending.claim_event_id == Event.objects.filter(type="approval.granted").get().event_id
    assert AuditEntry.objects.filter(
        action="approval.claim_mismatch", object_id=str(pending.pk)
    ).exists()


@pytest.mark.parametrize(
    ("verdict", "comment", "claim", "mismatch"),
    [
        ("approve", "", "approval.granted", False),
        ("reject", "no", "approval.rejected", False),
        ("reject", "no", "approval.granted", True),
        ("approve", "", "approval.rejected", True),
    ],
    ids=["granted as approved", "rejected as rejected", "granted though rejected",
         "rejected though approved"],
)
def test_an_agents_claim_is_checked_against_the_decision(
    ask_approval, report, dora, verdict, comment, claim, mismatch
):
    pending = ask_approval()
    decide(pending, dora, verdict, comment)
    report(claim, request_id=pending.request_id)
    pending.refresh_from_db()
    assert pending.claim_mismatch is mismatch
    assert AuditEntry.objects.filter(action="approval.claim_mismatch").exists() is mismatch


def test_an_agent_claiming_an_expiry_that_happened_is_not_flagged(ask_approval, report):
    late = overdue(ask_approval())
    expire_overdue()
    report("approval.expired", request_id=late.request_id)
    late.refresh_from_db()
    assert (late.claimed_outcome, late.claim_mismatch) == ("expired", False)


def test_a_claim_about_an_unknown_request_changes_nothing(running_run, report):
    report("approval.granted", request_id="never-asked")
    assert not ApprovalRequest.objects.exists()
    assert Event.objects.filter(type="approval.granted").exists()


# --- what the agent sends -------------------------------------------------------------------


def test_arguments_carrying_an_api_key_are_stored_masked(ask_approval):
    pending = ask_approval(arguments={
        "note": f"use {OPENAI_KEY} for this call", "nested": [{"api_key": "Zx9Qw3Er7Ty1Ui5Op2As"}],
        "amount": 10,
    })
    assert pending.arguments == {
        "note": "use [REDACTED:openai_api_key] for this call",
        "nested": [{"api_key": "[REDACTED:generic_secret]"}],
        "amount": 10,
    }
    stored = orjson.dumps(ApprovalRequest.objects.values_list("arguments", flat=True).get())
    assert OPENAI_KEY.encode() not in stored and b"Zx9Qw3Er7Ty1Ui5Op2As" not in stored


def test_the_agents_text_carrying_a_key_is_stored_masked(support_agent, ask_approval):
    mask = "[REDACTED:openai_api_key]"
    tool = f"call_with {OPENAI_KEY}"
    policy(support_agent, tool, 2, "critical")
    pending = ask_approval(request_id=f"r-{OPENAI_KEY}", action=tool,
                           summary="x" * 1989 + " " + OPENAI_KEY, on_behalf_of=f"ops {OPENAI_KEY}")
    assert pending.action == f"call_with {mask}"
    # Masked before the cut to 2,000 characters: the key straddles it, and is still masked.
    assert pending.summary == ("x" * 1989 + " " + mask)[:2000]
    assert pending.on_behalf_of == f"ops {mask}"
    # The policy of the tool the agent named applies, and the decision must name the request
    # as the agent did, so the request id is kept as sent.
    assert (pending.risk, pending.required_approvals) == ("critical", 2)
    assert pending.request_id == f"r-{OPENAI_KEY}"
    reason = ask_approval(reason=f"key {OPENAI_KEY}")  # `reason` stands in for a summary
    assert reason.summary == f"key {mask}"


@pytest.mark.parametrize(
    ("attributes", "risk", "required"),
    [
        ({"risk": "extreme"}, "medium", 1),
        ({"risk": ["high"]}, "medium", 1),
        ({"approvals": "two"}, "medium", 1),
        ({"approvals": True}, "medium", 1),
        ({"approvals": 2.5}, "medium", 1),
        ({"approvals": 0}, "medium", 1),
        ({"approvals": -3}, "medium", 1),
        ({"risk": "extreme", "approvals": "two", "deadline": "tomorrow"}, "medium", 1),
        ({"arguments": ["not", "an", "object"]}, "medium", 1),
        ({"action": {"name": "refund"}}, "medium", 1),
    ],
    ids=["unknown risk", "risk not a string", "approvals a word", "approvals a boolean",
         "approvals a fraction", "no approvals", "negative approvals", "all at once",
         "arguments a list", "action an object"],
)
def test_malformed_attributes_fall_back_to_the_safe_side(
    running_run, report, settings, attributes, risk, required
):
    report("approval.requested", request_id="r1", **attributes)
    opened = ApprovalRequest.objects.get()
    assert (opened.risk, opened.required_approvals) == (risk, required)
    assert Event.objects.filter(type="approval.requested").exists()


@pytest.mark.parametrize(
    "deadline",
    [{"deadline": "tomorrow"}, {"deadline": "2026-02-30T10:00:00Z"}, {"deadline": 1700000000},
     {"timeout_seconds": -5}, {"timeout_seconds": "3600"}, {"timeout_seconds": True}, {}],
    ids=["a word", "an impossible date", "a number", "a negative timeout", "a timeout as text",
         "a boolean timeout", "none"],
)
def test_an_unusable_deadline_falls_back_to_the_default(running_run, report, settings, deadline):
    before = timezone.now()
    report("approval.requested", request_id="r1", **deadline)
    opened = ApprovalRequest.objects.get()
    default = timedelta(seconds=settings.APPROVAL_DEFAULT_TIMEOUT_SECONDS)
    assert before + default <= opened.deadline <= timezone.now() + default


@pytest.mark.parametrize(
    "deadline",
    [{"deadline": "9999-12-31T23:59:59Z"}, {"timeout_seconds": 10**12},
     {"timeout_seconds": 1e300}],
    ids=["far in the future", "a huge timeout", "a huge fractional timeout"],
)
def test_a_deadline_beyond_the_longest_allowed_is_cut_to_it(
    running_run, report, settings, deadline
):
    before = timezone.now()
    report("approval.requested", request_id="r1", **deadline)
    opened = ApprovalRequest.objects.get()
    longest = timedelta(seconds=settings.APPROVAL_MAX_TIMEOUT_SECONDS)
    assert before + longest <= opened.deadline <= timezone.now() + longest


def test_a_deadline_already_past_makes_the_request_due_at_once(running_run, report):
    report("approval.requested", request_id="r1", deadline="2020-01-01T00:00:00Z")
    opened = ApprovalRequest.objects.get()
    assert opened.is_overdue
    assert expire_overdue() == 1


def test_a_repeated_request_id_opens_one_request(ask_approval, report):
    first = ask_approval(action="refund")
    report("approval.requested", request_id=first.request_id, action="delete_account")
    assert ApprovalRequest.objects.get().action == "refund"


def test_a_request_without_an_id_is_named_after_its_event(running_run, report):
    report("approval.requested", action="refund")
    assert ApprovalRequest.objects.get().request_id == "event-3"


# Whatever the agent puts in an approval.requested event, its event is stored and a request is
# opened within the server's bounds.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=6,
)
KNOWN = {
    "request_id": JSON, "action": JSON, "tool": JSON, "summary": JSON, "reason": JSON,
    "on_behalf_of": JSON, "arguments": JSON,
    "risk": st.sampled_from(Risk.values) | JSON,
    "approvals": st.integers(-10, 10) | JSON,
    "deadline": st.sampled_from(
        ["2026-11-01T09:00:00Z", "2999-01-01T00:00:00+14:00", "0001-01-01T00:30:00+01:00"]
    ) | JSON,
    "timeout_seconds": st.integers(-10, 10**6) | JSON,
}
_workflows = itertools.count(1)


@given(attributes=st.fixed_dictionaries({}, optional=KNOWN))
@hypothesis_settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_approval_request_is_stored_and_opened_within_the_servers_bounds(
    ingest, agent_token, settings, attributes
):
    workflow_id = f"wf-any-{next(_workflows)}"
    before = timezone.now()
    response = ingest(agent_token, [event(1, "approval.requested", workflow_id=workflow_id,
                                          attributes=attributes)])
    assert response.status_code == 200, response.content
    run = Run.objects.get(workflow_id=workflow_id)
    assert run.events.filter(type="approval.requested").exists()
    opened = ApprovalRequest.objects.get(run=run)
    assert opened.state == "pending"
    assert opened.risk in Risk.values and opened.asked_risk in Risk.values
    assert RISK_ORDER[opened.risk] >= RISK_ORDER[opened.asked_risk]
    assert 1 <= opened.asked_approvals <= opened.required_approvals <= approvals.MAX_APPROVALS
    longest = timedelta(seconds=settings.APPROVAL_MAX_TIMEOUT_SECONDS)
    assert before <= opened.deadline <= timezone.now() + longest


@pytest.mark.parametrize(
    "attributes",
    [{"arguments": {"note": "a\x00b"}}, {"summary": "nul\x00here"}, {"action": "re\x00fund"},
     {"on_behalf_of": "do\x00ra"}, {"request_id": "r\x001"}, {"arguments": {"k\x00ey": 1}}],
    ids=["in arguments", "in the summary", "in the action", "in on_behalf_of",
         "in the request id", "in an argument's name"],
)
def test_a_nul_character_anywhere_still_opens_the_request(running_run, report, attributes):
    # PostgreSQL's text and jsonb cannot hold NUL: it is stored as U+FFFD.
    report("approval.requested", **attributes)
    opened = ApprovalRequest.objects.get(run=running_run)
    stored = orjson.dumps([opened.request_id, opened.action, opened.summary,
                           opened.on_behalf_of, opened.arguments]).decode()
    assert "\ufffd" in stored and "\x00" not in stored


def test_a_claim_naming_a_request_id_with_a_nul_finds_its_request(running_run, report):
    report("approval.requested", request_id="r\x001")
    report("approval.granted", request_id="r\x001")
    assert ApprovalRequest.objects.get(run=running_run).claimed_outcome == "granted"
