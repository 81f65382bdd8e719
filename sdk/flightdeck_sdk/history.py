"""A run's recorded history, read for resuming: what a restarted agent must replay.

Replay goes by **step position**: every `run.call`, `run.decide`, `run.request_approval`,
`run.sleep` and `run.record` takes the next position (1, 2, 3, …), recorded in its event's
`position` attribute. Events that are not steps (commands, pauses, markers, claims) may fall
anywhere between them and are not replayed, except what changed the agent's course: a signal
handled and a cancel applied at a position are delivered again at the same position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CLOSING = {"workflow.completed", "workflow.failed", "workflow.cancelled", "workflow.terminated",
           "workflow.timed_out", "workflow.continued_as_new"}
CLAIMS = {"approval.granted": "approved", "approval.rejected": "rejected",
          "approval.expired": "expired"}

# The event types the SDK records itself and reads back on resume, and what to use instead of
# `run.record` for each: recording one by hand would be misread as the SDK's own step.
OWNED_PREFIXES = {
    "workflow.": "the run records its own start and end",
    "activity.": "use run.call or @activity",
    "command.": "the SDK records the commands it receives",
    "timer.": "use run.sleep",
}
OWNED_TYPES = {
    "approval.requested": "use run.request_approval",
    "decision.made": "use run.decide",
    "signal.received": "the SDK records the signals it receives",
}


def owned_by_sdk(event_type: str) -> str | None:
    """Why `event_type` is the SDK's own (what to use instead), or None if it is not."""
    if event_type in OWNED_TYPES:
        return OWNED_TYPES[event_type]
    for prefix, why in OWNED_PREFIXES.items():
        if event_type.startswith(prefix):
            return why
    return None


@dataclass
class RecordedActivity:
    position: int
    activity_key: str
    activity_type: str
    scheduled_event_id: int
    attempts: int = 0
    completed: bool = False
    output: object = None

    def describe(self) -> str:
        return f"activity {self.activity_type!r} with key {self.activity_key!r}"


@dataclass
class RecordedDecision:
    position: int
    decision: object

    def describe(self) -> str:
        return f"decision {self.decision!r}"


@dataclass
class RecordedApproval:
    position: int
    request_id: str
    action: str
    claim: dict | None = None  # the claim event's attributes, once recorded

    def describe(self) -> str:
        return f"approval request for {self.action!r}"


@dataclass
class RecordedTimer:
    position: int
    timer_id: str
    started_event_id: int
    fire_at: str  # RFC 3339, as recorded on timer.started
    fired: bool = False
    cancelled: bool = False

    def describe(self) -> str:
        return f"timer {self.timer_id!r}"


@dataclass
class RecordedEvent:
    """An event the agent recorded with `run.record` (a type the SDK does not model)."""

    position: int
    type: str
    event_id: int

    def describe(self) -> str:
        return f"event {self.type!r}"


@dataclass
class RecordedControl:
    """A signal handled or a cancel applied at a position: the agent's course depended on it."""

    position: int
    kind: str  # "signal" | "cancel"
    command_id: str
    signal_name: str = ""
    payload: object = None
    reason: str = ""


