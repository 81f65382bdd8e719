"""Durable timers: `run.sleep(seconds)` / `await run.asleep(seconds)`, a step of the run.

A timer records `timer.started` with the wall-clock time it fires (`fire_at`, UTC) and
`timer.fired` (refs `started`) once that time has come. The recorded `fire_at` is what counts:
a run resumed after a crash whose timer had fired does not wait again, and one whose timer was
started but had not fired waits only until that `fire_at` (not at all if it has passed), then
records `timer.fired`. While waiting the run is at a checkpoint: a pause does not move
`fire_at` (the timer fires on time) but the run holds after it until resumed; a cancel ends the
wait (recorded as `timer.cancelled`) and a terminate ends it at once.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from flightdeck_sdk.encoding import parse_rfc3339, rfc3339
from flightdeck_sdk.errors import Cancelled, FlightdeckError

MAX_INTERVAL = 1.0  # the longest a waiting run goes without looking at the clock
MAX_TIMER_ID = 200


def check_seconds(seconds) -> float:
    """`seconds` if a timer can wait that long, else ValueError naming the problem."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("seconds must be a number")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("seconds must be finite and 0 or more")
    fire_time(seconds)  # refused here, before the step takes a position
    return seconds


def check_timer_id(timer_id) -> str | None:
    if timer_id is None:
        return None
    if not isinstance(timer_id, str) or not 1 <= len(timer_id) <= MAX_TIMER_ID \
            or "\x00" in timer_id:
        raise ValueError(f"timer_id must be a string of 1 to {MAX_TIMER_ID} characters, no NUL")
    return timer_id


def fire_time(seconds: float) -> datetime:
    try:
        return datetime.now(UTC) + timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError("seconds: the timer would fire beyond the last representable date") \
            from None


class TimerStep:
    """One timer while the run waits for it. Shared by the synchronous and asyncio paths:
    `ready` and `interval` are what Run._wait / Run._await poll."""

    def __init__(self, run, timer_id: str, started_event_id: int, fire_at: str, *,
                 cancelled: bool = False):
        self.run = run
        self.timer_id = timer_id
        self.started = started_event_id
        self.fire_at = fire_at
        try:
            self.deadline = parse_rfc3339(fire_at).timestamp()
        except ValueError:
            raise FlightdeckError(
                f"timer {timer_id!r} (event {started_event_id}) has no readable fire_at "
                f"({fire_at!r}); it cannot be resumed"
            ) from None
        self.fired = False
        self.cancelled = cancelled  # already recorded as cancelled (a replay)

    def ready(self) -> bool | None:
        """True once the timer has fired and no pause holds the run; None to go on waiting."""
        holding = self.run._apply_commands()  # first: a cancel or a terminate ends the wait
        if not self.fired:
            if self.run._closed:
                # Replaying a closed run that ended during this timer: there is nothing after.
                raise FlightdeckError(
                    f"run {self.run.workflow_id}/{self.run.run_id} is closed "
                    f"({self.run._closed}); its timer {self.timer_id!r} never fired"
                )
            if time.time() < self.deadline:
                return None
            self.run._record([("timer.fired", {"timer_id": self.timer_id,
                                               "fire_at": self.fire_at},
                               {"started": self.started})])
            self.fired = True
        return None if holding else True

    def interval(self) -> float:
        """How long to wait before looking again (a command wakes the wait sooner)."""
        if self.fired:
            return MAX_INTERVAL  # held by a pause: only a command ends that
        return min(MAX_INTERVAL, max(0.001, self.deadline - time.time()))

    def cancel(self, exc: Cancelled) -> None:
        """Record that a cancel ended the wait: once, and never into a closed run."""
        if self.fired or self.cancelled or self.run._closed:
            return
        self.run._record([("timer.cancelled", {"timer_id": self.timer_id,
                                               "reason": exc.reason,
                                               "command_id": exc.command_id},
                           {"started": self.started})])
        self.cancelled = True


def started_attributes(timer_id: str, seconds: float, position: int) -> dict:
    """`timer.started`'s attributes for a timer set now."""
    return {"timer_id": timer_id, "duration_seconds": seconds,
            "fire_at": rfc3339(fire_time(seconds)), "position": position}
