"""Celery tasks: deliver one command, sweep what got stuck, send notifications.

Each task takes an id, re-reads the row and returns quietly when there is nothing left to do,
so a repeated or late message is harmless. Late acks plus `reject_on_worker_lost`: a worker that
dies mid-delivery leaves its message to be delivered again (after the broker's visibility
timeout on Redis), and the command's claim lease lets the next worker take over.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from interventions import approvals, notifications
from interventions.commands import enqueue
from interventions.connectors import connector_for
from interventions.models import Command
from interventions.vocabulary import UNDELIVERED_STATES, CommandState

log = logging.getLogger(__name__)


def backoff_seconds(attempt: int) -> float:
    """Exponential: base, 2x base, 4x base ... capped, and always below the broker's visibility
    timeout, so that a retry's ETA never outlives the message that carries it."""
    cap = min(settings.COMMAND_RETRY_BACKOFF_MAX_SECONDS,
              settings.CELERY_BROKER_VISIBILITY_TIMEOUT / 2)
    return min(settings.COMMAND_RETRY_BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0), cap)


@shared_task(
    bind=True,
    name="interventions.deliver_command",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # attempts are counted on the row (COMMAND_MAX_ATTEMPTS)
    soft_time_limit=60,
    time_limit=90,
)
def deliver_command(self, command_id: str) -> None:
    """One delivery attempt (queues: see CELERY_TASK_ROUTES; `enqueue` picks the connector's)."""
    command = Command.objects.select_related("run", "agent", "requested_by").filter(
        pk=command_id
    ).first()
    if command is None or command.state not in UNDELIVERED_STATES:
        return
    now = timezone.now()
    if command.deadline <= now:
        expire(command)
        return
    if not command.claim(settings.COMMAND_CLAIM_LEASE_SECONDS):
        return  # another worker holds it, or it moved on
    outcome = connector_for(command.connector).dispatch(command)
    if outcome.delivered:
        command.advance(CommandState.DELIVERED, last_error="")
    elif outcome.waiting:
        # Handed over; the agent picks it up. If it has not after a while, the sweeper
        # dispatches again (a wake-up may have been lost). The claim is held until then, so a
        # repeated delivery message in between does not dispatch it a second time.
        stuck_at = now + timedelta(seconds=settings.COMMAND_STUCK_AFTER_SECONDS)
        Command.objects.filter(pk=command.pk).update(
            claimed_until=stuck_at, next_attempt_at=stuck_at
        )
    elif outcome.retry and command.attempts < settings.COMMAND_MAX_ATTEMPTS:
        delay = backoff_seconds(command.attempts)
        Command.objects.filter(pk=command.pk, state=CommandState.DISPATCHED).update(
            last_error=outcome.error[:2000],
            claimed_until=now,  # released: the retry (or the sweeper) may claim it
            next_attempt_at=now + timedelta(seconds=delay + settings.COMMAND_STUCK_AFTER_SECONDS),
        )
        raise self.retry(countdown=delay)
    else:
        error = outcome.error or "delivery failed"
        if outcome.retry:
            error = f"gave up after {command.attempts} attempts; last error: {error}"
        if command.advance(CommandState.FAILED, last_error=error[:2000]):
            notify_later("command_failed", command.pk)


def expire(command: Command) -> None:
    if command.advance(
        CommandState.EXPIRED, last_error="the deadline passed before the command was delivered"
    ):
        notify_later("command_expired", command.pk)


@shared_task(name="interventions.sweep", soft_time_limit=120, time_limit=180)
def sweep() -> dict:
    """Periodic (Celery beat): expire overdue commands and approval requests, re-enqueue
    commands whose delivery message was lost, remind approvers of close deadlines."""
    now = timezone.now()
    expired = 0
    for command in Command.objects.undelivered().filter(deadline__lte=now)[:500]:
        expire(command)
        expired += 1
    stuck = list(
        Command.objects.undelivered()
        .filter(next_attempt_at__lte=now, deadline__gt=now)
        .filter(
            Q(state=CommandState.QUEUED)
            | Q(claimed_until__isnull=True)
            | Q(claimed_until__lt=now)
        )
        .values_list("pk", "connector")[:1000]
    )
    for pk, connector_kind in stuck:
        # Pushed forward first, so the next sweep does not re-enqueue it again at once.
        Command.objects.filter(pk=pk).update(
            next_attempt_at=now + timedelta(seconds=settings.COMMAND_STUCK_AFTER_SECONDS)
        )
        enqueue(pk, connector_kind)
    result = {
        "expired_commands": expired,
        "requeued_commands": len(stuck),
        "expired_approvals": approvals.expire_overdue(now),
        "reminded_approvals": approvals.remind_due_soon(now),
    }
    if any(result.values()):
        log.info("sweep: %s", result)
    return result


@shared_task(name="interventions.notify", acks_late=True,
             autoretry_for=(OSError,), retry_backoff=True, max_retries=5,
             soft_time_limit=60, time_limit=90)
def notify(kind: str, object_id: str) -> None:
    notifications.send(kind, object_id)


def notify_later(kind: str, object_id) -> None:
    try:
        notify.delay(kind, str(object_id))
    except Exception as exc:
        log.warning("could not enqueue the %s notification for %s: %s", kind, object_id, exc)
