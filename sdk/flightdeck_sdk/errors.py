"""The exceptions the SDK raises into agent code."""

from __future__ import annotations


class FlightdeckError(Exception):
    """Something about the run or the SDK's state that the agent must know (a run that cannot
    be resumed safely, a closed run, a misconfiguration)."""


class NondeterminismError(FlightdeckError):
    """A resumed run asked for something else at a recorded position than its recorded history
    holds. Raised instead of guessing; the run is left open, so a corrected agent can resume it.
    """

    def __init__(self, position: int, expected: str, got: str):
        super().__init__(
            f"nondeterminism at step {position}: the recorded history has {expected}, "
            f"but the agent now asks for {got}"
        )
        self.position = position
        self.expected = expected
        self.got = got


class RunControl(BaseException):
    """Base of the control exceptions. A BaseException, so that agent code catching Exception
    around a tool call does not swallow an operator's cancel or terminate by accident."""

    def __init__(self, reason: str = "", command_id: str | None = None, run=None):
        super().__init__(reason or self.__class__.__name__.lower())
        self.reason = reason
        self.command_id = command_id
        self.run = run


class Cancelled(RunControl):
    """An operator cancelled the run; raised at its next checkpoint. The run's `with` block
    records `workflow.cancelled` and does not let it escape."""


class Terminated(RunControl):
    """An operator terminated the run; raised from the current or next SDK call (waits are
    interrupted). `workflow.terminated` is recorded as soon as the command arrives."""
