"""Temporal history events as Flightdeck events: the type table and the mapping of one event.

Input is one event in Temporal's canonical JSON (protobuf JSON: camelCase keys, enum names such
as `EVENT_TYPE_ACTIVITY_TASK_SCHEDULED`, 64-bit integers as strings), as
`temporal workflow show -o json` writes it and as `history_files.normalize_event` and the
follower (`MessageToDict`) produce it. `to_wire` depends on nothing but that one event, so an
imported copy and a followed copy of the same history are stored byte for byte alike.

Each Flightdeck event keeps the same event id and carries, under `temporal`, the original
event type and attributes (payloads still base64, as Temporal wrote them) and the event's other
fields; next to it a few fields Flightdeck's pages read (`activity_type`, `input`, `output`,
`error`, `attempt`, ...) with payloads decoded. docs/temporal.md has the table.
"""

from __future__ import annotations

import re
from functools import cache

from history.payloads import decode_payload

EVENT_TYPE_PREFIX = "EVENT_TYPE_"

# The activity type by which a Temporal workflow asks for a person's approval
# (docs/temporal.md, "Approvals"): its scheduled event becomes `approval.requested`.
APPROVAL_ACTIVITY = "flightdeck.request_approval"
APPROVAL_FIELDS = (
    "request_id", "action", "tool", "arguments", "summary", "reason", "risk", "approvals",
    "deadline", "timeout_seconds", "on_behalf_of",
)

# Temporal event type (without EVENT_TYPE_) -> Flightdeck event type.
TYPES: dict[str, str] = {
    "WORKFLOW_EXECUTION_STARTED": "workflow.started",
    "WORKFLOW_EXECUTION_COMPLETED": "workflow.completed",
    "WORKFLOW_EXECUTION_FAILED": "workflow.failed",
    "WORKFLOW_EXECUTION_TIMED_OUT": "workflow.timed_out",
    "WORKFLOW_EXECUTION_CANCELED": "workflow.cancelled",
    "WORKFLOW_EXECUTION_TERMINATED": "workflow.terminated",
    "WORKFLOW_EXECUTION_CONTINUED_AS_NEW": "workflow.continued_as_new",
    "WORKFLOW_EXECUTION_PAUSED": "workflow.paused",
    "WORKFLOW_EXECUTION_UNPAUSED": "workflow.resumed",
    "WORKFLOW_EXECUTION_CANCEL_REQUESTED": "workflow.cancel_requested",
    "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES": "workflow.search_attributes_upserted",
    "WORKFLOW_PROPERTIES_MODIFIED": "workflow.properties_modified",
    "WORKFLOW_PROPERTIES_MODIFIED_EXTERNALLY": "workflow.properties_modified",
    "WORKFLOW_EXECUTION_OPTIONS_UPDATED": "workflow.options_updated",
    "WORKFLOW_TASK_SCHEDULED": "decision.scheduled",
    "WORKFLOW_TASK_STARTED": "decision.started",
    "WORKFLOW_TASK_COMPLETED": "decision.made",
    "WORKFLOW_TASK_FAILED": "decision.failed",
    "WORKFLOW_TASK_TIMED_OUT": "decision.timed_out",
    "ACTIVITY_TASK_SCHEDULED": "activity.scheduled",
    "ACTIVITY_TASK_STARTED": "activity.started",
    "ACTIVITY_TASK_COMPLETED": "activity.completed",
    "ACTIVITY_TASK_FAILED": "activity.failed",
    "ACTIVITY_TASK_TIMED_OUT": "activity.timed_out",
    "ACTIVITY_TASK_CANCEL_REQUESTED": "activity.cancel_requested",
    "ACTIVITY_TASK_CANCELED": "activity.cancelled",
    "ACTIVITY_PROPERTIES_MODIFIED_EXTERNALLY": "activity.properties_modified",
    "TIMER_STARTED": "timer.started",
    "TIMER_FIRED": "timer.fired",
    "TIMER_CANCELED": "timer.cancelled",
    "MARKER_RECORDED": "marker.recorded",
    "WORKFLOW_EXECUTION_SIGNALED": "signal.received",
    "WORKFLOW_EXECUTION_UPDATE_ADMITTED": "update.admitted",
    "WORKFLOW_EXECUTION_UPDATE_ACCEPTED": "update.accepted",
    "WORKFLOW_EXECUTION_UPDATE_REJECTED": "update.rejected",
    "WORKFLOW_EXECUTION_UPDATE_COMPLETED": "update.completed",
    "START_CHILD_WORKFLOW_EXECUTION_INITIATED": "child.initiated",
    "START_CHILD_WORKFLOW_EXECUTION_FAILED": "child.start_failed",
    "CHILD_WORKFLOW_EXECUTION_STARTED": "child.started",
    "CHILD_WORKFLOW_EXECUTION_COMPLETED": "child.completed",
    "CHILD_WORKFLOW_EXECUTION_FAILED": "child.failed",
    "CHILD_WORKFLOW_EXECUTION_CANCELED": "child.cancelled",
    "CHILD_WORKFLOW_EXECUTION_TIMED_OUT": "child.timed_out",
    "CHILD_WORKFLOW_EXECUTION_TERMINATED": "child.terminated",
    "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED": "external.signal_initiated",
    "SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED": "external.signal_failed",
    "EXTERNAL_WORKFLOW_EXECUTION_SIGNALED": "external.signaled",
    "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED": "external.cancel_initiated",
    "REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_FAILED": "external.cancel_failed",
    "EXTERNAL_WORKFLOW_EXECUTION_CANCEL_REQUESTED": "external.cancel_requested",
    "NEXUS_OPERATION_SCHEDULED": "nexus.scheduled",
    "NEXUS_OPERATION_STARTED": "nexus.started",
    "NEXUS_OPERATION_COMPLETED": "nexus.completed",
    "NEXUS_OPERATION_FAILED": "nexus.failed",
    "NEXUS_OPERATION_CANCELED": "nexus.cancelled",
    "NEXUS_OPERATION_TIMED_OUT": "nexus.timed_out",
    "NEXUS_OPERATION_CANCEL_REQUESTED": "nexus.cancel_requested",
    "NEXUS_OPERATION_CANCEL_REQUEST_COMPLETED": "nexus.cancel_request_completed",
    "NEXUS_OPERATION_CANCEL_REQUEST_FAILED": "nexus.cancel_request_failed",
}
UNKNOWN_TYPE = "temporal.unknown"

