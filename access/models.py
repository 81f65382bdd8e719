"""Who may see and do what: namespaces, their members, the agents that act in them, and the
API tokens that authenticate agents and automation."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from access.roles import Role, roles_with

# What a namespace slug can be (SlugField, 63 characters): a slug read from a query string or a
# form is checked against it before any lookup, since PostgreSQL answers a NUL with an error.
NAMESPACE_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,63}")


class NamespaceQuerySet(models.QuerySet):
    def visible_to(self, user, capability: str = "view") -> NamespaceQuerySet:
        """Namespaces in which `user` holds a role granting `capability` (all for superusers)."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self.all()
        return self.filter(
            memberships__user=user, memberships__role__in=roles_with(capability)
        ).distinct()


class Namespace(models.Model):
    """A team or tenant. Every run, agent and token belongs to exactly one namespace."""

    # Unique index: namespaces are found by slug in URLs, filters and create_agent_token.
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = NamespaceQuerySet.as_manager()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """One role of one user in one namespace; several rows give a user several roles."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "namespace", "role"], name="membership_unique_role"
            )
        ]
        # The unique constraint's index (user, namespace, role) serves every permission check:
        # "which namespaces may this user see", "does this user hold this role here".

    def __str__(self) -> str:
        return f"{self.user} is {self.role} in {self.namespace}"


class Agent(models.Model):
    """An identity that acts: an AI agent or a workflow worker, owned by a person or a team."""

    namespace = models.ForeignKey(Namespace, on_delete=models.PROTECT, related_name="agents")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_agents",
    )
    owner_group = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_agents"
    )
    allowed_tools = models.JSONField(
        default=list, blank=True, help_text="The tools this agent declares it may call."
    )
    privileged = models.BooleanField(
        default=False, help_text="Acts with privileges that call for closer review."
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["namespace__slug", "name"]
        constraints = [
            # Its index serves the agent filter of the run list and create_agent_token.
            models.UniqueConstraint(fields=["namespace", "name"], name="agent_unique_name"),
            models.CheckConstraint(
                condition=Q(owner_user__isnull=True) | Q(owner_group__isnull=True),
                name="agent_one_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.namespace.slug}/{self.name}"

    @property
    def owner(self):
        return self.owner_user or self.owner_group

    def clean(self) -> None:
        if self.owner_user_id and self.owner_group_id:
            raise ValidationError("An agent is owned by a user or by a group, not both.")
        tools = self.allowed_tools
        if not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools):
            raise ValidationError({"allowed_tools": "must be a list of tool names"})


class TokenQuerySet(models.QuerySet):
    def active(self) -> TokenQuerySet:
        return self.filter(revoked_at__isnull=True)


class Token(models.Model):
    """An API credential. Only a SHA-256 of the secret is stored; the whole token is shown once.

    Format: `fd<kind>_<prefix>_<secret>`, where the prefix (8 characters, unique, stored in the
    clear) finds the row and the secret (43 characters, 256 bits) is compared by hash. The
    secret is long and random, so a fast hash is as good as a slow one here.
    """

    KIND_PREFIX = {"agent": "fda", "user": "fdu"}
    PREFIX_LENGTH = 8

    kind = models.CharField(max_length=10, choices=[("agent", "Agent"), ("user", "User")])
    # Unique index: every API request finds its token by this prefix.
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="tokens"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_tokens",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="agent", agent__isnull=False, user__isnull=True))
                | Q(kind="user", user__isnull=False, agent__isnull=True),
                name="token_bound_to_one_principal",
            )
        ]

    def __str__(self) -> str:
        owner = self.agent if self.kind == "agent" else self.user
        return f"{self.KIND_PREFIX[self.kind]}_{self.prefix}… ({owner})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def hash_secret(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    @classmethod
    def issue(cls, *, agent: Agent | None = None, user=None, name: str = "", created_by=None):
        """Create a token for an agent or a user; returns (token row, the full token string).
        The full string exists only in the return value: it is never stored or logged."""
        kind = "agent" if agent is not None else "user"
        prefix = secrets.token_hex(cls.PREFIX_LENGTH // 2)
        secret = secrets.token_urlsafe(32)
        token = cls.objects.create(
            kind=kind,
            prefix=prefix,
            secret_hash=cls.hash_secret(secret),
            name=name,
            agent=agent,
            user=user,
            created_by=created_by,
        )
        return token, f"{cls.KIND_PREFIX[kind]}_{prefix}_{secret}"

    @classmethod
    def authenticate(cls, presented: str) -> Token | None:
        """The active token matching `presented`, or None (unknown, malformed or revoked)."""
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] not in cls.KIND_PREFIX.values():
            return None
        kind_prefix, prefix, secret = parts
        if len(prefix) != cls.PREFIX_LENGTH or not secret:
            return None
        token = (
            cls.objects.active()
            .select_related("agent__namespace", "user")
            .filter(prefix=prefix)
            .first()
        )
        if token is None or cls.KIND_PREFIX[token.kind] != kind_prefix:
            return None
        if not hmac.compare_digest(token.secret_hash, cls.hash_secret(secret)):
            return None
        return token

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
