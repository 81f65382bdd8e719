"""Importing Temporal history files: the one place an import happens, whoever asks (the upload
page, `POST /api/v1/import/temporal`, `manage.py import_temporal`, the Celery task).

An import is checked whole before anything is written: the file must read as Temporal
histories (400 otherwise, naming the problem), and no run in it may hold a different history
already (409). Then its events are stored through `history.ingest` in chunks, oldest first, so
a run is never left with a gap; importing the same file again stores nothing new.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from contextlib import contextmanager

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from access.models import Agent, Namespace, Token
from access.permissions import has_capability
from access.roles import Capability
from audit.log import record
from history.ingest import CONFLICT, DUPLICATE, STORED, RunOfAnotherAgent, ingest_parsed
from history.models import Event, Run
from interventions import connector_settings
from interventions.vocabulary import ConnectorKind
from temporal.models import ImportState, TemporalConnection, TemporalImport
from temporal.preparation import ImportRefused, PreparedRun, prepare

log = logging.getLogger(__name__)

DEFAULT_AGENT = "temporal-import"
IMPORT_TOKEN_NAME = "Temporal import (internal, no secret)"  # noqa: S105 - a label
# Events per ingest transaction; progress moves this often. As many as one ingest request may
# carry: each transaction costs a commit (a disk flush) and governance's round trips.
CHUNK = 5000


def import_agent(namespace: Namespace, name: str, user) -> Agent:
    """The agent an import's runs belong to: `name`, or the namespace's default import agent.
    An agent of another name is created only for admins (it is a new identity)."""
    name = (name or "").strip() or DEFAULT_AGENT
    if len(name) > 200 or "\x00" in name:
        raise ImportRefused(400, "agent: must be a name of at most 200 characters")
    agent = Agent.objects.filter(namespace=namespace, name=name).first()
    if agent is not None:
        if TemporalConnection.objects.filter(agent=agent).exists():
            # A followed connection's runs are live workflows that commands reach: an import
            # must not plant runs (or approval requests) among them.
            raise ImportRefused(
                403, f"agent: {name!r} follows a live Temporal connection; imported histories "
                "go to another agent"
            )
        return agent
    if name != DEFAULT_AGENT and user is not None and not has_capability(
        user, namespace.pk, Capability.ADMINISTER
    ):
        raise ImportRefused(
            403, f"agent: there is no agent {name!r} in {namespace.slug}, and creating one "
            "needs the administer capability; leave it empty to use "
            f"{DEFAULT_AGENT!r}"
        )
    try:
        with transaction.atomic():
            agent = Agent.objects.create(
                namespace=namespace, name=name,
                description="Runs imported from Temporal history files.",
            )
            # Its runs are records, not reachable workflows: commands to them are refused
            # ("no Temporal connection") rather than queued for an agent that never polls.
            connector_settings.configure(agent, kind=ConnectorKind.TEMPORAL, actor=user)
            return agent
    except IntegrityError:  # created meanwhile by a concurrent import
        return Agent.objects.get(namespace=namespace, name=name)


def writer_token(agent: Agent, name: str = IMPORT_TOKEN_NAME) -> Token:
    """The token recorded as the writer of imported events. Its secret is never kept: nobody
    can authenticate with it; it only says, on each event, how the event came in."""
    token = agent.tokens.active().filter(name=name).first()
    return token or Token.issue(agent=agent, name=name)[0]


def check_conflicts(namespace: Namespace, agent: Agent, runs: list[PreparedRun]) -> None:
    """Refuse (409) when a run of the file is stored already with different content, or
    belongs to another agent. Nothing is written either way."""
    for prepared in runs:
        run = Run.objects.filter(
            namespace=namespace, workflow_id=prepared.workflow_id, run_id=prepared.run_id
        ).select_related("agent").first()
        if run is None:
            continue
        if run.agent_id != agent.pk:
            raise ImportRefused(
                409, f"run {prepared.workflow_id} / {prepared.run_id} already belongs to agent "
                f"{run.agent.name!r} in {namespace.slug}; import it as that agent, or into "
                "another namespace"
            )
        by_id = {event.event_id: event for event in prepared.events}
        ids = list(by_id)
        for start in range(0, len(ids), CHUNK):
            stored = Event.objects.filter(run=run, event_id__in=ids[start:start + CHUNK])
            for event_id, salt, header in stored.values_list("event_id", "salt", "header"):
                if by_id[event_id].header_with_salt(salt) != header.encode():
                    raise ImportRefused(
                        409, f"run {prepared.workflow_id} / {prepared.run_id} already holds a "
                        f"different history: event {event_id} differs from the stored one. "
                        "Nothing was imported."
                    )


def store(token: Token, runs: list[PreparedRun],
          progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Store every prepared event, oldest first per run, CHUNK events per transaction.
    Returns (stored, duplicates)."""
    stored = duplicates = done = 0
    for prepared in runs:
        for start in range(0, len(prepared.events), CHUNK):
            chunk = prepared.events[start:start + CHUNK]
            for index, event in enumerate(chunk):
                event.index = index
            try:
                outcome = ingest_parsed(token, chunk)
            except RunOfAnotherAgent as exc:  # claimed meanwhile by another agent
                raise ImportRefused(409, str(exc)) from None
            if outcome.count(CONFLICT):
                # Only a concurrent writer can get here (check_conflicts passed): what is
                # stored so far is an intact prefix of this history.
                raise ImportRefused(
                    409, f"run {prepared.workflow_id} / {prepared.run_id} was written "
                    "meanwhile with a different history; the import stopped"
                )
            stored += outcome.count(STORED)
            duplicates += outcome.count(DUPLICATE)
            done += len(chunk)
            if progress is not None:
                progress(done)
    return stored, duplicates


