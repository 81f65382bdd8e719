"""Realistic synthetic histories, for the demo, the benchmarks and the browser tests.

Every history goes through the same validation, stored form and hashing as the ingest API:
small amounts through `ingest_batch` itself, large amounts of new runs through `bulk_load`,
which builds rows with the same `prepare_events` and inserts many runs at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from access.models import Token
from history.ingest import insert_events, prepare_events
from history.models import Run
from history.wire import parse_event

TOOLS = {
    "support": ["search_kb", "get_customer", "issue_refund", "send_email"],
    "research": ["web_search", "fetch_page", "summarise", "write_report"],
    "billing": ["get_invoice", "apply_credit", "notify_finance"],
}
MODELS = ["claude-sonnet", "gpt-5-mini", "local-llama"]


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class HistoryWriter:
    """Builds one run's events with dense ids, related refs and moving time."""

    def __init__(self, workflow_id: str, run_id: str, start: datetime, rng: random.Random):
        self.workflow_id, self.run_id = workflow_id, run_id
        self.now, self.rng = start, rng
        self.events: list[dict] = []

    def add(self, type: str, attributes: dict | None = None, *, seconds: float = 0.05,
            identity: str | None = None, refs: dict | None = None, **fields) -> int:
        self.now += timedelta(seconds=seconds)
        event = {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "event_id": len(self.events) + 1,
            "type": type,
            "time": _time(self.now),
            **fields,
        }
        if attributes:
            event["attributes"] = attributes
        if identity:
            event["identity"] = identity
        if refs:
            event["refs"] = refs
        self.events.append(event)
        return event["event_id"]

    def activity(self, activity_type: str, kind: str, payload: dict, *, failures: int = 0,
                 identity: str | None = None, output=None, fail_for_good: bool = False) -> None:
        key = f"{activity_type}:{len(self.events) + 1}"
        scheduled = self.add("activity.scheduled", {
            "activity_type": activity_type, "kind": kind, "input": payload, "activity_key": key,
        })
        for attempt in range(1, failures + 2):
            started = self.add("activity.started", {"attempt": attempt}, identity=identity,
                               refs={"scheduled": scheduled}, seconds=0.01)
            took = self.rng.uniform(0.2, 4.0) if kind == "llm" else self.rng.uniform(0.05, 1.2)
            last = attempt == failures + 1
            if last and not fail_for_good:
                self.add("activity.completed", {
                    "attempt": attempt, "activity_type": activity_type, "kind": kind,
                    "activity_key": key, "output": output if output is not None else {"ok": True},
                }, refs={"scheduled": scheduled, "started": started}, seconds=took)
            else:
                self.add("activity.failed", {
                    "attempt": attempt, "activity_type": activity_type, "kind": kind,
                    "error": {"message": self.rng.choice(
                        ["upstream timeout", "HTTP 503 from tool", "rate limited (429)"]
                    ), "retryable": not (last and fail_for_good)},
                }, refs={"scheduled": scheduled, "started": started}, seconds=took)


def scenario(workflow_type: str, workflow_id: str, run_id: str, start: datetime,
             rng: random.Random, *, steps: int = 6, close: bool = True) -> list[dict]:
    """A plausible agent run: LLM decisions, tool calls (some failing and retried), a timer, an
    approval request and sometimes a child run; closed with an outcome unless `close` is off."""
    tools = TOOLS.get(workflow_type, TOOLS["support"])
    w = HistoryWriter(workflow_id, run_id, start, rng)
    w.add("workflow.started", {
        "input": {"ticket": f"T-{rng.randint(1000, 9999)}", "customer": f"C-{rng.randint(1, 500)}"},
        "labels": {"team": workflow_type, "env": rng.choice(["prod", "staging"])},
    }, workflow_type=workflow_type, identity=f"svc-{workflow_type}")
    for step in range(steps):
        advice = {"text": f"Use {tools[step % len(tools)]} next.", "tokens": rng.randint(50, 900)}
        w.activity("plan", "llm", {"model": rng.choice(MODELS), "prompt": f"step {step}"},
                   output=advice)
        w.add("decision.made", {"decision": f"call {tools[step % len(tools)]}", "step": step})
        tool = tools[step % len(tools)]
        if tool in ("issue_refund", "apply_credit") and step % 3 == 2:
            w.add("approval.requested", {
                "request_id": f"apr-{run_id}-{step}", "action": tool, "tool": tool,
                "arguments": {"amount": rng.randint(10, 500), "currency": "EUR"},
                "risk": "high", "required_approvals": 1,
                "deadline": _time(w.now + timedelta(hours=1)),
            })
        failures = 1 if rng.random() < 0.15 else 0
        w.activity(tool, "tool", {"query": f"{tool} for step {step}"}, failures=failures,
                   identity=f"sa-{tool}@{workflow_type}")
        if step == steps // 2:
            timer = w.add("timer.started", {"timer_id": "cool-down", "duration": "2s"})
            w.add("timer.fired", {"timer_id": "cool-down"}, refs={"started": timer}, seconds=2)
        if step == 1 and rng.random() < 0.3:
            child = w.add("child.started", {"workflow_type": "summarise",
                                            "workflow_id": f"{workflow_id}-child"})
            w.add("child.completed", {"result": "ok"}, refs={"started": child}, seconds=1.5)
    if close:
        outcome = rng.random()
        if outcome < 0.8:
            w.add("workflow.completed", {"result": {"resolved": True}})
        elif outcome < 0.9:
            w.activity("send_email", "tool", {"to": "customer"}, failures=2, fail_for_good=True)
            w.add("workflow.failed", {"error": {"message": "send_email failed 3 times"}})
        elif outcome < 0.95:
            w.add("workflow.cancelled", {"reason": "customer withdrew"})
        else:
            w.add("workflow.terminated", {"reason": "operator stopped it"})
    return w.events


