"""Reading a reference agent's recorded history back, and the checks every complete history
passes."""

from __future__ import annotations

from dataclasses import dataclass

from history.durability import analyse
from history.models import Event, Run
from history.verification import verify_run


@dataclass
class Recorded:
    run: Run
    events: list[Event]

    def of_type(self, *types: str) -> list[Event]:
        return [event for event in self.events if event.type in types]

    def attributes(self, event: Event) -> dict:
        return event.attributes_for(raw=True)

    def activities(self, type_: str = "activity.completed", kind: str | None = None) -> list[dict]:
        """The attributes of every `type_` event (of that `kind`, if given), in order."""
        found = [self.attributes(event) for event in self.of_type(type_)]
        return [attrs for attrs in found if kind is None or attrs.get("kind") == kind]

    def tools_called(self) -> list[str]:
        return [attrs["activity_type"] for attrs in self.activities("activity.scheduled", "tool")]


def runs_of(workflow_id: str) -> list[Run]:
    return list(Run.objects.filter(workflow_id=workflow_id).order_by("started_at", "pk"))


def recorded(run: Run) -> Recorded:
    run.refresh_from_db()
    return Recorded(run, list(Event.objects.filter(run=run).order_by("event_id")))


def only_run(workflow_id: str) -> Recorded:
    runs = runs_of(workflow_id)
    assert len(runs) == 1, f"{len(runs)} runs of {workflow_id}"
    return recorded(runs[0])


def assert_complete(history: Recorded, status: str = "completed") -> None:
    """Dense event ids from 1, the chain verifies, and the run closed with `status`."""
    run = history.run
    ids = [event.event_id for event in history.events]
    assert ids == list(range(1, len(ids) + 1)), f"event ids not dense: {ids}"
    assert run.contiguous_through == run.last_event_id == len(ids)
    assert verify_run(run) == []
    assert history.events[0].type == "workflow.started"
    assert history.events[-1].type == f"workflow.{status}", history.events[-1].type
    assert run.status == status


def findings(history: Recorded) -> list[str]:
    return [finding.rule for finding in analyse(history.run).findings]


def assert_clean(history: Recorded) -> None:
    """What a well-behaved agent leaves: no durability finding, no secret finding."""
    assert findings(history) == []
    assert history.run.events_with_secrets == 0
    assert not any(event.secret_findings for event in history.events)
