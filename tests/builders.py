"""Build wire-format events for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

BASE_TIME = datetime(2026, 11, 1, 9, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    """An RFC 3339 time `seconds` after BASE_TIME, with nanoseconds as Temporal writes them."""
    moment = BASE_TIME + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def event(event_id: int, type: str = "decision.made", *, workflow_id="wf-1", run_id="run-1",
          **fields) -> dict:
    item = {
        "workflow_id": workflow_id,
        "run_id": run_id,
        "event_id": event_id,
        "type": type,
        "time": at(event_id),
    }
    if type == "workflow.started":
        item.setdefault("workflow_type", "support")
    item.update(fields)
    return item


def history(length: int, *, workflow_id="wf-1", run_id="run-1", closed=True) -> list[dict]:
    """A plausible history: started, then activities and decisions, then completed."""
    events = [event(1, "workflow.started", workflow_id=workflow_id, run_id=run_id,
                    attributes={"labels": {"team": "support"}})]
    kinds = ["activity.scheduled", "activity.started", "activity.completed", "decision.made"]
    for event_id in range(2, length + (0 if closed else 1)):
        kind = kinds[(event_id - 2) % len(kinds)]
        events.append(event(event_id, kind, workflow_id=workflow_id, run_id=run_id,
                            attributes={"activity_type": "search", "n": event_id}))
    if closed:
        events.append(event(length, "workflow.completed", workflow_id=workflow_id,
                            run_id=run_id))
    return events
