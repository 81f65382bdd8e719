"""The enumerations of interventions: command kinds and states, approval states and risks.

docs/event-schema.md holds the one table of every enumeration; a test checks it against these.
The command lifecycle is a small state machine, and `TRANSITIONS` is its whole definition:
every state change goes through `Command.advance`, which refuses any move not listed here.
"""

from __future__ import annotations

from django.db import models


class CommandKind(models.TextChoices):
    PAUSE = "pause", "Pause"
    RESUME = "resume", "Resume"
    CANCEL = "cancel", "Cancel"
    TERMINATE = "terminate", "Terminate"
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    SIGNAL = "signal", "Signal"


# Verbs an operator sends from the run page or the API. Approve and reject are not among them:
# they are only ever the delivery of a decision taken in the approvals inbox.
OPERATOR_KINDS = (
    CommandKind.PAUSE,
    CommandKind.RESUME,
    CommandKind.CANCEL,
    CommandKind.TERMINATE,
    CommandKind.SIGNAL,
)
# Verbs that end or may end the run: the page asks for confirmation, and a reason is required.
DESTRUCTIVE_KINDS = frozenset({CommandKind.CANCEL, CommandKind.TERMINATE})
REASON_REQUIRED = frozenset({CommandKind.CANCEL, CommandKind.TERMINATE, CommandKind.REJECT})


class CommandState(models.TextChoices):
    QUEUED = "queued", "Queued"  # committed; a delivery task is (or will be) enqueued
    DISPATCHED = "dispatched", "Dispatched"  # a worker claimed it and handed it to the connector
    DELIVERED = "delivered", "Delivered"  # the runtime confirmed receipt
    APPLIED = "applied", "Applied"  # the agent acknowledged: done
    REJECTED = "rejected", "Rejected"  # the agent acknowledged: refused
    FAILED = "failed", "Failed"  # delivery given up
    EXPIRED = "expired", "Expired"  # the deadline passed before delivery


TERMINAL_STATES = frozenset(
    {CommandState.APPLIED, CommandState.REJECTED, CommandState.FAILED, CommandState.EXPIRED}
)

# Every allowed move. A state may move to itself only where listed (a re-dispatch after a lost
# delivery, a second receipt): such moves change attempts or times, never the outcome. An
# acknowledgement may overtake the receipt (a webhook's agent can ack before its 2xx arrives).
TRANSITIONS: dict[str, frozenset[str]] = {
    CommandState.QUEUED: frozenset(
        {CommandState.DISPATCHED, CommandState.FAILED, CommandState.EXPIRED}
    ),
    CommandState.DISPATCHED: frozenset(
        {
            CommandState.DISPATCHED,
            CommandState.DELIVERED,
            CommandState.APPLIED,
            CommandState.REJECTED,
            CommandState.FAILED,
            CommandState.EXPIRED,
        }
    ),
    CommandState.DELIVERED: frozenset(
        {CommandState.DELIVERED, CommandState.APPLIED, CommandState.REJECTED}
    ),
    CommandState.APPLIED: frozenset(),
    CommandState.REJECTED: frozenset(),
    CommandState.FAILED: frozenset(),
    CommandState.EXPIRED: frozenset(),
}

# States in which a command still waits on delivery: the sweeper looks at these.
UNDELIVERED_STATES = (CommandState.QUEUED, CommandState.DISPATCHED)
# States in which a command is open: not yet acknowledged, failed or expired.
OPEN_STATES = (CommandState.QUEUED, CommandState.DISPATCHED, CommandState.DELIVERED)


class ApprovalState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"


class Risk(models.TextChoices):
    """Ordered: a stricter risk compares greater (see `RISK_ORDER`)."""

    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


RISK_ORDER = {risk: rank for rank, risk in enumerate(Risk.values)}


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class ConnectorKind(models.TextChoices):
    PULL = "pull", "Pull (the agent long-polls)"
    WEBHOOK = "webhook", "Webhook push"
    # Set by a Temporal connection (temporal app), never chosen on the connector page.
    TEMPORAL = "temporal", "Temporal service"