def start_import(*, namespace: Namespace, user, content: bytes, filename: str = "",
                 agent_name: str = "", workflow_id: str = "", run_id: str = "",
                 request=None, inline: bool | None = None) -> TemporalImport:
    """Record an upload and import it: now when it is small (or `inline`), else by the Celery
    task after commit. The caller has checked the investigate capability. Raises
    ImportRefused for an unusable agent name; problems with the file end up on the row."""
    workflow_id = _identifier("workflow_id", workflow_id)
    run_id = _identifier("run_id", run_id)
    agent = import_agent(namespace, agent_name, user)
    if len(filename) > 255:
        filename = filename[-255:]
    if inline is None:
        inline = len(content) <= settings.TEMPORAL_IMPORT_INLINE_MAX_BYTES
    imp = TemporalImport.objects.create(
        namespace=namespace, agent=agent,
        requested_by=user if getattr(user, "is_authenticated", False) else None,
        filename=filename, size=len(content),
        # Only a queued import needs the file kept for its worker: writing a large file into
        # the database just to empty the column again cost a tenth of an inline import.
        content=b"" if inline else content,
        workflow_id=workflow_id, run_id=run_id,
    )
    if inline:
        perform(imp, request=request, content=content)
    else:
        from temporal.tasks import import_history

        transaction.on_commit(lambda: import_history.delay(imp.pk))
    return imp


def _identifier(name: str, value: str) -> str:
    """A workflow or run id given for a file that lacks it, checked before it is stored: the
    column holds 255 characters, and PostgreSQL refuses a NUL with an error (a 500)."""
    value = (value or "").strip()
    if len(value) > 255 or "\x00" in value:
        raise ImportRefused(400, f"{name}: must be at most 255 characters, without NUL")
    return value


def lease_seconds() -> int:
    return settings.TEMPORAL_IMPORT_LEASE_SECONDS


class LeaseLost(Exception):
    """This worker stalled past its lease and another one took the import over."""


