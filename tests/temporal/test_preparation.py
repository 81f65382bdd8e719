"""Preparing a file's events (temporal/preparation.py): each run's ids are checked once, every
event as ingest would check it, and a bad file is refused naming its first bad event."""

from __future__ import annotations

import base64
import json

import pytest
from django.core.management import call_command

from history.models import Event, Run
from temporal import importer, preparation
from temporal.models import ImportState
from tests.temporal.samples import dumps, history

SECRET = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"


def file_of_histories(copies: int = 6) -> list[dict]:
    """Several runs of the real histories, the last with a credential inside a payload."""
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


def test_the_first_bad_event_of_the_file_is_the_one_named():
    runs = file_of_histories()
    runs[0]["events"][3]["eventTime"] = "soon"
    runs[-1]["events"][-1]["eventTime"] = "later"
    with pytest.raises(preparation.ImportRefused) as refused:
        preparation.prepare(dumps(runs))
    assert refused.value.status == 400
    assert refused.value.message.startswith("[0].events[3]: eventTime: must be an RFC 3339")


def test_a_run_id_of_white_space_is_refused_for_its_history(acme):
    runs = file_of_histories(2)
    runs[1]["events"][0]["workflowExecutionStartedEventAttributes"]["workflowId"] = "  "
    imp = importer.start_import(namespace=acme, user=None, content=dumps(runs), inline=True)
    assert (imp.state, imp.error_status) == (ImportState.FAILED, 400)
    assert imp.error == "[1].events: workflowId: must not be empty"
    assert not Run.objects.exists()


def test_the_follower_s_way_checks_the_run_ids_of_each_event():
    event = history()["events"][0]
    with pytest.raises(preparation.ImportRefused) as refused:
        preparation.parse_wire(event, "wf", "r" * 256, 1, "event 1")
    assert refused.value.message == "event 1: runId: must be at most 255 characters"


def test_a_file_of_several_runs_is_stored_whole_with_its_secret_masked_and_verifies(acme):
    runs = file_of_histories()
    imp = importer.start_import(namespace=acme, user=None, content=dumps(runs), inline=True)
    assert (imp.state, imp.stored) == (ImportState.DONE, sum(len(r["events"]) for r in runs))
    flagged = Event.objects.exclude(secret_findings=None).get()
    assert flagged.run.run_id == "run-5"
    assert SECRET not in flagged.masked_attributes and SECRET in flagged.attributes
    call_command("verify_history", "--namespace", "acme")  # raises CommandError on a failure
