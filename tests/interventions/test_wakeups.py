"""Wake-ups over Redis pub/sub for waiting long-polls, on a private Redis."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from interventions import wakeups


@pytest.mark.redis
def test_a_listener_is_subscribed_when_it_is_entered_and_waits_for_a_wake_up(on_private_redis):
    redis = on_private_redis.client()

    async def listen() -> tuple[int, float, float]:
        async with wakeups.Listener(7) as listener:
            # Confirmed by Redis on entry: a wake-up published from now on cannot be missed.
            subscribers = redis.pubsub_numsub(wakeups.channel(7))[0][1]
            started = time.monotonic()
            await listener.wait(0.5)  # nothing published: the whole wait
            idle = time.monotonic() - started
            loop = asyncio.get_running_loop()
            loop.call_later(0.1, wakeups.publish, 7)
            started = time.monotonic()
            await listener.wait(20)
            return subscribers, idle, time.monotonic() - started

    # Its own thread and loop: Playwright's sync API leaves a loop running on the main
    # thread when the browser tests run first in the same session.
    with ThreadPoolExecutor(1) as pool:
        subscribers, idle, woken_after = pool.submit(asyncio.run, listen()).result()
    assert subscribers == 1
    assert idle >= 0.45  # not ended early by the subscription's own confirmation
    assert woken_after < 15  # by the wake-up, not the end of its wait
    assert redis.pubsub_numsub(wakeups.channel(7))[0][1] == 0  # closed on exit