# Attributes naming another event of the same history, as refs. Others ending in EventId
# (externalInitiatedEventId, parentInitiatedEventId) point into another workflow's history.
REFS = {
    "scheduledEventId": "scheduled",
    "startedEventId": "started",
    "initiatedEventId": "initiated",
    "workflowTaskCompletedEventId": "decision",
    "acceptedEventId": "accepted",
    "latestCancelRequestedEventId": "cancel_requested",
    "requestedEventId": "requested",
}
MAX_REF = 2**53 - 1
MAX_IDENTITY = 255
MAX_LABEL_VALUE = 200
ACTIVITY_KINDS = (("llm.", "llm"), ("model.", "llm"), ("tool.", "tool"))
_FAILURE_KEYS = ("message", "source", "stackTrace")
_ATTRIBUTES_KEY = re.compile(r"[a-z][A-Za-z]*EventAttributes")


def attributes_key(event: dict) -> str | None:
    """The key of the event's `...EventAttributes` object, whatever its type."""
    expected = _expected_key(event.get("eventType"))
    if expected in event:
        return expected
    for key in event:
        if key.endswith("EventAttributes") and _ATTRIBUTES_KEY.fullmatch(key):
            return key
    return None


@cache
def _expected_key(event_type) -> str:
    """EVENT_TYPE_TIMER_FIRED -> timerFiredEventAttributes (the protobuf JSON field name)."""
    if not isinstance(event_type, str) or not event_type.startswith(EVENT_TYPE_PREFIX):
        return ""
    words = event_type[len(EVENT_TYPE_PREFIX):].lower().split("_")
    return words[0] + "".join(word.capitalize() for word in words[1:]) + "EventAttributes"


