"""Flightdeck's agent SDK: record a run's decisions and activities durably, resume after a
crash without redoing completed work, ask people for approval, and obey operators' commands.
Standard library only. See docs/sdk.md."""

from flightdeck_sdk.activity import activity
from flightdeck_sdk.approval import Approval
from flightdeck_sdk.client import Client
from flightdeck_sdk.errors import (
    Cancelled,
    FlightdeckError,
    NondeterminismError,
    Terminated,
)
from flightdeck_sdk.run import Run
from flightdeck_sdk.version import __version__

__all__ = ["Approval", "Cancelled", "Client", "FlightdeckError", "NondeterminismError", "Run",
           "Terminated", "__version__", "activity"]
