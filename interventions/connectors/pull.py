"""The pull channel: the agent long-polls `GET /api/v1/agent/commands`.

Dispatching only wakes the agent's waiting long-poll (Redis pub/sub); the long-poll hands the
command out and marks it delivered, and the agent acknowledges it with a POST.
"""

from __future__ import annotations

from interventions import wakeups
from interventions.connectors.base import QUEUE_COMMANDS, Connector, Outcome
from interventions.vocabulary import ConnectorKind


class PullConnector(Connector):
    kind = ConnectorKind.PULL
    queue = QUEUE_COMMANDS

    def dispatch(self, command) -> Outcome:
        wakeups.publish(command.agent_id)
        return Outcome(waiting=True)