def to_wire(event: dict, *, workflow_id: str, run_id: str, event_id: int) -> dict:
    """The Flightdeck wire-format item for one canonical Temporal event (see module doc).
    `event_id` is the event's id, already checked by the caller."""
    type_name = event["eventType"]
    short = type_name[len(EVENT_TYPE_PREFIX):] if type_name.startswith(EVENT_TYPE_PREFIX) else ""
    key = attributes_key(event)
    raw = event.get(key) if key else None
    raw = raw if isinstance(raw, dict) else {}
    flightdeck_type = TYPES.get(short, UNKNOWN_TYPE)
    attributes = _details(short, raw)
    if short == "ACTIVITY_TASK_SCHEDULED" and attributes.get("activity_type") == APPROVAL_ACTIVITY:
        flightdeck_type = "approval.requested"
        attributes = _approval_request(raw, attributes)
    attributes["temporal"] = {
        "event_type": type_name,
        "attributes": raw,
        "event": {
            name: value for name, value in event.items()
            if name not in ("eventId", "eventTime", "eventType", key)
        },
    }
    item = {
        "workflow_id": workflow_id,
        "run_id": run_id,
        "event_id": event_id,
        "type": flightdeck_type,
        "time": event["eventTime"],
        "attributes": attributes,
        "refs": _refs(raw),
    }
    identity = _identity(raw)
    if identity:
        item["identity"] = identity
    if flightdeck_type == "workflow.started":
        item["workflow_type"] = _name(raw.get("workflowType")) or "unknown"
    return item


def _refs(raw: dict) -> dict[str, int]:
    refs = {}
    for key, name in REFS.items():
        value = raw.get(key)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_REF:
            refs[name] = value
    return refs


def _identity(raw: dict) -> str:
    identity = raw.get("identity")
    if not isinstance(identity, str):
        meta = raw.get("meta") or _dict(raw.get("acceptedRequest")).get("meta")
        identity = meta.get("identity") if isinstance(meta, dict) else None
    if not isinstance(identity, str):
        return ""
    return identity.replace("\x00", "\ufffd")[:MAX_IDENTITY]


def _name(value) -> str:
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) else ""


def _dict(value) -> dict:
    """`value` if it is an object, else {}: a file may hold anything where an object belongs."""
    return value if isinstance(value, dict) else {}


def values(payloads):
    """The decoded values of a Payloads object: one value, a list of several, or None."""
    if not isinstance(payloads, dict):
        return None
    items = payloads.get("payloads")
    if not isinstance(items, list) or not items:
        return None
    decoded = [decode_payload(item) for item in items]
    return decoded[0] if len(decoded) == 1 else decoded


def failure(value) -> dict | None:
    """A Temporal Failure, shortened to what a reader scans: message, type, cause's message."""
    if not isinstance(value, dict):
        return None
    summary = {key: value[key] for key in _FAILURE_KEYS[:2] if isinstance(value.get(key), str)}
    info = value.get("applicationFailureInfo")
    if isinstance(info, dict) and isinstance(info.get("type"), str):
        summary["type"] = info["type"]
    for kind in ("timeoutFailureInfo", "canceledFailureInfo", "terminatedFailureInfo",
                 "serverFailureInfo", "activityFailureInfo", "childWorkflowExecutionFailureInfo"):
        if kind in value:
            summary.setdefault("type", kind.removesuffix("FailureInfo"))
    cause = value.get("cause")
    if isinstance(cause, dict) and isinstance(cause.get("message"), str):
        summary["cause"] = cause["message"]
    return summary


def _put(target: dict, name: str, value) -> None:
    if value is not None and value != "" and value != {}:
        target[name] = value


