"""A run: the agent's side of one workflow execution.

Every SDK call that records something writes its events to the run's journal and fsyncs it
before returning (spool.py); the client's sender delivers them. Each call is also a
**checkpoint**: operator commands that arrived meanwhile are applied there (a pause holds, a
cancel raises `Cancelled`, signals reach their handlers). A terminate is applied the moment it
arrives: `workflow.terminated` is recorded at once and the run's next SDK call (or the wait it
is in) raises `Terminated`.

A run opened again with the same ids after a crash **replays**: each step (`call`, `decide`,
`request_approval`, `sleep`, `record`) takes the next position, and a position already in the
history returns what was recorded instead of doing the work again (history.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

from flightdeck_sdk.activity import current_run
from flightdeck_sdk.approval import Approval
from flightdeck_sdk.encoding import digest, jsonable, now
from flightdeck_sdk.errors import (
    Cancelled,
    FlightdeckError,
    NondeterminismError,
    RunControl,
    Terminated,
)
from flightdeck_sdk.history import (
    RecordedActivity,
    RecordedApproval,
    RecordedDecision,
    RecordedEvent,
    RecordedHistory,
    RecordedTimer,
    owned_by_sdk,
)
from flightdeck_sdk.large_values import expand, fit
from flightdeck_sdk.timer import TimerStep, check_seconds, check_timer_id, started_attributes
from flightdeck_sdk.transport import Unavailable

log = logging.getLogger("flightdeck_sdk")

MAX_LABELS = 64
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+", re.ASCII)  # as ingest checks it
MAX_EVENT_TYPE = 100
MAX_EVENT_ID = 2**53 - 1
MAX_ERROR_CHARACTERS = 8000
RISKS = ("low", "medium", "high", "critical")
CLOSING_OUTCOMES = {"workflow.completed": "completed", "workflow.failed": "failed",
                    "workflow.cancelled": "cancelled", "workflow.terminated": "terminated"}


def activity_key(activity_type: str, position: int, activity_input) -> str:
    """The key of an activity the caller did not name: its type, its position in the run and
    a digest of its input, e.g. ``search_kb@3:9f86d081884c7d65``."""
    return f"{activity_type}@{position}:{digest(activity_input)[:16]}"


def check_labels(labels) -> dict[str, str]:
    """Labels as ingest accepts them (docs/event-schema.md), or ValueError naming the problem:
    refused at the agent, where the mistake is, rather than dead-lettering the run's start."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise ValueError("labels must be a dict of str to str")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"labels: at most {MAX_LABELS}")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"labels[{key!r}]: keys and values must be strings")
        if not 1 <= len(key) <= 100 or len(value) > 200 or "\x00" in key + value:
            raise ValueError(f"labels[{key!r}]: key 1-100, value at most 200 characters, no NUL")
    return dict(labels)


def check_event(event_type, attributes, refs) -> tuple[dict, dict]:
    """The attributes and refs of an event for `run.record`, or ValueError naming the problem.
    Refused here, at the agent, rather than dead-lettered (or misread on resume) later."""
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= MAX_EVENT_TYPE or \
            EVENT_TYPE.fullmatch(event_type) is None:
        raise ValueError(f"type {event_type!r}: must be dotted lowercase words of at most "
                         f"{MAX_EVENT_TYPE} characters, e.g. llm.usage")
    why = owned_by_sdk(event_type)
    if why is not None:
        raise ValueError(f"type {event_type!r} is recorded by the SDK itself ({why}); "
                         "run.record takes the types it does not model")
    fields = jsonable(attributes if attributes is not None else {})
    if not isinstance(fields, dict):
        raise ValueError("attributes must be a dict")
    if "position" in fields:
        raise ValueError("attributes: 'position' is the SDK's (the step's place in the run)")
    refs = {} if refs is None else refs
    if not isinstance(refs, dict):
        raise ValueError("refs must be a dict of name to event id")
    for name, ref in refs.items():
        if not isinstance(name, str) or not name or "\x00" in name:
            raise ValueError(f"refs[{name!r}]: names must be non-empty strings without NUL")
        if isinstance(ref, bool) or not isinstance(ref, int) or not 1 <= ref <= MAX_EVENT_ID:
            raise ValueError(f"refs[{name!r}]: must be an event id (an integer of 1 or more)")
    return fields, dict(refs)


def describe_error(exc: BaseException) -> dict:
    text = "".join(traceback.format_exception(exc))
    return {"type": type(exc).__name__, "message": str(exc)[:MAX_ERROR_CHARACTERS],
            "traceback": text[-MAX_ERROR_CHARACTERS:]}


