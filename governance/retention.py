"""Retention and legal holds: a namespace keeps closed runs for its retention period, except
runs under a legal hold (on the run, or on the whole namespace). Every change of the period,
every hold placed or released and every run deleted is written to the audit log, whose entries
hold plain copies of what they name, so deleting a run never touches them.

A run is deleted in its own transaction, under the lock of its namespace's row and its own (a
hold takes the same locks: a run being deleted cannot be held halfway, and a held run is never
deleted), after its conditions are read again under those locks. Its dependants go first, in
an order that satisfies every foreign key (`RUN_DEPENDANTS`; a test checks it names every model
that refers to a run), its events in chunks of EVENT_CHUNK rows per statement.
"""

from __future__ import annotations

import logging
import time as clock
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from access.models import Namespace
from audit.log import record
from governance import counts, durability_checks
from governance.models import Finding, LegalHold, PrivilegedCall, RetentionPolicy
from history.models import Event, Run
from history.vocabulary import CLOSED_STATUSES
from interventions.models import ApprovalRequest, Command

log = logging.getLogger(__name__)

EVENT_CHUNK = 5000
RUNS_PER_QUERY = 200
# Every model with a foreign key to Run, in the order they are deleted (ApprovalRequest after
# Command, whose `approval` protects it; Event last before the run). ApprovalDecision goes
# with its request (CASCADE).
RUN_DEPENDANTS = (PrivilegedCall, Finding, LegalHold, Command, ApprovalRequest, Event)


class HoldRefused(Exception):
    """A hold that cannot be placed or released; `field` names what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class RetentionReport:
    deleted: list[dict] = field(default_factory=list)  # what each deleted run was
    would_delete: list[dict] = field(default_factory=list)  # --dry-run
    held_namespaces: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    more: bool = False  # stopped at the time budget with runs left

    def as_dict(self) -> dict:
        return {"deleted": len(self.deleted), "would_delete": len(self.would_delete),
                "held_namespaces": self.held_namespaces, "failed": self.failed,
                "more": self.more}


# --- the period -------------------------------------------------------------------------------


def keep_days_of(namespace: Namespace) -> int | None:
    policy = RetentionPolicy.objects.filter(namespace=namespace).first()
    return policy.keep_days if policy else None


def set_retention(namespace: Namespace, keep_days: int | None, *, actor, request=None) -> bool:
    """Set (None: clear) the namespace's retention period. Returns whether it changed."""
    with transaction.atomic():
        # The row lock: two admins saving at once record two honest before/after pairs.
        policy, _ = RetentionPolicy.objects.select_for_update().get_or_create(namespace=namespace)
        before = policy.keep_days
        if before == keep_days:
            return False
        policy.keep_days = keep_days
        policy.updated_by_label = actor.get_username()
        policy.updated_at = timezone.now()
        policy.save()
        record("retention.changed", actor=actor, request=request, namespace=namespace,
               obj=policy, object_repr=f"retention of {namespace.slug}",
               before={"keep_days": before}, after={"keep_days": keep_days})
    return True


# --- holds ------------------------------------------------------------------------------------


def _lock_namespace(namespace_id: int) -> Namespace:
    # NO KEY UPDATE: ingest's inserts (which take KEY SHARE on the namespace row through their
    # foreign keys) go on; holds and deletions in the namespace queue behind each other.
    return Namespace.objects.select_for_update(no_key=True).get(pk=namespace_id)


