"""Runs and their events: the append-only, hash-chained record of what agents did.

Only the producer of a run writes its event sequence (through `history.ingest`); nothing in
Flightdeck updates an event's content after ingest. The one later write to an event is its
chain hash, filled in once the events before it have arrived.
"""

from __future__ import annotations

import uuid

import orjson
from django.conf import settings
from django.db import models
from django.utils import timezone

from access.models import Agent, Namespace, Token
from access.roles import Capability
from history.vocabulary import CLOSED_STATUSES, RunStatus, category_of


class RunQuerySet(models.QuerySet):
    def visible_to(
        self, principal, capability: str = Capability.VIEW, *, namespaces=None
    ) -> RunQuerySet:
        """Runs `principal` may see: a user's through their namespaces' roles (every run for a
        superuser), an agent token's only its own agent's runs. A caller that has already
        read `Namespace.objects.visible_to(principal, capability)` passes it as `namespaces`
        and saves the query."""
        agent = getattr(principal, "agent", None)
        if agent is not None:
            return self.filter(agent=agent) if capability == Capability.VIEW else self.none()
        if principal.is_authenticated and principal.is_active and principal.is_superuser:
            return self.all()
        if namespaces is None:
            namespaces = Namespace.objects.visible_to(principal, capability)
        # A literal list of ids, not a subquery: the planner can then use the per-namespace
        # indexes instead of re-running a scan for each namespace the subquery yields.
        return self.filter(namespace_id__in=[namespace.pk for namespace in namespaces])


