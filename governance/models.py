"""Governance's own records: findings about runs, the state of each workflow id's durability
check, the ledger of privileged tool calls and the approvals that covered them, and each
namespace's retention period and legal holds.

Findings are computed when events are stored (`governance.detection`) or by a periodic check of
each workflow id whose runs changed (`governance.durability_checks`), never by scanning events
when a page opens: the governance page reads these rows through indexed queries.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from access.models import Agent, Namespace
from governance.vocabulary import Outcome, Rule
from history.models import Run


class FindingQuerySet(models.QuerySet):
    def of_namespace(self, namespace: Namespace, *, since=None, rule: str = "") -> FindingQuerySet:
        """A namespace's findings whose event was received since `since`, newest first."""
        findings = self.filter(namespace=namespace)
        if since is not None:
            findings = findings.filter(received_at__gte=since)
        if rule:
            findings = findings.filter(rule=rule)
        return findings.order_by("-received_at", "-id")

    def before(self, finding: Finding) -> FindingQuerySet:
        """Keyset paging: the findings listed after `finding` in newest-first order."""
        return self.filter(
            Q(received_at__lt=finding.received_at)
            | Q(received_at=finding.received_at, id__lt=finding.id)
        )


class Finding(models.Model):
    """One problem found in one run, linked to the events that show it."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="+")
    rule = models.CharField(max_length=40, choices=Rule.choices)
    # Tells two findings of one rule in one run apart (the call's event, the unit of work...),
    # so that finding the same thing again is a no-op.
    key = models.CharField(max_length=255)
    event_id = models.BigIntegerField(help_text="The event the finding links to first.")
    event_ids = models.JSONField(default=list, blank=True)  # every event linked, at most 20
    # What the finding is about, for filtering and export: the tool, the secret rule, the unit.
    subject = models.CharField(max_length=255, blank=True)
    # Built from masked values only: never a secret, shown to every member of the namespace.
    summary = models.CharField(max_length=500)
    detail = models.JSONField(default=dict, blank=True)
    # When Flightdeck received the linked event: its own clock, not the agent's claim, so an
    # agent cannot move its findings out of the page's time window.
    received_at = models.DateTimeField()
    found_at = models.DateTimeField(default=timezone.now)

    objects = FindingQuerySet.as_manager()

    class Meta:
        constraints = [
            # Idempotent detection; a run's findings of one rule are replaced through it too.
            models.UniqueConstraint(fields=["run", "rule", "key"], name="finding_identity"),
        ]
        indexes = [
            # The governance page: a namespace's findings newest first, its per-day counts.
            models.Index(fields=["namespace", "-received_at", "-id"], name="finding_ns_recent"),
            # The same filtered by rule.
            models.Index(fields=["namespace", "rule", "-received_at", "-id"],
                         name="finding_ns_rule_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} in {self.run_id}#{self.event_id}"


class FindingDay(models.Model):
    """How many findings of a rule a namespace has for one day (by Flightdeck's receipt, UTC):
    the governance page's counts and chart read these few rows instead of counting findings.
    Kept in step by governance.counts wherever findings are stored or deleted."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    rule = models.CharField(max_length=40, choices=Rule.choices)
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            # The upsert's conflict target, and the page's read of a window of days.
            models.UniqueConstraint(fields=["namespace", "day", "rule"], name="finding_day"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace_id} {self.day} {self.rule}: {self.count}"


class WorkflowCheckQuerySet(models.QuerySet):
    def due(self) -> WorkflowCheckQuerySet:
        """Workflow ids whose runs changed since their last check, oldest change first."""
        return self.filter(due=True).order_by("changed_at")


class WorkflowCheck(models.Model):
    """The durability check of one workflow id in one namespace: due when any of its runs
    received events, done by a periodic task, which stores its findings and its outcome."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    workflow_id = models.CharField(max_length=255)
    workflow_type = models.CharField(max_length=255, blank=True)
    # Bumped by every ingest batch for a run of this workflow id. A check records the value
    # it started from, and clears `due` only if nothing bumped it meanwhile, so a batch that
    # commits while a check runs is never missed.
    generation = models.BigIntegerField(default=1)
    due = models.BooleanField(default=True)
    changed_at = models.DateTimeField(default=timezone.now)
    checked_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=30, choices=Outcome.choices,
                               default=Outcome.NOT_INTERRUPTED)
    runs = models.PositiveIntegerField(default=0)
    # The check stopped at its bounds (runs or activity events): findings may be incomplete.
    bounded = models.BooleanField(default=False)

    objects = WorkflowCheckQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["namespace", "workflow_id"],
                                    name="workflow_check_identity"),
        ]
        indexes = [
            # The periodic task: checks that are due, oldest first.
            models.Index(fields=["changed_at"], name="workflow_check_due",
                         condition=Q(due=True)),
            # The governance page's inventory: a namespace's workflow ids by type and outcome.
            models.Index(fields=["namespace", "workflow_type", "outcome"],
                         name="workflow_check_inventory"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace_id}/{self.workflow_id}: {self.outcome}"


class PrivilegedCall(models.Model):
    """A privileged tool call, once judged: the approval that covered it, or none (then a
    finding says so). An approval covers one call: the first one judged after its decision."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="+")
    call_event_id = models.BigIntegerField()  # its activity.scheduled event (or its own)
    tool = models.CharField(max_length=255)
    approval = models.OneToOneField(
        "interventions.ApprovalRequest", null=True, blank=True, on_delete=models.CASCADE,
        related_name="+",
    )
    judged_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "call_event_id"], name="privileged_call_once"),
        ]

    def __str__(self) -> str:
        return f"{self.tool} at {self.run_id}#{self.call_event_id}"


