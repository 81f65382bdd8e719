"""Reading Temporal history files: every shape and spelling found in the wild comes out as the
same canonical events, and what is not a Temporal history is refused with the place and the
reason (temporal/history_files.py)."""

from __future__ import annotations

import contextlib

import pytest

from temporal.history_files import HistoryError, read
from tests.temporal.samples import dumps, events, history, history_bytes, legacy

WORKFLOW_ID = "ticket-A"


def canonical():
    [only] = read(history_bytes())
    return only


def test_the_cli_export_is_read_as_one_history_named_by_its_start_event():
    found = canonical()
    assert found.workflow_id == WORKFLOW_ID
    started = history()["events"][0]["workflowExecutionStartedEventAttributes"]
    assert found.run_id == started["originalExecutionRunId"]
    assert found.event_ids == list(range(1, len(history()["events"]) + 1))
    assert found.events == history()["events"]


@pytest.mark.parametrize("shape", [
    lambda h: {"history": h},
    lambda h: h["events"],
    lambda h: list(reversed(h["events"])),
    lambda h: {"events": h["events"][::2] + h["events"][1::2]},
    lambda h: [h],
    lambda h: [{"history": h}],
], ids=["history.events", "bare array", "newest first", "shuffled", "array of one",
        "array of wrapped"])
def test_every_shape_gives_the_same_events(shape):
    [found] = read(dumps(shape(history())))
    assert (found.workflow_id, found.run_id, found.events) == (
        canonical().workflow_id, canonical().run_id, canonical().events
    )


def test_the_older_spelling_gives_the_same_canonical_events():
    old = legacy(history("kitchen_sink"))
    assert old["events"][0]["eventType"] == "WorkflowExecutionStarted"
    assert old["events"][0]["eventId"] == 1
    [found] = read(dumps(old))
    [expected] = read(history_bytes("kitchen_sink"))
    assert found.events == expected.events


def test_event_ids_as_numbers_with_canonical_enums_are_read_as_the_same():
    numbered = history()
    for event in numbered["events"]:
        event["eventId"] = int(event["eventId"])
    [found] = read(dumps(numbered))
    assert found.events == canonical().events