class Run(models.Model):
    """One workflow execution, as its producer reported it."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="runs")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="runs")
    workflow_id = models.CharField(max_length=255)
    run_id = models.CharField(max_length=255)
    workflow_type = models.CharField(max_length=255, blank=True)
    status = models.CharField(
        max_length=20, choices=RunStatus.choices, default=RunStatus.RUNNING
    )
    # The event that set the status: the status-changing event with the highest event_id.
    status_event_id = models.BigIntegerField(default=0)
    started_at = models.DateTimeField()
    # The workflow.started event, once stored (0 before): it sets started_at, workflow_type and
    # labels; until it arrives started_at is the earliest event time.
    start_event_id = models.BigIntegerField(default=0)
    closed_at = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveIntegerField(default=0)
    last_event_id = models.BigIntegerField(default=0)
    contiguous_through = models.BigIntegerField(default=0)
    head_hash = models.CharField(max_length=64, blank=True)
    received_seq = models.BigIntegerField(default=0)
    events_with_secrets = models.PositiveIntegerField(default=0)
    labels = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = RunQuerySet.as_manager()

    class Meta:
        constraints = [
            # Ingest finds (or creates) a run by this key, and "workflow_id prefix within a
            # namespace" searches use its leading columns.
            models.UniqueConstraint(
                fields=["namespace", "workflow_id", "run_id"], name="run_identity"
            )
        ]
        indexes = [
            # The run list: newest first, keyset-paginated on (started_at, id).
            models.Index(fields=["-started_at", "-id"], name="run_recent"),
            # The run list sorted by close time (open runs first).
            models.Index(fields=["-closed_at", "-id"], name="run_recently_closed"),
            # The run list filtered by namespace and status, and per-status counts.
            models.Index(fields=["namespace", "status", "-started_at"], name="run_ns_status"),
            # The run list filtered by agent; an agent token reading its own runs.
            models.Index(fields=["agent", "-started_at"], name="run_agent_recent"),
            # Per-status counts of the run list filtered by agent or owner. The namespace is
            # included so that the count, which also filters by the viewer's namespaces, is
            # an index-only scan (PostgreSQL; SQLite ignores `include`): reading heap rows
            # for it took 75 ms for 10,001 failed runs of one agent at a million runs.
            models.Index(
                fields=["agent", "status", "-started_at"], include=["namespace"],
                name="run_agent_status",
            ),
            # The run list filtered by workflow type.
            models.Index(fields=["workflow_type", "-started_at", "-id"], name="run_type_recent"),
            # workflow_id prefix search across namespaces (LIKE 'abc%' on PostgreSQL).
            models.Index(
                fields=["workflow_id"], name="run_workflow_id_prefix",
                opclasses=["varchar_pattern_ops"],
            ),
            # Substring search over workflow_id and run_id (case-insensitive) uses trigram
            # indexes on upper(...), created on PostgreSQL only by migration 0003 (SQLite scans).
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} / {self.run_id}"

    @property
    def is_closed(self) -> bool:
        return self.status in CLOSED_STATUSES

    @property
    def has_gaps(self) -> bool:
        return self.contiguous_through < self.last_event_id

    def first_missing_range(self) -> tuple[int, int] | None:
        """The first range of missing event ids, from one indexed lookup (for the header,
        which live tails re-render every few seconds)."""
        if not self.has_gaps:
            return None
        next_stored = (
            self.events.filter(event_id__gt=self.contiguous_through)
            .order_by("event_id")
            .values_list("event_id", flat=True)
            .first()
        )
        return (self.contiguous_through + 1, (next_stored or self.last_event_id + 1) - 1)

    def missing_ranges(self, limit: int = 100) -> list[tuple[int, int]]:
        """Ranges (first, last) of event ids not yet received below the highest one."""
        if not self.has_gaps:
            return []
        ids = (
            self.events.filter(event_id__gt=self.contiguous_through)
            .order_by("event_id")
            .values_list("event_id", flat=True)
        )
        ranges: list[tuple[int, int]] = []
        expected = self.contiguous_through + 1
        for event_id in ids.iterator(chunk_size=2000):
            if event_id > expected:
                ranges.append((expected, event_id - 1))
                if len(ranges) >= limit:
                    break
            expected = event_id + 1
        return ranges


class EventQuerySet(models.QuerySet):
    def in_order(self, after: int = 0) -> EventQuerySet:
        return self.filter(event_id__gt=after).order_by("event_id")

    def received_after(self, seq: int) -> EventQuerySet:
        """Events received after cursor `seq`, in arrival order: a live tail sees late events
        that fill a gap as well as new ones."""
        return self.filter(received_seq__gt=seq).order_by("received_seq")


class Event(models.Model):
    """One event of a run, kept exactly as it was stored at ingest.

    `header` and `attributes` are the stored bytes (UTF-8 text of canonical JSON): exports ship
    them as they are and the chain is computed over `header` (see history.chain).
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    event_id = models.BigIntegerField()
    type = models.CharField(max_length=100)
    time = models.DateTimeField()
    time_text = models.CharField(max_length=40, help_text="The time exactly as sent.")
    identity = models.CharField(max_length=255, blank=True)
    refs = models.JSONField(default=dict, blank=True)
    attributes = models.TextField(help_text="Canonical JSON of the attributes, as hashed.")
    # NULL (not "") means "no finding": the display then reads `attributes` directly.
    masked_attributes = models.TextField(  # noqa: DJ001
        null=True, blank=True, help_text="The attributes with secrets masked, where any were found."
    )
    secret_findings = models.JSONField(null=True, blank=True)
    salt = models.CharField(max_length=32)
    header = models.TextField(help_text="Canonical JSON of the envelope and attributes digest.")
    chain_hash = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField()
    received_seq = models.BigIntegerField()
    token = models.ForeignKey(
        Token, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_constraint=False,
    )

    objects = EventQuerySet.as_manager()

    class Meta:
        constraints = [
            # Idempotent ingest (one event per id) and every read of a history in order.
            models.UniqueConstraint(fields=["run", "event_id"], name="event_identity"),
            # Live tails read a run's events by arrival order from a cursor.
            models.UniqueConstraint(fields=["run", "received_seq"], name="event_arrival"),
        ]
        indexes = [
            # Governance reads the events of each ingest batch that the secret scan flagged
            # (governance.detection): this partial index holds only flagged events (under 1%
            # in bench/ingest.py), so that read no longer visits the batch's other events.
            models.Index(
                fields=["run", "event_id"], name="event_secret_flagged",
                condition=models.Q(secret_findings__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.event_id} {self.type}"

    @property
    def category(self) -> str:
        return category_of(self.type)

    def attributes_for(self, *, raw: bool) -> dict:
        """The attributes to show: masked unless `raw` (investigators, admins, the agent)."""
        text = self.attributes if raw or self.masked_attributes is None else self.masked_attributes
        return orjson.loads(text)

    @property
    def has_secrets(self) -> bool:
        return bool(self.secret_findings)


class SavedView(models.Model):
    """A named set of run list filters, kept on the server and shareable by its URL. It holds
    only the query string: whoever opens it still sees only the runs they may see."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_views"
    )
    name = models.CharField(max_length=100)
    query = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="saved_view_unique_name")
        ]

    def __str__(self) -> str:
        return self.name
