"""Flightdeck's own records about runs: operators' commands (the outbox), approval requests
with their decisions and policies, and how each agent receives commands.

None of these rows is part of a run's event sequence: only the agent writes that. The run page
merges both by time.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from access.models import Agent, Namespace
from history.models import Run
from interventions.vocabulary import (
    TERMINAL_STATES,
    TRANSITIONS,
    UNDELIVERED_STATES,
    ApprovalState,
    CommandKind,
    CommandState,
    ConnectorKind,
    Decision,
    Risk,
)


def sources_of(target: str) -> list[str]:
    """The states from which `target` may be reached."""
    return [state for state, targets in TRANSITIONS.items() if target in targets]


class CommandQuerySet(models.QuerySet):
    def for_run(self, run: Run) -> CommandQuerySet:
        return self.filter(run=run).order_by("created_at")

    def undelivered(self) -> CommandQuerySet:
        return self.filter(state__in=UNDELIVERED_STATES)

    def awaiting_pickup_by(self, agent_id: int, now=None) -> CommandQuerySet:
        """Commands an agent's long-poll should hand out: dispatched ones, and delivered ones
        not acknowledged within the redelivery interval (the response may have been lost)."""
        now = now or timezone.now()
        redeliver_before = now - timedelta(seconds=settings.COMMAND_PULL_REDELIVER_SECONDS)
        return self.filter(agent_id=agent_id, connector=ConnectorKind.PULL).filter(
            Q(state=CommandState.DISPATCHED)
            | Q(state=CommandState.DELIVERED, delivered_at__lt=redeliver_before)
        )


class Command(models.Model):
    """An operator's intervention, or an approval decision on its way to the agent.

    The row is the command: it is committed before anything is sent, and Celery only delivers
    it. Every state change is a conditional UPDATE through `advance` or `claim`, so concurrent
    workers, acks and the sweeper cannot move it backwards or out of a terminal state.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="commands")
    # Copied from the run: the long-poll finds an agent's commands without a join.
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="commands")
    kind = models.CharField(max_length=20, choices=CommandKind.choices)
    signal_name = models.CharField(max_length=200, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="commands",
    )
    approval = models.ForeignKey(
        "ApprovalRequest", null=True, blank=True, on_delete=models.PROTECT,
        related_name="commands",
    )
    connector = models.CharField(max_length=20, choices=ConnectorKind.choices)
    state = models.CharField(
        max_length=20, choices=CommandState.choices, default=CommandState.QUEUED
    )
    created_at = models.DateTimeField(default=timezone.now)  # queued
    dispatched_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)  # applied/rejected/failed/expired
    deadline = models.DateTimeField()  # undelivered past this, it expires
    attempts = models.PositiveIntegerField(default=0)
    # A worker's claim on a dispatched command; past it, another worker may claim again
    # (the first one died mid-delivery, or its message was lost).
    claimed_until = models.DateTimeField(null=True, blank=True)
    # The earliest time the sweeper re-enqueues an undelivered command.
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    ack_detail = models.TextField(blank=True)

    objects = CommandQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # The run page's command list and timeline marks.
            models.Index(fields=["run", "created_at"], name="command_run_time"),
            # The sweeper: undelivered commands due for another attempt or past deadline.
            models.Index(
                fields=["next_attempt_at"], name="command_undelivered",
                condition=Q(state__in=["queued", "dispatched"]),
            ),
            # The long-poll: an agent's open commands.
            models.Index(
                fields=["agent", "state"], name="command_agent_open",
                condition=Q(state__in=["dispatched", "delivered"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def label(self) -> str:
        if self.kind == CommandKind.SIGNAL and self.signal_name:
            return f"signal {self.signal_name}"
        return self.get_kind_display().lower()

    def advance(self, target: str, **fields) -> bool:
        """Move to `target` if the current state allows it; True if this call moved it.
        Stamps the time of the step. The WHERE clause makes racing callers agree: exactly one
        of two ackers, or of an ack and the sweeper's expiry, wins."""
        now = timezone.now()
        stamp = {
            CommandState.DISPATCHED: "dispatched_at",
            CommandState.DELIVERED: "delivered_at",
        }.get(target, "finished_at" if target in TERMINAL_STATES else None)
        if stamp:
            fields.setdefault(stamp, now)
        if target in TERMINAL_STATES and target in (CommandState.APPLIED, CommandState.REJECTED):
            # An ack implies receipt: fill in the delivery time if the receipt never came.
            fields.setdefault("delivered_at", Coalesce(F("delivered_at"), Value(now)))
        moved = Command.objects.filter(pk=self.pk, state__in=sources_of(target)).update(
            state=target, **fields
        )
        self.refresh_from_db()
        return bool(moved)

    def claim(self, lease_seconds: float) -> bool:
        """Take this command for one delivery attempt: a queued one, or a dispatched one that
        nobody holds (its claim lapsed, or it was never claimed). True if this worker holds it
        now."""
        now = timezone.now()
        moved = (
            Command.objects.filter(pk=self.pk)
            .filter(
                Q(state=CommandState.QUEUED)
                | Q(state=CommandState.DISPATCHED, claimed_until__isnull=True)
                | Q(state=CommandState.DISPATCHED, claimed_until__lt=now)
            )
            .update(
                state=CommandState.DISPATCHED,
                attempts=F("attempts") + 1,
                dispatched_at=now,
                claimed_until=now + timedelta(seconds=lease_seconds),
            )
        )
        self.refresh_from_db()
        return bool(moved)


class ApprovalRequestQuerySet(models.QuerySet):
    def pending(self) -> ApprovalRequestQuerySet:
        return self.filter(state=ApprovalState.PENDING)

    def decidable_by(self, user) -> ApprovalRequestQuerySet:
        """Pending requests in namespaces where `user` may approve, soonest deadline first."""
        from access.roles import Capability

        namespaces = Namespace.objects.visible_to(user, Capability.APPROVE)
        return (
            self.pending()
            .filter(run__namespace__in=namespaces)
            .select_related("run", "run__agent", "run__namespace")
            .order_by("deadline", "created_at")
        )

    def settled(self) -> ApprovalRequestQuerySet:
        """Decided or expired requests, latest first: the inbox's record of outcomes. Sorted
        without an index of its own: requests are decided by people, so a namespace holds
        thousands of them, not millions."""
        return self.exclude(state=ApprovalState.PENDING).order_by("-decided_at", "-created_at")


class ApprovalRequest(models.Model):
    """An agent's request for a person's decision, opened by its `approval.requested` event.

    How many approvals it needs and its risk are the server's: the stricter of what the agent
    asked and the namespace's policy for that agent and tool.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="approval_requests")
    request_id = models.CharField(max_length=200)  # the agent's own id, unique in the run
    event_id = models.BigIntegerField()  # the approval.requested event
    # The agent's text, stored with secrets masked (approvals.open_from_event): people who may
    # not see the raw event see these.
    action = models.CharField(max_length=200)  # the tool or action to be approved
    arguments = models.JSONField(default=dict, blank=True)
    summary = models.TextField(blank=True)
    on_behalf_of = models.CharField(max_length=200, blank=True)
    asked_risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.MEDIUM)
    asked_approvals = models.PositiveSmallIntegerField(default=1)
    risk = models.CharField(max_length=10, choices=Risk.choices)
    required_approvals = models.PositiveSmallIntegerField()
    state = models.CharField(
        max_length=10, choices=ApprovalState.choices, default=ApprovalState.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    # The agent's own approval.granted/rejected/expired events are claims, checked against the
    # decision; a claim without or against a decision is flagged.
    claimed_outcome = models.CharField(max_length=10, blank=True)
    claim_event_id = models.BigIntegerField(null=True, blank=True)
    claim_mismatch = models.BooleanField(default=False)

    objects = ApprovalRequestQuerySet.as_manager()

    class Meta:
        ordering = ["deadline"]
        constraints = [
            models.UniqueConstraint(fields=["run", "request_id"], name="approval_unique_request")
        ]
        indexes = [
            # The inbox and the expiry sweep: pending requests by deadline.
            models.Index(
                fields=["deadline"], name="approval_pending_deadline",
                condition=Q(state="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} ({self.state})"

    @property
    def is_overdue(self) -> bool:
        return self.state == ApprovalState.PENDING and self.deadline <= timezone.now()


class ApprovalDecision(models.Model):
    """One person's approve or reject on a request. One per person and request."""

    request = models.ForeignKey(
        ApprovalRequest, on_delete=models.CASCADE, related_name="decisions"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approval_decisions"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["request", "user"], name="decision_one_per_person")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.decision}s {self.request}"


class ApprovalPolicy(models.Model):
    """A namespace admin's floor for an agent's tool (`*` for every tool): at least this many
    approvals and at least this risk. An agent can ask for more, never less."""

    ANY_TOOL = "*"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="approval_policies")
    tool = models.CharField(max_length=200, default=ANY_TOOL)
    min_approvals = models.PositiveSmallIntegerField(default=1)
    min_risk = models.CharField(max_length=10, choices=Risk.choices, default=Risk.LOW)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["agent", "tool"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "tool"], name="policy_unique_tool"),
            models.CheckConstraint(
                condition=Q(min_approvals__gte=1, min_approvals__lte=5),
                name="policy_approvals_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent}: {self.tool} needs {self.min_approvals} ({self.min_risk})"


class AgentConnector(models.Model):
    """How an agent receives commands. An agent without one uses the pull channel."""

    agent = models.OneToOneField(Agent, on_delete=models.CASCADE, related_name="connector")
    kind = models.CharField(
        max_length=20, choices=ConnectorKind.choices, default=ConnectorKind.PULL
    )
    url = models.URLField(max_length=500, blank=True)
    # Encrypted with access.encryption; never shown again after saving.
    secret_sealed = models.TextField(blank=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.agent}: {self.kind}"
