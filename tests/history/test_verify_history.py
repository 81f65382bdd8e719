"""`manage.py verify_history`: a clean chain passes; every kind of tampering in the database
is caught and the event it touched is named."""

from __future__ import annotations

import io
import re
import uuid

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from history import chain
from history.models import Event, Run
from tests.builders import at, history

pytestmark = pytest.mark.django_db

EVENT_LINE = re.compile(r"^run (\S+) \((.*)\) event (\d+): (.*)$")
RUN_LINE = re.compile(r"^run (\S+) \((.*)\) run: (.*)$")
SWAPPED = "header disagrees with the stored event_id"


@pytest.fixture
def run(ingest, agent_token) -> Run:
    """A closed run of ten events, chained through the last."""
    response = ingest(agent_token, history(10))
    assert response.status_code == 200, response.content
    run = Run.objects.get(workflow_id="wf-1", run_id="run-1")
    assert run.contiguous_through == 10
    return run


def verify(*args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("verify_history", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def verify_broken(*args, **options) -> tuple[str, list[str]]:
    """Run the command expecting a broken chain; returns (the CommandError text, stderr
    lines)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("verify_history", *args, stdout=out, stderr=err, **options)
    return str(caught.value), err.getvalue().splitlines()


def named_events(lines: list[str]) -> dict[int, list[str]]:
    """Problem messages per event id, in the order reported."""
    named: dict[int, list[str]] = {}
    for line in lines:
        match = EVENT_LINE.match(line)
        if match:
            named.setdefault(int(match.group(3)), []).append(match.group(4))
    return named


def run_problems(lines: list[str]) -> list[str]:
    return [match.group(3) for line in lines if (match := RUN_LINE.match(line))]


def events_other_than_chain_hash(lines: list[str]) -> set[int]:
    """Events named for anything but a chain hash mismatch (which, by design, also follows
    every event after a changed header)."""
    return {
        event_id
        for event_id, messages in named_events(lines).items()
        if any(not message.startswith("chain hash does not match") for message in messages)
    }


def stored(run: Run, event_id: int) -> Event:
    return Event.objects.get(run=run, event_id=event_id)


def rewrite_header(run: Run, which: int, **changes) -> None:
    """Change fields of event `which`'s stored header, keeping it canonical JSON."""
    fields = orjson.loads(stored(run, which).header)
    fields.update(changes)
    Event.objects.filter(run=run, event_id=which).update(
        header=chain.canonical(fields).decode()
    )


# --- clean runs ---------------------------------------------------------------------------


def test_a_clean_run_passes(run):
    out, err = verify()
    assert err == ""
    assert "1 runs checked, 0 with a broken chain" in out
    assert "ok " not in out


def test_a_clean_run_prints_an_ok_line_at_verbosity_2(run):
    out, err = verify(verbosity=2)
    assert err == ""
    assert f"ok {run.uuid} (10 events)" in out.splitlines()
    assert "1 runs checked, 0 with a broken chain" in out


def test_a_run_with_a_gap_passes(ingest, agent_token):
    events = [item for item in history(10) if item["event_id"] not in (4, 7)]
    assert ingest(agent_token, events).status_code == 200
    run = Run.objects.get()
    assert run.contiguous_through == 3
    out, err = verify(verbosity=2)
    assert err == ""
    assert f"ok {run.uuid} (8 events)" in out


def test_no_runs_at_all_passes(db):
    out, err = verify()
    assert err == ""
    assert "0 runs checked, 0 with a broken chain" in out


# --- tampering ----------------------------------------------------------------------------


def test_changed_attributes_name_the_event(run):
    Event.objects.filter(run=run, event_id=4).update(attributes='{"activity_type":"x","n":4}')
    summary, lines = verify_broken()
    assert summary == "1 runs checked, 1 with a broken chain"
    assert named_events(lines) == {
        4: ["attributes do not match their digest (changed after ingest)"]
    }
    assert run_problems(lines) == []
    assert all(str(run.uuid) in line and "wf-1 / run-1" in line for line in lines)


def test_changed_attributes_with_equal_json_meaning_are_still_caught(run):
    # Same JSON value, different bytes: the digest is over the stored bytes.
    original = stored(run, 5).attributes
    respaced = original.replace(",", ", ")
    assert respaced != original and orjson.loads(respaced) == orjson.loads(original)
    Event.objects.filter(run=run, event_id=5).update(attributes=respaced)
    _, lines = verify_broken()
    assert set(named_events(lines)) == {5}


def test_changed_type_names_the_event(run):
    Event.objects.filter(run=run, event_id=4).update(type="activity.failed")
    _, lines = verify_broken()
    assert named_events(lines) == {4: ["header disagrees with the stored type"]}
    assert run_problems(lines) == []


def test_changed_time_text_names_the_event(run):
    Event.objects.filter(run=run, event_id=6).update(time_text=at(600))
    _, lines = verify_broken()
    assert named_events(lines) == {6: ["header disagrees with the stored time"]}


def test_changed_salt_names_the_event(run):
    Event.objects.filter(run=run, event_id=3).update(salt=chain.new_salt())
    _, lines = verify_broken()
    assert named_events(lines) == {
        3: ["attributes do not match their digest (changed after ingest)"]
    }
    assert run_problems(lines) == []


def test_changed_chain_hash_names_only_that_event(run):
    Event.objects.filter(run=run, event_id=6).update(chain_hash="ab" * 32)
    _, lines = verify_broken()
    assert named_events(lines) == {
        6: ["chain hash does not match (this event or one before it changed)"]
    }
    assert run_problems(lines) == []


def test_changed_head_hash_names_the_run(run):
    Run.objects.filter(pk=run.pk).update(head_hash="cd" * 32)
    _, lines = verify_broken()
    assert named_events(lines) == {}
    assert run_problems(lines) == ["head hash does not match the chain"]


def test_changed_event_id_in_the_header_names_the_event(run):
    rewrite_header(run, 4, event_id=40)
    _, lines = verify_broken()
    named = named_events(lines)
    assert min(named) == 4
    assert "header disagrees with the stored event_id" in named[4]
    assert "chain hash does not match (this event or one before it changed)" in named[4]
    assert events_other_than_chain_hash(lines) == {4}


def test_a_header_rewritten_in_canonical_form_still_breaks_the_chain_from_that_event(run):
    # The identity in the header changed: it no longer matches the stored column, and the
    # chain breaks from that event on.
    rewrite_header(run, 5, identity="someone-else")
    _, lines = verify_broken()
    named = named_events(lines)
    assert sorted(named) == [5, 6, 7, 8, 9, 10]
    assert "header disagrees with the stored identity" in named[5]
    assert events_other_than_chain_hash(lines) == {5}
    assert run_problems(lines) == ["head hash does not match the chain"]


def test_a_header_not_in_canonical_form_names_the_event(run):
    header = stored(run, 2).header
    Event.objects.filter(run=run, event_id=2).update(header=header.replace(",", ", ", 1))
    _, lines = verify_broken()
    named = named_events(lines)
    assert "stored header is not in canonical form" in named[2]
    assert events_other_than_chain_hash(lines) == {2}


def test_a_header_that_is_not_json_is_named_and_not_reported_missing(run):
    Event.objects.filter(run=run, event_id=2).update(header="{not json")
    _, lines = verify_broken()
    named = named_events(lines)
    assert named[2][0] == "stored header is not valid JSON"
    assert named[2][1:] == ["chain hash does not match (this event or one before it changed)"]
    assert not [line for line in lines if "missing from the chain" in line]
    assert events_other_than_chain_hash(lines) == {2}


def test_swapped_headers_name_both_events(run):
    three, four = stored(run, 3), stored(run, 4)
    with connection.cursor() as cursor:
        table = Event._meta.db_table
        cursor.execute(
            f"UPDATE {table} SET header = %s WHERE id = %s",  # noqa: S608 (fixed names)
            [four.header, three.pk],
        )
        cursor.execute(
            f"UPDATE {table} SET header = %s WHERE id = %s",  # noqa: S608 (fixed names)
            [three.header, four.pk],
        )
    _, lines = verify_broken()
    named = named_events(lines)
    assert min(named) == 3
    for event_id in (3, 4):
        assert any(m.startswith(SWAPPED) for m in named[event_id])
        assert "attributes do not match their digest (changed after ingest)" in named[event_id]
    assert events_other_than_chain_hash(lines) == {3, 4}


def test_swapped_events_with_their_salts_and_attributes_name_both_events(run):
    # Everything of 3 and 4 but their ids exchanged: each digest matches its own header, so
    # only the event ids in the headers (and the chain) give the swap away.
    three, four = stored(run, 3), stored(run, 4)
    fields = ("type", "time", "time_text", "attributes", "salt", "header", "chain_hash")
    Event.objects.filter(pk=three.pk).update(**{f: getattr(four, f) for f in fields})
    Event.objects.filter(pk=four.pk).update(**{f: getattr(three, f) for f in fields})
    _, lines = verify_broken()
    named = named_events(lines)
    assert min(named) == 3
    assert events_other_than_chain_hash(lines) == {3, 4}
    for event_id in (3, 4):
        assert any(m.startswith(SWAPPED) for m in named[event_id])


def test_a_deleted_event_in_the_middle_is_named_once(run):
    Event.objects.filter(run=run, event_id=5).delete()
    _, lines = verify_broken()
    named = named_events(lines)
    assert min(named) == 5
    missing = [line for line in lines if "missing from the chain" in line]
    assert len(missing) == 1, missing
    assert "event 5: missing from the chain (next stored event is 6)" in missing[0]
    assert "event_count is 10 but 9 events are stored" in run_problems(lines)


def test_a_deleted_last_event_is_caught(run):
    Event.objects.filter(run=run, event_id=10).delete()
    _, lines = verify_broken()
    problems = run_problems(lines)
    assert "contiguous_through is 10 but the chain reaches 9" in problems
    assert "head hash does not match the chain" in problems
    assert "event_count is 10 but 9 events are stored" in problems


def test_an_inserted_event_is_caught(run):
    extra = stored(run, 10)
    extra.pk = None
    extra.event_id = 11
    extra.received_seq = 11
    extra.chain_hash = ""
    extra.save()
    _, lines = verify_broken()
    assert 11 in named_events(lines)
    assert "event_count is 10 but 11 events are stored" in run_problems(lines)


@pytest.mark.parametrize(
    "column, value",
    [
        ("identity", "someone-else"),
        ("refs", {"scheduled": 1}),
        ("time", at(-3600).replace("123Z", "Z")),
    ],
)
def test_a_changed_envelope_column_names_the_event(run, column, value):
    # identity, refs and time are served by the events API from these columns; the header
    # holds what was sent, so a column that disagrees with its header has been changed.
    Event.objects.filter(run=run, event_id=4).update(**{column: value})
    _, lines = verify_broken()
    assert set(named_events(lines)) == {4}


# --- choosing runs ------------------------------------------------------------------------


@pytest.fixture
def two_runs(run, ingest, agent_token, foreign_agent_token) -> tuple[Run, Run]:
    """The acme run, and a globex run of the same ids."""
    assert ingest(foreign_agent_token, history(6)).status_code == 200
    other = Run.objects.get(namespace__slug="globex")
    return run, other


def test_a_run_uuid_limits_the_check_to_that_run(two_runs):
    acme_run, globex_run = two_runs
    Event.objects.filter(run=acme_run, event_id=2).update(type="decision.made")
    out, err = verify(str(globex_run.uuid), verbosity=2)
    assert err == ""
    assert f"ok {globex_run.uuid} (6 events)" in out
    assert "1 runs checked, 0 with a broken chain" in out
    summary, lines = verify_broken(str(acme_run.uuid))
    assert summary == "1 runs checked, 1 with a broken chain"
    assert all(line.startswith(f"run {acme_run.uuid} ") for line in lines)
    summary, _ = verify_broken(str(globex_run.uuid), str(acme_run.uuid).upper())
    assert summary == "2 runs checked, 1 with a broken chain"


def test_the_namespace_option_limits_the_check_to_that_namespace(two_runs):
    acme_run, globex_run = two_runs
    Event.objects.filter(run=acme_run, event_id=2).update(type="decision.made")
    out, err = verify(namespace="globex", verbosity=2)
    assert err == ""
    assert f"ok {globex_run.uuid} (6 events)" in out
    assert str(acme_run.uuid) not in out
    summary, lines = verify_broken(namespace="acme")
    assert summary == "1 runs checked, 1 with a broken chain"
    assert lines and all(str(acme_run.uuid) in line for line in lines)
    summary, _ = verify_broken()
    assert summary == "2 runs checked, 1 with a broken chain"


def test_the_namespace_option_on_the_command_line(two_runs):
    acme_run, _ = two_runs
    Event.objects.filter(run=acme_run, event_id=2).update(type="decision.made")
    out, _ = verify("--namespace", "globex")
    assert "1 runs checked, 0 with a broken chain" in out


def test_an_unknown_namespace_is_an_error_not_an_empty_pass(two_runs):
    with pytest.raises(CommandError, match="no-such-team"):
        verify(namespace="no-such-team")


def test_a_malformed_run_uuid_is_an_error_naming_it(run):
    with pytest.raises(CommandError, match="run UUID") as caught:
        verify(str(run.uuid), "not-a-uuid")
    assert "not-a-uuid" in str(caught.value)


def test_an_unknown_run_uuid_is_an_error_naming_it(run):
    unknown = str(uuid.uuid4())
    with pytest.raises(CommandError, match="no such run") as caught:
        verify(str(run.uuid), unknown)
    assert unknown in str(caught.value)
    assert str(run.uuid) not in str(caught.value)
