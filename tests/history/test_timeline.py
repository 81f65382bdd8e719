"""history.timeline: compact rows (grouping by references, retries, outcomes, events beyond a
page) and the waterfall's geometry. Pure functions over unsaved events: no database."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from history.models import Event
from history.timeline import (
    AXIS_LEFT,
    AXIS_WIDTH,
    MIN_WIDTH,
    ROW_HEIGHT,
    compact_rows,
    group_of,
    waterfall,
)
from tests.builders import BASE_TIME

RIGHT = AXIS_LEFT + AXIS_WIDTH


def ev(event_id: int, type: str, *, at: float | None = None, refs=None, masked=None,
       identity: str = "", **attributes) -> Event:
    """An unsaved event `at` seconds after BASE_TIME (default: its id)."""
    return Event(
        event_id=event_id,
        type=type,
        time=BASE_TIME + timedelta(seconds=event_id if at is None else at),
        refs=refs or {},
        identity=identity,
        attributes=orjson.dumps(attributes).decode(),
        masked_attributes=None if masked is None else orjson.dumps(masked).decode(),
    )


def retried_activity(first: int = 2, *, at: float = 0) -> list[Event]:
    """Scheduled, attempt 1 started and failed, attempt 2 started and completed."""
    return [
        ev(first, "activity.scheduled", at=at, activity_type="search_kb", kind="tool"),
        ev(first + 1, "activity.started", at=at + 1, refs={"scheduled": first}, attempt=1),
        ev(first + 2, "activity.failed", at=at + 2, refs={"scheduled": first,
                                                         "started": first + 1}, attempt=1),
        ev(first + 3, "activity.started", at=at + 3, refs={"scheduled": first}, attempt=2),
        ev(first + 4, "activity.completed", at=at + 7, refs={"scheduled": first,
                                                            "started": first + 3}, attempt=2),
    ]


# --- group_of -----------------------------------------------------------------------------------


def test_a_group_start_is_its_own_group():
    assert group_of(ev(5, "activity.scheduled")) == 5
    assert group_of(ev(6, "timer.started")) == 6
    assert group_of(ev(7, "child.started")) == 7


def test_an_outcome_belongs_to_the_event_it_refers_to_first():
    assert group_of(ev(9, "activity.completed", refs={"scheduled": 5, "started": 8})) == 5
    assert group_of(ev(9, "timer.fired", refs={"started": 6})) == 6


def test_an_event_without_references_belongs_to_no_group():
    assert group_of(ev(3, "decision.made")) is None
    assert group_of(ev(3, "decision.made", refs={"other": 1})) is None


# --- compact rows -------------------------------------------------------------------------------


def test_an_activity_becomes_one_row():
    events = [
        ev(2, "activity.scheduled", activity_type="search_kb", kind="tool"),
        ev(3, "activity.started", refs={"scheduled": 2}, attempt=1),
        ev(4, "activity.completed", at=6.5, refs={"scheduled": 2, "started": 3}),
    ]

    (row,) = compact_rows(events, raw=False)

    assert row.kind == "activity"
    assert row.label == "search_kb"
    assert row.activity_kind == "tool"
    assert row.event_ids == [2, 3, 4]
    assert row.outcome == "completed"
    assert row.duration_seconds == 4.5
    assert (row.attempts, row.failures, row.retried, row.failed, row.is_open) == (
        1, 0, False, False, False
    )


def test_a_failed_attempt_then_a_completion_is_a_retried_completion():
    (row,) = compact_rows(retried_activity(), raw=False)

    assert row.outcome == "completed"
    assert row.failures == 1
    assert row.attempts == 2
    assert row.retried is True
    assert row.failed is False
    assert row.duration_seconds == 7


def test_an_activity_that_fails_for_good_is_failed():
    events = [
        *retried_activity()[:-1],
        ev(6, "activity.failed", at=7, refs={"scheduled": 2, "started": 5}, attempt=2),
    ]

    (row,) = compact_rows(events, raw=False)

    assert row.outcome == "failed"
    assert row.failures == 2
    assert row.failed is True


def test_a_timed_out_attempt_counts_as_a_failure():
    events = [
        ev(2, "activity.scheduled", activity_type="slow"),
        ev(3, "activity.timed_out", refs={"scheduled": 2}, attempt=1),
    ]

    (row,) = compact_rows(events, raw=False)

    assert (row.outcome, row.failures, row.failed) == ("timed_out", 1, True)


def test_a_cancelled_activity_is_not_a_failure():
    events = [ev(2, "activity.scheduled"), ev(3, "activity.cancelled", refs={"scheduled": 2})]

    (row,) = compact_rows(events, raw=False)

    assert (row.outcome, row.failures, row.failed) == ("cancelled", 0, False)


def test_a_scheduled_activity_alone_is_open():
    (row,) = compact_rows([ev(2, "activity.scheduled", activity_type="x")], raw=False)

    assert row.is_open
    assert row.outcome == ""
    assert row.end is None
    assert row.duration_seconds is None


def test_a_started_activity_without_outcome_is_open():
    events = [ev(2, "activity.scheduled"), ev(3, "activity.started", refs={"scheduled": 2})]

    (row,) = compact_rows(events, raw=False)

    assert row.is_open
    assert row.outcome == ""


def test_an_activity_retrying_after_a_failed_attempt_is_open_again():
    """Attempt 1 failed and attempt 2 has started: the activity is running, not failed."""
    events = retried_activity()[:-1]

    (row,) = compact_rows(events, raw=False)

    assert row.attempts == 2
    assert row.failures == 1
    assert row.is_open
    assert row.outcome == ""
    assert not row.failed


def test_a_timer_becomes_one_row():
    events = [
        ev(5, "timer.started", timer_id="cool-down", duration="2s"),
        ev(6, "timer.fired", at=8, refs={"started": 5}, timer_id="cool-down"),
    ]

    (row,) = compact_rows(events, raw=False)

    assert (row.kind, row.label, row.outcome, row.duration_seconds) == (
        "timer", "cool-down", "fired", 3
    )
    assert row.activity_kind == ""


def test_a_timer_without_an_id_is_labelled_by_its_duration():
    (row,) = compact_rows([ev(5, "timer.started", duration="30s")], raw=False)

    assert row.label == "30s"
    assert row.is_open


def test_a_cancelled_timer_is_not_failed():
    events = [ev(5, "timer.started"), ev(6, "timer.cancelled", refs={"started": 5})]

    (row,) = compact_rows(events, raw=False)

    assert (row.outcome, row.failed, row.failures) == ("cancelled", False, 0)


def test_a_child_run_becomes_one_row():
    events = [
        ev(7, "child.started", workflow_type="summarise", workflow_id="wf-1-child"),
        ev(8, "child.failed", refs={"started": 7}),
    ]

    (row,) = compact_rows(events, raw=False)

    assert (row.kind, row.label, row.outcome, row.failed) == ("child", "summarise", "failed",
                                                               True)
    # Only an activity counts failed attempts.
    assert row.failures == 0


def test_a_child_run_without_a_type_is_labelled_by_its_workflow_id():
    (row,) = compact_rows([ev(7, "child.started", workflow_id="wf-9")], raw=False)

    assert row.label == "wf-9"


def test_other_events_are_single_rows_in_order():
    events = [ev(1, "workflow.started"), *retried_activity(), ev(7, "decision.made"),
              ev(8, "workflow.completed")]

    rows = compact_rows(events, raw=False)

    assert [(row.kind, row.head.event_id) for row in rows] == [
        ("workflow", 1), ("activity", 2), ("decision", 7), ("workflow", 8)
    ]
    assert rows[2].label == "decision.made"
    assert rows[2].members == []
    assert not rows[2].is_open


def test_interleaved_activities_are_kept_apart():
    events = [
        ev(2, "activity.scheduled", activity_type="a"),
        ev(3, "activity.scheduled", activity_type="b"),
        ev(4, "activity.completed", refs={"scheduled": 3}),
        ev(5, "activity.completed", refs={"scheduled": 2}),
    ]

    first, second = compact_rows(events, raw=False)

    assert (first.label, first.event_ids) == ("a", [2, 5])
    assert (second.label, second.event_ids) == ("b", [3, 4])


def test_an_outcome_whose_start_is_on_an_earlier_page_is_a_single_row():
    (row,) = compact_rows([ev(40, "activity.completed", refs={"scheduled": 2})], raw=False)

    assert (row.kind, row.head.event_id, row.members) == ("activity", 40, [])


def test_the_kind_comes_from_the_completion_when_the_schedule_has_none():
    events = [
        ev(2, "activity.scheduled", activity_type="plan"),
        ev(3, "activity.completed", refs={"scheduled": 2}, kind="llm"),
    ]

    (row,) = compact_rows(events, raw=False)

    assert row.activity_kind == "llm"


def test_extra_members_from_beyond_the_page_complete_a_row():
    page = [*retried_activity()[:2], ev(4, "decision.made")]
    beyond = [ev(90, "activity.completed", at=95, refs={"scheduled": 2, "started": 3},
                 attempt=1)]

    rows = compact_rows(page, raw=False, extra_members=beyond)

    assert rows[0].event_ids == [2, 3, 90]
    assert rows[0].outcome == "completed"
    assert rows[0].duration_seconds == 95
    assert [row.head.event_id for row in rows] == [2, 4]


def test_extra_members_already_on_the_page_are_not_added_twice():
    page = retried_activity()

    (row,) = compact_rows(page, raw=False, extra_members=page[1:])

    assert row.event_ids == [2, 3, 4, 5, 6]


def test_extra_members_of_groups_not_on_the_page_are_ignored():
    rows = compact_rows([ev(2, "decision.made")], raw=False,
                        extra_members=[ev(90, "activity.completed", refs={"scheduled": 1})])

    assert [row.event_ids for row in rows] == [[2]]


def test_rows_show_masked_attributes_unless_raw():
    secret_event = ev(2, "activity.scheduled", masked={"activity_type": "[REDACTED:x]"},
                      activity_type="leaky")

    (masked,) = compact_rows([secret_event], raw=False)
    (raw,) = compact_rows([secret_event], raw=True)

    assert masked.label == "[REDACTED:x]"
    assert raw.label == "leaky"


def test_an_attempt_that_is_not_an_integer_is_ignored():
    events = [
        ev(2, "activity.scheduled"),
        ev(3, "activity.started", refs={"scheduled": 2}, attempt=True),
        ev(4, "activity.started", refs={"scheduled": 2}, attempt="7"),
    ]

    (row,) = compact_rows(events, raw=False)

    assert row.attempts == 1


def test_nothing_in_gives_nothing_out():
    assert compact_rows([], raw=False) == []


# --- the waterfall ------------------------------------------------------------------------------


NOW = BASE_TIME + timedelta(seconds=100)


def test_there_is_no_waterfall_without_activities_timers_or_children():
    rows = compact_rows([ev(1, "workflow.started"), ev(2, "decision.made")], raw=False)

    assert waterfall(rows, now=NOW) is None
    assert waterfall([], now=NOW) is None


def test_a_mark_alone_still_draws():
    drawn = waterfall([], now=NOW, marks=[{"time": BASE_TIME, "label": "approved"}])

    assert drawn is not None
    assert drawn.bars == []
    assert drawn.marks[0]["x"] == AXIS_LEFT


def test_bars_span_the_axis_from_the_first_start_to_the_last_end():
    rows = compact_rows(retried_activity(at=0) + retried_activity(10, at=10), raw=False)

    drawn = waterfall(rows, now=NOW)

    first, second = drawn.bars
    assert first.x == AXIS_LEFT
    assert second.x + second.width == pytest.approx(RIGHT)
    assert drawn.span_seconds == 17
    assert (first.y, second.y) == (0, ROW_HEIGHT)
    assert drawn.height == 2 * ROW_HEIGHT


def test_bar_geometry_is_proportional_to_time():
    rows = compact_rows(retried_activity(at=0) + retried_activity(10, at=10), raw=False)

    first, second = waterfall(rows, now=NOW).bars

    assert first.width == pytest.approx(AXIS_WIDTH * 7 / 17, abs=0.02)
    assert second.x == pytest.approx(AXIS_LEFT + AXIS_WIDTH * 10 / 17, abs=0.02)


def test_every_bar_stays_within_the_axis():
    events = []
    for number in range(30):
        first = 2 + number * 5
        events += retried_activity(first, at=number * 0.37)
    events += [ev(500, "timer.started", at=3), ev(501, "child.started", at=1)]
    rows = compact_rows(events, raw=False)

    drawn = waterfall(rows, now=BASE_TIME + timedelta(seconds=20))

    assert len(drawn.bars) == 32
    for bar in drawn.bars:
        assert AXIS_LEFT <= bar.x <= RIGHT - MIN_WIDTH
        assert bar.width >= MIN_WIDTH
        assert bar.x + bar.width <= RIGHT + 0.01


def test_an_instant_activity_keeps_a_visible_width():
    events = [
        ev(2, "activity.scheduled", at=0),
        ev(3, "activity.completed", at=0, refs={"scheduled": 2}),
        ev(4, "activity.scheduled", at=0),
        ev(5, "activity.completed", at=10, refs={"scheduled": 4}),
    ]

    instant, _ = waterfall(compact_rows(events, raw=False), now=NOW).bars

    assert instant.width == MIN_WIDTH


def test_an_instant_activity_at_the_very_end_stays_inside():
    events = [
        ev(2, "activity.scheduled", at=0),
        ev(3, "activity.completed", at=10, refs={"scheduled": 2}),
        ev(4, "activity.scheduled", at=10),
        ev(5, "activity.completed", at=10, refs={"scheduled": 4}),
    ]

    _, last = waterfall(compact_rows(events, raw=False), now=NOW).bars

    assert last.x == RIGHT - MIN_WIDTH
    assert last.x + last.width == pytest.approx(RIGHT)


def test_a_single_instant_activity_is_drawn_inside_the_axis():
    events = [ev(2, "activity.scheduled", at=5), ev(3, "activity.completed", at=5,
                                                    refs={"scheduled": 2})]

    (bar,) = waterfall(compact_rows(events, raw=False), now=NOW).bars

    assert bar.x >= AXIS_LEFT
    assert bar.x + bar.width <= RIGHT + 0.01


def test_an_open_activity_with_no_members_runs_to_now():
    events = [ev(2, "activity.scheduled", at=0), ev(3, "activity.scheduled", at=10),
              ev(4, "activity.completed", at=20, refs={"scheduled": 3})]

    drawn = waterfall(compact_rows(events, raw=False), now=BASE_TIME + timedelta(seconds=40))

    open_bar = drawn.bars[0]
    assert drawn.end == BASE_TIME + timedelta(seconds=40)
    assert open_bar.x + open_bar.width == pytest.approx(RIGHT)


def test_a_started_activity_still_running_runs_to_now():
    """An activity that has started but not finished is running: its bar reaches `now`."""
    events = [ev(2, "activity.scheduled", at=0), ev(3, "activity.started", at=1,
                                                    refs={"scheduled": 2})]

    drawn = waterfall(compact_rows(events, raw=False), now=BASE_TIME + timedelta(seconds=40))

    (bar,) = drawn.bars
    assert drawn.end == BASE_TIME + timedelta(seconds=40)
    assert bar.x + bar.width == pytest.approx(RIGHT)


def test_marks_are_placed_on_the_same_axis():
    rows = compact_rows(retried_activity(at=0), raw=False)

    drawn = waterfall(rows, now=NOW, marks=[{"time": BASE_TIME + timedelta(seconds=14),
                                             "label": "approved", "kind": "approval"}])

    assert drawn.end == BASE_TIME + timedelta(seconds=14)
    assert drawn.marks[0]["x"] == pytest.approx(RIGHT)
    assert drawn.bars[0].width == pytest.approx(AXIS_WIDTH / 2, abs=0.02)
    assert drawn.marks[0]["label"] == "approved"


def test_an_empty_page_with_marks_has_the_height_of_one_lane():
    drawn = waterfall([], now=NOW, marks=[{"time": BASE_TIME}])

    assert drawn.height == ROW_HEIGHT


def test_decisions_get_no_lane():
    events = [ev(1, "workflow.started"), *retried_activity(), ev(7, "decision.made")]

    drawn = waterfall(compact_rows(events, raw=False), now=NOW)

    assert [bar.row.head.event_id for bar in drawn.bars] == [2]


def test_a_bars_label_sits_inside_its_lane():
    rows = compact_rows(retried_activity(at=0) + retried_activity(10, at=10), raw=False)

    for bar in waterfall(rows, now=NOW).bars:
        assert bar.y < bar.text_y <= bar.y + ROW_HEIGHT
