"""Following a live Temporal service: its workflows' histories, read into Flightdeck as they
grow.

One *session* per connection at a time (a lease on the connection row), run by the Celery task
`temporal.follow_connection` on the `temporal` queue and started again by beat as soon as it
ends. A session lists the service's open and recently closed workflows every
TEMPORAL_FOLLOW_LIST_INTERVAL_SECONDS; it reads what Flightdeck does not have yet of each one,
and long-polls each open one (GetWorkflowExecutionHistory with wait_new_event) so that new
events arrive within moments.

Where it stands is the stored history itself: each run's `contiguous_through`. Events are read
in order and stored page by page through `history.ingest`, only those beyond what is stored,
so a session that dies (or a restart) leaves an intact prefix, and the next session reads on
from there: no gap, and a repeat is a harmless duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from google.protobuf.json_format import MessageToDict

from history.ingest import STORED, RunOfAnotherAgent, ingest_parsed
from history.models import Run
from history.vocabulary import CLOSED_STATUSES
from temporal.history_files import whole_numbers
from temporal.importer import writer_token
from temporal.models import TemporalConnection
from temporal.preparation import ImportRefused, parse_wire

log = logging.getLogger(__name__)

FOLLOW_TOKEN_NAME = "Temporal follower (internal, no secret)"  # noqa: S105 - a label
PAGE_SIZE = 1000
MAX_LIST_PAGES = 20  # workflows listed per round: at most PAGE_SIZE * this
LONG_POLL_SECONDS = 30  # one long-poll call; the server answers earlier when nothing happens
LEASE_MARGIN_SECONDS = 30
# Open workflows: WORKFLOW_EXECUTION_STATUS_RUNNING and _PAUSED (a paused workflow is not
# "Running" to Temporal's visibility queries, but it is open and will go on).
OPEN_STATUSES = frozenset({1, 8})


@dataclass
class SessionReport:
    workflows: int = 0
    events_stored: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"workflows": self.workflows, "events_stored": self.events_stored,
                "errors": self.errors[:10]}


def follow_connection(connection_id: int, *, seconds: float | None = None) -> dict | None:
    """One follow session for a connection, if nobody else runs one now. Returns its report,
    or None when the connection is gone, disabled or already being followed."""
    seconds = settings.TEMPORAL_FOLLOW_SESSION_SECONDS if seconds is None else seconds
    connection = TemporalConnection.objects.select_related("agent", "namespace").filter(
        pk=connection_id, enabled=True
    ).first()
    if connection is None or not connection.claim(seconds + LEASE_MARGIN_SECONDS):
        return None
    report = SessionReport()
    try:
        token = writer_token(connection.agent, FOLLOW_TOKEN_NAME)
        asyncio.run(Session(connection, token, seconds, report).run())
    except Exception as exc:  # the service unreachable, a bad secret: shown on the page
        log.warning("following %s: %s", connection, exc)
        report.errors.append(f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        connection.release(error="; ".join(report.errors)[:2000])
    return report.as_dict()


class Session:
    def __init__(self, connection: TemporalConnection, token, seconds: float,
                 report: SessionReport):
        self.connection = connection
        self.token = token
        self.deadline = time.monotonic() + seconds
        self.report = report
        self.watchers: dict[tuple[str, str], asyncio.Task] = {}
        self.seen: set[tuple[str, str]] = set()
        self.refused: set[tuple[str, str]] = set()  # runs of another agent: not ours to write
        self.client = None

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def run(self) -> None:
        from temporal.client import connect

        self.client = await connect(self.connection)
        try:
            while self.remaining() > 0:
                await self.list_round()
                await asyncio.sleep(
                    max(min(settings.TEMPORAL_FOLLOW_LIST_INTERVAL_SECONDS, self.remaining()), 0)
                )
        finally:
            for task in self.watchers.values():
                task.cancel()
            await asyncio.gather(*self.watchers.values(), return_exceptions=True)
            await sync_to_async(connections.close_all, thread_sensitive=True)()
        self.report.workflows = len(self.seen)

    async def list_round(self) -> None:
        """List open and recently closed workflows; catch up on each, watch the open ones."""
        executions = await self.list_workflows()
        keys = [(e.execution.workflow_id, e.execution.run_id) for e in executions]
        known = await _stored_runs(self.connection, keys)
        for execution, key in zip(executions, keys, strict=True):
            self.seen.add(key)
            if key in self.refused:
                continue
            watcher = self.watchers.get(key)
            if watcher is not None and not watcher.done():
                continue
            running = execution.status in OPEN_STATUSES
            stored, closed = known.get(key, (0, False))
            if not running and closed and stored >= execution.history_length:
                continue  # finished and complete in Flightdeck
            if running and len(self.watching()) < settings.TEMPORAL_FOLLOW_MAX_WATCHED:
                self.watchers[key] = asyncio.create_task(self.guarded(key, wait=True))
            elif stored < execution.history_length or not closed:
                await self.guarded(key, wait=False)

    async def guarded(self, key: tuple[str, str], *, wait: bool) -> None:
        """Read one workflow; its failure (gone meanwhile, a refused read) is reported and
        does not stop the others. The next round or session tries it again."""
        try:
            await self.read(key, wait=wait)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.report.errors.append(f"{key[0]} / {key[1]}: {type(exc).__name__}: {exc}"[:500])

    def watching(self) -> list[asyncio.Task]:
        return [task for task in self.watchers.values() if not task.done()]

    async def list_workflows(self) -> list:
        from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest

        cutoff = datetime.now(UTC) - timedelta(
            seconds=settings.TEMPORAL_FOLLOW_CLOSED_WITHIN_SECONDS
        )
        query = (f'(ExecutionStatus = "Running" OR ExecutionStatus = "Paused" '
                 f'OR CloseTime > "{cutoff:%Y-%m-%dT%H:%M:%SZ}")')
        if self.connection.workflow_query:
            query = f"{query} AND ({self.connection.workflow_query})"
        found, page = [], b""
        for _ in range(MAX_LIST_PAGES):
            answer = await self.client.workflow_service.list_workflow_executions(
                ListWorkflowExecutionsRequest(
                    namespace=self.connection.temporal_namespace, page_size=PAGE_SIZE,
                    next_page_token=page, query=query,
                ),
                timeout=timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT_SECONDS),
            )
            found.extend(answer.executions)
            page = answer.next_page_token
            if not page:
                break
        return found

    async def read(self, key: tuple[str, str], *, wait: bool) -> None:
        """Read the run's history from the start, storing what is beyond the stored prefix;
        with `wait`, go on long-polling for new events until the run closes or the session
        ends."""
        from temporalio.api.common.v1 import WorkflowExecution
        from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
        from temporalio.service import RPCError, RPCStatusCode

        stored, _ = await _stored_through(self.connection, key)
        page = b""
        execution = WorkflowExecution(workflow_id=key[0], run_id=key[1])
        while self.remaining() > 0:
            timeout = min(LONG_POLL_SECONDS, self.remaining()) if wait else (
                settings.TEMPORAL_RPC_TIMEOUT_SECONDS
            )
            try:
                answer = await self.client.workflow_service.get_workflow_execution_history(
                    GetWorkflowExecutionHistoryRequest(
                        namespace=self.connection.temporal_namespace, execution=execution,
                        maximum_page_size=PAGE_SIZE, next_page_token=page,
                        wait_new_event=wait,
                    ),
                    timeout=timedelta(seconds=max(timeout, 0.1)),
                )
            except RPCError as exc:
                if exc.status == RPCStatusCode.DEADLINE_EXCEEDED and wait:
                    continue  # nothing new within the long-poll: ask again
                raise
            fresh = [event for event in answer.history.events if event.event_id > stored]
            if fresh:
                stored = await self.store(key, fresh, stored)
                if stored is None:
                    return
            page = answer.next_page_token
            if not page:
                return  # the run is closed and read to its end

    async def store(self, key: tuple[str, str], events: list, stored: int) -> int | None:
        """Store a page's new events; the new stored prefix, or None if this run cannot be
        written (it belongs to another agent, or an event cannot be mapped)."""
        if events[0].event_id != stored + 1:
            # Pages follow each other, so this only happens if the history changed under us
            # (a reset): read again from the start next round rather than leave a gap.
            self.report.errors.append(
                f"{key[0]} / {key[1]}: expected event {stored + 1}, got {events[0].event_id}"
            )
            return None
        canonical = [(event.event_id, whole_numbers(MessageToDict(event))) for event in events]
        try:
            written, through = await _store(self.connection, self.token, key, canonical)
        except (RunOfAnotherAgent, ImportRefused) as exc:
            self.refused.add(key)
            self.report.errors.append(f"{key[0]} / {key[1]}: {exc}"[:500])
            return None
        self.report.events_stored += written
        return through


@sync_to_async(thread_sensitive=True)
def _stored_through(connection: TemporalConnection, key: tuple[str, str]) -> tuple[int, bool]:
    """How far the run's stored history reaches without a gap, and whether it is closed."""
    return _known(connection, [key]).get(key, (0, False))


