"""Temporal connections (a followed Temporal service, per Flightdeck namespace) and history
imports (one uploaded file each, with its progress)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from access.models import Agent, Namespace

DEFAULT_APPROVAL_SIGNAL = "flightdeck.approval"


class TemporalConnectionQuerySet(models.QuerySet):
    def due_for_following(self, now=None) -> TemporalConnectionQuerySet:
        """Enabled connections whose follower lease is free (nobody follows them now)."""
        now = now or timezone.now()
        return self.filter(enabled=True).filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
        )


class TemporalConnection(models.Model):
    """A Temporal service namespace that Flightdeck follows, and to which its commands for
    the runs it found there go. Its runs belong to its own agent (created with it).

    The API key and the TLS client key are stored sealed (`access.encryption`) and never shown
    again after saving.
    """

    namespace = models.ForeignKey(
        Namespace, on_delete=models.CASCADE, related_name="temporal_connections"
    )
    agent = models.OneToOneField(
        Agent, on_delete=models.PROTECT, related_name="temporal_connection"
    )
    name = models.SlugField(max_length=63)
    address = models.CharField(max_length=255, help_text="host:port of the Temporal frontend")
    temporal_namespace = models.CharField(max_length=255, default="default")
    tls = models.BooleanField(default=False)
    tls_server_name = models.CharField(max_length=255, blank=True)
    tls_ca_pem = models.TextField(blank=True, help_text="CA certificate(s), PEM; empty: system")
    tls_client_cert_pem = models.TextField(blank=True)
    tls_client_key_sealed = models.TextField(blank=True)
    api_key_sealed = models.TextField(blank=True)
    # An optional visibility query narrowing which workflows are followed (ANDed).
    workflow_query = models.CharField(max_length=1000, blank=True)
    approval_signal = models.CharField(max_length=200, default=DEFAULT_APPROVAL_SIGNAL)
    enabled = models.BooleanField(default=True)
    # The follower's lease: one session at a time per connection (docs/temporal.md).
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_followed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = TemporalConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["namespace__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["namespace", "name"], name="temporal_connection_name")
        ]

    def __str__(self) -> str:
        return f"{self.namespace.slug}/{self.name} ({self.address}, {self.temporal_namespace})"

    def claim(self, seconds: float) -> bool:
        """Take the follower lease for `seconds` if nobody holds it; True if this caller does.
        A conditional UPDATE: two workers starting a session at once cannot both win."""
        now = timezone.now()
        won = TemporalConnection.objects.filter(pk=self.pk, enabled=True).filter(
            Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
        ).update(claimed_until=now + timedelta(seconds=seconds))
        return bool(won)

    def release(self, *, error: str = "") -> None:
        TemporalConnection.objects.filter(pk=self.pk).update(
            claimed_until=None, last_followed_at=timezone.now(), last_error=error[:2000]
        )


class ImportState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Importing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class TemporalImportQuerySet(models.QuerySet):
    def visible_to(self, user) -> TemporalImportQuerySet:
        from access.roles import Capability

        return self.filter(namespace__in=Namespace.objects.visible_to(user, Capability.INVESTIGATE))


class TemporalImport(models.Model):
    """One uploaded history file. Small files are imported while the upload waits; larger ones
    are kept here (`content`) until a Celery task has imported them, with progress."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    filename = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    workflow_id = models.CharField(max_length=255, blank=True)  # given for files that lack it
    run_id = models.CharField(max_length=255, blank=True)
    # The file itself until it is imported, then emptied (the events are the record).
    content = models.BinaryField(default=b"", blank=True)
    state = models.CharField(max_length=10, choices=ImportState.choices,
                             default=ImportState.QUEUED)
    events_total = models.PositiveIntegerField(default=0)
    events_done = models.PositiveIntegerField(default=0)
    stored = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    runs = models.JSONField(default=list, blank=True)  # [{uuid, workflow_id, run_id, events}]
    error = models.TextField(blank=True)
    error_status = models.PositiveSmallIntegerField(null=True, blank=True)  # 400 or 409
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The lease of the worker carrying the import out, renewed with each progress write; past
    # it, the import is stalled (its worker died) and another worker may take it over.
    claimed_until = models.DateTimeField(null=True, blank=True)
    # Counts the claims: a worker's writes name its own, so one that was taken over (it stalled
    # past its lease) cannot write over its successor's progress or outcome.
    claims = models.PositiveIntegerField(default=0)

    objects = TemporalImportQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The upload page lists a namespace's latest imports.
            models.Index(fields=["namespace", "-created_at"], name="temporal_import_recent"),
        ]

    def __str__(self) -> str:
        return f"import {self.filename or self.uuid} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (ImportState.DONE, ImportState.FAILED)

    def claim(self, seconds: float) -> bool:
        """Take the import for `seconds`: a queued one, or a running one whose lease ended.
        True if this caller holds it now. A conditional UPDATE: a message redelivered while
        the first worker is alive and within its lease cannot run the import a second time."""
        now = timezone.now()
        won = TemporalImport.objects.filter(pk=self.pk).filter(
            Q(state=ImportState.QUEUED)
            | Q(state=ImportState.RUNNING, claimed_until__isnull=True)
            | Q(state=ImportState.RUNNING, claimed_until__lt=now)
        ).update(state=ImportState.RUNNING, claimed_until=now + timedelta(seconds=seconds),
                 claims=F("claims") + 1)
        self.refresh_from_db()
        return bool(won)

    def write_held(self, seconds: float | None = None, **fields) -> bool:
        """Write `fields` if this caller still holds the import (its claim is the latest and
        the import is running), renewing the lease for `seconds` when given. False when
        another worker took the import over."""
        if seconds is not None:
            fields["claimed_until"] = timezone.now() + timedelta(seconds=seconds)
        return bool(TemporalImport.objects.filter(
            pk=self.pk, state=ImportState.RUNNING, claims=self.claims
        ).update(**fields))

    @property
    def percent(self) -> int:
        if self.state == ImportState.DONE:
            return 100
        return int(100 * self.events_done / self.events_total) if self.events_total else 0
