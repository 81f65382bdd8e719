"""The mapping of Temporal events to Flightdeck events (temporal/mapping.py), on the events of
real exported histories and on hand-made ones for the types a short workflow does not write."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from django.test import override_settings

from history.vocabulary import ALL_CORE_EVENT_TYPES
from history.wire import parse_event
from temporal import reference_agent
from temporal.mapping import APPROVAL_ACTIVITY, TYPES, UNKNOWN_TYPE, to_wire
from temporal.models import DEFAULT_APPROVAL_SIGNAL
from temporal.preparation import parse_wire
from tests.temporal.samples import events


def mapped(event: dict) -> dict:
    return to_wire(event, workflow_id="wf", run_id="run", event_id=int(event["eventId"]))


def payload(value) -> dict:
    return {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                          "data": base64.b64encode(json.dumps(value).encode()).decode()}]}


def by_type(name: str, kind: str = "") -> list[dict]:
    return [mapped(e) for e in events(name) if not kind or e["eventType"].endswith(kind)]


def test_every_flightdeck_type_of_the_table_is_in_the_vocabulary():
    assert set(TYPES.values()) | {UNKNOWN_TYPE, "approval.requested"} <= ALL_CORE_EVENT_TYPES


def test_every_mapped_event_of_the_real_histories_passes_the_wire_format():
    for name in ("reference_agent", "kitchen_sink"):
        for event in events(name):
            parse_event(0, mapped(event), max_attributes_bytes=1 << 20)


def test_the_event_keeps_its_id_time_and_the_original_type_and_attributes():
    original = events("kitchen_sink")[4]
    item = mapped(original)
    assert (item["event_id"], item["time"], item["type"]) == (
        5, original["eventTime"], "activity.scheduled"
    )
    kept = item["attributes"]["temporal"]
    assert kept["event_type"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    assert kept["attributes"] == original["activityTaskScheduledEventAttributes"]
    assert kept["event"] == {"taskId": original["taskId"]}


def test_the_start_carries_workflow_type_task_queue_input_and_worker_identity():
    item = mapped(events("kitchen_sink")[0])
    assert (item["type"], item["workflow_type"], item["identity"]) == (
        "workflow.started", "Exp", "12229@vm"
    )
    assert item["attributes"]["input"] == "hi"
    assert item["attributes"]["labels"] == {"task_queue": "exp"}


def test_workflow_tasks_are_decisions_with_refs():
    kinds = [(e["type"], e["refs"]) for e in by_type("kitchen_sink")[1:4]]
    assert kinds == [("decision.scheduled", {}), ("decision.started", {"scheduled": 2}),
                     ("decision.made", {"scheduled": 2, "started": 3})]


def test_an_activity_retried_after_a_failure_shows_its_attempt_and_last_failure():
    started = mapped(events("kitchen_sink")[5])
    assert started["type"] == "activity.started"
    assert started["attributes"]["attempt"] == 2
    assert started["attributes"]["last_failure"] == {"message": "boom hi",
                                                     "type": "RuntimeError"}
    completed = mapped(events("kitchen_sink")[6])
    assert completed["attributes"]["output"] == "ok hi"
    assert completed["refs"] == {"scheduled": 5, "started": 6}


def test_timers_markers_updates_signals_and_children_are_mapped():
    types = {e["type"] for e in by_type("kitchen_sink")}
    assert {"marker.recorded", "workflow.search_attributes_upserted", "timer.started",
            "timer.fired", "update.accepted", "update.completed", "signal.received",
            "child.initiated", "child.started", "child.completed",
            "workflow.completed"} <= types
    signal = by_type("kitchen_sink", "_SIGNALED")[0]
    assert signal["attributes"]["signal_name"] == "go" and signal["attributes"]["input"] == "sig"
    update = by_type("kitchen_sink", "_UPDATE_COMPLETED")[0]
    assert update["attributes"]["output"] == 3
    child = by_type("kitchen_sink", "CHILD_WORKFLOW_EXECUTION_COMPLETED")[0]
    assert child["attributes"]["workflow_id"] == "exp-1-child"
    assert child["attributes"]["output"] == "HI"


def test_model_and_tool_activities_are_told_apart_by_their_type_name():
    scheduled = by_type("reference_agent", "ACTIVITY_TASK_SCHEDULED")
    kinds = {e["attributes"]["activity_type"]: e["attributes"].get("kind") for e in scheduled
             if e["type"] == "activity.scheduled"}
    assert kinds["llm.plan"] == "llm" and kinds["tool.lookup_order"] == "tool"


def test_the_reserved_activity_is_an_approval_request():
    [request] = [e for e in by_type("reference_agent") if e["type"] == "approval.requested"]
    attributes = request["attributes"]
    assert attributes["request_id"] == "issue_refund-ticket-A"
    assert (attributes["action"], attributes["risk"]) == ("issue_refund", "high")
    assert attributes["arguments"] == {"order_id": "1234", "amount_cents": 2500}
    assert attributes["activity_type"] == APPROVAL_ACTIVITY
    assert reference_agent.APPROVAL_ACTIVITY == APPROVAL_ACTIVITY
    assert reference_agent.APPROVAL_SIGNAL == DEFAULT_APPROVAL_SIGNAL


def test_an_approval_request_without_a_request_id_uses_the_activity_id():
    event = {"eventId": "9", "eventTime": "2026-01-01T00:00:00Z",
             "eventType": "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED",
             "activityTaskScheduledEventAttributes": {
                 "activityId": "7", "activityType": {"name": APPROVAL_ACTIVITY},
                 "input": payload({"action": "delete_account"})}}
    attributes = mapped(event)["attributes"]
    assert (attributes["request_id"], attributes["action"]) == ("7", "delete_account")


@pytest.mark.parametrize("temporal_type, attributes, flightdeck_type, fields", [
    ("WORKFLOW_EXECUTION_PAUSED", {"identity": "flightdeck/ada/x", "reason": "look"},
     "workflow.paused", {"reason": "look"}),
    ("WORKFLOW_EXECUTION_UNPAUSED", {"identity": "ops"}, "workflow.resumed", {}),
    ("WORKFLOW_EXECUTION_CANCEL_REQUESTED", {"cause": "withdrawn", "identity": "ops"},
     "workflow.cancel_requested", {"reason": "withdrawn"}),
    ("WORKFLOW_EXECUTION_TERMINATED", {"reason": "stop", "identity": "ops"},
     "workflow.terminated", {"reason": "stop"}),
    ("WORKFLOW_EXECUTION_FAILED", {"failure": {"message": "bad", "applicationFailureInfo": {
        "type": "ValueError"}}, "retryState": "RETRY_STATE_RETRY_POLICY_NOT_SET"},
     "workflow.failed", {"error": {"message": "bad", "type": "ValueError"},
                         "retry_state": "RETRY_STATE_RETRY_POLICY_NOT_SET"}),
    ("WORKFLOW_EXECUTION_TIMED_OUT", {"retryState": "RETRY_STATE_TIMEOUT"},
     "workflow.timed_out", {"retry_state": "RETRY_STATE_TIMEOUT"}),
    ("WORKFLOW_EXECUTION_CONTINUED_AS_NEW", {"newExecutionRunId": "r2"},
     "workflow.continued_as_new", {"new_run_id": "r2"}),
    ("ACTIVITY_TASK_TIMED_OUT", {"scheduledEventId": "5", "startedEventId": "6",
                                 "failure": {"message": "activity timeout",
                                             "timeoutFailureInfo": {}}},
     "activity.timed_out", {"error": {"message": "activity timeout", "type": "timeout"}}),
    ("TIMER_CANCELED", {"timerId": "3", "startedEventId": "8"}, "timer.cancelled",
     {"timer_id": "3"}),
    ("NEXUS_OPERATION_SCHEDULED", {"endpoint": "e", "service": "s", "operation": "op"},
     "nexus.scheduled", {"endpoint": "e", "service": "s", "operation": "op"}),
    ("NEXUS_OPERATION_CANCEL_REQUEST_FAILED", {"scheduledEventId": "4"},
     "nexus.cancel_request_failed", {}),
    ("EXTERNAL_WORKFLOW_EXECUTION_SIGNALED", {"initiatedEventId": "4"}, "external.signaled", {}),
    ("ACTIVITY_PROPERTIES_MODIFIED_EXTERNALLY", {"scheduledEventId": "4"},
     "activity.properties_modified", {}),
])
def test_other_types_are_mapped(temporal_type, attributes, flightdeck_type, fields):
    key = "".join(w.capitalize() for w in temporal_type.lower().split("_"))
    key = key[0].lower() + key[1:] + "EventAttributes"
    item = mapped({"eventId": "12", "eventTime": "2026-01-01T00:00:00Z",
                   "eventType": f"EVENT_TYPE_{temporal_type}", key: attributes})
    assert item["type"] == flightdeck_type
    assert {k: v for k, v in item["attributes"].items() if k != "temporal"} == fields
    assert item["attributes"]["temporal"]["attributes"] == attributes


def test_an_unknown_event_type_is_kept_and_named():
    event = {"eventId": "3", "eventTime": "2026-01-01T00:00:00Z",
             "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_TELEPORTED", "taskId": "77",
             "workflowExecutionTeleportedEventAttributes": {"destination": "moon",
                                                           "identity": "w1"}}
    item = mapped(event)
    assert item["type"] == UNKNOWN_TYPE and item["identity"] == "w1"
    assert item["attributes"]["temporal"] == {
        "event_type": "EVENT_TYPE_WORKFLOW_EXECUTION_TELEPORTED",
        "attributes": {"destination": "moon", "identity": "w1"}, "event": {"taskId": "77"},
    }


def test_refs_to_another_workflows_history_are_not_refs():
    event = {"eventId": "3", "eventTime": "2026-01-01T00:00:00Z",
             "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED",
             "workflowExecutionCancelRequestedEventAttributes": {
                 "externalInitiatedEventId": "40", "cause": "parent asked"}}
    assert mapped(event)["refs"] == {}


@override_settings(TEMPORAL_MAX_ATTRIBUTES_BYTES=4096)
def test_an_event_over_the_size_limit_is_stored_shortened_not_dropped():
    event = events("kitchen_sink")[4]
    big = "x" * 10_000
    event["activityTaskScheduledEventAttributes"]["input"] = payload({"blob": big})
    parsed = parse_wire(event, "wf", "run", 5, "events[4]")
    assert parsed.attributes["shortened"] is True
    assert "input" not in parsed.attributes
    data = parsed.attributes["temporal"]["attributes"]["input"]["payloads"][0]["data"]
    assert data.startswith("<") and "characters left out" in data and "sha256" in data
    assert len(parsed.attributes_bytes) < 4096


KEYS = ["workflowType", "taskQueue", "input", "result", "activityType", "activityId",
        "attempt", "lastFailure", "failure", "parentWorkflowExecution", "workflowExecution",
        "workflowId", "timerId", "details", "markerName", "signalName", "acceptedRequest",
        "request", "meta", "outcome", "identity", "scheduledEventId", "startedEventId",
        "cause", "reason", "newExecutionRunId", "retryState", "name", "payloads", "data",
        "metadata", "encoding", "request_id", "action", "arguments", "risk"]


def json_values():
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=8)
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
                        max_leaves=12)


def test_any_attributes_map_or_are_refused_cleanly_never_a_crash():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from temporal.preparation import ImportRefused

    names = [*TYPES, "WORKFLOW_EXECUTION_TELEPORTED"]

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(names), st.dictionaries(st.sampled_from(KEYS), json_values(),
                                                   max_size=6))
    def check(short, attributes):
        key = "".join(w.capitalize() for w in short.lower().split("_"))
        event = {"eventId": "3", "eventTime": "2026-01-01T00:00:00Z",
                 "eventType": f"EVENT_TYPE_{short}",
                 f"{key[0].lower()}{key[1:]}EventAttributes": attributes}
        if short == "ACTIVITY_TASK_SCHEDULED" and isinstance(attributes.get("activityType"),
                                                              dict):
            attributes["activityType"]["name"] = APPROVAL_ACTIVITY
        with contextlib.suppress(ImportRefused):
            parse_wire(event, "wf", "run", 3, "events[0]")

    check()
