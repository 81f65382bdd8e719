"""Events reach Flightdeck in order, dense and complete, through the spool: across a server
restart, from a previous process's spool, and with refusals kept aside instead of retried."""

from __future__ import annotations

import json
import threading

from flightdeck_sdk import activity

from history.models import Run
from tests.interventions.services import AsgiServer, free_port, request, wait_until
from tests.sdk.conftest import attributes, live, stored


@activity(kind="tool")
def search_kb(query: str) -> dict:
    return {"hits": [f"{query}: article {n}" for n in range(3)]}


@live
def test_events_arrive_in_order_dense_and_complete(sdk_client):
    client = sdk_client(identity="svc-support")
    failures = iter([RuntimeError("flaky backend")])

    def flaky_lookup(order_id):
        for failure in failures:
            raise failure
        return {"order": order_id, "amount": 20}

    with client.run("support", "ticket-118", input={"ticket": 118},
                    labels={"team": "cx"}) as run:
        hits = search_kb("refund policy")
        run.decide("refund", reason="policy allows", model="fake-1", confidence=0.9)
        order = run.call("lookup_order", flaky_lookup, "A-1", retries=2, backoff=0.01)
        transcript = run.call("fetch_transcript", lambda: "word " * 80_000, kind="llm")
        run.complete({"refunded": order["amount"]})
    assert hits["hits"][0] == "refund policy: article 0" and len(transcript) == 400_000
    assert client.flush(30)

    events = stored("ticket-118", run.run_id)
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    assert [e.type for e in events] == [
        "workflow.started",
        "activity.scheduled", "activity.started", "activity.completed",
        "decision.made",
        "activity.scheduled", "activity.started", "activity.failed",
        "activity.started", "activity.completed",
        "activity.scheduled", "activity.started", "activity.completed",
        "workflow.completed",
    ]
    stored_run = Run.objects.get(workflow_id="ticket-118")
    assert stored_run.status == "completed"
    assert stored_run.labels == {"team": "cx"}
    assert stored_run.contiguous_through == stored_run.last_event_id == len(events)
    assert {e.identity for e in events} == {"svc-support"}
    by_id = {e.event_id: e for e in events}
    failed, retried = attributes(by_id[8]), attributes(by_id[10])
    assert failed["attempt"] == 1 and failed["will_retry"] is True
    assert failed["error"]["message"] == "flaky backend"
    assert retried["attempt"] == 2 and retried["output"] == {"order": "A-1", "amount": 20}
    assert by_id[10].refs == {"scheduled": 6, "started": 9}
    assert attributes(by_id[5])["decision"] == "refund"
    large = attributes(by_id[13])["output"]["$flightdeck_large"]
    assert large["size"] == len(json.dumps("word " * 80_000)) and len(large["sha256"]) == 64
    assert large["preview"].startswith("word word")
    assert client.dead_letters() == []


@live
def test_the_spool_delivers_everything_once_when_the_server_was_down_mid_run(
    sdk_client, asgi_server, service_env, tmp_path
):
    client = sdk_client(max_backoff=1, command_wait=1)  # a short poll: the server stops fast
    with client.run("support", "ticket-200") as run:
        for n in range(3):
            run.call("search_kb", search_kb.__wrapped__, f"q{n}")
        assert client.flush(30)
        delivered_before = Run.objects.get(workflow_id="ticket-200").event_count
        asgi_server.stop()
        for n in range(3, 8):
            run.call("search_kb", search_kb.__wrapped__, f"q{n}")  # returns: it is spooled
            run.decide(f"next-{n}")
    assert not client.flush(1)  # nobody to deliver to
    assert Run.objects.get(workflow_id="ticket-200").event_count == delivered_before

    restarted = AsgiServer(env=service_env, log_path=tmp_path / "uvicorn-2.log",
                           port=asgi_server.port)
    try:
        restarted.start()
        assert client.flush(60)
    finally:
        restarted.stop()
    events = stored("ticket-200", run.run_id)
    last = events[-1].event_id
    assert [e.event_id for e in events] == list(range(1, last + 1))
    assert events[-1].type == "workflow.completed"
    final = Run.objects.get(workflow_id="ticket-200")
    # Each event stored once: re-sent events were answered as duplicates, never stored again.
    assert final.event_count == final.received_seq == last
    assert client.dead_letters() == []