def long_history(workflow_id: str, run_id: str, length: int, start: datetime,
                 rng: random.Random) -> list[dict]:
    """A run of exactly `length` events, still running: Temporal's limit is 51,200."""
    w = HistoryWriter(workflow_id, run_id, start, rng)
    w.add("workflow.started", {"labels": {"team": "research", "size": "huge"}},
          workflow_type="research")
    tools = TOOLS["research"]
    step = 0
    while len(w.events) <= length - 7:
        w.activity(tools[step % len(tools)], "llm" if step % 4 == 0 else "tool",
                   {"page": step}, output={"chars": rng.randint(100, 5000)})
        w.add("decision.made", {"step": step})
        step += 1
    while len(w.events) < length:
        w.add("marker.recorded", {"step": step})
    return w.events


def small_history(workflow_id: str, run_id: str, start: datetime, rng: random.Random):
    """Five events: started, an activity, and an outcome."""
    w = HistoryWriter(workflow_id, run_id, start, rng)
    w.add("workflow.started", {"labels": {"team": "batch"}}, workflow_type="batch")
    w.activity("classify", "llm", {"n": rng.randint(1, 100)})
    w.add(rng.choice(["workflow.completed"] * 8 + ["workflow.failed"] * 2))
    return w.events


def bulk_load(token: Token, histories: Iterator[list[dict]], *, chunk_runs: int = 2000,
              max_attributes_bytes: int = 256 * 1024) -> int:
    """Store many NEW runs at once, with exactly the stored form and hashes that ingest gives.
    Returns the number of events stored. Raises InvalidEvent for an invalid event and
    IntegrityError for a run that exists already: it is for seeding new runs, not merging."""
    total = 0
    batch: list[list[dict]] = []
    for history in histories:
        batch.append(history)
        if len(batch) >= chunk_runs:
            total += _load_chunk(token, batch, max_attributes_bytes)
            batch = []
    if batch:
        total += _load_chunk(token, batch, max_attributes_bytes)
    return total


def _load_chunk(token: Token, histories: list[list[dict]], max_attributes_bytes: int) -> int:
    agent = token.agent
    now = timezone.now()
    prepared = []
    for history in histories:
        parsed = sorted(
            (parse_event(i, item, max_attributes_bytes=max_attributes_bytes)
             for i, item in enumerate(history)),
            key=lambda event: event.event_id,
        )
        run = Run(
            namespace_id=agent.namespace_id,
            agent=agent,
            workflow_id=parsed[0].workflow_id,
            run_id=parsed[0].run_id,
            started_at=min(event.time for event in parsed),
        )
        rows, _ = prepare_events(run, token, parsed, now)
        prepared.append((run, rows))
    rows = [row for _, run_rows in prepared for row in run_rows]
    with transaction.atomic():
        Run.objects.bulk_create([run for run, _ in prepared], batch_size=1000)
        insert_events(rows)
    return len(rows)


def start_time(days_ago: float = 0) -> datetime:
    return datetime.now(UTC) - timedelta(days=days_ago)
