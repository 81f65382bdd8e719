"""Durable timers (`run.sleep`, `run.asleep`) in the spool, without a server: what they record,
replay after a resume (a fired timer is not waited again, a timer cut short by a crash waits
only until its recorded fire time), the nondeterminism rule, and commands while sleeping (a
pause does not move the fire time but holds the run after it; cancel and terminate end the
wait). Commands are handed to the run as the command channel does."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path

import pytest
from flightdeck_sdk import FlightdeckError, NondeterminismError

from tests.interventions.services import free_port, wait_until
from tests.sdk.conftest import command, journal

AGENT = Path(__file__).with_name("sleeping_agent.py")
LONG = 3600.0  # a timer no test may wait out: finishing at all shows it was not waited


def types(events) -> list[str]:
    return [e["type"] for e in events]


def of_type(events, event_type: str) -> list[dict]:
    return [e for e in events if e["type"] == event_type]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def finishes(work, timeout: float = 30.0):
    """work() in a thread; its result, or its exception raised here. A wait the SDK should
    not do (an hour's timer) fails the test instead of hanging it."""
    box: dict = {}

    def target():
        try:
            box["result"] = work()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still waiting after {timeout:.0f} s"
    if "error" in box:
        raise box["error"]
    return box.get("result")


def when_recorded(client, workflow_id: str, box: dict, event_type: str, action) -> None:
    """In the background: once the run in box["run"] has recorded `event_type`, action(run)."""

    def watch():
        wait_until(lambda: "run" in box and event_type in types(
            journal(client, workflow_id, box["run"].run_id)), interval=0.01,
            what=f"{event_type} in the journal")
        action(box["run"])

    threading.Thread(target=watch, daemon=True).start()


# --- what a timer records ---------------------------------------------------------------------


def test_a_timer_records_its_start_and_fires_at_its_fire_time(offline_client):
    client = offline_client()
    with client.run("digest", "wf-timer") as run:
        run.decide("wait")
        run.sleep(0.05, timer_id="feed-refresh")
        run.sleep(0)
        run.decide("go on")
    events = journal(client, "wf-timer", run.run_id)
    assert types(events) == ["workflow.started", "decision.made", "timer.started",
                             "timer.fired", "timer.started", "timer.fired", "decision.made",
                             "workflow.completed"]
    started, fired = events[2], events[3]
    assert started["attributes"]["timer_id"] == "feed-refresh"
    assert started["attributes"]["duration_seconds"] == 0.05
    assert started["attributes"]["position"] == 2
    fire_at = moment(started["attributes"]["fire_at"])
    # Set from the clock just before the event was written: at most the duration after it.
    assert (fire_at - moment(started["time"])).total_seconds() <= 0.05
    assert fired["refs"] == {"started": started["event_id"]}
    assert fired["attributes"] == {"timer_id": "feed-refresh",
                                   "fire_at": started["attributes"]["fire_at"]}
    assert moment(fired["time"]) >= fire_at  # never early
    assert events[4]["attributes"]["timer_id"] == "timer@3"  # derived from the position
    assert run.position == 4


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), True, "5", 1e300])
def test_a_timer_refuses_a_duration_it_cannot_wait(offline_client, seconds):
    client = offline_client()
    with client.run("digest", "wf-bad-timer") as run:
        with pytest.raises(ValueError, match="seconds"):
            run.sleep(seconds)
        with pytest.raises(ValueError, match="timer_id"):
            run.sleep(1, timer_id="")
        assert run.position == 0
    assert types(journal(client, "wf-bad-timer", run.run_id)) == ["workflow.started",
                                                                  "workflow.completed"]


def test_an_asyncio_timer_lets_the_loop_run_other_tasks(offline_client):
    client = offline_client()
    ticks = []

    async def other_work():
        for n in range(3):
            ticks.append(n)
            await asyncio.sleep(0.01)

    async def main():
        async with client.arun("digest", "wf-atimer") as run:
            worker = asyncio.create_task(other_work())
            await run.asleep(0.2)
            assert ticks == [0, 1, 2]  # the loop ran the other task while the timer waited
            await worker
        return run

    run = asyncio.run(main())
    events = journal(client, "wf-atimer", run.run_id)
    assert types(events)[1:3] == ["timer.started", "timer.fired"]
    assert moment(events[2]["time"]) >= moment(events[1]["attributes"]["fire_at"])