def place_hold(namespace: Namespace, *, run: Run | None, reason: str, actor,
               request=None) -> LegalHold:
    """Hold one run of the namespace, or (run None) all of them, until released."""
    reason = (reason or "").strip()
    if not reason:
        raise HoldRefused("reason", "a hold needs a reason")
    with transaction.atomic():
        _lock_namespace(namespace.pk)
        if run is not None:
            run = Run.objects.select_for_update(no_key=True).filter(
                pk=run.pk, namespace=namespace
            ).first()
            if run is None:
                raise HoldRefused("run", "no such run in this namespace (it may be deleted)")
        active = LegalHold.objects.active().filter(namespace=namespace, run=run)
        if active.exists():
            raise HoldRefused("run" if run else "namespace",
                              "this run is held already" if run else "the namespace is held "
                              "already")
        hold = LegalHold.objects.create(
            namespace=namespace, run=run, reason=reason[:2000],
            placed_by_label=actor.get_username(),
        )
        record("hold.placed", actor=actor, request=request, namespace=namespace, obj=hold,
               object_repr=_held(namespace, run), after=_hold_facts(hold))
    return hold


def release_hold(hold: LegalHold, *, reason: str, actor, request=None) -> LegalHold:
    reason = (reason or "").strip()
    if not reason:
        raise HoldRefused("reason", "releasing a hold needs a reason")
    with transaction.atomic():
        _lock_namespace(hold.namespace_id)
        # Only the hold's row: its run is a nullable join, which PostgreSQL cannot lock.
        hold = (
            LegalHold.objects.select_for_update(of=("self",))
            .select_related("run", "namespace").get(pk=hold.pk)
        )
        if not hold.is_active:
            raise HoldRefused("hold", "this hold is released already")
        before = _hold_facts(hold)
        hold.released_at = timezone.now()
        hold.released_by_label = actor.get_username()
        hold.release_reason = reason[:2000]
        hold.save(update_fields=["released_at", "released_by_label", "release_reason"])
        record("hold.released", actor=actor, request=request, namespace=hold.namespace,
               obj=hold, object_repr=_held(hold.namespace, hold.run), before=before,
               after=_hold_facts(hold))
    return hold


def _held(namespace: Namespace, run: Run | None) -> str:
    return f"run {run.workflow_id} / {run.run_id}" if run else f"namespace {namespace.slug}"


def _hold_facts(hold: LegalHold) -> dict:
    return {
        "run": str(hold.run.uuid) if hold.run_id else None,
        "reason": hold.reason,
        "placed_by": hold.placed_by_label,
        "released_at": hold.released_at.isoformat() if hold.released_at else None,
        "release_reason": hold.release_reason or None,
    }


# --- applying retention -------------------------------------------------------------------------


def expired_runs(namespace: Namespace, cutoff: datetime):
    """Closed runs of the namespace past `cutoff`, not held, oldest first. Past it by the close
    time the agent reported *and* by the last time Flightdeck stored an event of the run, so
    an agent that back-dates its close cannot have its history deleted early."""
    return (
        Run.objects.filter(namespace=namespace, status__in=CLOSED_STATUSES,
                           closed_at__lt=cutoff, updated_at__lt=cutoff)
        .exclude(Exists(LegalHold.objects.active().filter(run=OuterRef("pk"))))
        .order_by("closed_at", "pk")
    )


def apply_retention(*, now: datetime | None = None, dry_run: bool = False,
                    namespace: Namespace | None = None,
                    seconds: float | None = None) -> RetentionReport:
    """Delete (or with `dry_run` only list) every run past its namespace's retention period.
    Stops starting new deletions after `seconds`; `more` then says runs are left."""
    now = now or timezone.now()
    started = clock.monotonic()
    report = RetentionReport()
    policies = RetentionPolicy.objects.filter(keep_days__isnull=False).select_related("namespace")
    if namespace is not None:
        policies = policies.filter(namespace=namespace)
    for policy in policies.order_by("namespace__slug"):
        held = LegalHold.objects.active().filter(namespace=policy.namespace, run__isnull=True)
        if held.exists():
            report.held_namespaces.append(policy.namespace.slug)
            continue
        cutoff = now - timedelta(days=policy.keep_days)
        candidates = expired_runs(policy.namespace, cutoff)
        if dry_run:
            report.would_delete += [describe(run) for run in candidates.select_related("agent")]
            continue
        while True:
            batch = list(candidates.values_list("pk", flat=True)[:RUNS_PER_QUERY])
            progress = False
            for run_pk in batch:
                if seconds is not None and clock.monotonic() - started > seconds:
                    report.more = True
                    return report
                try:
                    deleted = delete_run(run_pk, cutoff=cutoff, keep_days=policy.keep_days)
                except Exception as exc:  # one bad run must not stop the others
                    log.exception("retention could not delete run pk %s", run_pk)
                    report.failed.append(f"run pk {run_pk}: {exc}")
                    continue
                if deleted:
                    report.deleted.append(deleted)
                    progress = True
            # A short page was the last; a page where nothing could go would come back as is.
            if len(batch) < RUNS_PER_QUERY or not progress:
                break
    return report


