"""Bearer-token authentication for the API.

A user token authenticates as its user, with exactly that user's roles. An agent token
authenticates as an `AgentPrincipal`, which is not a Django user and holds no roles: it reaches
only the endpoints that accept agents (ingest) and, through `Run.objects.visible_to`, its own
agent's runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from access.models import Agent, Token

# Writing last_used_at on every request would add a write to each ingest batch; a minute's
# precision is enough to tell a live token from a forgotten one.
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True)
class AgentPrincipal:
    """The caller behind an agent token."""

    agent: Agent
    token: Token

    is_authenticated = True
    is_active = True
    is_superuser = False
    is_staff = False
    is_anonymous = False

    @property
    def pk(self) -> None:
        return None

    def __str__(self) -> str:
        return f"agent {self.agent}"


def authenticate_bearer(header: str | None) -> tuple[object, Token] | None:
    """Resolve an `Authorization` header. None when there is no bearer token at all; raises
    AuthenticationFailed for a malformed, unknown or revoked one."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    if not value or " " in value:
        raise exceptions.AuthenticationFailed("Malformed bearer token.")
    token = Token.authenticate(value)
    if token is None:
        raise exceptions.AuthenticationFailed("Unknown or revoked token.")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        Token.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    if token.kind == "agent":
        return AgentPrincipal(agent=token.agent, token=token), token
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed("The token's user is inactive.")
    return token.user, token


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        return authenticate_bearer(request.META.get("HTTP_AUTHORIZATION"))

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="flightdeck"'