# --- resume -------------------------------------------------------------------------------


def test_a_fired_timer_is_not_waited_again_after_a_resume(offline_client):
    client = offline_client()
    with pytest.raises(KeyboardInterrupt), client.run("digest", "wf-fired") as run:
        run.sleep(0.01)
        raise KeyboardInterrupt
    before = journal(client, "wf-fired", run.run_id)

    def resumed():
        with client.run("digest", "wf-fired", run.run_id) as again:
            again.sleep(LONG)  # the recorded timer fired: no wait, whatever the duration now
            again.decide("done")
        return again

    assert finishes(resumed).outcome == "completed"
    after = journal(client, "wf-fired", run.run_id)
    assert types(after[len(before):]) == ["marker.recorded", "decision.made",
                                          "workflow.completed"]


def test_a_timer_cut_short_by_a_crash_waits_only_until_its_recorded_fire_time(
    offline_client, tmp_path
):
    port = free_port()
    env = {**os.environ, "FLIGHTDECK_URL": f"http://127.0.0.1:{port}",
           "FLIGHTDECK_TOKEN": "fda_testtest_secret",
           "FLIGHTDECK_SPOOL_DIR": str(tmp_path / "spool"), "AGENT_RUN_ID": "attempt-1",
           "AGENT_SLEEP": "3"}
    client = offline_client(url=f"http://127.0.0.1:{port}")
    agent = subprocess.Popen([sys.executable, str(AGENT)], env=env,  # noqa: S603 - ours
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: "timer.started" in types(journal(client, "timer-1", "attempt-1")),
                   interval=0.01, what="the agent to start its timer")
    finally:
        os.kill(agent.pid, signal.SIGKILL)
        agent.communicate(timeout=30)
    events = journal(client, "timer-1", "attempt-1")
    assert types(events)[-1] == "timer.started"  # killed while it slept
    started = events[-1]

    def resumed():
        with client.run("digest", "timer-1", "attempt-1") as run:
            run.decide("wait for the feed")
            run.sleep(LONG)  # the timer in the history fires at its recorded time instead
            run.decide("read the feed")
        return run

    assert finishes(resumed).outcome == "completed"
    events = journal(client, "timer-1", "attempt-1")
    assert types(events).count("timer.started") == 1
    assert types(events)[len(events) - 4:] == ["marker.recorded", "timer.fired",
                                               "decision.made", "workflow.completed"]
    fired = of_type(events, "timer.fired")[0]
    assert fired["refs"] == {"started": started["event_id"]}
    assert fired["attributes"]["fire_at"] == started["attributes"]["fire_at"]
    # It waited for the recorded time (it did not fire at once on resume).
    assert moment(fired["time"]) >= moment(started["attributes"]["fire_at"])


def test_a_different_step_at_a_recorded_timer_is_a_nondeterminism_error(offline_client):
    client = offline_client()
    with pytest.raises(KeyboardInterrupt), client.run("digest", "wf-nd") as run:
        run.sleep(0, timer_id="cool-down")
        raise KeyboardInterrupt
    with pytest.raises(NondeterminismError) as caught, client.run("digest", "wf-nd",
                                                                  run.run_id) as again:
        again.call("fetch", lambda: "page")
    assert (caught.value.expected, caught.value.position) == ("timer 'cool-down'", 1)
    with pytest.raises(NondeterminismError, match=r"timer 'cool-down'.*timer 'warm-up'"), \
            client.run("digest", "wf-nd", run.run_id) as again:
        again.sleep(0, timer_id="warm-up")
    with pytest.raises(NondeterminismError, match=r"timer 'cool-down'.*decision 'go'"), \
            client.run("digest", "wf-nd", run.run_id) as again:
        again.decide("go")


def test_a_closed_run_replays_its_timers_without_waiting_or_recording(offline_client):
    client = offline_client()
    with client.run("digest", "wf-closed-timer") as run:
        run.sleep(0.01)
    count = len(journal(client, "wf-closed-timer", run.run_id))

    def replayed():
        with client.run("digest", "wf-closed-timer", run.run_id) as again:
            again.sleep(LONG)
        return again

    assert finishes(replayed).outcome == "completed"
    assert len(journal(client, "wf-closed-timer", run.run_id)) == count


