"""The SDK under asyncio: `async with client.arun(...)`, `acall` with coroutine and plain
functions, `@activity` on `async def`, concurrent steps, replay, and a pause that holds the
run's task without blocking the event loop."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from flightdeck_sdk import activity

from tests.sdk.conftest import command, journal

CALLS: Counter = Counter()


@activity("summarise", kind="llm")
async def summarise(text: str) -> str:
    CALLS["summarise"] += 1
    await asyncio.sleep(0.01)
    return text[:12]


async def fetch(url: str) -> dict:
    CALLS[url] += 1
    await asyncio.sleep(0.01)
    return {"url": url, "words": len(url)}


async def research(client, run_id=None, *, crash=False):
    async with client.arun("research", "r-async", run_id) as run:
        pages = await asyncio.gather(run.acall("fetch", fetch, "a.example"),
                                     run.acall("fetch", fetch, "b.example"))
        summary = await summarise(" ".join(page["url"] for page in pages))
        total = await run.acall("count", lambda: sum(page["words"] for page in pages))
        await run.adecide("publish", reason=summary)
        if crash:
            raise KeyboardInterrupt
        run.complete({"summary": summary, "total": total})
    return run


@pytest.fixture(autouse=True)
def fresh_counts():
    CALLS.clear()


def test_an_asyncio_run_records_its_steps_in_position_order(offline_client):
    client = offline_client()
    run = asyncio.run(research(client))
    assert run.outcome == "completed"
    events = journal(client, "r-async", run.run_id)
    scheduled = [e["attributes"] for e in events if e["type"] == "activity.scheduled"]
    assert [(s["activity_type"], s["position"]) for s in scheduled] == [
        ("fetch", 1), ("fetch", 2), ("summarise", 3), ("count", 4)]
    assert scheduled[0]["input"] == {"args": ["a.example"], "kwargs": {}}
    assert scheduled[2]["kind"] == "llm"
    assert events[-1]["attributes"]["result"] == {"summary": "a.example b.", "total": 18}


def test_an_interrupted_asyncio_run_replays_without_awaiting_its_activities_again(
    offline_client,
):
    client = offline_client()
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(research(client, crash=True))
    run_id = next(f.run_id for f in client._spool.folders())
    run = asyncio.run(research(client, run_id))
    assert run.outcome == "completed"
    assert CALLS == {"a.example": 1, "b.example": 1, "summarise": 1}
    types = [e["type"] for e in journal(client, "r-async", run_id)]
    assert types.count("activity.completed") == 4 and types.count("decision.made") == 1


def test_a_paused_asyncio_run_holds_its_task_while_the_loop_keeps_running(offline_client):
    client = offline_client()
    ticks = []

    async def main():
        async with client.arun("research", "r-pause") as run:
            await run.acall("plan", lambda: "plan")
            client._dispatch(command("pause", run))

            async def other_work():
                for n in range(5):
                    ticks.append(n)
                    await asyncio.sleep(0.01)
                client._dispatch(command("resume", run))

            worker = asyncio.create_task(other_work())
            await run.acheckpoint()  # holds until the resume other_work sends
            assert len(ticks) == 5  # the loop ran other tasks meanwhile
            await worker
        return run

    run = asyncio.run(main())
    types = [e["type"] for e in journal(client, "r-pause", run.run_id)]
    assert types[-6:] == ["workflow.paused", "command.applied", "command.received",
                          "workflow.resumed", "command.applied", "workflow.completed"]
