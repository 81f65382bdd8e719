"""The audit log: an append-only, hash-chained record of what people did in Flightdeck.

Each entry's hash covers its content and the previous entry's hash, so that removing or editing
an entry breaks the chain from there on (evidence export signs the head). The database refuses
to rewrite the table: on PostgreSQL triggers refuse UPDATE, DELETE and TRUNCATE, on SQLite
triggers refuse UPDATE and DELETE (migrations audit.0002 and audit.0004); the application never
does either.

An entry holds plain copies of who acted and where (ids and names), never a foreign key: deleting
a user, a namespace or a run (retention) must not touch, and so cannot be refused by, the log.

SQLite caveat: a later migration that alters this table on SQLite rebuilds it, which drops its
triggers; such a migration must create them again (tests/audit checks that they refuse).
"""

from __future__ import annotations

import hashlib

import orjson
from django.db import models
from django.utils import timezone

from access.models import Namespace

GENESIS = "0" * 64
# Version 1: entries written before the plain copies (migration audit.0003); their hash covers
# the namespace id but neither the actor's id nor the namespace's slug. Version 2 covers both.
CONTENT_VERSION = 2


class AuditEntryQuerySet(models.QuerySet):
    def visible_to(self, user) -> AuditEntryQuerySet:
        """Entries of namespaces where `user` may investigate; site-wide entries (sign-ins,
        no namespace) only for superusers."""
        from access.roles import Capability

        if user.is_superuser:
            return self.all()
        # By id, not slug: a namespace deleted and another created with its slug must not
        # inherit the old one's entries (ids are never reused).
        # A subquery, as before the copies: one round trip, not two.
        namespace_ids = Namespace.objects.visible_to(user, Capability.INVESTIGATE).values("pk")
        return self.filter(namespace_id_copy__in=namespace_ids)


class AuditEntry(models.Model):
    seq = models.BigAutoField(primary_key=True)
    time = models.DateTimeField(default=timezone.now)
    # Copies, not foreign keys: the user may be renamed or deleted, the record must not change.
    actor_id_copy = models.BigIntegerField(null=True, blank=True, verbose_name="actor id")
    actor_label = models.CharField(max_length=200)  # user name, agent:<ns>/<name> or system
    action = models.CharField(max_length=60)  # e.g. command.requested, approval.decided
    namespace_id_copy = models.BigIntegerField(null=True, blank=True, verbose_name="namespace id")
    namespace_slug = models.CharField(max_length=63, blank=True, verbose_name="namespace")
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    object_repr = models.CharField(max_length=300, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    source_address = models.GenericIPAddressField(null=True, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    content_version = models.PositiveSmallIntegerField(default=CONTENT_VERSION)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        verbose_name_plural = "audit entries"
        indexes = [
            # The audit page filtered by namespace, newest first.
            models.Index(fields=["namespace_id_copy", "-seq"], name="audit_namespace_recent"),
            # "What happened to this command / run / token".
            models.Index(fields=["object_type", "object_id"], name="audit_object"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.actor_label} {self.action} {self.object_repr}"

    def content(self) -> dict:
        """What the hash covers (docs/audit.md gives it key by key). Never change what a version
        covers: entries already written must keep verifying. A new field means a new version."""
        content = {
            "time": self.time.isoformat(),
            "actor": self.actor_label,
            "action": self.action,
            "namespace": self.namespace_id_copy,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "before": self.before,
            "after": self.after,
            "source_address": self.source_address,
        }
        if self.content_version >= 2:
            content.update(
                v=self.content_version, actor_id=self.actor_id_copy,
                namespace_slug=self.namespace_slug,
            )
        return content

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
