"""Preparing a file's events (temporal/preparation.py) and sealing them ahead of storing
(temporal/sealing_ahead.py): shared out between processes, the events, their seals, the stored
bytes and the refusals are the same as in one process."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from django.core.management import call_command

from history.models import Event, Run
from temporal import importer, preparation, sealing_ahead
from temporal.models import ImportState
from tests.temporal.samples import dumps, history

SECRET = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


def file_of_histories(copies: int = 6) -> list[dict]:
    """Several runs of the real histories, one with a credential inside a payload."""
    runs = []
    for number in range(copies):
        run = history("reference_agent" if number % 2 else "kitchen_sink")
        attributes = run["events"][0]["workflowExecutionStartedEventAttributes"]
        attributes["originalExecutionRunId"] = f"run-{number}"
        runs.append(run)
    data = base64.b64encode(json.dumps({"api_key": SECRET}).encode()).decode()
    scheduled = next(e for e in runs[-1]["events"]
                     if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED")
    scheduled["activityTaskScheduledEventAttributes"]["input"]["payloads"][0]["data"] = data
    return runs


def share_out(monkeypatch, processes: int) -> None:
    """Share every preparation and sealing out between `processes` processes, whatever its
    size and the threads of the test process."""
    for module in (preparation, sealing_ahead):
        monkeypatch.setattr(module, "process_count", lambda events, wanted=None: processes)


@pytest.fixture
def shared_out(monkeypatch):
    share_out(monkeypatch, 2)


def comparable(event) -> tuple:
    return (event.run_key, event.event_id, event.type, event.time, event.time_text,
            event.workflow_type, event.identity, event.refs, event.attributes_bytes,
            event.attributes, event.envelope, event.header_with_salt("00" * 16))


def test_a_file_shared_out_prepares_the_same_events_as_one_process(monkeypatch):
    content = dumps(file_of_histories())
    alone = preparation.prepare(content, processes=1)
    share_out(monkeypatch, 2)
    shared = preparation.prepare(content)
    assert [(r.workflow_id, r.run_id) for r in shared] == [(r.workflow_id, r.run_id)
                                                          for r in alone]
    events = [event for run in shared for event in run.events]
    # Events a helper prepared arrive without their attributes dict (decoded when read).
    assert any(event.decoded is None for event in events)
    assert [comparable(e) for e in events] == [comparable(e) for r in alone for e in r.events]


def sealed(event) -> tuple:
    seal = event.sealed
    return (seal.header == event.header_with_salt(seal.salt), seal.findings, seal.masked,
            seal.masked_bytes)


def test_chunks_sealed_by_helpers_carry_the_seals_ingest_would_make(monkeypatch):
    runs = preparation.prepare(dumps(file_of_histories()), processes=1)
    share_out(monkeypatch, 2)
    seen = [event for _, chunk in sealing_ahead.sealed_chunks(runs, 10, {}) for event in chunk]
    assert seen == [event for run in runs for event in run.events]
    expected = [sealed_by_ingest(event) for event in seen]
    assert [sealed(event) for event in seen] == expected
    assert any(findings for _, findings, _, _ in expected)


def sealed_by_ingest(event) -> tuple:
    from history.sealing import seal

    alone = copy.copy(event)
    alone.sealed = seal(alone, "00" * 16)
    return sealed(alone)


def test_events_stored_already_are_not_sealed_again(monkeypatch):
    runs = preparation.prepare(dumps(file_of_histories(2)), processes=1)
    share_out(monkeypatch, 2)
    first = runs[0]
    stored = {(first.workflow_id, first.run_id): {event.event_id for event in first.events}}
    for _ in sealing_ahead.sealed_chunks(runs, 10, stored):
        pass
    assert all(event.sealed is None for event in first.events)
    assert all(event.sealed is not None for event in runs[1].events)


def test_a_small_import_is_left_to_ingest_to_seal():
    runs = preparation.prepare(dumps(history()), processes=4)
    chunks = list(sealing_ahead.sealed_chunks(runs, 10, {}, processes=4))
    assert all(event.sealed is None for _, chunk in chunks for event in chunk)


def test_a_bad_event_in_a_helpers_piece_is_refused_naming_it_as_one_process_would(shared_out):
    runs = file_of_histories()
    runs[-1]["events"][-2]["eventTime"] = "yesterday"
    content = dumps(runs)
    with pytest.raises(preparation.ImportRefused) as shared:
        preparation.prepare(content)
    with pytest.raises(preparation.ImportRefused) as alone:
        preparation.prepare(content, processes=1)
    assert shared.value.status == alone.value.status == 400
    assert shared.value.message == alone.value.message
    assert shared.value.message.startswith(f"[5].events[{len(runs[-1]['events']) - 2}]: "
                                           "eventTime:")


def test_the_first_bad_event_of_the_file_is_the_one_named(shared_out):
    runs = file_of_histories()
    runs[0]["events"][3]["eventTime"] = "soon"
    runs[-1]["events"][-1]["eventTime"] = "later"
    with pytest.raises(preparation.ImportRefused) as refused:
        preparation.prepare(dumps(runs))
    assert refused.value.message.startswith("[0].events[3]: eventTime:")


def test_a_refused_file_shared_out_stores_nothing(shared_out, acme):
    runs = file_of_histories()
    runs[-1]["events"][-1]["eventTime"] = "later"
    imp = importer.start_import(namespace=acme, user=None, content=dumps(runs), inline=True)
    assert (imp.state, imp.error_status) == (ImportState.FAILED, 400)
    assert "[5].events[" in imp.error
    assert not Run.objects.exists()


def test_an_import_shared_out_stores_what_one_process_stores_and_verifies(shared_out, acme,
                                                                           globex, monkeypatch):
    content = dumps(file_of_histories())
    monkeypatch.setattr(importer, "CHUNK", 25)  # several chunks per run, sealed ahead
    shared = importer.start_import(namespace=acme, user=None, content=content, inline=True)
    share_out(monkeypatch, 1)
    alone = importer.start_import(namespace=globex, user=None, content=content, inline=True)
    assert shared.state == alone.state == ImportState.DONE
    assert shared.stored == alone.stored == sum(len(r["events"]) for r in file_of_histories())

    def stored(namespace):
        rows = Event.objects.filter(run__namespace=namespace).order_by(
            "run__run_id", "event_id")
        return [(row.run.run_id, row.event_id, row.type, row.time, row.time_text, row.identity,
                 row.refs, row.attributes, row.masked_attributes, row.secret_findings,
                 _without_digest(row.header)) for row in rows.select_related("run")]

    assert stored(acme) == stored(globex)
    assert Event.objects.filter(run__namespace=acme).exclude(secret_findings=None).exists()
    call_command("verify_history", "--namespace", "acme")  # exits 1 (raises) on a failure


def _without_digest(header: str) -> dict:
    # Salts are random: the digests differ, the rest of each header must not.
    fields = json.loads(header)
    del fields["attributes_digest"]
    return fields


def test_a_small_file_is_prepared_here_alone(monkeypatch):
    runs = preparation.prepare(dumps(history()), processes=4)
    assert all(event.decoded is not None for run in runs for event in run.events)


def test_the_refusal_survives_being_sent_between_processes():
    import pickle

    sent = pickle.dumps(preparation.ImportRefused(409, "no"))
    refused = pickle.loads(sent)  # noqa: S301 - our own bytes, as a helper process sends them
    assert (refused.status, refused.message, str(refused)) == (409, "no", "no")


def test_importing_the_same_file_again_shared_out_stores_nothing(shared_out, acme):
    content = dumps(file_of_histories())
    importer.start_import(namespace=acme, user=None, content=content, inline=True)
    again = importer.start_import(namespace=acme, user=None, content=content, inline=True)
    assert (again.state, again.stored) == (ImportState.DONE, 0)
    assert again.duplicates == sum(len(r["events"]) for r in file_of_histories())


def test_copies_are_not_shared_between_runs_of_the_file(shared_out):
    # The same history twice under two run ids: each run gets its own events.
    first = history()
    second = copy.deepcopy(first)
    second["events"][0]["workflowExecutionStartedEventAttributes"]["originalExecutionRunId"] = "b"
    runs = preparation.prepare(dumps([first, second]))
    assert [len(run.events) for run in runs] == [len(first["events"])] * 2
    assert {event.run_id for event in runs[1].events} == {"b"}