class RetentionPolicy(models.Model):
    """How long a namespace keeps closed runs. No row, or no days: kept for ever."""

    namespace = models.OneToOneField(Namespace, on_delete=models.CASCADE, related_name="+")
    keep_days = models.PositiveIntegerField(null=True, blank=True)
    updated_by_label = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "retention policies"
        constraints = [
            models.CheckConstraint(condition=Q(keep_days__isnull=True) | Q(keep_days__gte=1),
                                   name="retention_at_least_a_day"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace_id}: {self.keep_days or 'forever'}"


class LegalHoldQuerySet(models.QuerySet):
    def active(self) -> LegalHoldQuerySet:
        return self.filter(released_at__isnull=True)


class LegalHold(models.Model):
    """Exempts a run (or, with no run, every run of the namespace) from retention until it is
    released. Placed and released by admins and investigators, with a reason; both audited."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    # PROTECT: no code path can delete a run while a hold row names it; retention removes
    # released holds of a run before the run.
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.PROTECT,
                            related_name="+")
    reason = models.TextField()
    placed_by_label = models.CharField(max_length=200)
    placed_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by_label = models.CharField(max_length=200, blank=True)
    release_reason = models.TextField(blank=True)

    objects = LegalHoldQuerySet.as_manager()

    class Meta:
        ordering = ["-placed_at"]
        constraints = [
            # One active hold per run, one active namespace-wide hold per namespace: these
            # indexes also answer "is this run (namespace) held" for retention.
            models.UniqueConstraint(fields=["run"], name="hold_one_active_per_run",
                                    condition=Q(released_at__isnull=True, run__isnull=False)),
            models.UniqueConstraint(fields=["namespace"], name="hold_one_active_per_namespace",
                                    condition=Q(released_at__isnull=True, run__isnull=True)),
        ]

    def __str__(self) -> str:
        target = f"run {self.run_id}" if self.run_id else f"namespace {self.namespace_id}"
        return f"hold on {target}"

    @property
    def is_active(self) -> bool:
        return self.released_at is None
