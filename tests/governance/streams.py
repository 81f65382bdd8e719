"""Event streams as the SDK emits them (docs/sdk.md, issue 5): dense event ids, one
`activity.scheduled` per call with `activity_type`, `kind` and an `activity_key`, then
`activity.started` per attempt and `activity.completed` (or `failed`) tied to it by
`refs.scheduled`; `approval.requested` before a gated call and the agent's
`approval.granted` claim once it has the decision."""

from __future__ import annotations

import hashlib

import orjson

from tests.builders import at


class Stream:
    def __init__(self, workflow_id: str = "wf-1", run_id: str = "run-1",
                 workflow_type: str = "support"):
        self.workflow_id, self.run_id, self.workflow_type = workflow_id, run_id, workflow_type
        self.events: list[dict] = []
        self.sent = 0  # events handed out by take()

    def add(self, type: str, attributes: dict | None = None, **fields) -> int:
        event_id = len(self.events) + 1
        item = {"workflow_id": self.workflow_id, "run_id": self.run_id, "event_id": event_id,
                "type": type, "time": at(event_id)}
        if attributes:
            item["attributes"] = attributes
        item.update(fields)
        self.events.append(item)
        return event_id

    def start(self) -> Stream:
        self.add("workflow.started", {"labels": {"team": "support"}},
                 workflow_type=self.workflow_type)
        return self

    def call(self, activity_type: str, input: dict | None = None, *, kind: str = "tool",
             key: str | None = None, output=None, complete: bool = True,
             attempts: int = 1) -> int:
        """One activity: scheduled, its attempts (all but the last fail), then completed
        unless `complete` is off (the worker died in the last attempt). Returns the
        scheduled event's id."""
        input = input if input is not None else {}
        key = key or f"{activity_type}:{hashlib.sha256(orjson.dumps(input)).hexdigest()[:12]}"
        scheduled = self.add("activity.scheduled", {
            "activity_type": activity_type, "kind": kind, "input": input, "activity_key": key,
        })
        for attempt in range(1, attempts + 1):
            started = self.add("activity.started", {"attempt": attempt},
                               refs={"scheduled": scheduled})
            if attempt < attempts:
                self.add("activity.failed", {"attempt": attempt, "error": {"message": "503"}},
                         refs={"scheduled": scheduled, "started": started})
            elif complete:
                self.add("activity.completed", {
                    "attempt": attempt, "activity_type": activity_type, "kind": kind,
                    "activity_key": key, "output": output if output is not None else {"ok": True},
                }, refs={"scheduled": scheduled, "started": started})
        return scheduled

    def retry_attempt(self, scheduled: int, *, attempt: int = 2, output=None) -> None:
        """After a crash: a new attempt of an activity whose last attempt never finished."""
        activity = next(e for e in self.events if e["event_id"] == scheduled)["attributes"]
        started = self.add("activity.started", {"attempt": attempt},
                           refs={"scheduled": scheduled})
        self.add("activity.completed", {
            "attempt": attempt, "activity_type": activity["activity_type"],
            "kind": activity["kind"], "activity_key": activity["activity_key"],
            "output": output if output is not None else {"ok": True},
        }, refs={"scheduled": scheduled, "started": started})

    def ask(self, request_id: str, action: str, arguments: dict | None = None,
            risk: str = "high") -> int:
        return self.add("approval.requested", {
            "request_id": request_id, "action": action, "arguments": arguments or {},
            "risk": risk, "summary": f"{action} please",
        })

    def claim(self, request_id: str, outcome: str = "granted") -> int:
        return self.add(f"approval.{outcome}", {"request_id": request_id})

    def decide(self, decision: str = "send the reply") -> int:
        return self.add("decision.made", {"decision": decision})

    def finish(self, outcome: str = "workflow.completed") -> int:
        return self.add(outcome, {"result": {"ok": True}} if outcome == "workflow.completed"
                        else {"error": {"message": "stopped"}})

    def take(self) -> list[dict]:
        """The events not sent yet (the SDK sends what it has, in batches)."""
        batch, self.sent = self.events[self.sent:], len(self.events)
        return batch
