"""Preparing a file's events (temporal/preparation.py): shared out between processes, the
events, their seals and the refusals are the same as in one process."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from django.core.management import call_command

from history.models import Event, Run
from temporal import importer, preparation
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


@pytest.fixture
def shared_out(monkeypatch):
    """Every preparation shared out between this process and one helper, whatever its size
    and the threads of the test process."""
    monkeypatch.setattr(preparation, "_process_count", lambda histories, wanted: 2)


def comparable(event) -> tuple:
    sealed = event.sealed
    return (event.run_key, event.event_id, event.type, event.time, event.time_text,
            event.workflow_type, event.identity, event.refs, event.attributes_bytes,
            event.attributes, event.envelope, event.header_with_salt("00" * 16),
            sealed.header == event.header_with_salt(sealed.salt), sealed.findings,
            sealed.masked, sealed.masked_bytes)


def test_a_file_shared_out_prepares_the_same_events_and_seals_as_one_process(monkeypatch):
    content = dumps(file_of_histories())
    alone = preparation.prepare(content, processes=1)
    monkeypatch.setattr(preparation, "_process_count", lambda histories, wanted: 2)
    shared = preparation.prepare(content)
    assert [(r.workflow_id, r.run_id) for r in shared] == [(r.workflow_id, r.run_id)
                                                          for r in alone]
    events = [event for run in shared for event in run.events]
    # Events a helper prepared arrive without their attributes dict (decoded when read).
    assert any(event.decoded is None for event in events)
    assert [comparable(e) for e in events] == [comparable(e) for r in alone for e in r.events]
    assert any(event.sealed.findings for event in events)


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
    shared = importer.start_import(namespace=acme, user=None, content=content, inline=True)
    monkeypatch.setattr(preparation, "_process_count", lambda histories, wanted: 1)
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


def test_a_dry_run_checks_without_sealing():
    runs = preparation.prepare(dumps(history()), sealed=False)
    assert runs[0].events and all(event.sealed is None for event in runs[0].events)


def test_copies_are_not_shared_between_runs_of_the_file(shared_out):
    # The same history twice under two run ids: each run gets its own events.
    first = history()
    second = copy.deepcopy(first)
    second["events"][0]["workflowExecutionStartedEventAttributes"]["originalExecutionRunId"] = "b"
    runs = preparation.prepare(dumps([first, second]))
    assert [len(run.events) for run in runs] == [len(first["events"])] * 2
    assert {event.run_id for event in runs[1].events} == {"b"}