def describe(run: Run) -> dict:
    """What the audit log keeps of a deleted run: enough to match it against a signed digest
    (its head hash) and to know what was lost."""
    return {
        "uuid": str(run.uuid),
        "workflow_id": run.workflow_id,
        "run_id": run.run_id,
        "workflow_type": run.workflow_type,
        "agent": run.agent.name,
        "status": run.status,
        "started_at": run.started_at.isoformat(),
        "closed_at": run.closed_at.isoformat() if run.closed_at else None,
        "head_hash": run.head_hash,
        "event_count": run.event_count,
        "last_event_id": run.last_event_id,
        "contiguous_through": run.contiguous_through,
    }


def delete_run(run_pk: int, *, cutoff: datetime, keep_days: int) -> dict | None:
    """Delete one run and everything that depends on it, audited, if it is still past
    `cutoff` and not held once locked. Returns what it was, or None if it was left alone."""
    namespace_id = Run.objects.filter(pk=run_pk).values_list("namespace_id", flat=True).first()
    if namespace_id is None:
        return None
    with transaction.atomic():
        namespace = _lock_namespace(namespace_id)
        run = (
            Run.objects.select_for_update(of=("self",)).select_related("agent")
            .filter(pk=run_pk).first()
        )
        if run is None or not _still_expired(run, cutoff):
            return None
        if LegalHold.objects.active().filter(namespace=namespace, run__isnull=True).exists() or \
                LegalHold.objects.active().filter(run=run).exists():
            return None
        facts = describe(run)
        removed = {model._meta.label_lower: _delete_dependants(model, run)
                   for model in RUN_DEPENDANTS}
        Run.objects.filter(pk=run.pk).delete()
        durability_checks.mark_due(run)  # its workflow id's other runs are checked again
        record(
            "retention.run_deleted", namespace=namespace, object_type="history.run",
            object_id=facts["uuid"], object_repr=f"{run.workflow_id} / {run.run_id}"[:300],
            before=facts,
            after={"reason": "retention", "keep_days": keep_days, "cutoff": cutoff.isoformat(),
                   "removed": removed},
        )
    return facts


def _still_expired(run: Run, cutoff: datetime) -> bool:
    return (run.status in CLOSED_STATUSES and run.closed_at is not None
            and run.closed_at < cutoff and run.updated_at < cutoff)


def _delete_dependants(model, run: Run) -> int:
    if model is Finding:
        findings = Finding.objects.filter(run=run)
        counts.apply(counts.of_stored(findings, sign=-1))
        return findings.delete()[0]
    if model is not Event:
        # Few rows per run (commands, approvals, findings): one statement each.
        return model.objects.filter(run=run).delete()[1].get(model._meta.label, 0)
    removed = 0
    while True:
        # Chunks by event id through the (run, event_id) index: no statement holds more than
        # EVENT_CHUNK rows, whatever the length of the history.
        bound = list(
            Event.objects.filter(run=run).order_by("event_id")
            .values_list("event_id", flat=True)[EVENT_CHUNK - 1:EVENT_CHUNK]
        )
        chunk = Event.objects.filter(run=run)
        if bound:
            chunk = chunk.filter(event_id__lte=bound[0])
        removed += chunk.delete()[0]  # no signals or dependants: one DELETE statement
        if not bound:
            return removed