def _details(short: str, raw: dict) -> dict:
    """The readable fields of one event, by the kind of its Temporal type."""
    out: dict = {}
    if short.startswith("ACTIVITY_TASK_") or short == "ACTIVITY_PROPERTIES_MODIFIED_EXTERNALLY":
        activity_type = _name(raw.get("activityType"))
        _put(out, "activity_type", activity_type)
        _put(out, "activity_id", raw.get("activityId"))
        for prefix, kind in ACTIVITY_KINDS:
            if activity_type.startswith(prefix):
                out["kind"] = kind
                break
        _put(out, "input", values(raw.get("input")))
        _put(out, "output", values(raw.get("result")))
        _put(out, "attempt", raw.get("attempt"))
        if short == "ACTIVITY_TASK_STARTED":
            _put(out, "last_failure", failure(raw.get("lastFailure")))
    elif short.startswith("WORKFLOW_EXECUTION_STARTED"):
        _put(out, "input", values(raw.get("input")))
        queue = _name(raw.get("taskQueue"))
        _put(out, "task_queue", queue)
        _put(out, "attempt", raw.get("attempt"))
        _put(out, "parent_workflow_id", _dict(raw.get("parentWorkflowExecution")).get(
            "workflowId"))
        if queue:
            out["labels"] = {"task_queue": queue[:MAX_LABEL_VALUE]}
    elif short.startswith("TIMER_"):
        _put(out, "timer_id", raw.get("timerId"))
        _put(out, "duration", raw.get("startToFireTimeout"))
    elif short.startswith(("CHILD_WORKFLOW_", "START_CHILD_WORKFLOW_")):
        execution = _dict(raw.get("workflowExecution"))
        _put(out, "workflow_id", raw.get("workflowId") or execution.get("workflowId"))
        _put(out, "child_run_id", execution.get("runId"))
        _put(out, "workflow_type", _name(raw.get("workflowType")))
        _put(out, "input", values(raw.get("input")))
        _put(out, "output", values(raw.get("result")))
    elif short == "MARKER_RECORDED":
        _put(out, "marker_name", raw.get("markerName"))
        details = raw.get("details")
        if isinstance(details, dict):
            _put(out, "details", {name: values(p) for name, p in details.items()})
    elif short == "WORKFLOW_EXECUTION_SIGNALED" or short.startswith("SIGNAL_EXTERNAL_"):
        _put(out, "signal_name", raw.get("signalName"))
        _put(out, "input", values(raw.get("input")))
    elif short.startswith("WORKFLOW_EXECUTION_UPDATE_"):
        request = _dict(raw.get("acceptedRequest") or raw.get("request")
                        or raw.get("rejectedRequest"))
        meta = _dict(raw.get("meta") or request.get("meta"))
        _put(out, "update_id", meta.get("updateId"))
        body = _dict(request.get("input"))
        _put(out, "update_name", body.get("name"))
        _put(out, "input", values(body.get("args")))
        _put(out, "output", values(_dict(raw.get("outcome")).get("success")))
    elif short.startswith("NEXUS_OPERATION_"):
        for key, name in (("endpoint", "endpoint"), ("service", "service"),
                          ("operation", "operation"), ("operationToken", "operation_token")):
            _put(out, name, raw.get(key))
        _put(out, "input", decode_payload(raw.get("input")))
        _put(out, "output", decode_payload(raw.get("result")))
    elif short == "WORKFLOW_EXECUTION_COMPLETED":
        _put(out, "result", values(raw.get("result")))
    elif short == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW":
        _put(out, "new_run_id", raw.get("newExecutionRunId"))
        _put(out, "input", values(raw.get("input")))
    elif short in ("WORKFLOW_EXECUTION_TERMINATED", "WORKFLOW_EXECUTION_CANCELED"):
        _put(out, "reason", raw.get("reason"))
        _put(out, "details", values(raw.get("details")))
    elif short == "WORKFLOW_EXECUTION_CANCEL_REQUESTED":
        _put(out, "reason", raw.get("cause"))
    elif short in ("WORKFLOW_EXECUTION_PAUSED", "WORKFLOW_EXECUTION_UNPAUSED"):
        _put(out, "reason", raw.get("reason"))
    # Failures and retry states wherever they appear (activity, workflow, child, task, nexus).
    _put(out, "error", failure(raw.get("failure")))
    _put(out, "retry_state", raw.get("retryState"))
    _put(out, "timeout_type", raw.get("timeoutType"))
    return out


def _approval_request(raw: dict, details: dict) -> dict:
    """The approval.requested attributes of the reserved activity's scheduled event: the
    fields its first input argument names (docs/temporal.md), the activity's id as
    request_id when it names none."""
    asked = details.get("input")
    if isinstance(asked, list):
        asked = asked[0] if asked else None
    asked = asked if isinstance(asked, dict) else {}
    out = {name: asked[name] for name in APPROVAL_FIELDS if name in asked}
    out.setdefault("request_id", details.get("activity_id") or "")
    out["activity_type"] = APPROVAL_ACTIVITY
    _put(out, "activity_id", details.get("activity_id"))
    return out
