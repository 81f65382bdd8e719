"""Webhook push: each command is POSTed, signed, to the agent's registered URL.

A 2xx confirms receipt (delivered); timeouts, connection errors, 408, 429 and 5xx are retried
with backoff by the delivery task; any other answer, or a refused address, fails the command.
The receiver must treat `webhook-id` (the command id) as idempotency key.
"""

from __future__ import annotations

import http.client
import time

import orjson
from django.conf import settings

from access.encryption import UnreadableSecret, unseal
from interventions import outbound, signing
from interventions.connectors.base import QUEUE_SLOW, Connector, Outcome
from interventions.vocabulary import ConnectorKind
from interventions.wire import command_message

RETRYABLE_STATUSES = frozenset({408, 425, 429})


class WebhookConnector(Connector):
    kind = ConnectorKind.WEBHOOK
    queue = QUEUE_SLOW

    def refusal(self, command_kind: str, agent) -> str | None:
        connector = getattr(agent, "connector", None)
        if connector is None or not connector.url:
            return f"the agent {agent} has no webhook URL registered"
        return None

    def dispatch(self, command) -> Outcome:
        connector = command.agent.connector
        try:
            secret = unseal(connector.secret_sealed)
        except UnreadableSecret as exc:
            return Outcome(error=f"webhook secret: {exc}")
        body = orjson.dumps({"type": "command", "command": command_message(command)})
        headers = signing.headers(secret, str(command.id), int(time.time()), body)
        try:
            response = outbound.post(
                connector.url, body, headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS
            )
        except outbound.RefusedAddress as exc:
            return Outcome(error=str(exc))
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(retry=True, error=f"webhook: {type(exc).__name__}: {exc}"[:500])
        if 200 <= response.status < 300:
            return Outcome(delivered=True)
        error = f"webhook answered HTTP {response.status}"
        if response.status >= 500 or response.status in RETRYABLE_STATUSES:
            return Outcome(retry=True, error=error)
        return Outcome(error=error)