# --- commands while sleeping --------------------------------------------------------------


def test_a_pause_does_not_move_the_fire_time_but_holds_the_run_after_it(offline_client):
    client = offline_client()
    box: dict = {}
    when_recorded(client, "wf-pause-timer", box, "timer.started",
                  lambda run: client._dispatch(command("pause", run)))
    when_recorded(client, "wf-pause-timer", box, "timer.fired",
                  lambda run: client._dispatch(command("resume", run)))

    def agent():
        with client.run("digest", "wf-pause-timer") as run:
            box["run"] = run
            run.sleep(2)
            run.decide("after the timer")
        return run

    run = finishes(agent)
    events = journal(client, "wf-pause-timer", run.run_id)
    assert types(events) == [
        "workflow.started", "timer.started",
        "command.received", "workflow.paused", "command.applied",
        "timer.fired",  # on time, while paused
        "command.received", "workflow.resumed", "command.applied",
        "decision.made",  # only after the resume
        "workflow.completed"]
    started, fired = events[1], events[5]
    assert fired["attributes"]["fire_at"] == started["attributes"]["fire_at"]
    assert moment(fired["time"]) >= moment(started["attributes"]["fire_at"])


def test_a_cancel_ends_the_wait_and_records_the_timer_cancelled(offline_client):
    client = offline_client()
    box: dict = {}
    when_recorded(client, "wf-cancel-timer", box, "timer.started",
                  lambda run: client._dispatch(command("cancel", run, reason="not needed")))

    def agent():
        with client.run("digest", "wf-cancel-timer") as run:
            box["run"] = run
            run.sleep(LONG)
            run.decide("never")
        return run

    run = finishes(agent)
    assert run.outcome == "cancelled"
    events = journal(client, "wf-cancel-timer", run.run_id)
    assert types(events) == ["workflow.started", "timer.started", "command.received",
                             "command.applied", "timer.cancelled", "workflow.cancelled"]
    cancelled = events[4]
    assert cancelled["refs"] == {"started": events[1]["event_id"]}
    assert cancelled["attributes"]["reason"] == "not needed"

    def replayed():  # closed: the cancel replays at the timer, nothing is recorded or waited
        with client.run("digest", "wf-cancel-timer", run.run_id) as again:
            again.sleep(LONG)
        return again

    assert finishes(replayed).outcome == "cancelled"
    assert len(journal(client, "wf-cancel-timer", run.run_id)) == len(events)


def test_a_terminate_ends_the_wait_at_once(offline_client):
    client = offline_client()
    box: dict = {}
    when_recorded(client, "wf-term-timer", box, "timer.started",
                  lambda run: client._dispatch(command("terminate", run, reason="runaway")))

    def agent():
        with client.run("digest", "wf-term-timer") as run:
            box["run"] = run
            run.sleep(LONG)
        return run

    run = finishes(agent)
    assert run.outcome == "terminated"
    events = journal(client, "wf-term-timer", run.run_id)
    assert types(events) == ["workflow.started", "timer.started", "command.received",
                             "command.applied", "workflow.terminated"]

    def replayed():  # closed during the timer: replaying it reaches the end of the history
        with client.run("digest", "wf-term-timer", run.run_id) as again:
            again.sleep(LONG)

    with pytest.raises(FlightdeckError, match="never fired"):
        finishes(replayed)
    assert len(journal(client, "wf-term-timer", run.run_id)) == len(events)


def test_an_asyncio_timer_is_cancelled_by_a_cancel(offline_client):
    client = offline_client()

    async def main():
        async with client.arun("digest", "wf-acancel") as run:
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, client._dispatch, command("cancel", run, reason="stop"))
            await run.asleep(LONG)
        return run

    run = finishes(lambda: asyncio.run(main()))
    assert run.outcome == "cancelled"
    assert types(journal(client, "wf-acancel", run.run_id))[-2:] == ["timer.cancelled",
                                                                     "workflow.cancelled"]
