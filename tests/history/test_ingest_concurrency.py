"""Concurrent ingest on PostgreSQL: batches for one run from many connections at once are
applied one after another, new runs are created once, and batches that touch the same runs in
any order do not deadlock."""

from __future__ import annotations

import itertools
import random
import threading

import pytest
from django.db import connection
from django.test import Client

from history import chain
from history.models import Event, Run
from history.verification import verify_run
from tests.builders import history

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

JOIN_TIMEOUT = 120  # seconds; a thread still alive after this is stuck (a lock never released)


def run_together(workers) -> list[BaseException]:
    """Run each callable in its own thread (and so its own database connection), released at
    the same moment by a barrier; the exceptions they raised."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def body(work):
        try:
            barrier.wait(timeout=30)
            work()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=body, args=(work,)) for work in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"threads still running after {JOIN_TIMEOUT}s: {stuck}"
    return errors


def poster(token: str, batches: list[list[dict]], responses: list):
    """A worker that POSTs `batches` in turn through its own test client."""

    def work():
        client = Client(headers={"Authorization": f"Bearer {token}"})
        for batch in batches:
            response = client.post(
                "/api/v1/ingest", data={"events": batch}, content_type="application/json"
            )
            responses.append((response.status_code, response.json()))

    return work


def random_batches(rng: random.Random, events: list[dict], largest: int) -> list[list[dict]]:
    events = list(events)
    rng.shuffle(events)
    batches = []
    while events:
        size = rng.randint(1, largest)
        batches.append(events[:size])
        events = events[size:]
    return batches


def assert_complete_and_chained(run: Run, length: int) -> None:
    events = list(run.events.order_by("event_id"))
    assert [e.event_id for e in events] == list(range(1, length + 1))
    assert run.event_count == run.last_event_id == run.contiguous_through == length
    assert sorted(e.received_seq for e in events) == list(range(1, length + 1))
    assert run.received_seq == length
    previous = chain.GENESIS
    for stored in events:
        previous = chain.link(previous, stored.header.encode())
        assert stored.chain_hash == previous, stored.event_id
    assert run.head_hash == previous
    assert verify_run(run) == []


def test_parallel_overlapping_batches_for_one_run_store_each_event_once(agent_token):
    rng = random.Random(20261101)
    length = 600
    events = history(length)
    # Every event goes to one to three of six threads; each thread sends its share shuffled,
    # in batches of 1 to 60.
    shares: list[list[dict]] = [[] for _ in range(6)]
    for item in events:
        for share in rng.sample(shares, rng.randint(1, 3)):
            share.append(item)
    sent = sum(len(share) for share in shares)
    responses: list = []
    errors = run_together(
        [poster(agent_token, random_batches(rng, share, 60), responses) for share in shares]
    )
    assert errors == []
    assert {status for status, _ in responses} == {200}
    assert sum(body["stored"] for _, body in responses) == length
    assert sum(body["duplicates"] for _, body in responses) == sent - length

    (run,) = Run.objects.all()
    assert Event.objects.count() == length
    assert_complete_and_chained(run, length)
    assert run.status == "completed"
    assert run.status_event_id == length
    assert run.closed_at == run.events.get(event_id=length).time
    assert run.started_at == run.events.get(event_id=1).time
    assert run.workflow_type == "support"
    assert run.labels == {"team": "support"}


def test_parallel_batches_with_a_gap_chain_once_the_gap_is_filled(agent_token):
    rng = random.Random(7)
    length = 300
    events = history(length)
    late = [item for item in events if 100 <= item["event_id"] < 110]
    early = [item for item in events if not 100 <= item["event_id"] < 110]
    shares = [early[i::4] for i in range(4)]
    responses: list = []
    errors = run_together(
        [poster(agent_token, random_batches(rng, share, 40), responses) for share in shares]
    )
    assert errors == []
    (run,) = Run.objects.all()
    assert run.contiguous_through == 99
    assert run.missing_ranges() == [(100, 109)]
    assert verify_run(run) == []
    # The gap filled from several threads at once, each also repeating stored events.
    shares = [[*late[i::3], *rng.sample(early, 20)] for i in range(3)]
    errors = run_together(
        [poster(agent_token, random_batches(rng, share, 5), responses) for share in shares]
    )
    assert errors == []
    assert {status for status, _ in responses} == {200}
    run.refresh_from_db()
    assert_complete_and_chained(run, length)


@pytest.mark.parametrize("overlap", ["same events", "overlapping events"])
def test_two_threads_creating_the_same_new_run_at_once_make_one_run(agent_token, overlap):
    for round_number in range(10):
        run_id = f"race-{round_number}"
        events = history(12, run_id=run_id)
        shares = [events, events] if overlap == "same events" else [events[:8], events[4:]]
        responses: list = []
        errors = run_together([poster(agent_token, [share], responses) for share in shares])
        assert errors == []
        assert [status for status, _ in responses] == [200, 200], responses
        assert sum(body["stored"] for _, body in responses) == 12
        (run,) = Run.objects.filter(run_id=run_id)
        assert {body["runs"][0]["uuid"] for _, body in responses} == {str(run.uuid)}
        assert_complete_and_chained(run, 12)
        assert run.status == "completed"


def test_many_threads_creating_the_same_new_run_at_once_make_one_run(agent_token):
    events = history(40, run_id="stampede")
    rng = random.Random(3)
    responses: list = []
    errors = run_together(
        [poster(agent_token, [rng.sample(events, 15)], responses) for _ in range(8)]
        + [poster(agent_token, [events], responses)]
    )
    assert errors == []
    assert {status for status, _ in responses} == {200}
    (run,) = Run.objects.filter(run_id="stampede")
    assert_complete_and_chained(run, 40)


def test_batches_touching_two_runs_in_opposite_orders_do_not_deadlock(agent_token):
    rng = random.Random(99)
    length = 240
    a = history(length, workflow_id="wf-a", run_id="run-a")
    b = history(length, workflow_id="wf-b", run_id="run-b")
    workers = []
    responses: list = []
    for number in range(6):
        a_batches = random_batches(rng, a[number::3], 12)
        b_batches = random_batches(rng, b[number::3], 12)
        batches = [
            [*a_part, *b_part] if number % 2 else [*b_part, *a_part]
            for a_part, b_part in itertools.zip_longest(a_batches, b_batches, fillvalue=[])
        ]
        workers.append(poster(agent_token, batches, responses))
    errors = run_together(workers)
    assert errors == []
    assert {status for status, _ in responses} == {200}
    assert sum(body["stored"] for _, body in responses) == 2 * length
    for run_id in ("run-a", "run-b"):
        assert_complete_and_chained(Run.objects.get(run_id=run_id), length)


def test_runs_crossing_workflow_and_run_ids_do_not_deadlock(agent_token):
    # (wf-x, r-1) and (wf-y, r-2) in one batch, (wf-x, r-2) and (wf-y, r-1) in another: the
    # lock query's filter matches all four runs in both batches.
    keys = [("wf-x", "r-1"), ("wf-y", "r-2"), ("wf-x", "r-2"), ("wf-y", "r-1")]
    histories = {key: history(60, workflow_id=key[0], run_id=key[1]) for key in keys}
    rng = random.Random(5)
    workers, responses = [], []
    for pair in ((keys[0], keys[1]), (keys[2], keys[3]), (keys[1], keys[2]), (keys[3], keys[0])):
        batches = [
            [*histories[pair[0]][i : i + 6], *histories[pair[1]][i : i + 6]]
            for i in range(0, 60, 6)
        ]
        rng.shuffle(batches)
        workers.append(poster(agent_token, batches, responses))
    errors = run_together(workers)
    assert errors == []
    assert {status for status, _ in responses} == {200}
    assert Run.objects.count() == 4
    for workflow_id, run_id in keys:
        assert_complete_and_chained(Run.objects.get(workflow_id=workflow_id, run_id=run_id), 60)
