"""Crash and resume: an agent process killed with SIGKILL in the middle of a tool call, then
started again with the same run id, finishes without calling any completed tool again; a
changed agent that calls another tool at a recorded position gets NondeterminismError."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from flightdeck_sdk import FlightdeckError

from history.durability import analyse
from history.models import Run
from tests.builders import event
from tests.interventions.services import request, wait_until
from tests.sdk.conftest import attributes, live, stored

AGENT = Path(__file__).with_name("resumable_agent.py")


def start_agent(env: dict, **settings: str) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, str(AGENT)], env={**env, **settings}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def calls(path: Path) -> Counter:
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines())


@live
def test_a_killed_agent_resumes_without_calling_completed_tools_again(
    asgi_server, agent_token, tmp_path
):
    calls_file = tmp_path / "calls.txt"
    env = {**os.environ, "FLIGHTDECK_URL": asgi_server.url, "FLIGHTDECK_TOKEN": agent_token,
           "FLIGHTDECK_SPOOL_DIR": str(tmp_path / "spool"), "AGENT_RUN_ID": "attempt-1",
           "AGENT_CALLS": str(calls_file)}

    first = start_agent(env, AGENT_HOLD_AT="check_policy")
    try:
        wait_until(lambda: calls(calls_file)["check_policy"] == 1,
                   what="the agent to be inside its third tool")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
    assert calls(calls_file) == {"search_kb": 1, "read_customer": 1, "check_policy": 1}

    changed = start_agent(env, AGENT_VARIANT="changed")
    _, errors = changed.communicate(timeout=60)
    assert changed.returncode != 0
    assert "NondeterminismError: nondeterminism at step 3" in errors
    assert "activity 'read_customer' with key 'read_customer@3:" in errors
    assert "activity 'lookup_order' with key 'lookup_order@3:" in errors
    assert calls(calls_file) == {"search_kb": 1, "read_customer": 1, "check_policy": 1}

    resumed = start_agent(env)
    output, errors = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, errors
    assert '"outcome": "completed"' in output
    # Completed tools were not called again; the interrupted one ran again (at least once).
    assert calls(calls_file) == {"search_kb": 1, "read_customer": 1, "check_policy": 2,
                                 "draft_reply": 1, "send_email": 1}

    run = wait_until(lambda: Run.objects.filter(workflow_id="crash-1",
                                                status="completed").first(),
                     what="the run to be completed")
    events = stored("crash-1", "attempt-1")
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    completions = Counter(attributes(e)["activity_key"] for e in events
                          if e.type == "activity.completed")
    assert len(completions) == 5 and set(completions.values()) == {1}
    decisions = [attributes(e)["decision"] for e in events if e.type == "decision.made"]
    assert decisions == [f"after-{name}" for name in
                         ("search_kb", "read_customer", "check_policy", "draft_reply",
                          "send_email")]
    policy = [e for e in events if attributes(e).get("activity_type") == "check_policy"]
    assert [(e.type, attributes(e).get("attempt")) for e in policy] == [
        ("activity.scheduled", None), ("activity.started", 1), ("activity.started", 2),
        ("activity.completed", 2)]
    assert [e.type for e in events].count("marker.recorded") == 2  # two processes resumed
    assert analyse(run).findings == []


@live
def test_a_run_resumed_on_another_machine_replays_from_flightdecks_history(
    sdk_client, tmp_path
):
    counted = Counter()

    def tool(name):
        def call(argument):
            counted[name] += 1
            return f"{name}({argument})"

        return call

    def agent(client, run_id=None, crash=False):
        with client.run("research", "r-moved", run_id) as run:
            notes = run.call("read", tool("read"), "paper")
            run.decide("summarise", basis=notes)
            if crash:
                raise KeyboardInterrupt  # this machine goes away
            run.call("write", tool("write"), notes)
        return run

    first = sdk_client(spool_dir=tmp_path / "machine-a")
    with pytest.raises(KeyboardInterrupt):
        agent(first, crash=True)
    assert first.flush(30)
    run_id = Run.objects.get(workflow_id="r-moved").run_id

    second = sdk_client(spool_dir=tmp_path / "machine-b")  # an empty spool
    run = agent(second, run_id)
    assert run.outcome == "completed"
    assert counted == {"read": 1, "write": 1}
    assert second.flush(30)
    events = stored("r-moved", run_id)
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events].count("decision.made") == 1
    assert events[-1].type == "workflow.completed"
    assert second.dead_letters() == []


@live
def test_a_history_with_gaps_is_not_resumed(sdk_client, asgi_server, agent_token):
    events = [event(1, "workflow.started", workflow_id="r-gap", run_id="x"),
              event(3, workflow_id="r-gap", run_id="x")]
    status, _, _ = request(asgi_server.url, "POST", "/api/v1/ingest", body={"events": events},
                           headers={"Authorization": f"Bearer {agent_token}"})
    assert status == 200
    client = sdk_client()
    with pytest.raises(FlightdeckError, match="has gaps"), client.run("research", "r-gap", "x"):
        pass
