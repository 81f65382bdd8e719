"""An agent for the timer crash test, run as its own process (python sleeping_agent.py).

It decides, sleeps AGENT_SLEEP seconds on a durable timer, and decides again. The test kills
it with SIGKILL while it sleeps. Connection settings come from FLIGHTDECK_URL,
FLIGHTDECK_TOKEN and FLIGHTDECK_SPOOL_DIR; the run is `timer-1` / AGENT_RUN_ID, new.
"""

from __future__ import annotations

import os
import sys

from flightdeck_sdk import Client


def main() -> int:
    client = Client(poll_commands=False)
    with client.run("digest", workflow_id="timer-1", run_id=os.environ["AGENT_RUN_ID"],
                    new=True) as run:
        run.decide("wait for the feed")
        run.sleep(float(os.environ["AGENT_SLEEP"]))
        run.decide("read the feed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