class _Replayed:
    """An activity step whose recorded output is returned without running it."""

    def __init__(self, output):
        self.output = output


class _ActivityStep:
    """The events of one activity: scheduled once, then started / failed per attempt, then
    completed. Shared by the synchronous and the asyncio paths."""

    def __init__(self, run: Run, activity_type: str, kind: str, key: str, position: int,
                 scheduled_event_id: int | None, attempts_before: int, retries: int,
                 backoff: float, identity: str | None, scheduled_attributes: dict | None = None):
        self.run = run
        self.activity_type = activity_type
        self.kind = kind
        self.key = key
        self.position = position
        self.scheduled = scheduled_event_id  # None until written with the first attempt
        self.scheduled_attributes = scheduled_attributes
        self.attempt = attempts_before
        self.last_attempt = attempts_before + 1 + max(0, retries)
        self.backoff = backoff
        self.identity = identity
        self.started_event = 0
        self.started_at = 0.0

    def _attributes(self, **more) -> dict:
        return {"activity_type": self.activity_type, "kind": self.kind,
                "activity_key": self.key, "attempt": self.attempt, **more}

    def start_attempt(self) -> None:
        self.attempt += 1
        with self.run._lock:  # the ids below are the next ones: nothing may come between
            items = []
            if self.scheduled is None:
                # Scheduled and first started in one write: one fsync instead of two.
                self.scheduled = self.run._next_event_id
                items.append(("activity.scheduled", self.scheduled_attributes, {}))
            items.append(("activity.started", self._attributes(), {"scheduled": self.scheduled}))
            self.started_event = self.run._record(items, identity=self.identity)[-1]
        self.started_at = time.monotonic()

    def _refs(self) -> dict:
        return {"scheduled": self.scheduled, "started": self.started_event}

    def completed(self, output):
        recorded = jsonable(output)
        self.run._record(
            [("activity.completed", self._attributes(output=recorded,
                                                     duration_ms=self._elapsed_ms()),
              self._refs())],
            identity=self.identity,
        )
        return output

    def failed(self, exc: BaseException) -> float | None:
        """Record the failed attempt; the delay before the next one, or None if none is left."""
        will_retry = self.attempt < self.last_attempt
        self.run._record(
            [("activity.failed", self._attributes(error=describe_error(exc),
                                                  will_retry=will_retry,
                                                  duration_ms=self._elapsed_ms()),
              self._refs())],
            identity=self.identity,
        )
        if not will_retry:
            return None
        return min(300.0, self.backoff * 2 ** (self.attempt - 1))

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started_at) * 1000)


