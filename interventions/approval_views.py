"""The approvals inbox: the pending requests a person may decide, soonest deadline first, each
with what the agent asks, its run's latest steps and the decisions so far; then what was
decided lately.

Every decision goes through `interventions.approvals.decide`, which holds the rules (approvers
only, distinct people, nobody decides on their own behalf, one reject ends it). This module
only shows requests, reads the form and answers with the outcome: with htmx, the request's card
alone; without, a redirect back to the inbox (or the inbox with the refusal, when refused).
"""

from __future__ import annotations

import orjson
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from access.models import Namespace
from access.roles import Capability
from history.models import Event, Run
from interventions import approvals
from interventions.models import ApprovalDecision, ApprovalRequest
from interventions.vocabulary import ApprovalState, Decision

INBOX = "interventions/approvals.html"
PENDING_SHOWN = 50  # the soonest deadlines; deciding them brings the next ones up
SETTLED_SHOWN = 20
RECENT_STEPS = 5
# Sent with every decision, so that the nav's count of waiting requests refreshes itself.
CHANGED_EVENT = "approvals-changed"


def _with_decisions(requests):
    return requests.prefetch_related(
        Prefetch("decisions", queryset=ApprovalDecision.objects.select_related("user"))
    )


def get_approval_for(user, approval_id) -> ApprovalRequest:
    """A request of a run the user may see (404 otherwise, so that other tenants' ids are never
    confirmed). Whether they may decide it is `approvals.decide`'s question."""
    request = (
        _with_decisions(ApprovalRequest.objects.select_related("run__agent", "run__namespace"))
        .filter(pk=approval_id, run__in=Run.objects.visible_to(user))
        .first()
    )
    if request is None:
        raise Http404("No such approval request.")
    return request


def recent_steps(runs) -> dict[int, list[Event]]:
    """The latest events of each run, newest first, in one query whatever the number of runs:
    each run contributes an index range of (run, event_id) above its last event id minus
    RECENT_STEPS. A run with a gap there shows fewer steps; that is all this costs."""
    window = Q()
    for run in runs:
        window |= Q(run_id=run.pk, event_id__gt=run.last_event_id - RECENT_STEPS)
    if not window:
        return {}
    steps: dict[int, list[Event]] = {}
    events = Event.objects.filter(window).only(
        "run_id", "event_id", "type", "time", "time_text", "attributes", "masked_attributes",
        "secret_findings",
    )
    for event in events.order_by("run_id", "-event_id"):
        steps.setdefault(event.run_id, []).append(event)
    return steps


def card(user, request: ApprovalRequest, steps: list[Event], *, error: str = "",
         comment: str = "") -> dict:
    """What one request's card shows. `request` comes with its run and decisions loaded."""
    decisions = list(request.decisions.all())
    blocked = ""
    if request.state == ApprovalState.PENDING:
        if approvals.raised_on_behalf_of(request, user):
            blocked = "Raised on your behalf: someone else must decide it."
        elif any(decision.user_id == user.pk for decision in decisions):
            blocked = "You have decided; it waits for another approver."
    return {
        "request": request,
        "arguments": orjson.dumps(request.arguments, option=orjson.OPT_INDENT_2).decode(),
        "decisions": decisions,
        "approvals": sum(1 for d in decisions if d.decision == Decision.APPROVE),
        "steps": steps,
        "blocked": blocked,
        "error": error,
        "comment": comment,
    }


def inbox_context(user, *, refused: ApprovalRequest | None = None, error: str = "",
                  comment: str = "") -> dict:
    pending = list(_with_decisions(ApprovalRequest.objects.decidable_by(user))[:PENDING_SHOWN + 1])
    more = len(pending) > PENDING_SHOWN
    pending = pending[:PENDING_SHOWN]
    steps = recent_steps({request.run for request in pending})
    approvable = Namespace.objects.visible_to(user, Capability.APPROVE)
    settled = _with_decisions(
        ApprovalRequest.objects.filter(run__namespace__in=approvable)
        .select_related("run__agent", "run__namespace")
        .settled()
    )[:SETTLED_SHOWN]
    cards = []
    for request in pending:
        mine = refused is not None and request.pk == refused.pk
        cards.append(card(user, request, steps.get(request.run_id, []),
                          error=error if mine else "", comment=comment if mine else ""))
    return {"cards": cards, "more": more, "settled": settled, "error": error}


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    return render(request, INBOX, inbox_context(request.user))


@login_required
@require_POST
def decide(request: HttpRequest, approval_id) -> HttpResponse:
    """Approve or reject (the pressed button's `decision`), with an optional comment (required
    to reject: the agent receives it)."""
    target = get_approval_for(request.user, approval_id)
    decision = request.POST.get("decision", "")
    comment = request.POST.get("comment", "")
    try:
        decided = approvals.decide(target, request.user, decision, comment, http=request)
    except approvals.DecisionRefused as exc:
        decided, refusal, status = None, exc.message, exc.http_status
    else:
        refusal, status = "", 200
    if request.htmx:
        target = get_approval_for(request.user, approval_id)
        steps = recent_steps([target.run]).get(target.run_id, [])
        context = {"card": card(request.user, target, steps, error=refusal,
                                comment=comment if refusal else "")}
        response = render(request, f"{INBOX}#card", context, status=status)
        return response if refusal else trigger_client_event(response, CHANGED_EVENT)
    if refusal:
        context = inbox_context(request.user, refused=target, error=refusal, comment=comment)
        return render(request, INBOX, context, status=status)
    messages.success(request, _outcome(decided, decision))
    return redirect("approvals")


def _outcome(request: ApprovalRequest, decision: str) -> str:
    if request.state == ApprovalState.APPROVED:
        return f"Approved {request.action}: the agent is told."
    if request.state == ApprovalState.REJECTED:
        return f"Rejected {request.action}: the agent is told, with your comment."
    return f"Your {decision} of {request.action} is recorded; it needs another approver."


@login_required
@require_GET
def waiting_count(request: HttpRequest) -> HttpResponse:
    """The number of requests waiting for this user's decision, for the nav (loaded after the
    page, so that no page pays a query for it)."""
    count = (
        ApprovalRequest.objects.decidable_by(request.user)
        .exclude(decisions__user=request.user)
        .exclude(on_behalf_of__in=list(approvals.identities_of(request.user)))
        .count()
    )
    return render(request, f"{INBOX}#waiting-count", {"count": count})
