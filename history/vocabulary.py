"""The enumerations of the wire format: event types and run statuses.

docs/event-schema.md has the one table of every enumeration; this module is its source of
truth in code, and a test checks that the two agree.
"""

from __future__ import annotations

from django.db import models


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TERMINATED = "terminated", "Terminated"
    TIMED_OUT = "timed_out", "Timed out"
    CONTINUED_AS_NEW = "continued_as_new", "Continued as new"


CLOSED_STATUSES = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELLED,
        RunStatus.TERMINATED,
        RunStatus.TIMED_OUT,
        RunStatus.CONTINUED_AS_NEW,
    }
)

# The event types that set a run's status. The status is the effect of the one with the
# highest event_id, so it comes out the same whatever order the events arrive in.
STATUS_EVENTS: dict[str, str] = {
    "workflow.started": RunStatus.RUNNING,
    "workflow.resumed": RunStatus.RUNNING,
    "workflow.paused": RunStatus.PAUSED,
    "workflow.completed": RunStatus.COMPLETED,
    "workflow.failed": RunStatus.FAILED,
    "workflow.cancelled": RunStatus.CANCELLED,
    "workflow.terminated": RunStatus.TERMINATED,
    "workflow.timed_out": RunStatus.TIMED_OUT,
    "workflow.continued_as_new": RunStatus.CONTINUED_AS_NEW,
}

# Core event types, grouped by category (the timeline filters by category). Any other dotted
# lowercase type is accepted and stored as it is, in the category named by its first part.
CORE_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "workflow": (
        "workflow.started",
        "workflow.completed",
        "workflow.failed",
        "workflow.cancelled",
        "workflow.terminated",
        "workflow.timed_out",
        "workflow.continued_as_new",
        "workflow.paused",
        "workflow.resumed",
        # From Temporal histories (docs/temporal.md): no status change.
        "workflow.cancel_requested",
        "workflow.search_attributes_upserted",
        "workflow.properties_modified",
        "workflow.options_updated",
    ),
    "decision": (
        "decision.made",
        # A Temporal workflow task's other steps; its completion is decision.made.
        "decision.scheduled",
        "decision.started",
        "decision.failed",
        "decision.timed_out",
    ),
    "activity": (
        "activity.scheduled",
        "activity.started",
        "activity.completed",
        "activity.failed",
        "activity.timed_out",
        "activity.cancelled",
        "activity.cancel_requested",
        "activity.properties_modified",
    ),
    # granted / rejected / expired are the agent's claims about the decision it received;
    # Flightdeck checks them against the decision it delivered.
    "approval": (
        "approval.requested", "approval.granted", "approval.rejected", "approval.expired"
    ),
    "signal": ("signal.received",),
    "timer": ("timer.started", "timer.fired", "timer.cancelled"),
    "child": (
        "child.started",
        "child.completed",
        "child.failed",
        "child.initiated",
        "child.start_failed",
        "child.cancelled",
        "child.timed_out",
        "child.terminated",
    ),
    "marker": ("marker.recorded",),
    "command": ("command.received", "command.applied", "command.rejected"),
    # Temporal's workflow updates, Nexus operations, and the workflow's own signals and cancel
    # requests to other workflows (docs/temporal.md has the whole mapping).
    "update": ("update.admitted", "update.accepted", "update.rejected", "update.completed"),
    "nexus": (
        "nexus.scheduled",
        "nexus.started",
        "nexus.completed",
        "nexus.failed",
        "nexus.cancelled",
        "nexus.timed_out",
        "nexus.cancel_requested",
        "nexus.cancel_request_completed",
        "nexus.cancel_request_failed",
    ),
    "external": (
        "external.signal_initiated",
        "external.signal_failed",
        "external.signaled",
        "external.cancel_initiated",
        "external.cancel_failed",
        "external.cancel_requested",
    ),
    # A Temporal event type this version of Flightdeck does not know: kept, shown generically.
    "temporal": ("temporal.unknown",),
}

ALL_CORE_EVENT_TYPES = frozenset(t for types in CORE_EVENT_TYPES.values() for t in types)

def category_of(event_type: str) -> str:
    return event_type.split(".", 1)[0]