class Run:
    """Use through `client.run(...)` (a `with` block) or `client.arun(...)` (`async with`)."""

    def __init__(self, client, workflow_type: str, workflow_id: str, run_id: str, *,
                 fresh: bool, input=None, labels=None, identity: str | None = None):
        self.client = client
        self.workflow_type = workflow_type
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.identity = identity
        self.outcome: str | None = None  # completed | failed | cancelled | terminated
        self._fresh = fresh
        self._input = input
        self._labels = check_labels(labels)
        self._uuid: str | None = None
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._next_event_id = 1
        self._position = 0
        self._history = RecordedHistory([])
        self._pending: deque[dict] = deque()
        self._verdicts: dict[str, tuple[str, str] | None] = {}  # command id -> ack, None=open
        self._decisions: dict[str, dict] = {}  # request id -> approve/reject command
        self._paused_by: str | None = None
        self._terminated: Terminated | None = None
        self._closed: str | None = None
        self._replayed_controls: set[tuple[int, str]] = set()
        self._signal_handlers: dict[str, Callable] = {}
        self._unhandled_signals: list[dict] = []
        self._result = None
        self._folder = None
        self._file_lock = None
        self._journal = None
        self._context_token = None
        self._task: asyncio.Task | None = None
        self._task_loop: asyncio.AbstractEventLoop | None = None
        self._cancelled_task = False

    def __repr__(self) -> str:
        return f"<Run {self.workflow_type} {self.workflow_id}/{self.run_id}>"

    # --- identity --------------------------------------------------------------------------

    @property
    def uuid(self) -> str | None:
        """The run's UUID in Flightdeck, known once its first events were delivered. May wait
        up to 10 s for that delivery; None if Flightdeck could not be reached meanwhile."""
        if self._uuid is None:
            deadline = time.monotonic() + 10
            self.client._outbox.wake()
            while self._uuid is None and time.monotonic() < deadline:
                time.sleep(0.05)
        return self._uuid

    def _learn_uuid(self, uuid: str) -> None:
        self._uuid = uuid

    @property
    def position(self) -> int:
        """How many steps (calls, decisions, approval requests, timers, recorded events) the
        run has taken."""
        return self._position

    @property
    def replaying(self) -> bool:
        """True while the run is re-walking steps already in its recorded history."""
        return self._position < max(self._history.steps, default=0)

    # --- opening and closing ---------------------------------------------------------------

    def _open(self) -> None:
        if self.client._live_run(self.workflow_id, self.run_id) is not None:
            raise FlightdeckError(
                f"run {self.workflow_id}/{self.run_id} is already open in this process"
            )
        self._folder, self._file_lock = self.client._spool.claim(self.workflow_id,
                                                                 self.run_id)
        try:
            self._journal = self._folder.journal
            self._journal.open_for_append()
            events, _ = self._journal.read()
            if not events and not self._fresh:
                events = self._history_from_server()
            elif events and self._fresh:
                raise FlightdeckError(
                    f"run {self.workflow_id}/{self.run_id} was started as new but this spool "
                    "holds a history for it; open it without new=True to resume it"
                )
            self._restore(RecordedHistory.read(events))
            if not self._history.started:
                self._record([("workflow.started",
                               {"labels": self._labels, "input": jsonable(self._input)}, {})],
                             workflow_type=self.workflow_type)
            elif not self._closed:
                self._record([("marker.recorded", {
                    "marker": "resumed", "recorded_events": self._history.last_event_id,
                    "recorded_steps": len(self._history.steps)}, {})])
            # Registered once started: commands are dispatched to it, its folder is sent.
            self.client._register(self)
        except BaseException:
            self._release()
            raise
        self._context_token = current_run.set(self)

    def _history_from_server(self) -> list[dict]:
        """The run's events as Flightdeck stored them, when this spool has none (another
        machine ran it, or its folder was cleaned up). They are written to the journal as
        already delivered, so the next resume finds them here."""
        transport = self.client._transport
        try:
            found = transport.find_run(self.workflow_id, self.run_id)
            if found is None:
                return []
            stored = transport.run_events(found["uuid"])
        except Unavailable as exc:
            raise FlightdeckError(
                f"cannot open {self.workflow_id}/{self.run_id}: this spool holds none of its "
                f"events and Flightdeck is unreachable ({exc}), so whether it has a history is "
                "unknown; pass new=True if it is a new run"
            ) from exc
        self._uuid = found["uuid"]
        ids = [event["event_id"] for event in stored]
        if ids != list(range(1, len(ids) + 1)):
            raise FlightdeckError(
                f"cannot resume {self.workflow_id}/{self.run_id}: Flightdeck's history of it has "
                "gaps (another spool has not delivered everything yet)"
            )
        events = [
            {key: value for key, value in {
                "workflow_id": self.workflow_id, "run_id": self.run_id,
                "event_id": event["event_id"], "type": event["type"], "time": event["time"],
                "identity": event.get("identity"), "refs": event.get("refs") or {},
                "attributes": event.get("attributes") or {},
            }.items() if value is not None}
            for event in stored
        ]
        if events:
            self._journal.append(events)
            self._journal.mark_sent(self._journal.size())
        return events

    def _restore(self, history: RecordedHistory) -> None:
        self._history = history
        self._next_event_id = history.last_event_id + 1
        self._closed = history.closed
        self._paused_by = history.paused_by
        for command_id, verdict in history.finished.items():
            self._verdicts[command_id] = verdict
        for message in history.unfinished_commands():
            self._verdicts[message["id"]] = None
            if message["kind"] in ("approve", "reject"):
                payload = message.get("payload") or {}
                self._decisions[str(payload.get("request_id"))] = message
            elif message["kind"] == "terminate":
                if not self._closed:
                    self._terminate(message)
            else:
                self._pending.append(message)

    def _finish(self, exc: BaseException | None, *, terminated_task: bool = False) -> bool:
        """Record how the block ended; True to suppress the exception (this run's own cancel
        or terminate: the `with` block is what they stop)."""
        own_control = isinstance(exc, RunControl) and exc.run is self
        suppress = terminated_task or (own_control and not isinstance(exc, NondeterminismError))
        try:
            if self._terminated is not None:
                pass  # workflow.terminated was recorded the moment the command arrived
            elif exc is None:
                self._close("workflow.completed", {"result": jsonable(self._result)})
            elif isinstance(exc, Cancelled) and own_control:
                self._close("workflow.cancelled", {"reason": exc.reason,
                                                   "command_id": exc.command_id})
            elif isinstance(exc, Exception) and not isinstance(exc, NondeterminismError):
                self._close("workflow.failed", {"error": describe_error(exc)})
            # Left open: after a NondeterminismError (a corrected agent can resume the run),
            # and after other BaseExceptions (KeyboardInterrupt, SystemExit, a task cancelled
            # by the program): the process is going away, not the run.
        finally:
            self._release()
        self.outcome = CLOSING_OUTCOMES.get(self._closed or "")
        return suppress

    def _close(self, kind: str, attributes: dict) -> None:
        with self._lock:
            if self._closed:
                return  # already closed: terminated, or a replay of a closed run
            self._record([(kind, attributes, {})])

    def _release(self) -> None:
        self.client._unregister(self)
        with self._lock:
            unused = [] if not self._closed else list(self._decisions.values())
            self._decisions.clear()
        for message in unused:
            self._ack(message["id"], "rejected", "the run ended before it used this decision")
        if self._folder is not None and self._closed:
            self._folder.mark_closed()
        if self._journal is not None:
            self._journal.close()
            if self._journal.size() == 0 and self._file_lock is not None:
                # Opened but nothing recorded (it could not start): leave no empty folder.
                self.client._spool.remove_empty(self._folder)
        if self._file_lock is not None:
            self._file_lock.release()
        if self._context_token is not None:
            try:
                current_run.reset(self._context_token)
            except ValueError:  # exited in another context (a task that moved on)
                current_run.set(None)
            self._context_token = None
        self.client._outbox.wake()

    def __enter__(self) -> Run:
        self._open()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return self._finish(exc)

    async def __aenter__(self) -> Run:
        self._open()
        self._task = asyncio.current_task()
        self._task_loop = asyncio.get_running_loop()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        task, self._task = self._task, None  # on the loop: no terminate cancels it from now
        terminated_task = isinstance(exc, asyncio.CancelledError) and self._cancelled_task
        if terminated_task and task is not None:
            task.uncancel()
        return self._finish(exc, terminated_task=terminated_task)

    def complete(self, result=None) -> None:
        """Set the result recorded with `workflow.completed` when the block ends normally."""
        self._result = result

    # --- recording -------------------------------------------------------------------------

    def _record(self, items: list[tuple[str, dict, dict]], *, identity: str | None = None,
                workflow_type: str | None = None) -> list[int]:
        """Write events (type, attributes, refs) with the next ids; fsynced when it returns."""
        with self._lock:
            if self._terminated is not None:
                raise self._terminated
            if self._closed:
                raise FlightdeckError(
                    f"run {self.workflow_id}/{self.run_id} is closed ({self._closed}); "
                    "nothing more can be recorded in it"
                )
            events = []
            blobs = self._folder.blobs
            who = identity or self.identity or self.client.identity
            for offset, (kind, attributes, refs) in enumerate(items):
                event = {"workflow_id": self.workflow_id, "run_id": self.run_id,
                         "event_id": self._next_event_id + offset, "type": kind,
                         "time": now(), "attributes": fit(attributes, blobs)}
                if who:
                    event["identity"] = who[:255]
                if refs:
                    event["refs"] = refs
                if workflow_type is not None:
                    event["workflow_type"] = workflow_type
                events.append(event)
            # The ids and the closed state change only once the events are on disk: a failed
            # write (a full disk) raises here and leaves no gap in the sequence.
            self._journal.append(events)
            ids = [event["event_id"] for event in events]
            self._next_event_id += len(events)
            closing = [kind for kind, _, _ in items if kind in CLOSING_OUTCOMES]
            if closing:
                self._closed = closing[-1]
        self.client._outbox.wake()
        return ids

    # --- steps -----------------------------------------------------------------------------

    def _take_position(self) -> int:
        with self._lock:
            self._position += 1
            return self._position

    def _recorded_step(self, position: int, wanted: type, got: str):
        step = self._history.steps.get(position)
        if step is not None and not isinstance(step, wanted):
            raise NondeterminismError(position, step.describe(), got)
        return step

    def decide(self, decision, *, reason=None, model=None, identity: str | None = None,
               **attributes) -> None:
        """Record `decision.made` (a step: replayed, not recorded again, after a resume)."""
        self.checkpoint()
        self._decide(decision, reason, model, identity, attributes)

    async def adecide(self, decision, *, reason=None, model=None, identity: str | None = None,
                      **attributes) -> None:
        await self.acheckpoint()
        self._decide(decision, reason, model, identity, attributes)

    def _decide(self, decision, reason, model, identity, attributes) -> None:
        position = self._take_position()
        value = jsonable(decision)
        recorded = self._recorded_step(position, RecordedDecision, f"decision {value!r}")
        if recorded is not None:
            if recorded.decision != value:
                raise NondeterminismError(position, recorded.describe(), f"decision {value!r}")
            return
        fields = {**jsonable(attributes), "decision": value, "position": position}
        if reason is not None:
            fields["reason"] = jsonable(reason)
        if model is not None:
            fields["model"] = jsonable(model)
        self._record([("decision.made", fields, {})], identity=identity)

    def sleep(self, seconds: float, *, timer_id: str | None = None) -> None:
        """Wait `seconds` as a durable timer (a step; see timer.py): `timer.started`, then
        `timer.fired` at its recorded `fire_at`. After a resume a fired timer does not wait
        again and an unfired one waits only for the rest. Commands are applied while waiting:
        a pause holds the run after the timer fires, cancel and terminate end the wait."""
        seconds, timer_id = check_seconds(seconds), check_timer_id(timer_id)
        self.checkpoint()
        timer = self._begin_timer(seconds, timer_id)
        if timer is None:
            return
        try:
            self._wait(timer.ready, interval=timer.interval)
        except Cancelled as exc:
            timer.cancel(exc)
            raise

    async def asleep(self, seconds: float, *, timer_id: str | None = None) -> None:
        """`sleep` for asyncio: the event loop runs other tasks meanwhile."""
        seconds, timer_id = check_seconds(seconds), check_timer_id(timer_id)
        await self.acheckpoint()
        timer = self._begin_timer(seconds, timer_id)
        if timer is None:
            return
        try:
            await self._await(timer.ready, interval=timer.interval)
        except Cancelled as exc:
            timer.cancel(exc)
            raise

    def _begin_timer(self, seconds: float, timer_id: str | None) -> TimerStep | None:
        """The timer to wait for, or None when the history shows it fired already."""
        position = self._take_position()
        timer_id = timer_id or f"timer@{position}"
        got = f"timer {timer_id!r}"
        recorded = self._recorded_step(position, RecordedTimer, got)
        if recorded is not None:
            if recorded.timer_id != timer_id:
                raise NondeterminismError(position, recorded.describe(), got)
            if recorded.fired:
                return None
            # Started before the process ended: wait for the recorded fire time, not anew.
            return TimerStep(self, timer_id, recorded.started_event_id, recorded.fire_at,
                             cancelled=recorded.cancelled)
        attributes = started_attributes(timer_id, seconds, position)
        started = self._record([("timer.started", attributes, {})])[0]
        return TimerStep(self, timer_id, started, attributes["fire_at"])

    def record(self, type: str, attributes: dict | None = None, *,
               refs: dict | None = None, identity: str | None = None) -> int:
        """Record an event of a type the SDK does not model (dotted lowercase, e.g.
        `llm.usage`; the SDK's own types raise ValueError). A step: after a resume a recorded
        one is not recorded again. Returns the event's id (the recorded one on replay)."""
        attributes, refs = check_event(type, attributes, refs)
        self.checkpoint()
        return self._record_event(type, attributes, refs, identity)

    async def arecord(self, type: str, attributes: dict | None = None, *,
                      refs: dict | None = None, identity: str | None = None) -> int:
        attributes, refs = check_event(type, attributes, refs)
        await self.acheckpoint()
        return self._record_event(type, attributes, refs, identity)

    def _record_event(self, event_type: str, attributes: dict, refs: dict,
                      identity: str | None) -> int:
        position = self._take_position()
        got = f"event {event_type!r}"
        recorded = self._recorded_step(position, RecordedEvent, got)
        if recorded is not None:
            if recorded.type != event_type:
                raise NondeterminismError(position, recorded.describe(), got)
            return recorded.event_id
        return self._record([(event_type, {**attributes, "position": position}, refs)],
                            identity=identity)[0]

    def call(self, name: str, fn: Callable, *args, kind: str = "tool", key: str | None = None,
             retries: int = 0, backoff: float = 1.0, identity: str | None = None, **kwargs):
        """Run `fn(*args, **kwargs)` as the activity `name`, once: after a resume, a completed
        activity at this position returns its recorded output without calling `fn`."""
        return self._call(name, fn, args, kwargs, kind=kind, key=key, retries=retries,
                          backoff=backoff, identity=identity)

    async def acall(self, name: str, fn: Callable, *args, kind: str = "tool",
                    key: str | None = None, retries: int = 0, backoff: float = 1.0,
                    identity: str | None = None, **kwargs):
        """`call` for asyncio: `fn` may be a coroutine function (awaited) or a plain one."""
        return await self._acall(name, fn, args, kwargs, kind=kind, key=key, retries=retries,
                                 backoff=backoff, identity=identity)

    def _call(self, name, fn, args, kwargs, *, kind, key, retries, backoff, identity):
        self.checkpoint()
        step = self._begin_activity(name, args, kwargs, kind, key, retries, backoff, identity)
        if isinstance(step, _Replayed):
            return step.output
        while True:
            step.start_attempt()
            token = current_run.set(None)
            try:
                output = fn(*args, **kwargs)
            except Exception as exc:
                current_run.reset(token)
                delay = step.failed(exc)
                if delay is None:
                    raise
                self._sleep(delay)
                continue
            except BaseException:
                current_run.reset(token)
                raise
            current_run.reset(token)
            return step.completed(output)

    async def _acall(self, name, fn, args, kwargs, *, kind, key, retries, backoff, identity):
        await self.acheckpoint()
        step = self._begin_activity(name, args, kwargs, kind, key, retries, backoff, identity)
        if isinstance(step, _Replayed):
            return step.output
        while True:
            step.start_attempt()
            token = current_run.set(None)
            try:
                output = fn(*args, **kwargs)
                if inspect.isawaitable(output):
                    output = await output
            except Exception as exc:
                current_run.reset(token)
                delay = step.failed(exc)
                if delay is None:
                    raise
                await self._asleep(delay)
                continue
            except BaseException:
                current_run.reset(token)
                raise
            current_run.reset(token)
            return step.completed(output)

    def _begin_activity(self, name, args, kwargs, kind, key, retries, backoff, identity):
        position = self._take_position()
        activity_input = jsonable({"args": list(args), "kwargs": kwargs})
        key = str(key) if key is not None else activity_key(name, position, activity_input)
        got = f"activity {name!r} with key {key!r}"
        recorded = self._recorded_step(position, RecordedActivity, got)
        if recorded is not None:
            if recorded.activity_key != key:
                raise NondeterminismError(position, recorded.describe(), got)
            if recorded.completed:
                return _Replayed(expand(recorded.output, self._folder.blobs))
            # Scheduled (perhaps started) but not completed before the process ended: this
            # step runs again, as the next attempt of the same scheduled activity.
            scheduled, attempts_before = recorded.scheduled_event_id, recorded.attempts
        else:
            scheduled, attempts_before = None, 0
        return _ActivityStep(self, name, kind, key, position, scheduled, attempts_before,
                             retries, backoff, identity, scheduled_attributes={
                                 "activity_type": name, "kind": kind, "activity_key": key,
                                 "position": position, "input": activity_input,
                                 "max_attempts": 1 + max(0, retries)})

    def request_approval(self, action: str, arguments=None, *, summary: str = "",
                         risk: str = "medium", approvals: int = 1, timeout: float = 600,
                         on_behalf_of: str | None = None,
                         request_id: str | None = None) -> Approval:
        """Record `approval.requested` and wait for Flightdeck's decision (approved, rejected
        or expired). Commands keep being applied while waiting: a pause holds even a decision
        that arrived until resume; cancel and terminate end the wait."""
        self.checkpoint()
        request_id = self._request(action, arguments, summary, risk, approvals, timeout,
                                   on_behalf_of, request_id)
        if isinstance(request_id, Approval):
            return request_id
        return self._wait(lambda: self._decision_for(request_id))

    async def arequest_approval(self, action: str, arguments=None, *, summary: str = "",
                                risk: str = "medium", approvals: int = 1, timeout: float = 600,
                                on_behalf_of: str | None = None,
                                request_id: str | None = None) -> Approval:
        await self.acheckpoint()
        request_id = self._request(action, arguments, summary, risk, approvals, timeout,
                                   on_behalf_of, request_id)
        if isinstance(request_id, Approval):
            return request_id
        return await self._await(lambda: self._decision_for(request_id))

    def _request(self, action, arguments, summary, risk, approvals, timeout, on_behalf_of,
                 request_id) -> str | Approval:
        if risk not in RISKS:
            raise ValueError(f"risk must be one of {', '.join(RISKS)}")
        if not isinstance(approvals, int) or not 1 <= approvals <= 5:
            raise ValueError("approvals must be an integer from 1 to 5")
        position = self._take_position()
        recorded = self._recorded_step(position, RecordedApproval,
                                       f"approval request for {action!r}")
        if recorded is not None:
            if recorded.action != action:
                raise NondeterminismError(position, recorded.describe(),
                                          f"approval request for {action!r}")
            if recorded.claim is not None:
                return Approval.from_payload(recorded.claim)
            return recorded.request_id  # asked before the crash, decision not yet received
        request_id = request_id or f"{action}-{position}"
        attributes = {"request_id": request_id, "action": action,
                      "arguments": jsonable(arguments if arguments is not None else {}),
                      "summary": summary, "risk": risk, "approvals": approvals,
                      "timeout_seconds": timeout, "position": position}
        if on_behalf_of:
            attributes["on_behalf_of"] = on_behalf_of
        self._record([("approval.requested", attributes, {})])
        return request_id

    def _decision_for(self, request_id: str) -> Approval | None:
        if self._apply_commands():
            return None  # paused: the decision waits for the resume
        with self._lock:
            message = self._decisions.pop(request_id, None)
        if message is None:
            return None
        approval = Approval.from_payload(message.get("payload") or {}, message["id"])
        claim_type, claim = approval.claim()
        self._finish_command(message, "applied", f"approval {approval.decision}",
                             before=[(claim_type, claim, {})])
        return approval

    # --- commands --------------------------------------------------------------------------

    def on_signal(self, name: str, handler: Callable) -> None:
        """Call `handler(payload)` for each signal `name`, at the run's checkpoints (on the
        run's own thread or task). Signals that arrived before a handler existed are kept."""
        with self._lock:
            self._signal_handlers[name] = handler
            waiting = [signal for signal in self._unhandled_signals if signal["name"] == name]
            self._unhandled_signals = [s for s in self._unhandled_signals if s["name"] != name]
        for signal in waiting:
            self._deliver_signal(handler, signal["payload"], signal["name"])

    def checkpoint(self) -> None:
        """Apply the commands that arrived: a pause holds here until resume; a cancel raises
        `Cancelled`; signals reach their handlers. Raises `Terminated` after a terminate."""
        self._wait(lambda: None if self._apply_commands() else True)

    async def acheckpoint(self) -> None:
        await self._await(lambda: None if self._apply_commands() else True)

    def _receive(self, message: dict) -> None:
        """A command from the pull channel for this run (the poller's thread)."""
        command_id = message["id"]
        kind = message.get("kind")
        with self._lock:
            if command_id in self._verdicts:
                verdict = self._verdicts[command_id]
                if verdict is not None:
                    self._ack(command_id, *verdict)  # a redelivery: acknowledged again
                return
            if self._closed:
                self._verdicts[command_id] = ("rejected", f"the run is already {self._closed}")
                self._ack(command_id, *self._verdicts[command_id])
                return
            received = {"command_id": command_id, "kind": kind,
                        "signal_name": message.get("signal_name"),
                        "reason": message.get("reason") or ""}
            if kind in ("signal", "approve", "reject"):
                received["payload"] = message.get("payload") or {}
            self._record([("command.received", received, {})])
            # Marked seen only once its receipt is on disk: a write that failed leaves the
            # command to its redelivery instead of ignoring it for good.
            self._verdicts[command_id] = None
            if kind == "terminate":
                self._terminate(message)
            elif kind in ("approve", "reject"):
                payload = message.get("payload") or {}
                self._decisions[str(payload.get("request_id"))] = message
            else:
                self._pending.append(message)
            self._notify()

    def _terminate(self, message: dict) -> None:
        reason = message.get("reason") or ""
        self._finish_command(message, "applied", "terminated", after=[
            ("workflow.terminated", {"reason": reason, "command_id": message["id"]}, {})])
        self._terminated = Terminated(reason, message["id"], run=self)
        if self._task_loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to stop
                self._task_loop.call_soon_threadsafe(self._cancel_task)

    def _cancel_task(self) -> None:
        """On the run's event loop: stop the task at once, if it is still inside the block
        (__aexit__ clears `_task` on this same loop, so this cannot hit code after it)."""
        if self._task is not None:
            self._cancelled_task = True
            self._task.cancel("flightdeck: terminated")

    def _apply_commands(self) -> bool:
        """Apply what is pending (on the run's thread); True while the run must hold."""
        with self._lock:
            if self._terminated is not None:
                raise self._terminated
            position = self._position
        for control in self._history.controls.get(position, []):
            if (position, control.command_id) in self._replayed_controls:
                continue
            self._replayed_controls.add((position, control.command_id))
            if control.kind == "cancel":
                raise Cancelled(control.reason, control.command_id, run=self)
            self._dispatch_signal(control.signal_name, control.payload)  # replayed: no record
        while True:
            with self._lock:
                if not self._pending:
                    return self._paused_by is not None
                message = self._pending.popleft()
            self._apply(message)

    def _apply(self, message: dict) -> None:
        kind = message.get("kind")
        reason = message.get("reason") or ""
        command = {"command_id": message["id"]}
        if kind == "pause":
            if self._paused_by is not None:
                self._finish_command(message, "applied", "already paused")
                return
            self._finish_command(message, "applied", "paused at a checkpoint",
                                 before=[("workflow.paused", {**command, "reason": reason}, {})])
            self._paused_by = message["id"]
        elif kind == "resume":
            if self._paused_by is None:
                self._finish_command(message, "rejected", "the run is not paused")
                return
            self._finish_command(message, "applied", "resumed",
                                 before=[("workflow.resumed", {**command, "reason": reason}, {})])
            self._paused_by = None
        elif kind == "cancel":
            self._finish_command(message, "applied", "cancelled at a checkpoint",
                                 extra={"kind": "cancel", "reason": reason,
                                        "position": self._position})
            raise Cancelled(reason, message["id"], run=self)
        elif kind == "signal":
            self._apply_signal(message)
        else:
            self._finish_command(message, "rejected", f"unknown command kind {kind!r}")

    def _apply_signal(self, message: dict) -> None:
        name = message.get("signal_name") or ""
        payload = message.get("payload")
        self._record([("signal.received", {"signal_name": name, "payload": payload,
                                           "command_id": message["id"],
                                           "position": self._position}, {})])
        status, detail = self._dispatch_signal(name, payload)
        self._finish_command(message, status, detail)

    def _dispatch_signal(self, name: str, payload) -> tuple[str, str]:
        with self._lock:
            handler = self._signal_handlers.get(name)
            if handler is None:
                self._unhandled_signals.append({"name": name, "payload": payload})
                return "applied", f"signal {name!r} kept: no handler registered yet"
        error = self._deliver_signal(handler, payload, name)
        if error is not None:
            return "rejected", f"signal handler failed: {error}"
        return "applied", f"signal {name!r} delivered"

    @staticmethod
    def _deliver_signal(handler: Callable, payload, name: str) -> str | None:
        try:
            handler(payload)
        except Exception as exc:  # an operator's bad payload must not crash the agent
            log.exception("signal handler for %r failed", name)
            return f"{type(exc).__name__}: {exc}"
        return None

    def _finish_command(self, message: dict, status: str, detail: str, *,
                        before: list | None = None, after: list | None = None,
                        extra: dict | None = None) -> None:
        """Record the command's effect (`before` and `after` its verdict event) in one write,
        then acknowledge it. The verdict event moves the command too, once delivered; the
        acknowledgement is quicker, and either one alone is enough."""
        verdict = {"command_id": message["id"], "kind": message.get("kind"), "detail": detail,
                   **(extra or {})}
        with self._lock:
            self._record([*(before or []), (f"command.{status}", verdict, {}), *(after or [])])
            self._verdicts[message["id"]] = (status, detail)
        self._ack(message["id"], status, detail)

    def _ack(self, command_id: str, status: str, detail: str) -> None:
        self.client._outbox.ack(command_id, status, detail)

    # --- waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        with self._lock:
            self._version += 1
            self._changed.notify_all()
            waiters = list(self._async_waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(event.set)

    def _wait(self, ready: Callable, interval: float | Callable[[], float] = 1.0):
        """Call `ready()` until it returns something other than None, sleeping in between
        until something changes (a command arrives) or `interval` (seconds, or a function
        giving them) passes."""
        while True:
            with self._lock:
                version = self._version
            result = ready()
            if result is not None:
                return result
            with self._lock:
                if self._version == version:
                    self._changed.wait(interval() if callable(interval) else interval)

    async def _await(self, ready: Callable, interval: float | Callable[[], float] = 1.0):
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                version = self._version
            result = ready()
            if result is not None:
                return result
            event = asyncio.Event()
            with self._lock:
                if self._version != version:
                    continue
                self._async_waiters.add((loop, event))
            try:
                await asyncio.wait_for(event.wait(),
                                       interval() if callable(interval) else interval)
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    self._async_waiters.discard((loop, event))

    def _sleeper(self, seconds: float) -> Callable:
        deadline = time.monotonic() + seconds

        def ready():
            holding = self._apply_commands()  # commands first: a terminate ends the wait
            return None if holding or time.monotonic() < deadline else True

        return ready

    def _sleep(self, seconds: float) -> None:
        """Wait before a retry, applying commands meanwhile."""
        self._wait(self._sleeper(seconds), interval=min(1.0, max(0.01, seconds / 10)))

    async def _asleep(self, seconds: float) -> None:
        await self._await(self._sleeper(seconds), interval=min(1.0, max(0.01, seconds / 10)))