@sync_to_async(thread_sensitive=True)
def _stored_runs(connection: TemporalConnection,
                 keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, bool]]:
    return _known(connection, keys)


def _known(connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, bool]]:
    """(contiguous_through, closed) of the runs of `keys` that are stored, a query per 500."""
    found = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        wanted = set(chunk)
        rows = Run.objects.filter(
            namespace_id=connection.namespace_id,
            workflow_id__in={workflow_id for workflow_id, _ in chunk},
            run_id__in={run_id for _, run_id in chunk},
        ).values_list("workflow_id", "run_id", "contiguous_through", "status")
        for workflow_id, run_id, through, status in rows:
            if (workflow_id, run_id) in wanted:
                found[(workflow_id, run_id)] = (through, status in CLOSED_STATUSES)
    return found


@sync_to_async(thread_sensitive=True)
def _store(connection: TemporalConnection, token, key: tuple[str, str],
           events: list[tuple[int, dict]]) -> tuple[int, int]:
    parsed = []
    for index, (event_id, event) in enumerate(events):
        item = parse_wire(event, key[0], key[1], event_id, f"event {event_id}")
        item.index = index
        parsed.append(item)
    outcome = ingest_parsed(token, parsed)
    run = outcome.runs[0]
    return outcome.count(STORED), run.contiguous_through
