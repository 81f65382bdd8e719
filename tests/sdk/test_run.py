"""A run's steps in the spool, without a server: activity keys, retries, replay after an
interruption, the nondeterminism rule, closed runs, and commands applied at checkpoints
(handed to the run as the command channel does)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from flightdeck_sdk import FlightdeckError, NondeterminismError, activity
from flightdeck_sdk.run import activity_key

from tests.sdk.conftest import command, journal

CALLS: Counter = Counter()


@activity(kind="tool")
def search_kb(query: str, limit: int = 3) -> list[str]:
    CALLS["search_kb"] += 1
    return [f"{query} #{n}" for n in range(limit)]


@activity("read_customer", kind="tool")
def read_customer(customer_id: int) -> dict:
    CALLS["read_customer"] += 1
    return {"id": customer_id, "tier": "gold"}


@pytest.fixture(autouse=True)
def fresh_counts():
    CALLS.clear()


def types(events) -> list[str]:
    return [e["type"] for e in events]


# --- activity keys ------------------------------------------------------------------------


def test_a_derived_key_names_the_type_the_position_and_a_digest_of_the_input():
    first = activity_key("search_kb", 3, {"args": ["refund"], "kwargs": {"a": 1, "b": 2}})
    assert first.startswith("search_kb@3:") and len(first) == len("search_kb@3:") + 16
    assert first == activity_key("search_kb", 3, {"kwargs": {"b": 2, "a": 1},
                                                  "args": ["refund"]})
    assert first != activity_key("search_kb", 4, {"args": ["refund"], "kwargs": {"a": 1,
                                                                                "b": 2}})
    assert first != activity_key("search_kb", 3, {"args": ["refunds"], "kwargs": {"a": 1,
                                                                                 "b": 2}})
    assert first != activity_key("search_web", 3, {"args": ["refund"], "kwargs": {"a": 1,
                                                                                 "b": 2}})


def test_activities_record_scheduled_started_completed_with_their_key(offline_client):
    client = offline_client(identity="svc")
    with client.run("support", "wf-keys") as run:
        assert search_kb("refund", limit=2) == ["refund #0", "refund #1"]
        run.call("send_email", lambda to: "sent", "a@b.c", key="email-a@b.c", identity="smtp")
    events = journal(client, "wf-keys", run.run_id)
    assert types(events) == ["workflow.started", "activity.scheduled", "activity.started",
                             "activity.completed", "activity.scheduled", "activity.started",
                             "activity.completed", "workflow.completed"]
    scheduled = events[1]["attributes"]
    assert scheduled["input"] == {"args": ["refund"], "kwargs": {"limit": 2}}
    assert scheduled["activity_key"] == activity_key("search_kb", 1, scheduled["input"])
    assert (scheduled["kind"], scheduled["position"]) == ("tool", 1)
    assert events[3]["refs"] == {"scheduled": 2, "started": 3}
    assert events[6]["attributes"]["activity_key"] == "email-a@b.c"
    assert [e.get("identity") for e in events] == ["svc"] * 4 + ["smtp"] * 3 + ["svc"]


def test_a_decorated_function_outside_a_run_is_a_plain_call_and_nested_ones_stay_inside(
    offline_client,
):
    assert read_customer(7) == {"id": 7, "tier": "gold"}

    def lookup_with_history(customer_id):
        return {"customer": read_customer(customer_id), "orders": 2}

    client = offline_client()
    with client.run("support", "wf-nested") as run:
        run.call("lookup", lookup_with_history, 7)
    assert types(journal(client, "wf-nested", run.run_id)).count("activity.scheduled") == 1
    assert CALLS["read_customer"] == 2


def test_a_failing_activity_is_retried_as_new_attempts_then_fails_the_run(offline_client):
    client = offline_client()
    attempts = []

    def always_down():
        attempts.append(1)
        raise ConnectionError("backend down")

    with pytest.raises(ConnectionError), client.run("support", "wf-retry") as run:
        run.call("fetch", always_down, retries=2, backoff=0.01)
    events = journal(client, "wf-retry", run.run_id)
    failed = [e["attributes"] for e in events if e["type"] == "activity.failed"]
    assert [(f["attempt"], f["will_retry"]) for f in failed] == [(1, True), (2, True),
                                                                 (3, False)]
    assert len(attempts) == 3 and run.outcome == "failed"
    assert events[-1]["type"] == "workflow.failed"
    assert events[-1]["attributes"]["error"]["type"] == "ConnectionError"


# --- replay -------------------------------------------------------------------------------


def interrupted_support_run(client, run_id=None, *, crash_in_refund=True):
    """Two activities and a decision, then the process 'dies' inside the refund tool."""

    def issue_refund(order):
        CALLS["issue_refund"] += 1
        if crash_in_refund:
            raise KeyboardInterrupt  # the process going away mid-activity
        return {"refunded": order}

    with client.run("support", "wf-resume", run_id) as run:
        hits = search_kb("refund")
        customer = read_customer(7)
        run.decide("refund", reason=f"{customer['tier']} customer, {len(hits)} articles")
        receipt = run.call("issue_refund", issue_refund, "A-1")
        run.complete(receipt)
    return run


def test_a_resumed_run_replays_completed_steps_and_reruns_the_interrupted_one(
    offline_client,
):
    client = offline_client()
    with pytest.raises(KeyboardInterrupt):
        interrupted_support_run(client)
    run_id = next(f.run_id for f in client._spool.folders())
    assert CALLS == {"search_kb": 1, "read_customer": 1, "issue_refund": 1}

    run = interrupted_support_run(client, run_id, crash_in_refund=False)
    assert run.outcome == "completed"
    assert CALLS == {"search_kb": 1, "read_customer": 1, "issue_refund": 2}
    events = journal(client, "wf-resume", run_id)
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
    assert types(events).count("decision.made") == 1
    assert types(events).count("activity.completed") == 3
    refund = [e for e in events if e["attributes"].get("activity_type") == "issue_refund"]
    assert [(e["type"], e["attributes"].get("attempt")) for e in refund] == [
        ("activity.scheduled", None), ("activity.started", 1), ("activity.started", 2),
        ("activity.completed", 2)]
    assert events[-1]["attributes"]["result"] == {"refunded": "A-1"}


def test_a_different_activity_at_a_recorded_position_is_a_nondeterminism_error(
    offline_client,
):
    client = offline_client()
    with pytest.raises(KeyboardInterrupt):
        interrupted_support_run(client)
    run_id = next(f.run_id for f in client._spool.folders())
    before = journal(client, "wf-resume", run_id)

    with pytest.raises(NondeterminismError) as caught, client.run(
        "support", "wf-resume", run_id
    ):
        search_kb("refund")
        search_kb("refund policy")  # the original read the customer here
    error = caught.value
    assert error.position == 2
    assert error.expected.startswith("activity 'read_customer' with key 'read_customer@2:")
    assert error.got.startswith("activity 'search_kb' with key 'search_kb@2:")
    after = journal(client, "wf-resume", run_id)
    assert types(after[len(before):]) == ["marker.recorded"]  # left open, not failed
    assert CALLS["search_kb"] == 1


def test_a_different_decision_at_a_recorded_position_is_a_nondeterminism_error(
    offline_client,
):
    client = offline_client()
    with pytest.raises(KeyboardInterrupt), client.run("support", "wf-decide") as run:
        run.decide("refund")
        raise KeyboardInterrupt
    with pytest.raises(NondeterminismError, match=r"decision 'refund'.*decision 'escalate'"), \
            client.run("support", "wf-decide", run.run_id) as again:
        again.decide("escalate")


def test_a_closed_run_replays_without_recording_and_refuses_new_steps(offline_client):
    client = offline_client()
    first = interrupted_support_run(client, crash_in_refund=False)
    count = len(journal(client, "wf-resume", first.run_id))
    again = interrupted_support_run(client, first.run_id, crash_in_refund=False)
    assert again.outcome == "completed"
    assert len(journal(client, "wf-resume", first.run_id)) == count
    assert CALLS == {"search_kb": 1, "read_customer": 1, "issue_refund": 1}
    with pytest.raises(FlightdeckError, match="is closed"), client.run(
        "support", "wf-resume", first.run_id
    ) as run:
        search_kb("refund")
        read_customer(7)
        run.decide("refund", reason="gold customer, 3 articles")
        run.call("issue_refund", lambda order: order, "A-1")
        run.call("one_more", lambda: None)


def test_a_large_recorded_output_replays_whole_from_the_blob_store(offline_client):
    client = offline_client()
    page = "lorem ipsum " * 40_000
    with pytest.raises(KeyboardInterrupt), client.run("research", "wf-large") as run:
        assert run.call("fetch_page", lambda: page) == page
        raise KeyboardInterrupt
    recorded = journal(client, "wf-large", run.run_id)[3]["attributes"]["output"]
    assert "$flightdeck_large" in recorded
    with client.run("research", "wf-large", run.run_id) as again:
        assert again.call("fetch_page", lambda: pytest.fail("called again")) == page


def test_a_run_live_in_this_process_cannot_be_opened_twice(offline_client):
    client = offline_client()
    with client.run("support", "wf-twice") as run, pytest.raises(
        FlightdeckError, match="already open in this process"
    ), client.run("support", "wf-twice", run.run_id):
        pass
    other = offline_client()  # as another process on the same spool would
    with client.run("support", "wf-twice", run.run_id), pytest.raises(
        FlightdeckError, match="held by another live process"
    ), other.run("support", "wf-twice", run.run_id):
        pass


def test_a_run_started_while_flightdeck_is_down_needs_new_for_a_chosen_run_id(offline_client):
    client = offline_client()
    with pytest.raises(FlightdeckError, match="pass new=True"), client.run(
        "support", "wf-chosen", "ticket-1"
    ):
        pass
    assert client._spool.folders() == []  # nothing recorded, no folder left behind
    with client.run("support", "wf-chosen", "ticket-1", new=True) as run:
        run.decide("go")
    assert run.outcome == "completed"


def test_a_failed_write_raises_and_leaves_no_gap(offline_client, monkeypatch):
    import flightdeck_sdk.journal

    client = offline_client()
    real_fsync = flightdeck_sdk.journal.os.fsync
    failures = iter([OSError(28, "No space left on device")])

    def fsync_once_failing(fd):
        for failure in failures:
            raise failure
        real_fsync(fd)

    with client.run("support", "wf-disk") as run:
        run.decide("first")
        monkeypatch.setattr(flightdeck_sdk.journal.os, "fsync", fsync_once_failing)
        with pytest.raises(FlightdeckError, match="No space left"):
            run.decide("second")
        run.decide("third")
    events = journal(client, "wf-disk", run.run_id)
    assert [e["event_id"] for e in events] == [1, 2, 3, 4]
    assert [e["attributes"].get("decision") for e in events[1:3]] == ["first", "third"]


# --- commands at checkpoints -----------------------------------------------------------------


def test_a_redelivered_command_is_applied_once_and_acknowledged_again(offline_client):
    client = offline_client()
    seen = []
    with client.run("support", "wf-dup") as run:
        run.on_signal("budget", seen.append)
        message = command("signal", run, signal_name="budget", payload={"usd": 5})
        client._dispatch(message)
        run.checkpoint()
        client._dispatch(message)  # the channel hands it out again
        run.checkpoint()
    assert seen == [{"usd": 5}]
    events = journal(client, "wf-dup", run.run_id)
    assert types(events).count("command.received") == 1
    assert types(events).count("signal.received") == 1
    acks = [ack for ack in client._outbox._acks if ack[0] == message["id"]]
    assert acks == [(message["id"], "applied", "signal 'budget' delivered")] * 2


def test_a_signal_handled_before_a_crash_is_handled_again_at_the_same_step(offline_client):
    client = offline_client()

    def agent(run_id=None, crash=True):
        budgets = []
        with client.run("support", "wf-signal", run_id) as run:
            run.on_signal("budget", budgets.append)
            run.decide("plan")
            if crash:
                client._dispatch(command("signal", run, signal_name="budget",
                                         payload={"usd": 9}))
            run.decide("spend", usd=budgets[-1]["usd"] if budgets else 1)
            if crash:
                raise KeyboardInterrupt
        return run, budgets

    with pytest.raises(KeyboardInterrupt):
        agent()
    run_id = next(f.run_id for f in client._spool.folders())
    run, budgets = agent(run_id, crash=False)  # would be a nondeterminism error without it
    assert budgets == [{"usd": 9}] and run.outcome == "completed"
    assert types(journal(client, "wf-signal", run_id)).count("signal.received") == 1


def test_a_run_paused_when_its_process_died_holds_until_resumed(offline_client):
    client = offline_client()
    with pytest.raises(KeyboardInterrupt), client.run("support", "wf-paused") as run:
        client._dispatch(command("pause", run))
        assert run._apply_commands() is True  # applied: the run holds here ...
        raise KeyboardInterrupt  # ... when its process dies
    assert types(journal(client, "wf-paused", run.run_id))[-2:] == ["workflow.paused",
                                                                   "command.applied"]
    with client.run("support", "wf-paused", run.run_id) as again:
        threading.Timer(0.2, client._dispatch, [command("resume", again)]).start()
        again.decide("go on")  # holds at this checkpoint until the resume arrives
    assert types(journal(client, "wf-paused", run.run_id))[-5:] == [
        "command.received", "workflow.resumed", "command.applied", "decision.made",
        "workflow.completed"]
