"""`run.record`: events of types the SDK does not model, in the spool, without a server. What
is recorded, what is refused (the SDK's own types, malformed types, attributes and refs), and
replay: a recorded event is a step, not recorded again after a resume, checked by its type; a
claim the agent recorded itself never stands in for the decision it received."""

from __future__ import annotations

import asyncio

import pytest
from flightdeck_sdk import NondeterminismError

from tests.sdk.conftest import command, journal
from tests.sdk.test_timers import finishes, types, when_recorded


def test_an_event_is_recorded_with_its_position_refs_and_identity(offline_client):
    client = offline_client(identity="svc")
    with client.run("support", "wf-record") as run:
        run.decide("classify")
        usage = run.record("llm.usage", {"model": "fake-1", "input_tokens": 120},
                           identity="billing-meter")
        marker = run.record("marker.recorded", {"marker": "prompt_version", "version": 3},
                            refs={"usage": usage})
    events = journal(client, "wf-record", run.run_id)
    assert types(events) == ["workflow.started", "decision.made", "llm.usage",
                             "marker.recorded", "workflow.completed"]
    assert (usage, marker) == (3, 4)
    assert events[2]["attributes"] == {"model": "fake-1", "input_tokens": 120, "position": 2}
    assert events[2]["identity"] == "billing-meter"
    assert events[3]["refs"] == {"usage": 3} and events[3]["identity"] == "svc"
    assert events[3]["attributes"]["position"] == 3
    assert run.position == 3


@pytest.mark.parametrize(("event_type", "hint"), [
    ("workflow.completed", "records its own start and end"),
    ("activity.completed", "use run.call"),
    ("command.applied", "records the commands"),
    ("timer.fired", "use run.sleep"),
    ("timer.anything", "use run.sleep"),
    ("approval.requested", "use run.request_approval"),
    ("decision.made", "use run.decide"),
    ("signal.received", "records the signals"),
])
def test_the_sdks_own_types_are_refused(offline_client, event_type, hint):
    client = offline_client()
    with client.run("support", "wf-owned") as run:
        with pytest.raises(ValueError, match=f"recorded by the SDK itself.*{hint}"):
            run.record(event_type, {"x": 1})
        assert run.position == 0
    assert types(journal(client, "wf-owned", run.run_id)) == ["workflow.started",
                                                              "workflow.completed"]


@pytest.mark.parametrize(("arguments", "message"), [
    (("LLM.usage",), "dotted lowercase"),
    (("usage",), "dotted lowercase"),
    (("llm..usage",), "dotted lowercase"),
    (("llm." + "u" * 100,), "at most 100"),
    ((7,), "dotted lowercase"),
    (("llm.usage", ["not", "a", "dict"]), "attributes must be a dict"),
    (("llm.usage", {"position": 4}), "'position' is the SDK's"),
    (("llm.usage", {}, {"usage": 0}), r"refs\['usage'\]: must be an event id"),
    (("llm.usage", {}, {"usage": True}), r"refs\['usage'\]: must be an event id"),
    (("llm.usage", {}, {"usage": "3"}), r"refs\['usage'\]: must be an event id"),
    (("llm.usage", {}, {"": 3}), "non-empty strings"),
    (("llm.usage", {}, [3]), "refs must be a dict"),
])
def test_a_malformed_event_is_refused_at_the_agent(offline_client, arguments, message):
    client = offline_client()
    with client.run("support", "wf-malformed") as run:
        event_type, *rest = arguments
        attributes = rest[0] if rest else None
        refs = rest[1] if len(rest) > 1 else None
        with pytest.raises(ValueError, match=message):
            run.record(event_type, attributes, refs=refs)
        assert run.position == 0


def test_a_recorded_event_is_replayed_not_recorded_again(offline_client):
    client = offline_client()
    with pytest.raises(KeyboardInterrupt), client.run("support", "wf-replay-record") as run:
        first = run.record("llm.usage", {"input_tokens": 120})
        raise KeyboardInterrupt
    before = journal(client, "wf-replay-record", run.run_id)

    with client.run("support", "wf-replay-record", run.run_id) as again:
        assert again.record("llm.usage", {"input_tokens": 999}) == first  # by type, not value
        assert again.replaying is False
        again.record("llm.usage", {"input_tokens": 80})
    after = journal(client, "wf-replay-record", run.run_id)
    assert types(after[len(before):]) == ["marker.recorded", "llm.usage", "workflow.completed"]

    with pytest.raises(NondeterminismError, match=r"event 'llm\.usage'.*event 'llm\.cost'"), \
            client.run("support", "wf-replay-record", run.run_id) as closed:
        closed.record("llm.cost", {"usd": 1})


def test_an_asyncio_run_records_events_too(offline_client):
    client = offline_client()

    async def main():
        async with client.arun("research", "wf-arecord") as run:
            await run.arecord("search.quota", {"left": 40})
            with pytest.raises(ValueError, match=r"use run\.sleep"):
                await run.arecord("timer.started", {})
        return run

    run = asyncio.run(main())
    assert types(journal(client, "wf-arecord", run.run_id)) == [
        "workflow.started", "search.quota", "workflow.completed"]


def test_a_claim_the_agent_records_never_replays_as_the_decision(offline_client):
    """The agent records approval.granted for a request that was rejected. On resume the
    request replays with the decision received (the SDK's own claim), not the agent's."""
    client = offline_client()
    box: dict = {}
    reject = {"request_id": "issue_refund-1", "decision": "rejected", "comment": "too much",
              "approver": "dora", "approvers": []}
    when_recorded(client, "wf-claim", box, "approval.requested",
                  lambda run: client._dispatch(command("reject", run, payload=reject)))

    def agent():
        with client.run("support", "wf-claim") as run:
            box["run"] = run
            approval = run.request_approval("issue_refund", {"order": "A-1"})
            run.record("approval.granted", {"request_id": approval.request_id})
            raise KeyboardInterrupt
        return approval

    with pytest.raises(KeyboardInterrupt):
        finishes(agent)
    run = box["run"]
    events = journal(client, "wf-claim", run.run_id)
    claims = [(e["type"], e["attributes"].get("position")) for e in events
              if e["type"].startswith("approval.") and e["type"] != "approval.requested"]
    assert claims == [("approval.rejected", None), ("approval.granted", 2)]

    with client.run("support", "wf-claim", run.run_id) as again:
        replayed = again.request_approval("issue_refund", {"order": "A-1"})
        again.record("approval.granted", {"request_id": replayed.request_id})
    assert (replayed.decision, replayed.comment) == ("rejected", "too much")
    assert types(journal(client, "wf-claim", run.run_id))[len(events):] == [
        "marker.recorded", "workflow.completed"]
