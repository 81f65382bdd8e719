"""Issuing and revoking API tokens, each with its audit entry: the one path that the admin, the
management commands and any page take, so that no token appears or goes unrecorded.

The audit entry names the token by its prefix; the secret exists only in `issue_token`'s return
value and never reaches the log.
"""

from __future__ import annotations

from django.db import transaction

from access.models import Agent, Token
from audit.log import record


def issue_token(
    *, agent: Agent | None = None, user=None, name: str = "", created_by=None, actor=None,
    request=None,
) -> tuple[Token, str]:
    """Create a token (see `Token.issue`) and record `token.created`. `actor` is who did it
    (None for the system, such as a management command); returns (token, full token string)."""
    with transaction.atomic():  # the token and its audit entry commit together
        token, secret = Token.issue(agent=agent, user=user, name=name, created_by=created_by)
        record(
            "token.created", actor=actor, request=request, namespace=_namespace_of(token),
            obj=token, after=_described(token),
        )
    return token, secret


def revoke_token(token: Token, *, actor=None, request=None) -> bool:
    """Revoke an active token and record `token.revoked`; False if it was revoked already."""
    with transaction.atomic():
        # The row lock makes two racing revocations record one entry, not two. (Only the
        # token's row: its agent and user are nullable joins, which PostgreSQL cannot lock.)
        token = (
            Token.objects.select_for_update(of=("self",))
            .select_related("agent__namespace", "user")
            .get(pk=token.pk)
        )
        if not token.is_active:
            return False
        token.revoke()
        record(
            "token.revoked", actor=actor, request=request, namespace=_namespace_of(token),
            obj=token, before={"active": True}, after={**_described(token), "active": False},
        )
    return True


def _namespace_of(token: Token):
    # A user's token acts in every namespace of that user: its entries are site-wide.
    return token.agent.namespace if token.agent_id else None


def _described(token: Token) -> dict:
    return {
        "kind": token.kind,
        "prefix": token.prefix,
        "name": token.name,
        "agent": str(token.agent) if token.agent_id else None,
        "user": token.user.get_username() if token.user_id else None,
    }
