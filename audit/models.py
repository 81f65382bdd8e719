"""The audit log: an append-only, hash-chained record of what people did in Flightdeck.

Each entry's hash covers its content and the previous entry's hash, so that removing or editing
an entry breaks the chain from there on (evidence export signs the head). On PostgreSQL a
trigger refuses UPDATE and DELETE on the table; the application never does either.
"""

from __future__ import annotations

import hashlib

import orjson
from django.conf import settings
from django.db import models
from django.utils import timezone

from access.models import Namespace

GENESIS = "0" * 64


class AuditEntryQuerySet(models.QuerySet):
    def visible_to(self, user) -> AuditEntryQuerySet:
        """Entries of namespaces where `user` may investigate; site-wide entries (sign-ins,
        no namespace) only for superusers."""
        from access.roles import Capability

        if user.is_superuser:
            return self.all()
        namespaces = Namespace.objects.visible_to(user, Capability.INVESTIGATE)
        return self.filter(namespace__in=namespaces)


class AuditEntry(models.Model):
    seq = models.BigAutoField(primary_key=True)
    time = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept as text too: the actor row may be renamed or deleted, the record must not change.
    actor_label = models.CharField(max_length=200)
    action = models.CharField(max_length=60)  # e.g. command.requested, approval.decided
    namespace = models.ForeignKey(
        Namespace, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"
        indexes = [
            # The audit page filtered by namespace, newest first.
            models.Index(fields=["namespace", "-seq"], name="audit_namespace_recent"),
            # "What happened to this command / run / token".
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.actor_label} {self.action} {self.object_repr}"

    def content(self) -> dict:
        """What the hash covers, in a canonical JSON form."""
        return {
            "time": self.time.isoformat(),
            "actor": self.actor_label,
            "action": self.action,
            "namespace": self.namespace_id,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "before": self.before,
            "after": self.after,
            "source_address": self.source_address,
        }

    def compute_hash(self) -> str:
        body = orjson.dumps(self.content(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(bytes.fromhex(self.prev_hash) + body).hexdigest()


class AuditHead(models.Model):
    """One row: the hash of the newest entry. Locking it serialises appends, so the chain
    never forks when two requests write at once."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    hash = models.CharField(max_length=64, default=GENESIS)
    seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"audit head #{self.seq} {self.hash[:12]}"
