"""Registering how an agent receives commands: the pull channel (the default) or a webhook with
its URL and signing secret. The one place a connector changes, whoever changes it.

The signing secret is made here, returned once to be shown to the admin, and stored only
sealed (`access.encryption`). Neither the audit log nor any page sees it again.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from access.encryption import seal
from access.models import Agent
from audit.log import record
from interventions import outbound, signing
from interventions.models import AgentConnector
from interventions.vocabulary import ConnectorKind


def configure(
    agent: Agent, *, kind: str, url: str = "", rotate: bool = False, actor=None, request=None
) -> tuple[AgentConnector, str]:
    """Set the agent's connector; returns (connector, the new signing secret or "").

    A webhook gets a new secret when it has none yet or when `rotate` is asked; its URL must
    pass `outbound.check_url` (RefusedAddress otherwise, before anything changes). Choosing
    the pull channel drops the URL and the secret."""
    if kind not in ConnectorKind.values:
        raise ValueError(f"kind: must be one of {', '.join(ConnectorKind.values)}")
    if kind == ConnectorKind.WEBHOOK:
        # Resolved outside the transaction: a slow DNS answer must not hold the row lock.
        outbound.check_url(url)
    with transaction.atomic():
        # Two admins saving at once: the lock makes one save follow the other, so neither is
        # shown a secret that the other's rotation has already replaced.
        connector = AgentConnector.objects.select_for_update().filter(agent=agent).first()
        before = _described(connector)
        connector = connector or AgentConnector(agent=agent)
        secret = ""
        connector.kind = kind
        if kind == ConnectorKind.WEBHOOK:
            connector.url = url
            if rotate or not connector.secret_sealed:
                secret = signing.new_secret()
                connector.secret_sealed = seal(secret)
        else:
            connector.url = ""
            connector.secret_sealed = ""
        connector.updated_by = actor if getattr(actor, "is_authenticated", False) else None
        connector.updated_at = timezone.now()
        connector.save()
        record(
            "connector.changed", actor=actor, request=request, namespace=agent.namespace,
            obj=connector, object_repr=f"{agent}: {connector.kind}", before=before,
            after={**_described(connector), "secret_rotated": bool(secret)},
        )
    return connector, secret


def _described(connector: AgentConnector | None) -> dict | None:
    """What the audit log keeps of a connector: never the secret, only whether one is set."""
    if connector is None:
        return None
    return {"kind": connector.kind, "url": connector.url,
            "has_secret": bool(connector.secret_sealed)}
