"""The interface every connector implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

QUEUE_COMMANDS = "commands"  # fast deliveries: the pull channel's wake-ups, the sweeper
QUEUE_SLOW = "slow"  # outgoing calls: webhooks, notifications, Temporal services


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt achieved.

    `delivered`: the runtime confirmed receipt. `waiting`: handed over, the runtime will pick it
    up (the pull channel). `retry`: a transient failure worth another attempt. Anything else
    is a permanent failure: `error` says why, in words an operator can act on.
    """

    delivered: bool = False
    waiting: bool = False
    retry: bool = False
    error: str = ""


class Connector:
    kind: ClassVar[str]
    queue: ClassVar[str] = QUEUE_COMMANDS

    def refusal(self, command_kind: str, agent) -> str | None:
        """Why this connector cannot carry `command_kind` for `agent`, or None if it can."""
        return None

    def dispatch(self, command) -> Outcome:
        raise NotImplementedError
