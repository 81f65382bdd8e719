"""Turn a page of events into what the run page draws: compact rows (an activity's scheduled,
started and completed events as one row) and the bars of the waterfall.

Events are grouped by their references: `refs.scheduled` ties an activity's attempts and
outcome to its `activity.scheduled` event, `refs.started` ties a timer's or a child run's end to
its start. Nothing here queries the database: callers pass the events in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from history.models import Event

GROUP_STARTS = {
    "activity.scheduled": "activity",
    "timer.started": "timer",
    "child.started": "child",
}
GROUP_REFS = ("scheduled", "started", "initiated")
OUTCOMES = {
    "activity.completed": "completed",
    "activity.failed": "failed",
    "activity.timed_out": "timed_out",
    "activity.cancelled": "cancelled",
    "timer.fired": "fired",
    "timer.cancelled": "cancelled",
    "child.completed": "completed",
    "child.failed": "failed",
}
FAILED_OUTCOMES = {"failed", "timed_out"}


@dataclass
class Row:
    """One line of the compact history: a group of related events, or a single event."""

    kind: str  # activity, timer, child, or the category of a single event
    head: Event
    attributes: dict
    members: list[Event] = field(default_factory=list)
    outcome: str = ""  # completed, failed, ... ; "" while still open
    failures: int = 0
    attempts: int = 1

    @property
    def event_ids(self) -> list[int]:
        return [self.head.event_id, *[m.event_id for m in self.members]]

    @property
    def start(self) -> datetime:
        return self.head.time

    @property
    def end(self) -> datetime | None:
        """When the group ended; None while it is still open (the waterfall draws it to now)."""
        if self.is_open or not self.members:
            return None
        return self.members[-1].time

    @property
    def duration_seconds(self) -> float | None:
        end = self.end
        return None if end is None else max((end - self.start).total_seconds(), 0.0)

    @property
    def label(self) -> str:
        attrs = self.attributes
        if self.kind == "activity":
            return str(attrs.get("activity_type") or attrs.get("tool") or "activity")
        if self.kind == "timer":
            return str(attrs.get("timer_id") or attrs.get("duration") or "timer")
        if self.kind == "child":
            return str(attrs.get("workflow_type") or attrs.get("workflow_id") or "child run")
        return self.head.type

    @property
    def activity_kind(self) -> str:
        """llm, tool or another kind the producer named; empty for non-activities."""
        return str(self.attributes.get("kind") or "") if self.kind == "activity" else ""

    @property
    def is_open(self) -> bool:
        return self.head.type in GROUP_STARTS and not self.outcome

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED_OUTCOMES

    @property
    def retried(self) -> bool:
        return self.attempts > 1 or (self.failures > 0 and self.outcome == "completed")


def group_of(event: Event) -> int | None:
    """The event id of the group's first event that `event` belongs to, if any."""
    if event.type in GROUP_STARTS:
        return event.event_id
    for name in GROUP_REFS:
        ref = event.refs.get(name) if event.refs else None
        if isinstance(ref, int):
            return ref
    return None


def compact_rows(events: list[Event], *, raw: bool, extra_members: list[Event] = ()) -> list[Row]:
    """Group `events` (in event_id order) into rows. `extra_members` are later events of groups
    that start in `events` (fetched beyond the page) so a row shows its outcome."""
    rows: list[Row] = []
    open_groups: dict[int, Row] = {}
    for event in events:
        attributes = event.attributes_for(raw=raw)
        if event.type in GROUP_STARTS:
            row = Row(kind=GROUP_STARTS[event.type], head=event, attributes=attributes)
            open_groups[event.event_id] = row
            rows.append(row)
            continue
        parent = open_groups.get(group_of(event) or 0)
        if parent is not None:
            _absorb(parent, event, attributes)
            continue
        rows.append(Row(kind=event.category, head=event, attributes=attributes))
    for event in extra_members:
        parent = open_groups.get(group_of(event) or 0)
        if parent is not None and event.event_id not in parent.event_ids:
            _absorb(parent, event, event.attributes_for(raw=raw))
    return rows


def _absorb(row: Row, event: Event, attributes: dict) -> None:
    row.members.append(event)
    attempt = attributes.get("attempt")
    if isinstance(attempt, int) and not isinstance(attempt, bool):
        row.attempts = max(row.attempts, attempt)
    if event.type == "activity.started":
        row.outcome = ""  # a new attempt: open again until it ends
    outcome = OUTCOMES.get(event.type)
    if outcome in FAILED_OUTCOMES and row.kind == "activity":
        row.failures += 1
        # A failed attempt that is retried is not the outcome; the last outcome is.
    if outcome:
        row.outcome = outcome
    if not row.attributes.get("kind") and attributes.get("kind"):
        row.attributes = {**row.attributes, "kind": attributes["kind"]}


@dataclass
class Bar:
    row: Row
    x: float  # SVG user units
    width: float
    y: int

    @property
    def text_y(self) -> int:
        return self.y + ROW_HEIGHT - 5


@dataclass
class Waterfall:
    bars: list[Bar]
    start: datetime
    end: datetime
    marks: list[dict]  # points in time (decisions, approvals, Flightdeck's own records)
    height: int

    @property
    def span_seconds(self) -> float:
        return max((self.end - self.start).total_seconds(), 0.0)


ROW_HEIGHT = 18
# SVG user units: labels on the left, the time axis on the right; the SVG scales to its width.
LABEL_WIDTH = 250
AXIS_LEFT = 260
AXIS_WIDTH = 740
MIN_WIDTH = 3  # user units: an instant activity stays visible and clickable


def waterfall(rows: list[Row], *, now: datetime, marks: list[dict] = ()) -> Waterfall | None:
    """Lay out the groups of `rows` on a shared time axis, one lane each, plus point marks
    (each a dict with at least `time`). None when there is nothing with a duration to draw."""
    # Only groups have a duration: a lone activity event whose scheduled event is not an
    # activity.scheduled (a Temporal approval activity's, say) is not drawn as a span to now.
    spans = [row for row in rows
             if row.kind in ("activity", "timer", "child") and row.head.type in GROUP_STARTS]
    if not spans and not marks:
        return None
    times = [row.start for row in spans] + [mark["time"] for mark in marks]
    ends = [row.end or now for row in spans] + [mark["time"] for mark in marks]
    start, end = min(times), max(ends)
    total = max((end - start).total_seconds(), 0.001)

    def position(moment: datetime) -> float:
        return round(AXIS_LEFT + AXIS_WIDTH * (moment - start).total_seconds() / total, 2)

    bars = []
    for lane, row in enumerate(spans):
        x = min(position(row.start), AXIS_LEFT + AXIS_WIDTH - MIN_WIDTH)
        width = max(position(row.end or now) - x, MIN_WIDTH)
        bars.append(Bar(row=row, x=x, width=width, y=lane * ROW_HEIGHT))
    placed = [{**mark, "x": position(mark["time"])} for mark in marks]
    return Waterfall(
        bars=bars, start=start, end=end, marks=placed, height=max(len(bars), 1) * ROW_HEIGHT
    )