@live
def test_a_new_process_sends_what_a_previous_one_left_in_the_spool(sdk_client, tmp_path):
    unreachable = f"http://127.0.0.1:{free_port()}"
    offline = sdk_client(url=unreachable, poll_commands=False)
    with offline.run("research", "r-1") as run:
        run.decide("start")
        run.call("search_kb", search_kb.__wrapped__, "durable execution")
    offline.close(timeout=0.5)
    assert stored("r-1", run.run_id) == []

    sdk_client()  # a new process on the same spool
    events = wait_until(lambda: stored("r-1", run.run_id) if len(
        stored("r-1", run.run_id)) == 6 else None, what="the orphaned events to arrive")
    assert [e.type for e in events][-1] == "workflow.completed"
    folder = tmp_path / "spool" / "runs"
    wait_until(lambda: not any(folder.iterdir()), what="the delivered run's folder removed")


@live
def test_a_token_that_may_not_ingest_keeps_the_events_in_the_spool(sdk_client, dora):
    from access.models import Token

    user_token = Token.issue(user=dora)[1]  # a person's token: ingest is for agents (403)
    client = sdk_client(token=user_token, poll_commands=False)
    with client.run("support", "ticket-301") as run:
        run.decide("refund")

    assert not client.flush(3)  # refused, so never settled
    assert client.dead_letters() == []
    client.close(timeout=0.5)
    # The events are still there: the agent's own token sends them.
    assert sdk_client().flush(30)
    assert [e.type for e in stored("ticket-301", run.run_id)] == [
        "workflow.started", "decision.made", "workflow.completed",
    ]


@live
def test_a_conflicting_event_goes_to_the_dead_letter_file_and_is_not_retried(
    sdk_client, asgi_server, agent_token, caplog
):
    unreachable = f"http://127.0.0.1:{free_port()}"
    offline = sdk_client(url=unreachable, poll_commands=False)
    with offline.run("support", "ticket-300") as run:
        run.decide("refund")
        run.decide("email")
    offline.close(timeout=0.5)
    # Someone else wrote event 2 of that run first, with other content.
    intruder = {"workflow_id": "ticket-300", "run_id": run.run_id, "event_id": 2,
                "type": "decision.made", "time": "2026-01-01T00:00:00Z",
                "attributes": {"decision": "something else"}}
    status, _, _ = request(asgi_server.url, "POST", "/api/v1/ingest",
                           body={"events": [intruder]},
                           headers={"Authorization": f"Bearer {agent_token}"})
    assert status == 200

    client = sdk_client()
    assert client.flush(30)  # settled: the conflict does not keep the spool busy
    letters = client.dead_letters()
    assert [(d["status"], d["event_id"]) for d in letters] == [("conflict", 2)]
    assert letters[0]["event"]["attributes"]["decision"] == "refund"
    assert "conflict" in caplog.text
    assert [e.event_id for e in stored("ticket-300", run.run_id)] == [1, 2, 3, 4]


@live
def test_several_runs_of_one_client_at_once_each_arrive_dense(sdk_client):
    client = sdk_client()
    runs = {}

    def agent(n: int) -> None:
        with client.run("research", f"parallel-{n}") as run:
            runs[n] = run
            for step in range(15):
                run.call("search_kb", search_kb.__wrapped__, f"topic {n}.{step}")
                run.decide(f"step-{step}")

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert client.flush(30)
    for n, run in runs.items():
        events = stored(f"parallel-{n}", run.run_id)
        assert [e.event_id for e in events] == list(range(1, 1 + 1 + 15 * 4 + 1))
        assert {attributes(e)["input"]["args"][0] for e in events
                if e.type == "activity.scheduled"} == {f"topic {n}.{s}" for s in range(15)}
    assert client.dead_letters() == []
