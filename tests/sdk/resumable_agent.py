"""An agent for the crash-and-resume tests, run as its own process (python resumable_agent.py).

It walks five tools, deciding after each. Every tool call appends a line to AGENT_CALLS
first, so the test can count calls across processes. With AGENT_HOLD_AT=<tool> that tool
hangs after writing its line (the test kills the process there, mid-activity). With
AGENT_VARIANT=changed it calls `lookup_order` where the original calls `read_customer`.
Connection settings come from FLIGHTDECK_URL, FLIGHTDECK_TOKEN and FLIGHTDECK_SPOOL_DIR.
"""

from __future__ import annotations

import json
import os
import sys
import time

from flightdeck_sdk import Client

TOOLS = ["search_kb", "read_customer", "check_policy", "draft_reply", "send_email"]


def tool(name: str):
    def call(argument: str) -> dict:
        with open(os.environ["AGENT_CALLS"], "a") as calls:
            calls.write(f"{name} {argument}\n")
            calls.flush()
            os.fsync(calls.fileno())
        if name == os.environ.get("AGENT_HOLD_AT"):
            while True:  # the test kills us here
                time.sleep(1)
        return {"tool": name, "result": f"{name}-ok"}

    call.__name__ = name
    return call


def main() -> int:
    tools = list(TOOLS)
    if os.environ.get("AGENT_VARIANT") == "changed":
        tools[1] = "lookup_order"
    client = Client()
    with client.run("support", workflow_id="crash-1", run_id=os.environ["AGENT_RUN_ID"]) as run:
        last = "start"
        for name in tools:
            last = run.call(name, tool(name), last)["result"]
            run.decide(f"after-{name}", reason="the next step of the plan")
    client.flush(30)
    print(json.dumps({"outcome": run.outcome, "position": run.position}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
