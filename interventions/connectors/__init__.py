"""Connectors carry commands from Flightdeck to an agent's runtime, one kind per agent.

A connector is small: which verbs it can carry, which Celery queue its deliveries run on, and
`dispatch`, one delivery attempt. Everything else (claiming, retries, expiry, states) is the
delivery task's, so a new runtime (Temporal) only adds a module and an entry in `CONNECTORS`.
"""

from __future__ import annotations

from interventions.connectors.base import Connector, Outcome
from interventions.connectors.pull import PullConnector
from interventions.connectors.temporal import TemporalConnector
from interventions.connectors.webhook import WebhookConnector
from interventions.vocabulary import ConnectorKind

CONNECTORS: dict[str, type[Connector]] = {
    ConnectorKind.PULL: PullConnector,
    ConnectorKind.WEBHOOK: WebhookConnector,
    ConnectorKind.TEMPORAL: TemporalConnector,
}


def connector_kind_for(agent) -> str:
    """The connector an agent's commands go through: its configured one, or the pull channel."""
    from interventions.models import AgentConnector

    configured = AgentConnector.objects.filter(agent=agent).values_list("kind", flat=True).first()
    return configured or ConnectorKind.PULL


def connector_for(kind: str) -> Connector:
    return CONNECTORS[kind]()


__all__ = ["CONNECTORS", "Connector", "Outcome", "connector_for", "connector_kind_for"]