@dataclass
class RecordedHistory:
    events: list[dict]
    last_event_id: int = 0
    started: bool = False
    closed: str | None = None  # the closing event's type
    paused_by: str | None = None  # command id of a pause not yet followed by a resume
    steps: dict[int, object] = field(default_factory=dict)
    controls: dict[int, list[RecordedControl]] = field(default_factory=dict)
    received: dict[str, dict] = field(default_factory=dict)  # command id -> its attributes
    finished: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (status, detail)

    @classmethod
    def read(cls, events: list[dict]) -> RecordedHistory:
        history = cls(sorted(events, key=lambda event: event["event_id"]))
        scheduled: dict[int, RecordedActivity] = {}
        timers: dict[int, RecordedTimer] = {}
        approvals: dict[str, RecordedApproval] = {}
        for event in history.events:
            history._read_one(event, scheduled, timers, approvals)
        return history

    def _read_one(self, event: dict, scheduled: dict, timers: dict, approvals: dict) -> None:
        kind = event.get("type", "")
        attributes = event.get("attributes") or {}
        refs = event.get("refs") or {}
        self.last_event_id = max(self.last_event_id, int(event["event_id"]))
        position = attributes.get("position")
        position = position if isinstance(position, int) and position > 0 else None
        if kind == "workflow.started":
            self.started = True
        elif kind in CLOSING:
            self.closed = kind
        elif kind == "workflow.paused":
            self.paused_by = str(attributes.get("command_id") or "") or "unknown"
        elif kind == "workflow.resumed":
            self.paused_by = None
        elif kind == "activity.scheduled" and position:
            step = RecordedActivity(position, str(attributes.get("activity_key", "")),
                                    str(attributes.get("activity_type", "")), event["event_id"])
            self.steps[position] = scheduled[event["event_id"]] = step
        elif kind in ("activity.started", "activity.completed", "activity.failed"):
            step = scheduled.get(refs.get("scheduled"))
            if step is not None:
                attempt = attributes.get("attempt")
                if isinstance(attempt, int):
                    step.attempts = max(step.attempts, attempt)
                if kind == "activity.completed":
                    step.completed, step.output = True, attributes.get("output")
        elif kind == "decision.made" and position:
            self.steps[position] = RecordedDecision(position, attributes.get("decision"))
        elif kind == "approval.requested" and position:
            step = RecordedApproval(position, str(attributes.get("request_id", "")),
                                    str(attributes.get("action", "")))
            self.steps[position] = approvals[step.request_id] = step
        elif kind == "timer.started" and position:
            step = RecordedTimer(position, str(attributes.get("timer_id", "")),
                                 event["event_id"], str(attributes.get("fire_at", "")))
            self.steps[position] = timers[event["event_id"]] = step
        elif kind in ("timer.fired", "timer.cancelled"):
            step = timers.get(refs.get("started"))
            if step is not None:
                step.fired = step.fired or kind == "timer.fired"
                step.cancelled = step.cancelled or kind == "timer.cancelled"
        elif kind in CLAIMS and position is None:
            # The SDK's own record of the decision it received (it has no position). A claim
            # the agent recorded itself with run.record is a step of its own (below) and never
            # stands in for the decision.
            step = approvals.get(str(attributes.get("request_id", "")))
            if step is not None:
                step.claim = {**attributes, "decision": CLAIMS[kind]}
        elif kind == "command.received":
            self.received[str(attributes.get("command_id"))] = attributes
        elif kind in ("command.applied", "command.rejected"):
            command_id = str(attributes.get("command_id"))
            self.finished[command_id] = (kind.split(".")[1], str(attributes.get("detail", "")))
            if kind == "command.applied" and attributes.get("kind") == "cancel" and position:
                self.controls.setdefault(position, []).append(RecordedControl(
                    position, "cancel", command_id, reason=str(attributes.get("reason", ""))))
        elif kind == "signal.received" and position:
            self.controls.setdefault(position, []).append(RecordedControl(
                position, "signal", str(attributes.get("command_id", "")),
                signal_name=str(attributes.get("signal_name", "")),
                payload=attributes.get("payload")))
        if position and owned_by_sdk(kind) is None:
            self.steps[position] = RecordedEvent(position, kind, event["event_id"])

    def unfinished_commands(self) -> list[dict]:
        """Commands received but neither applied nor rejected before the process ended, as
        messages to apply again (their redelivery then counts as a duplicate)."""
        messages = []
        for command_id, attributes in self.received.items():
            if command_id in self.finished:
                continue
            messages.append({
                "id": command_id, "kind": attributes.get("kind"),
                "signal_name": attributes.get("signal_name"),
                "payload": attributes.get("payload") or {},
                "reason": attributes.get("reason") or "",
            })
        return messages
