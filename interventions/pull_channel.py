"""The pull channel's long-poll: `GET /api/v1/agent/commands?wait=30` with an agent token.

An async view, served under ASGI: a waiting agent costs a coroutine and (with Redis) one
subscription, not a server thread, so fifty waiting agents leave the dashboard's threads free.
It subscribes to the agent's wake-ups first, then reads the database; if nothing is ready it
sleeps until a wake-up or the wait is over, then reads once more. Without Redis it re-reads the
database every COMMAND_LONG_POLL_FALLBACK_SECONDS instead.

Handing a command out marks it delivered; if the agent does not acknowledge it within
COMMAND_PULL_REDELIVER_SECONDS (its response may have been lost), a later poll hands it out again.
Agents must treat the command id as idempotency key.
"""

from __future__ import annotations

import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from rest_framework import exceptions

from access.authentication import AgentPrincipal, authenticate_bearer
from interventions import wakeups
from interventions.models import Command
from interventions.vocabulary import CommandState
from interventions.wire import command_message

MAX_BATCH = 100


def _error(status: int, field: str, message: str) -> JsonResponse:
    response = JsonResponse({field: [message]}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="flightdeck"'
    return response


def _authenticate(header: str | None):
    try:
        found = authenticate_bearer(header)
    except exceptions.AuthenticationFailed as exc:
        return None, str(exc.detail)
    if found is None:
        return None, "Authentication credentials were not provided."
    principal, _ = found
    if not isinstance(principal, AgentPrincipal):
        return None, "This endpoint is for agent tokens."
    return principal, ""


def hand_out(agent_id: int) -> list[dict]:
    """The agent's commands that are ready, marked delivered, as the agent will see them."""
    now = timezone.now()
    messages = []
    with transaction.atomic():
        # Row locks: of two concurrent polls of one agent, the second waits for the first and
        # then finds the command delivered (PostgreSQL re-checks the WHERE clause on the locked
        # row), so it is handed out once. Not SKIP LOCKED: the worker publishes the wake-up
        # while still writing the row, and a poll woken by it would skip the row and wait on
        # with the command never handed out.
        ready = list(
            Command.objects.awaiting_pickup_by(agent_id, now)
            .select_for_update(of=("self",))
            .select_related("run", "requested_by")
            .order_by("created_at")[:MAX_BATCH]
        )
        for command in ready:
            Command.objects.filter(pk=command.pk).update(
                state=CommandState.DELIVERED, delivered_at=now
            )
            messages.append(command_message(command))
    return messages


def hand_out_and_disconnect(agent_id: int) -> list[dict]:
    """`hand_out`, then close this thread's database connection. A long-poll spends nearly all
    its time waiting and reads rarely (when it starts, on a wake-up, when its wait ends): kept
    open, its connection would sit idle for the whole wait, and fifty waiting agents would hold
    fifty of PostgreSQL's connections (100 by default)."""
    try:
        return hand_out(agent_id)
    finally:
        if not connection.in_atomic_block:  # a caller's transaction (a test's) stays open
            connection.close()


@require_GET
async def long_poll(request: HttpRequest) -> JsonResponse:
    principal, error = await sync_to_async(_authenticate)(request.META.get("HTTP_AUTHORIZATION"))
    if principal is None:
        status = 403 if error == "This endpoint is for agent tokens." else 401
        return _error(status, "detail", error)
    raw_wait = request.GET.get("wait", "30")
    try:
        wait = float(raw_wait)
    except ValueError:
        return _error(400, "wait", "must be a number of seconds")
    if not 0 <= wait <= settings.COMMAND_LONG_POLL_MAX_SECONDS:
        return _error(
            400, "wait", f"must be between 0 and {settings.COMMAND_LONG_POLL_MAX_SECONDS} seconds"
        )
    agent_id = principal.agent.pk
    deadline = time.monotonic() + wait
    async with wakeups.Listener(agent_id) as listener:
        while True:
            commands = await sync_to_async(hand_out_and_disconnect)(agent_id)
            remaining = deadline - time.monotonic()
            if commands or remaining <= 0:
                return JsonResponse({"commands": commands})
            await listener.wait(remaining)