def test_enum_numbers_are_read_as_names():
    numbered = history()
    numbered["events"][0]["eventType"] = 1
    [found] = read(dumps(numbered))
    assert found.events[0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"


def test_an_array_of_histories_gives_each_run():
    found = read(dumps([history(), history("kitchen_sink")]))
    assert [h.workflow_id for h in found] == [WORKFLOW_ID, "exp-1"]
    assert found[1].where == "[1].events"


def test_a_history_without_its_start_event_needs_the_ids_given():
    later = {"events": events()[5:]}
    with pytest.raises(HistoryError, match=r"does not name its workflow id.*give it as "
                                           r"workflow_id"):
        read(dumps(later))
    [found] = read(dumps(later), workflow_id="wf-given", run_id="run-given")
    assert (found.workflow_id, found.run_id, found.event_ids[0]) == ("wf-given", "run-given", 6)


def test_whole_number_floats_are_written_as_integers_as_temporal_writes_them():
    floats = history()
    retry = floats["events"][4]["activityTaskScheduledEventAttributes"]["retryPolicy"]
    retry["backoffCoefficient"] = 2.0
    [found] = read(dumps(floats).replace(b'"backoffCoefficient": 2.0', b'"backoffCoefficient"'
                                          b': 2.0'))
    assert found.events == canonical().events


@pytest.mark.parametrize("content, message", [
    (b"not json", "the file is not JSON"),
    (b'"a string"', "this file holds a string"),
    (b"[]", "empty array"),
    (b'{"workflows": []}', r"has no `events` or `history.events` \(its keys: workflows\)"),
    (b'{"events": []}', "events: is empty"),
    (b'{"events": {}}', "events: must be an array of events, not an object"),
    (b'{"events": [1]}', r"events\[0\]: must be an event object, not a number"),
    (b'{"events": [{"eventId": "1"}]}', r"events\[0\]: has no eventType"),
    (b'{"events": [{"workflow_id": "w", "type": "workflow.started", "event_id": 1}]}',
     "Flightdeck's own event format"),
    (b'{"events": [{"eventId": "x", "eventType": "EVENT_TYPE_TIMER_FIRED", "eventTime": "t"}]}',
     r"events\[0\]\.eventId: must be a positive integer"),
    (b'{"events": [{"eventId": 0, "eventType": "TimerFired", "eventTime": "t"}]}',
     r"events\[0\]\.eventId: must be a positive integer"),
    (b'{"events": [{"eventId": "1", "eventType": "EVENT_TYPE_TIMER_FIRED"}]}',
     r"events\[0\]\.eventTime: is required"),
    (b'{"events": [{"eventId": "1", "eventType": "timer fired!", "eventTime": "t"}]}',
     r"events\[0\]\.eventType: must name a Temporal event type"),
])
def test_what_is_not_a_temporal_history_is_refused_naming_where_and_why(content, message):
    with pytest.raises(HistoryError, match=message):
        read(content, workflow_id="w", run_id="r")


def test_one_event_id_twice_with_different_content_is_refused():
    doubled = events()
    twin = dict(doubled[3], eventTime="2020-01-01T00:00:00Z")
    with pytest.raises(HistoryError, match=r"events\[\d+\]\.eventId: event 4 appears twice"):
        read(dumps({"events": [*doubled, twin]}))


def test_the_same_event_twice_is_read_once():
    [found] = read(dumps({"events": [*events(), events()[3]]}))
    assert found.event_ids == canonical().event_ids


def test_a_run_id_cannot_be_given_for_several_histories():
    with pytest.raises(HistoryError, match="run_id: the file holds 2 histories"):
        read(dumps([history(), history("kitchen_sink")]), run_id="r")


@pytest.mark.parametrize("spelling", ["EVENT_TYPE_TIMER_FIRED", "TimerFired"])
def test_a_file_nested_absurdly_deep_is_refused_not_a_crash(spelling):
    deep = {"x": 1.0}
    for _ in range(900):
        deep = {"cause": deep}
    event = {"eventId": "1", "eventTime": "2026-01-01T00:00:00Z", "eventType": spelling,
             "timerFiredEventAttributes": {"failure": deep}}
    with pytest.raises(HistoryError, match="nests objects too deeply"):
        read(dumps({"events": [event]}), workflow_id="w", run_id="r")


def test_any_event_in_either_spelling_is_read_or_refused_cleanly_never_a_crash():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from tests.temporal.test_mapping import KEYS, json_values

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["WorkflowExecutionStarted", "ActivityTaskScheduled",
                            "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED", "TimerFired", 2]),
           st.sampled_from(["1", 1]),
           st.dictionaries(st.sampled_from([*KEYS, "kind", "retryPolicy", "header",
                                            "searchAttributes", "indexedFields"]),
                           json_values(), max_size=6))
    def check(event_type, event_id, attributes):
        event = {"eventId": event_id, "eventTime": "2026-01-01T00:00:00Z",
                 "eventType": event_type,
                 "workflowExecutionStartedEventAttributes": attributes,
                 "activityTaskScheduledEventAttributes": attributes}
        with contextlib.suppress(HistoryError):
            read(dumps({"events": [event]}), workflow_id="w", run_id="r")

    check()


def test_the_whole_float_search_finds_what_the_plain_pattern_finds():
    # _WHOLE_FLOAT is the plain pattern below rewritten to start with its literal dot (for
    # speed); on any text both must agree on whether there is a match.
    import re

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from temporal.history_files import _WHOLE_FLOAT

    plain = re.compile(rb"\d\.0+(?:[eE][+-]?\d+)?\s*[,}\]]")
    pieces = st.sampled_from([b"1", b"9", b".", b"0", b"00", b"e", b"E", b"+", b"-", b" ",
                              b"\n", b",", b"}", b"]", b'"', b"a", b"2.0", b".5"])

    @settings(max_examples=500, deadline=None)
    @given(st.lists(pieces, max_size=12).map(b"".join))
    def check(text):
        assert (_WHOLE_FLOAT.search(text) is None) == (plain.search(text) is None)

    check()
