"""Approval requests: opened by an agent's event, decided by people under the server's rules,
expired by the sweeper. The decision reaches the agent as an approve or reject command.

Rules (docs/approvals.md): approvers only; the required number of approvals comes from distinct
people; nobody decides a request raised on their own behalf; one reject ends the request; a
decision and the expiry both take the request's row lock, so a decision racing the deadline has
exactly one outcome.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from access.permissions import has_capability
from access.roles import Capability
from audit.log import record
from history.models import Run
from history.secrets import scan
from history.wire import parse_time
from interventions.commands import create_command
from interventions.models import ApprovalDecision, ApprovalPolicy, ApprovalRequest
from interventions.vocabulary import RISK_ORDER, ApprovalState, CommandKind, Decision, Risk

log = logging.getLogger(__name__)

MAX_APPROVALS = 5


class DecisionRefused(Exception):
    """A decision that is not taken. `field` names what is wrong; `status` says what kind of
    refusal it is, so every caller answers alike: FORBIDDEN (this person may not decide it),
    CONFLICT (the request's state or an earlier decision stands in the way), INVALID (the
    input itself is wrong)."""

    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    INVALID = "invalid"

    def __init__(self, field: str, message: str, status: str = CONFLICT):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status

    @property
    def http_status(self) -> int:
        """What the inbox and the API answer with, so both refuse alike."""
        return {self.FORBIDDEN: 403, self.CONFLICT: 409, self.INVALID: 400}[self.status]


def effective_bar(agent, action: str, asked_risk: str, asked_approvals: int) -> tuple[str, int]:
    """The stricter of what the agent asked and the policies for this agent and tool."""
    risk, approvals = asked_risk, asked_approvals
    for policy in ApprovalPolicy.objects.filter(
        agent=agent, tool__in=[action, ApprovalPolicy.ANY_TOOL]
    ):
        if RISK_ORDER[policy.min_risk] > RISK_ORDER[risk]:
            risk = policy.min_risk
        approvals = max(approvals, policy.min_approvals)
    return risk, min(approvals, MAX_APPROVALS)


def open_from_event(run: Run, event) -> ApprovalRequest | None:
    """Create the request for an `approval.requested` event (once: a repeat is ignored; none
    for a run already closed when the event is stored).

    Attributes read: request_id (required), action or tool, arguments, risk, approvals,
    on_behalf_of, summary, deadline (RFC 3339) or timeout_seconds. Anything unusable falls back
    to the safe side (medium risk, one approval, the default deadline).

    The agent's text copied into the request (action, arguments, summary, on_behalf_of) is
    stored with secrets masked, exactly as the event's masked attributes show them: the inbox,
    the API, notifications and the run page show the request to people who may not see the raw
    event. Masked before it is cut to length, so a cut cannot hide a secret from the scanner.
    The request id is kept as sent: the decision must name it for the agent to match it."""
    if run.is_closed:
        # The run had already ended when its request arrived (a history imported or sent
        # after the fact): nobody could deliver a decision, so no one is asked for one.
        return None
    attributes = _storable(event.attributes)
    request_id = str(attributes.get("request_id") or f"event-{event.event_id}")[:200]
    if ApprovalRequest.objects.filter(run=run, request_id=request_id).exists():
        return None
    _, masked = scan(attributes)
    shown = attributes if masked is None else masked
    asked_risk = attributes.get("risk")
    if asked_risk not in Risk.values:
        asked_risk = Risk.MEDIUM
    asked_approvals = attributes.get("approvals", 1)
    if not isinstance(asked_approvals, int) or isinstance(asked_approvals, bool):
        asked_approvals = 1
    asked_approvals = min(max(asked_approvals, 1), MAX_APPROVALS)
    arguments = shown.get("arguments", {})
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    # The policies are those of the tool the agent named, even if its name had to be masked.
    tool = str(attributes.get("action") or attributes.get("tool") or "action")[:200]
    risk, required = effective_bar(run.agent, tool, asked_risk, asked_approvals)
    request = ApprovalRequest.objects.create(
        run=run,
        request_id=request_id,
        event_id=event.event_id,
        action=str(shown.get("action") or shown.get("tool") or "action")[:200],
        arguments=arguments,
        summary=str(shown.get("summary") or shown.get("reason") or "")[:2000],
        on_behalf_of=str(shown.get("on_behalf_of") or "")[:200],
        asked_risk=asked_risk,
        asked_approvals=asked_approvals,
        risk=risk,
        required_approvals=required,
        deadline=_deadline(attributes),
    )
    transaction.on_commit(lambda: _notify_later("approval_requested", request.pk))
    return request


def _storable(value):
    """`value` with each NUL character replaced by U+FFFD. PostgreSQL's text and jsonb cannot
    hold NUL, and a request that could not be stored would never reach an approver. (Ingest
    refuses attributes nested deeper than orjson's limit, so the recursion is bounded.)"""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


def _deadline(attributes: dict) -> datetime:
    now = timezone.now()
    default = now + timedelta(seconds=settings.APPROVAL_DEFAULT_TIMEOUT_SECONDS)
    longest = now + timedelta(seconds=settings.APPROVAL_MAX_TIMEOUT_SECONDS)
    value = attributes.get("deadline")
    if isinstance(value, str):
        try:
            return min(max(parse_time(value), now), longest)
        except Exception:  # an unusable deadline: the default applies
            return default
    seconds = attributes.get("timeout_seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        # Cut before adding: a huge timeout would overflow the date and lose the request.
        return now + timedelta(seconds=min(seconds, settings.APPROVAL_MAX_TIMEOUT_SECONDS))
    return default


def may_decide(request: ApprovalRequest, user) -> str | None:
    """Why `user` may not decide this request now, or None."""
    refusal = _refusal(request, user)
    return refusal.message if refusal else None


def _refusal(request: ApprovalRequest, user) -> DecisionRefused | None:
    if not has_capability(user, request.run.namespace_id, Capability.APPROVE):
        return DecisionRefused(
            "decision", "deciding needs the approve capability in this namespace",
            DecisionRefused.FORBIDDEN,
        )
    if raised_on_behalf_of(request, user):
        return DecisionRefused(
            "decision", "this request was raised on your behalf; someone else must decide it",
            DecisionRefused.FORBIDDEN,
        )
    if request.decisions.filter(user=user).exists():
        return DecisionRefused("decision", "you have already decided this request")
    return None


def raised_on_behalf_of(request: ApprovalRequest, user) -> bool:
    """Whether the request names `user` (by user name or e-mail) as the one it acts for."""
    return bool(request.on_behalf_of) and request.on_behalf_of in identities_of(user)


def identities_of(user) -> set[str]:
    """The names a request's `on_behalf_of` may give for `user`: user name and e-mail."""
    return {value for value in (user.get_username(), getattr(user, "email", "")) if value}


def decide(request: ApprovalRequest, user, decision: str, comment: str = "", *, http=None):
    """Record one person's decision; when it settles the request, send the decision to the
    agent as a command. Returns the request as it is after the decision."""
    if decision not in Decision.values:
        raise DecisionRefused("decision", "must be approve or reject", DecisionRefused.INVALID)
    comment = (comment or "").strip()[:2000]
    if decision == Decision.REJECT and not comment:
        raise DecisionRefused(
            "comment", "a comment is required to reject (the agent gets it)",
            DecisionRefused.INVALID,
        )
    with transaction.atomic():
        # The row lock orders racing decisions and the expiry: each sees the other's outcome.
        request = (
            ApprovalRequest.objects.select_for_update()
            .select_related("run", "run__namespace", "run__agent")
            .get(pk=request.pk)
        )
        if request.state != ApprovalState.PENDING:
            raise DecisionRefused("decision", f"the request is already {request.state}")
        if request.deadline <= timezone.now():
            # Expire now (committed below) rather than leave it for the sweeper; the decision
            # is refused either way.
            _expire_locked(request)
            expired = True
        else:
            expired = False
            _record_decision(request, user, decision, comment, http)
    if expired:
        raise DecisionRefused("decision", "the request expired before this decision")
    return request


def _record_decision(request, user, decision: str, comment: str, http) -> None:
    """Add one decision under the caller's row lock; settle the request if it is decisive."""
    refusal = _refusal(request, user)
    if refusal:
        raise refusal
    ApprovalDecision.objects.create(
        request=request, user=user, decision=decision, comment=comment
    )
    before = request.state
    approvals = request.decisions.filter(decision=Decision.APPROVE).count()
    if decision == Decision.REJECT:
        _settle(request, ApprovalState.REJECTED, CommandKind.REJECT, user, comment)
    elif approvals >= request.required_approvals:
        _settle(request, ApprovalState.APPROVED, CommandKind.APPROVE, user, comment)
    record(
        "approval.decided", actor=user, request=http, namespace=request.run.namespace,
        obj=request, object_repr=f"{request.action} on {request.run.workflow_id}",
        before={"state": before},
        after={"decision": decision, "comment": comment, "state": request.state,
               "approvals": approvals, "required": request.required_approvals},
    )


def _settle(request, state: str, kind: str, user, comment: str) -> None:
    request.state = state
    request.decided_at = timezone.now()
    request.save(update_fields=["state", "decided_at"])
    deciders = list(request.decisions.select_related("user").order_by("created_at"))
    payload = {
        "request_id": request.request_id,
        "decision": {"approved": "approved", "rejected": "rejected"}.get(state, state),
        "comment": comment,
        "approver": user.get_username() if user else None,
        "approvers": [d.user.get_username() for d in deciders if d.decision == Decision.APPROVE],
    }
    if not request.run.is_closed:
        create_command(
            request.run, kind, requested_by=user, reason=comment, payload=payload,
            approval=request,
        )


def _expire_locked(request: ApprovalRequest) -> None:
    request.state = ApprovalState.EXPIRED
    request.decided_at = timezone.now()
    request.save(update_fields=["state", "decided_at"])
    if not request.run.is_closed:
        create_command(
            request.run, CommandKind.REJECT, reason="the approval request expired",
            payload={"request_id": request.request_id, "decision": "expired", "comment": "",
                     "approver": None, "approvers": []},
            approval=request,
        )
    record(
        "approval.expired", namespace=request.run.namespace, obj=request,
        object_repr=f"{request.action} on {request.run.workflow_id}",
        before={"state": ApprovalState.PENDING}, after={"state": ApprovalState.EXPIRED},
    )


def expire_overdue(now=None) -> int:
    """Expire every pending request past its deadline; the agent is told. Returns how many."""
    now = now or timezone.now()
    expired = 0
    for pk in ApprovalRequest.objects.pending().filter(deadline__lte=now).values_list(
        "pk", flat=True
    )[:500]:
        with transaction.atomic():
            request = (
                ApprovalRequest.objects.select_for_update()
                .select_related("run", "run__namespace", "run__agent")
                .filter(pk=pk, state=ApprovalState.PENDING, deadline__lte=now)
                .first()
            )
            if request is None:
                continue  # decided in the meantime: that decision stands
            _expire_locked(request)
            expired += 1
    return expired


def record_claim(run: Run, event) -> None:
    """An agent's approval.granted / approval.rejected / approval.expired event: its claim,
    checked against the decision. A claim without a matching decision is flagged."""
    claimed = event.type.split(".", 1)[1]  # granted, rejected, expired
    request_id = _storable(str(event.attributes.get("request_id") or ""))
    request = (
        ApprovalRequest.objects.select_for_update()
        .filter(run=run, request_id=request_id)
        .first()
    )
    if request is None:
        log.warning("run %s claims %s for unknown approval request %r", run.uuid, claimed,
                    request_id)
        return
    request.claimed_outcome = claimed
    request.claim_event_id = event.event_id
    request.claim_mismatch = claim_contradicts(request, claimed)
    request.save(update_fields=["claimed_outcome", "claim_event_id", "claim_mismatch"])
    if request.claim_mismatch:
        record(
            "approval.claim_mismatch", namespace=run.namespace, obj=request,
            object_repr=f"{request.action} on {run.workflow_id}",
            after={"claimed": claimed, "decided": request.state, "event_id": event.event_id},
        )


def claim_contradicts(request: ApprovalRequest, claimed: str) -> bool:
    """Whether an agent's claim (granted, rejected, expired) disagrees with the request's state
    now: a claim about a request still pending contradicts it too."""
    expected = {
        ApprovalState.APPROVED: "granted",
        ApprovalState.REJECTED: "rejected",
        ApprovalState.EXPIRED: "expired",
    }.get(request.state)
    return expected != claimed


def remind_due_soon(now=None) -> int:
    """Notify approvers once about pending requests close to their deadline."""
    now = now or timezone.now()
    soon = now + timedelta(seconds=settings.APPROVAL_REMINDER_BEFORE_SECONDS)
    due = list(
        ApprovalRequest.objects.pending()
        .filter(deadline__gt=now, deadline__lte=soon, reminded_at__isnull=True)
        .values_list("pk", flat=True)[:500]
    )
    if due:
        ApprovalRequest.objects.filter(pk__in=due, reminded_at__isnull=True).update(
            reminded_at=now
        )
    for pk in due:
        _notify_later("approval_due_soon", pk)
    return len(due)


def _notify_later(kind: str, object_id) -> None:
    from interventions.tasks import notify_later  # tasks import this module

    notify_later(kind, object_id)
