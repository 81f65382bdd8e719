"""Tool calls as the SDK reports them, recognised in a batch of events.

A tool call is an activity whose `kind` is `tool`; its tool is its `activity_type` (or, failing
that, its `tool` attribute). One call shows up as up to three events, `activity.scheduled`,
`activity.started` (once per attempt) and `activity.completed`, tied together by
`refs.scheduled`; it is named by its scheduled event's id, or by its own id when it has no
scheduled event. A started or completed event that does not say `kind` itself takes it from
the scheduled event it refers to when that is in the same batch. One stored earlier is not
read: its call was judged when it was stored (and one stored later will be judged then), so
recognising calls costs no query.
"""

from __future__ import annotations

from dataclasses import dataclass

TOOL_EVENTS = ("activity.scheduled", "activity.started", "activity.completed")


@dataclass(frozen=True)
class ToolCall:
    call_id: int  # the scheduled event's id, or the event's own
    event_id: int  # the first event of the call seen in this batch
    tool: str


def tool_name(attributes: dict) -> str:
    for key in ("activity_type", "tool"):
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value[:255]
    return ""


def calls_in(events) -> list[ToolCall]:
    """The tool calls that events of this batch belong to, one per call, in event order.
    `events`: objects with event_id, type, refs and attributes (a dict)."""
    batch = {event.event_id: event for event in events if event.type in TOOL_EVENTS}
    calls: dict[int, ToolCall] = {}
    for event_id in sorted(batch):
        event = batch[event_id]
        ref = None if event.type == "activity.scheduled" else _scheduled_ref(event)
        if ref is not None and ref in batch and batch[ref].type == "activity.scheduled":
            scheduled = batch[ref].attributes
        else:
            scheduled = {}
        kind = event.attributes.get("kind", scheduled.get("kind"))
        tool = tool_name(event.attributes) or tool_name(scheduled)
        call_id = ref if ref is not None else event_id
        if kind == "tool" and tool and call_id not in calls:
            calls[call_id] = ToolCall(call_id, event_id, tool)
    return list(calls.values())


def _scheduled_ref(event) -> int | None:
    ref = (event.refs or {}).get("scheduled")
    return ref if isinstance(ref, int) and not isinstance(ref, bool) else None
