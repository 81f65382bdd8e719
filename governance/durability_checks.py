"""Durability across a namespace: each workflow id is checked as a whole, when its runs have
changed, by a periodic task, never when a page opens.

Ingest marks the workflow id of every run it writes to as due (`mark_due_all`, one upsert per
batch). `run_pending` then checks due workflow ids: the rules of docs/durability.md through
`history.durability.analyse_workflow` (each run's activity events read once, so a workflow id
with many runs costs its events, not runs times events), and whether the workflow id was
interrupted and what became of it (docs/governance.md, "Interruptions"). Each check is bounded:
the most recent MAX_RUNS runs and history.durability's MAX_ACTIVITY_EVENTS activity events;
a check that hit a bound is marked `bounded` and the page says so.
"""

from __future__ import annotations

import hashlib
import logging
import time as clock
from collections import Counter, defaultdict

from django.db import connection, transaction
from django.utils import timezone

from governance import counts
from governance.models import Finding, WorkflowCheck
from governance.vocabulary import DURABILITY_RULES, Outcome
from history.durability import MAX_ACTIVITY_EVENTS, UNFINISHED, analyse_workflow
from history.durability import Finding as DurabilityFinding
from history.models import Event, Run

log = logging.getLogger(__name__)

MAX_RUNS = 1000
# Redone work is one finding per unit and other run: a workflow id re-run many times with the
# same activity keys would store runs x runs x units rows. Past this many per run, the check
# keeps the first ones and is marked bounded.
MAX_FINDINGS_PER_RUN = 100
ATTEMPT_EVENTS = ("activity.started", "activity.completed", "activity.failed",
                  "activity.timed_out", "activity.cancelled")


def mark_due(run: Run) -> None:
    """This run's workflow id needs a check (see mark_due_all)."""
    mark_due_all([run])


def mark_due_all(runs: list[Run]) -> None:
    """Called in the ingest transaction: the workflow ids of these runs need a check. One
    statement: an upsert that bumps each one's generation (and keeps the time it first became
    due), or creates it due. It locks the checks' rows until the batch commits, in the order of
    its rows, sorted here, so batches take these locks in one order and cannot deadlock on
    them. (An upsert draws an id from the sequence even when it updates: a 64-bit one.)"""
    rows = {}
    for run in runs:  # one row per workflow id: an upsert may not touch a row twice
        rows.setdefault((run.namespace_id, run.workflow_id), run.workflow_type)
    if not rows:
        return
    table = WorkflowCheck._meta.db_table
    now = timezone.now()
    values = ", ".join(["(%s, %s, %s, 1, %s, %s, %s, 0, %s)"] * len(rows))
    params = [value for (namespace_id, workflow_id), workflow_type in sorted(rows.items())
              for value in (namespace_id, workflow_id, workflow_type or "", True, now,
                            Outcome.NOT_INTERRUPTED, False)]
    # INSERT ... ON CONFLICT DO UPDATE on PostgreSQL and SQLite (3.24+) alike, as
    # governance.counts does; the text holds the table name and placeholders only.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (namespace_id, workflow_id, workflow_type, generation, due, "  # noqa: S608
            f"changed_at, outcome, runs, bounded) VALUES {values} "
            f"ON CONFLICT (namespace_id, workflow_id) DO UPDATE SET "
            f"generation = {table}.generation + 1, due = excluded.due, "
            f"changed_at = CASE WHEN {table}.due THEN {table}.changed_at "
            f"ELSE excluded.changed_at END",
            params,
        )


def run_pending(*, namespace=None, limit: int = 500, seconds: float | None = None) -> int:
    """Check due workflow ids, oldest change first: at most `limit`, and none started after
    `seconds`. Returns how many were checked."""
    started = clock.monotonic()
    due = WorkflowCheck.objects.due()
    if namespace is not None:
        due = due.filter(namespace=namespace)
    checked = 0
    for check_id in list(due.values_list("pk", flat=True)[:limit]):
        if seconds is not None and clock.monotonic() - started > seconds:
            break
        try:
            check_workflow(check_id)
        except Exception:
            # Say, a run deleted by retention while it was being checked. It stays due: the
            # next pass checks it again, and one bad check never stops the others.
            log.exception("governance could not check workflow check %s", check_id)
            continue
        checked += 1
    return checked