def perform(imp: TemporalImport, *, request=None, content: bytes | None = None,
            progress: Callable[[int, int], None] | None = None) -> TemporalImport:
    """Carry out a recorded import under a lease (`TemporalImport.claim`), renewed with each
    progress write; its outcome (or refusal) is written on the row. An import that another
    worker holds, or that is finished, is returned as it stands. `content` is the file when
    the caller holds it (an inline import), else the row's."""
    if not imp.claim(lease_seconds()):
        return imp
    if content is None:
        content = bytes(imp.content)

    def moved(done: int) -> None:
        if not imp.write_held(lease_seconds(), events_done=done):
            raise LeaseLost
        if progress is not None:
            progress(done, imp.events_total)

    try:
        with _without_cycle_collection():
            runs = prepare(content, workflow_id=imp.workflow_id, run_id=imp.run_id)
            imp.events_total = sum(len(run.events) for run in runs)
            if not imp.write_held(lease_seconds(), events_total=imp.events_total):
                raise LeaseLost
            check_conflicts(imp.namespace, imp.agent, runs)
            stored, duplicates = store(writer_token(imp.agent), runs, moved)
            summaries = _summaries(imp, runs)
            # Let go of the events while the collector is paused: resumed, it would walk them
            # all once more (half a second for 51,200 events) before they are freed.
            del runs
    except LeaseLost:
        log.warning("temporal import %s: taken over by another worker; this one stops", imp.pk)
        finished = False
    except ImportRefused as exc:
        finished = _finish(imp, state=ImportState.FAILED, error=exc.message,
                           error_status=exc.status)
    except Exception:
        # Never left "running" for ever: marked failed, then the error goes on to the log.
        _finish(imp, state=ImportState.FAILED, error="the import failed on the server",
                error_status=500)
        raise
    else:
        finished = _finish(imp, state=ImportState.DONE, stored=stored, duplicates=duplicates,
                           events_done=imp.events_total, runs=summaries)
    if not finished:  # the worker that took over writes the outcome and its audit entry
        imp.refresh_from_db()
        return imp
    record(
        "temporal.imported", actor=imp.requested_by, request=request, namespace=imp.namespace,
        obj=imp, object_repr=imp.filename or str(imp.uuid),
        after={"state": imp.state, "agent": imp.agent.name, "size": imp.size,
               "events": imp.events_total, "stored": imp.stored, "error": imp.error or None},
    )
    return imp


@contextmanager
def _without_cycle_collection():
    """Pause Python's cyclic garbage collector for one import. A large history is millions of
    small objects, all alive until the import ends; the collector would walk them again and
    again as they pile up (it doubled the time of a 51,200-event import, bench/README.md).
    Nothing here makes reference cycles; the collector resumes afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _summaries(imp: TemporalImport, runs: list[PreparedRun]) -> list[dict]:
    found = {
        (run.workflow_id, run.run_id): run
        for run in Run.objects.filter(
            namespace=imp.namespace, workflow_id__in=[r.workflow_id for r in runs],
            run_id__in=[r.run_id for r in runs],
        )
    }
    summaries = []
    for prepared in runs:
        run = found.get((prepared.workflow_id, prepared.run_id))
        summaries.append({
            "uuid": str(run.uuid) if run else None,
            "workflow_id": prepared.workflow_id,
            "run_id": prepared.run_id,
            "events": len(prepared.events),
            "status": run.status if run else None,
        })
    return summaries


def _finish(imp: TemporalImport, **fields) -> bool:
    """Write the outcome if this worker still holds the import; False when it was taken over."""
    fields.update(content=b"", finished_at=timezone.now(), claimed_until=None)
    if "\x00" in fields.get("error", ""):  # it may quote the file; text columns refuse NUL
        fields["error"] = fields["error"].replace("\x00", "\\u0000")
    for name, value in fields.items():
        setattr(imp, name, value)
    return imp.write_held(**fields)
