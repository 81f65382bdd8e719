"""Waking an agent's waiting long-poll when a command is ready for it.

With Redis (REDIS_URL set), a delivery publishes on the agent's channel and the long-poll,
subscribed before it first reads the database, wakes at once: no database polling. Without
Redis (the embedded demo set-up), the long-poll re-reads the database every
COMMAND_LONG_POLL_FALLBACK_SECONDS instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import cache

import redis
import redis.asyncio as aioredis
from django.conf import settings

log = logging.getLogger(__name__)


def channel(agent_id: int) -> str:
    return f"flightdeck:commands:agent:{agent_id}"


@cache
def _client() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def publish(agent_id: int) -> None:
    """Wake the agent's long-polls. A lost wake-up only delays pickup (the long-poll also reads
    the database when it starts and when it times out), so failures are logged, not raised."""
    client = _client()
    if client is None:
        return
    try:
        client.publish(channel(agent_id), b"1")
    except redis.RedisError as exc:
        log.warning("could not publish a command wake-up for agent %s: %s", agent_id, exc)


class Listener:
    """A subscription to one agent's wake-ups, opened before the long-poll reads the database
    so that a command dispatched in between is not missed."""

    def __init__(self, agent_id: int):
        self.agent_id = agent_id
        self._client: aioredis.Redis | None = None
        self._pubsub = None

    async def __aenter__(self) -> Listener:
        if settings.REDIS_URL:
            try:
                self._client = aioredis.Redis.from_url(
                    settings.REDIS_URL, socket_connect_timeout=5
                )
                self._pubsub = self._client.pubsub()
                await self._pubsub.subscribe(channel(self.agent_id))
                # SUBSCRIBE is only sent; wait for Redis to confirm it. Until then a wake-up
                # published on another connection may be processed first and lost, and the
                # confirmation would end the first wait at once, costing a second database read
                # per poll (fifty at once when fifty agents reconnect).
                confirmation = await self._pubsub.get_message(timeout=5)
                if confirmation is None or confirmation["type"] != "subscribe":
                    raise redis.ConnectionError(
                        f"Redis did not confirm the subscription ({confirmation!r})"
                    )
            except (redis.RedisError, OSError) as exc:
                log.warning("long-poll falls back to database polling: %s", exc)
                await self._close()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._close()

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            if self._pubsub is not None:
                await self._pubsub.aclose()
        with contextlib.suppress(Exception):
            if self._client is not None:
                await self._client.aclose()
        self._pubsub = self._client = None

    async def wait(self, timeout: float) -> None:
        """Return on a wake-up, or after `timeout` seconds (at most the fallback interval when
        there is no Redis subscription)."""
        if self._pubsub is None:
            await asyncio.sleep(min(timeout, settings.COMMAND_LONG_POLL_FALLBACK_SECONDS))
            return
        try:
            await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        except (redis.RedisError, OSError) as exc:
            log.warning("wake-up subscription lost, falling back to polling: %s", exc)
            await self._close()