def check_workflow(check_id: int) -> None:
    """Check one workflow id and store its durability findings and outcome. Safe to repeat."""
    check = WorkflowCheck.objects.filter(pk=check_id).first()
    if check is None:
        return
    generation = check.generation
    latest = list(
        Run.objects.filter(namespace_id=check.namespace_id, workflow_id=check.workflow_id)
        .order_by("-started_at", "-pk")[: MAX_RUNS + 1]
    )
    if not latest:  # every run was deleted (retention)
        WorkflowCheck.objects.filter(pk=check.pk, generation=generation).delete()
        return
    runs = latest[:MAX_RUNS][::-1]  # oldest first, as history.durability expects
    per_run, events_bounded = analyse_workflow(runs)
    abandoned, attempts_bounded = abandoned_attempts(runs)
    outcome = outcome_of(runs, per_run, abandoned)
    findings_bounded = any(len(found) > MAX_FINDINGS_PER_RUN for found in per_run.values())
    rows = _finding_rows(runs, {pk: found[:MAX_FINDINGS_PER_RUN]
                                for pk, found in per_run.items()})
    findings = list({(f.run_id, f.rule, f.key): f for f in rows}.values())  # identical ones once
    with transaction.atomic():
        # Two checks of one workflow id at once (two workers) replace the findings in turn.
        WorkflowCheck.objects.select_for_update().filter(pk=check.pk).first()
        replaced = Finding.objects.filter(run__in=runs, rule__in=DURABILITY_RULES)
        changes = counts.of_stored(replaced, sign=-1)
        replaced.delete()
        Finding.objects.bulk_create(findings)
        counts.apply(_sum(changes, findings))
        WorkflowCheck.objects.filter(pk=check.pk).update(
            outcome=outcome, runs=len(runs), checked_at=timezone.now(),
            bounded=(len(latest) > MAX_RUNS or events_bounded or attempts_bounded
                     or findings_bounded),
            workflow_type=runs[-1].workflow_type,
        )
        # Only if no batch came in meanwhile; otherwise it stays due for the next pass.
        WorkflowCheck.objects.filter(pk=check.pk, generation=generation).update(due=False)


def _sum(changes, findings) -> Counter:
    # Counter's + drops non-positive totals; the counts need the negative ones too.
    total = Counter(changes)
    total.update(counts.of(findings))
    return total


def abandoned_attempts(runs: list[Run]) -> tuple[dict[int, list[int]], bool]:
    """Per run, the `activity.started` events whose attempt never got an outcome: another
    attempt of the same activity started first, or the run closed without one. The mark an
    interruption (a worker that died mid-activity) leaves in a history. ({run pk: event ids},
    bounded)."""
    closed = {run.pk for run in runs if run.is_closed}
    events = (
        Event.objects.filter(run__in=runs, type__in=ATTEMPT_EVENTS)
        .order_by("run_id", "event_id")
        .values_list("run_id", "event_id", "type", "refs")
    )
    open_attempts: dict[tuple[int, int], int] = {}
    abandoned: dict[int, list[int]] = defaultdict(list)
    for count, (run_pk, event_id, event_type, refs) in enumerate(events.iterator(2000)):
        if count >= MAX_ACTIVITY_EVENTS:
            return dict(abandoned), True
        scheduled = (refs or {}).get("scheduled")
        if not isinstance(scheduled, int):
            continue
        key = (run_pk, scheduled)
        if event_type == "activity.started":
            if key in open_attempts:
                abandoned[run_pk].append(open_attempts[key])
            open_attempts[key] = event_id
        else:
            open_attempts.pop(key, None)
    for (run_pk, _), started in open_attempts.items():
        if run_pk in closed:
            abandoned[run_pk].append(started)
    return dict(abandoned), False


def outcome_of(runs: list[Run], per_run: dict, abandoned: dict) -> str:
    """docs/governance.md, "Interruptions": what became of this workflow id."""
    findings = [finding for run in runs for finding in per_run[run.pk]]
    redone_within = any(
        f.rule == "redone_work" and len({linked.pk for linked, _ in f.links}) == 1
        for f in findings
    )
    restarted = any(f.rule == "restart_from_scratch" for f in findings)
    # Runs are ordered by start: any but the last has a later run.
    rerun_after_unfinished = any(run.status in UNFINISHED for run in runs[:-1])
    if restarted:
        return Outcome.RESTARTED_FROM_SCRATCH
    if redone_within:
        return Outcome.LOST_STATE
    if abandoned or rerun_after_unfinished:
        return Outcome.RESUMED
    return Outcome.NOT_INTERRUPTED


def _finding_rows(runs: list[Run], per_run: dict[int, list[DurabilityFinding]]) -> list[Finding]:
    times = _event_times(per_run)
    rows = []
    for run in runs:
        for finding in per_run[run.pk]:
            own = [event_id for linked, event_id in finding.links if linked.pk == run.pk]
            first = own[0] if own else 0
            links = [{"run": str(linked.uuid), "run_id": linked.run_id, "event_id": event_id}
                     for linked, event_id in finding.links]
            identity = f"{finding.summary}|{links}".encode()
            rows.append(Finding(
                namespace_id=run.namespace_id, run=run, agent_id=run.agent_id,
                rule=finding.rule, key=hashlib.sha256(identity).hexdigest(),
                event_id=first, event_ids=own[:20], subject=finding.title,
                summary=finding.summary[:500], detail={"links": links[:20]},
                received_at=times.get((run.pk, first), run.created_at),
            ))
    return rows


def _event_times(per_run: dict[int, list[DurabilityFinding]]) -> dict[tuple[int, int], object]:
    """When Flightdeck received the first event each finding links to in its own run: one
    query for the whole check, whatever the number of runs with findings."""
    wanted = {
        (run_pk, event_id)
        for run_pk, findings in per_run.items() for f in findings
        if (event_id := next((e for linked, e in f.links if linked.pk == run_pk), None))
        is not None
    }
    if not wanted:
        return {}
    rows = Event.objects.filter(
        run_id__in={run_pk for run_pk, _ in wanted},
        event_id__in={event_id for _, event_id in wanted},
    ).values_list("run_id", "event_id", "received_at")
    return {(run_pk, event_id): time for run_pk, event_id, time in rows
            if (run_pk, event_id) in wanted}
