"""Evidence exports (the requests and the bundles they produce) and signed digests.

A digest and its entries hold plain copies of run identities (uuid, namespace slug, workflow
and run ids), never foreign keys: deleting a run (retention) leaves the digests that proved
what it held untouched, and they are also written outside the database.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from access.models import Namespace


class ExportKind(models.TextChoices):
    RUN = "run", "One run"
    FILTER = "filter", "The runs of a run list filter"
    NAMESPACE = "namespace", "A namespace over a time range"


class ExportState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"


class EvidenceExportQuerySet(models.QuerySet):
    def visible_to(self, user) -> EvidenceExportQuerySet:
        """A person's own exports (every export for a superuser): a bundle is handed to whoever
        asked for it, and each download is audited under their name."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(requested_by=user)

    def past_expiry(self, now=None) -> EvidenceExportQuerySet:
        return self.filter(state=ExportState.READY, expires_at__lte=now or timezone.now())

    def stalled(self, now=None) -> EvidenceExportQuerySet:
        """Exports whose task message was lost (still queued) or whose worker died (running,
        no progress for a while): the cleaner enqueues them again."""
        now = now or timezone.now()
        quiet = now - timedelta(seconds=settings.EVIDENCE_EXPORT_STALL_SECONDS)
        return self.filter(
            Q(state=ExportState.QUEUED, created_at__lte=quiet)
            | Q(state=ExportState.RUNNING, heartbeat_at__lte=quiet)
        )


class EvidenceExport(models.Model):
    """One request for an evidence bundle, and the bundle once built."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    requested_by_label = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=ExportKind.choices)
    # The scope as asked: {"run": uuid}, {"query": "..."} or {"namespace", "since", "until"}.
    scope = models.JSONField(default=dict)
    # The runs it resolved to when asked, so the bundle holds what the person saw then.
    run_uuids = models.JSONField(default=list)
    namespaces = models.ManyToManyField(Namespace, related_name="+")
    raw = models.BooleanField(default=False)
    reason = models.TextField(blank=True)
    state = models.CharField(
        max_length=10, choices=ExportState.choices, default=ExportState.QUEUED
    )
    runs_total = models.PositiveIntegerField(default=0)
    runs_done = models.PositiveIntegerField(default=0)
    events_total = models.BigIntegerField(default=0)
    events_done = models.BigIntegerField(default=0)
    file_name = models.CharField(max_length=200, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    key_fingerprint = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = EvidenceExportQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The evidence page: a person's exports, newest first.
            models.Index(fields=["requested_by", "-created_at"], name="export_by_person"),
            # The cleaner: ready exports past expiry, stalled ones.
            models.Index(fields=["state", "expires_at"], name="export_state_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} export {self.id} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (ExportState.READY, ExportState.FAILED, ExportState.EXPIRED)

    @property
    def percent(self) -> int:
        if self.state == ExportState.READY:
            return 100
        if not self.events_total:
            return 0
        return min(99, int(100 * self.events_done / self.events_total))

    @property
    def label(self) -> str:
        return f"{'raw' if self.raw else 'redacted'} bundle of {self.runs_total} " \
               f"run{'s' if self.runs_total != 1 else ''}"

    @property
    def download_name(self) -> str:
        return f"flightdeck-evidence-{self.id}.zip"


class SignedDigest(models.Model):
    """One signed digest: the Merkle root over the runs whose state changed since the previous
    digest, the audit chain's head, and the SHA-256 of the previous digest. `body` is the exact
    signed bytes (UTF-8 JSON), as written to EVIDENCE_DIGEST_DIR and to the webhook."""

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    body = models.TextField()
    signature = models.CharField(max_length=100)
    sha256 = models.CharField(max_length=64)
    previous_sha256 = models.CharField(max_length=64)
    key_fingerprint = models.CharField(max_length=64)
    run_count = models.PositiveIntegerField()
    audit_seq = models.BigIntegerField(default=0)
    audit_hash = models.CharField(max_length=64)
    # Where it was published outside the database, and when (empty: not yet, or failed).
    written_to = models.CharField(max_length=500, blank=True)
    written_at = models.DateTimeField(null=True, blank=True)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    publish_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"digest {self.seq} ({self.run_count} runs)"

    @property
    def file_stem(self) -> str:
        return f"digest-{self.seq:08d}"


class DigestEntry(models.Model):
    """One run's state in one digest: a leaf of its Merkle tree. `entry` is the exact leaf
    bytes; the other columns copy from it for lookups."""

    digest = models.ForeignKey(SignedDigest, on_delete=models.PROTECT, related_name="entries")
    position = models.PositiveIntegerField()  # the leaf index, in run uuid order
    run_uuid = models.UUIDField()
    contiguous_through = models.BigIntegerField()
    head_hash = models.CharField(max_length=64, blank=True)
    event_count = models.BigIntegerField()
    last_event_id = models.BigIntegerField()
    entry = models.TextField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["digest", "position"], name="digest_entry_leaf"),
            # A run appears at most once in a digest.
            models.UniqueConstraint(fields=["digest", "run_uuid"], name="digest_entry_run"),
        ]
        indexes = [
            # A bundle looks up every digest that recorded its runs; the digest task looks up
            # each changed run's last recorded state.
            models.Index(fields=["run_uuid", "digest"], name="digest_entry_by_run"),
        ]

    def __str__(self) -> str:
        return f"{self.run_uuid} @ {self.contiguous_through} in digest {self.digest_id}"
