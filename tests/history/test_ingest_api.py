"""POST /api/v1/ingest: the catalogue of bad input, duplicates, auth, and what a good batch does.

Every bad request is sent after a few events are stored, and each test checks that what was
stored before is exactly as it was: the run's counters and head hash, and every stored event.
"""

from __future__ import annotations

import json
from datetime import timedelta

import orjson
import pytest

from access.models import Token
from history import chain
from history.models import Event, Run
from history.verification import verify_run
from tests.builders import BASE_TIME, at, event, history

pytestmark = pytest.mark.django_db

# Built at run time so no scanner of this repository flags the test itself.
AWS_KEY = "AKIA" + "ABCDEFGHIJKLMNOP"
MiB = 1024 * 1024


def body(events) -> bytes:
    """A request body serialized by the standard library, which writes any integer exactly."""
    return json.dumps({"events": events}).encode()


def the_run(workflow_id: str = "wf-1", run_id: str = "run-1") -> Run:
    """The run of acme (the namespace of `agent_token`) with these ids."""
    return Run.objects.get(namespace__slug="acme", workflow_id=workflow_id, run_id=run_id)


def snapshot(workflow_id: str = "wf-1", run_id: str = "run-1") -> dict:
    """Everything about a run that a refused request must leave alone."""
    run = the_run(workflow_id, run_id)
    return {
        "event_count": run.event_count,
        "last_event_id": run.last_event_id,
        "contiguous_through": run.contiguous_through,
        "head_hash": run.head_hash,
        "received_seq": run.received_seq,
        "status": run.status,
        "events": list(
            run.events.order_by("event_id").values_list(
                "event_id", "type", "time_text", "attributes", "salt", "header", "chain_hash",
                "received_seq",
            )
        ),
    }


def stored_event_ids(workflow_id: str = "wf-1", run_id: str = "run-1") -> list[int]:
    return list(
        the_run(workflow_id, run_id).events.order_by("event_id").values_list("event_id", flat=True)
    )


@pytest.fixture
def stored(ingest, agent_token) -> dict:
    """Events 1 to 3 of wf-1/run-1, stored; returns the run's snapshot."""
    response = ingest(agent_token, history(3, closed=False))
    assert response.status_code == 200, response.content
    return snapshot()


# --- the envelope ---------------------------------------------------------------------------


def test_it_rejects_a_body_that_is_not_json(ingest, agent_token, stored):
    response = ingest(agent_token, b'{"events": [')
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body: ")
    assert snapshot() == stored


def test_it_rejects_a_body_that_is_not_utf8(ingest, agent_token, stored):
    response = ingest(agent_token, b'{"events": ["\xff\xfe"]}')
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body: ")
    assert snapshot() == stored


def test_it_rejects_json_that_is_not_an_object(ingest, agent_token, stored):
    response = ingest(agent_token, orjson.dumps([event(4)]))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body: ")
    assert snapshot() == stored


def test_it_rejects_an_object_without_events(ingest, agent_token, stored):
    response = ingest(agent_token, orjson.dumps({"event": [event(4)]}))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body: ")
    assert snapshot() == stored


def test_it_rejects_an_extra_envelope_key(ingest, agent_token, stored):
    response = ingest(agent_token, orjson.dumps({"events": [event(4)], "version": 1}))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body.version: ")
    assert snapshot() == stored


def test_it_rejects_events_that_are_not_an_array(ingest, agent_token, stored):
    response = ingest(agent_token, orjson.dumps({"events": event(4)}))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("events: ")
    assert snapshot() == stored


def test_it_rejects_null_events(ingest, agent_token, stored):
    response = ingest(agent_token, b'{"events": null}')
    assert response.status_code == 400
    assert response.json()["detail"].startswith("events: ")
    assert snapshot() == stored


def test_it_rejects_an_empty_events_array(ingest, agent_token, stored):
    response = ingest(agent_token, [])
    assert response.status_code == 400
    assert response.json()["detail"].startswith("events: ")
    assert snapshot() == stored


def test_it_rejects_nan_in_the_body(ingest, agent_token, stored):
    response = ingest(
        agent_token,
        b'{"events": [' + orjson.dumps(event(4))[:-1] + b', "attributes": {"x": NaN}}]}',
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("body: ")
    assert snapshot() == stored


# --- one bad item in an otherwise good batch ------------------------------------------------

MISSING = object()


def bad(*, type="decision.made", **changes) -> dict:
    """Event 5 of wf-1/run-1 with `changes` applied (MISSING removes a field)."""
    item = event(5, "decision.made" if type is MISSING else type)
    if type is MISSING:
        del item["type"]
    for name, value in changes.items():
        if value is MISSING:
            item.pop(name, None)
        else:
            item[name] = value
    return item


BAD_ITEMS = {
    "workflow_id missing": (bad(workflow_id=MISSING), "workflow_id"),
    "run_id missing": (bad(run_id=MISSING), "run_id"),
    "event_id missing": (bad(event_id=MISSING), "event_id"),
    "type missing": (bad(type=MISSING), "type"),
    "time missing": (bad(time=MISSING), "time"),
    "workflow_id a number": (bad(workflow_id=42), "workflow_id"),
    "workflow_id empty": (bad(workflow_id=""), "workflow_id"),
    "workflow_id blank": (bad(workflow_id="   "), "workflow_id"),
    "workflow_id too long": (bad(workflow_id="w" * 256), "workflow_id"),
    "run_id a list": (bad(run_id=["run-1"]), "run_id"),
    "event_id a string": (bad(event_id="5"), "event_id"),
    "event_id true": (bad(event_id=True), "event_id"),
    "event_id a float": (bad(event_id=1.5), "event_id"),
    "event_id a whole float": (bad(event_id=5.0), "event_id"),
    "event_id zero": (bad(event_id=0), "event_id"),
    "event_id negative": (bad(event_id=-1), "event_id"),
    "event_id 2**53": (bad(event_id=2**53), "event_id"),
    "event_id 10**30": (bad(event_id=10**30), "event_id"),
    "time without a zone": (bad(time="2026-11-01T09:00:05"), "time"),
    "time a date only": (bad(time="2026-11-01"), "time"),
    "time an impossible date": (bad(time="2026-02-30T00:00:00Z"), "time"),
    "time an impossible hour": (bad(time="2026-11-01T25:00:00Z"), "time"),
    "time an impossible offset": (bad(time="2026-11-01T09:00:00+24:00"), "time"),
    "time a number": (bad(time=1790000000), "time"),
    "type not dotted": (bad(type="started"), "type"),
    "type uppercase": (bad(type="Decision.Made"), "type"),
    "type with spaces": (bad(type="decision made"), "type"),
    "type with an empty word": (bad(type="decision..made"), "type"),
    "type too long": (bad(type="a." + "b" * 99), "type"),
    "workflow.started without workflow_type": (
        bad(type="workflow.started", workflow_type=MISSING), "workflow_type"
    ),
    "workflow_type a number": (bad(workflow_type=7), "workflow_type"),
    "identity a number": (bad(identity=7), "identity"),
    "an unknown top-level field": (bad(colour="blue"), "colour"),
    "refs not an object": (bad(refs=[3]), "refs"),
    "a ref of zero": (bad(refs={"scheduled": 0}), "refs.scheduled"),
    "a ref that is a string": (bad(refs={"scheduled": "3"}), "refs.scheduled"),
    "a ref that is true": (bad(refs={"scheduled": True}), "refs.scheduled"),
    "a ref that is a float": (bad(refs={"scheduled": 3.0}), "refs.scheduled"),
    "attributes a list": (bad(attributes=[1, 2]), "attributes"),
    "attributes a string": (bad(attributes="{}"), "attributes"),
    "attributes an integer beyond 64 bits": (bad(attributes={"n": 10**30}), "attributes"),
    "attributes a negative integer beyond 64 bits": (
        bad(attributes={"n": -(2**63) - 1}), "attributes"
    ),
    "labels not an object": (
        bad(type="workflow.started", attributes={"labels": ["team=support"]}),
        "attributes.labels",
    ),
    "a label that is not a string": (
        bad(type="workflow.started", attributes={"labels": {"team": 7}}),
        "attributes.labels.team",
    ),
    "a label value over 200 characters": (
        bad(type="workflow.started", attributes={"labels": {"team": "x" * 201}}),
        "attributes.labels.team",
    ),
}


@pytest.mark.parametrize(("item", "field"), BAD_ITEMS.values(), ids=BAD_ITEMS.keys())
def test_it_reports_a_bad_item_and_stores_the_rest_of_the_batch(
    ingest, agent_token, stored, item, field
):
    response = ingest(agent_token, body([event(4), item]))

    assert response.status_code == 207, response.content
    answer = response.json()
    assert (answer["stored"], answer["invalid"]) == (1, 1)
    good, wrong = answer["results"]
    assert good == {"index": 0, "status": "stored"}
    assert wrong["index"] == 1
    assert wrong["status"] == "invalid"
    assert wrong["error"].startswith(f"events[1].{field}: "), wrong["error"]
    assert stored_event_ids() == [1, 2, 3, 4]
    assert snapshot()["events"][:3] == stored["events"]


def test_it_reports_an_item_that_is_not_an_object_by_its_index(ingest, agent_token, stored):
    response = ingest(agent_token, body([event(4), "decision.made"]))

    assert response.status_code == 207
    wrong = response.json()["results"][1]
    assert wrong["status"] == "invalid"
    # The documented form is `events[i].<field>: <problem>`; with no field, `events[i]: ...`.
    assert wrong["error"].startswith("events[1]: "), wrong["error"]
    assert stored_event_ids() == [1, 2, 3, 4]


def test_it_rejects_attributes_over_the_size_limit(ingest, agent_token, stored, settings):
    limit = settings.INGEST_MAX_ATTRIBUTES_BYTES
    padding = "x" * (limit - len(b'{"blob":""}') + 1)  # canonical form: one byte over

    response = ingest(agent_token, body([event(4), bad(attributes={"blob": padding})]))

    assert response.status_code == 207
    wrong = response.json()["results"][1]
    assert wrong["status"] == "invalid"
    assert wrong["error"].startswith("events[1].attributes: ")
    assert str(limit) in wrong["error"]
    assert stored_event_ids() == [1, 2, 3, 4]


def test_it_accepts_attributes_exactly_at_the_size_limit(ingest, agent_token, stored, settings):
    limit = settings.INGEST_MAX_ATTRIBUTES_BYTES
    padding = "x" * (limit - len(b'{"blob":""}'))

    response = ingest(agent_token, body([event(4, attributes={"blob": padding})]))

    assert response.status_code == 200
    assert len(Event.objects.get(event_id=4).attributes.encode()) == limit


def test_it_never_changes_a_big_integer_in_attributes(ingest, agent_token, stored):
    """An integer that does not fit in 64 bits must be refused, not stored as a float."""
    response = ingest(agent_token, body([event(4, attributes={"n": 10**30})]))

    assert response.status_code < 500
    stored_four = Event.objects.filter(run__workflow_id="wf-1", event_id=4).first()
    if stored_four is not None:
        assert orjson.loads(stored_four.attributes) == {"n": 10**30}


@pytest.mark.parametrize(
    "item",
    [
        bad(workflow_id="wf\x00one"),
        bad(identity="svc\x00account"),
        bad(type="workflow.started", attributes={"labels": {"team": "a\x00b"}}),
        bad(refs={"sched\x00uled": 3}),
        bad(type="workflow.started", workflow_id="wf-2", workflow_type="support\x00"),
        bad(attributes={"note": "a\x00b"}),
        bad(attributes={"api\x00key": "Zx9Qw3Er5Ty7Ui9Op1As"}),
    ],
    ids=["workflow_id", "identity", "label", "ref name", "workflow_type", "attribute value",
         "attribute key holding a secret"],
)
def test_it_never_fails_with_a_server_error_on_a_nul_character(
    ingest, agent_token, stored, item
):
    response = ingest(agent_token, body([event(4), item]))

    assert response.status_code < 500


# --- size limits ----------------------------------------------------------------------------


def _padded(events: list, size: int) -> bytes:
    """A valid body padded with white space to exactly `size` bytes."""
    document = orjson.dumps({"events": events})
    assert len(document) <= size
    return document + b" " * (size - len(document))


def test_it_refuses_a_body_over_5_mib(ingest, agent_token, stored):
    response = ingest(agent_token, _padded([event(4)], 5 * MiB + 1))

    assert response.status_code == 413
    assert response.json()["detail"].startswith("body: ")
    assert snapshot() == stored


def test_it_refuses_a_body_whose_content_length_is_over_5_mib(ingest, agent_token, stored):
    response = ingest(agent_token, [event(4)], CONTENT_LENGTH=str(6 * MiB))

    assert response.status_code == 413
    assert response.json()["detail"].startswith("body: ")
    assert snapshot() == stored


def test_it_accepts_a_body_of_exactly_5_mib(ingest, agent_token, stored):
    response = ingest(agent_token, _padded([event(4)], 5 * MiB))

    assert response.status_code == 200
    assert stored_event_ids() == [1, 2, 3, 4]


def test_it_refuses_5001_events(ingest, agent_token, stored):
    response = ingest(agent_token, [{}] * 5001)

    assert response.status_code == 413
    assert response.json()["detail"].startswith("events: ")
    assert snapshot() == stored


def test_it_refuses_more_events_than_the_setting_allows(ingest, agent_token, stored, settings):
    settings.INGEST_MAX_EVENTS = 10

    response = ingest(agent_token, [event(n) for n in range(4, 15)])

    assert response.status_code == 413
    assert response.json()["detail"].startswith("events: ")
    assert snapshot() == stored


def test_it_accepts_as_many_events_as_the_setting_allows(ingest, agent_token, stored, settings):
    settings.INGEST_MAX_EVENTS = 10

    response = ingest(agent_token, [event(n) for n in range(4, 14)])

    assert response.status_code == 200
    assert response.json()["stored"] == 10


def test_it_refuses_a_body_over_the_body_setting(ingest, agent_token, stored, settings):
    settings.INGEST_MAX_BODY_BYTES = 2048

    response = ingest(agent_token, _padded([event(4)], 2049))

    assert response.status_code == 413
    assert snapshot() == stored


# --- duplicates and conflicts ---------------------------------------------------------------


def test_it_counts_an_identical_event_as_a_duplicate(ingest, agent_token, stored):
    response = ingest(agent_token, history(3, closed=False)[1:2])

    assert response.status_code == 200
    answer = response.json()
    assert (answer["stored"], answer["duplicates"], answer["conflicts"]) == (0, 1, 0)
    assert snapshot() == stored


def test_it_counts_an_event_with_reordered_attribute_keys_as_a_duplicate(
    ingest, agent_token, stored
):
    original = history(3, closed=False)[1]
    reordered = dict(original, attributes=dict(reversed(list(original["attributes"].items()))))
    assert list(reordered["attributes"]) != list(original["attributes"])

    response = ingest(agent_token, [reordered])

    assert response.status_code == 200
    assert response.json()["duplicates"] == 1
    assert snapshot() == stored


def test_it_rejects_a_duplicate_with_different_content(ingest, agent_token, stored):
    changed = dict(history(3, closed=False)[1], attributes={"activity_type": "other"})

    response = ingest(agent_token, [changed])

    assert response.status_code == 207
    answer = response.json()
    assert (answer["stored"], answer["conflicts"]) == (0, 1)
    (result,) = answer["results"]
    assert result["status"] == "conflict"
    assert result["error"].startswith("events[0].event_id: ")
    assert snapshot() == stored


def test_it_rejects_a_duplicate_with_a_different_time_text(ingest, agent_token, stored):
    changed = dict(history(3, closed=False)[1])
    changed["time"] = changed["time"].replace("Z", "+00:00")

    response = ingest(agent_token, [changed])

    assert response.status_code == 207
    assert response.json()["results"][0]["status"] == "conflict"
    assert snapshot() == stored


def test_it_keeps_the_first_of_two_identical_events_in_one_batch(ingest, agent_token, stored):
    response = ingest(agent_token, [event(4), event(4)])

    assert response.status_code == 200
    answer = response.json()
    assert (answer["stored"], answer["duplicates"]) == (1, 1)
    assert the_run().received_seq == stored["received_seq"] + 1


def test_it_keeps_the_first_of_two_different_events_with_one_id_in_a_batch(
    ingest, agent_token, stored
):
    first = event(4, attributes={"choice": "first"})
    second = event(4, attributes={"choice": "second"})

    response = ingest(agent_token, [first, second])

    assert response.status_code == 207
    answer = response.json()
    assert (answer["stored"], answer["conflicts"]) == (1, 1)
    assert answer["results"][1]["status"] == "conflict"
    assert answer["results"][1]["error"].startswith("events[1].event_id: ")
    stored_four = Event.objects.get(run=the_run(), event_id=4)
    assert orjson.loads(stored_four.attributes) == {"choice": "first"}


# --- authentication -------------------------------------------------------------------------


def _post(client, authorization: str | None, events=None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return client.post(
        "/api/v1/ingest",
        data=orjson.dumps({"events": events or [event(4)]}),
        content_type="application/json",
        headers=headers,
    )


def test_it_requires_a_token(client, stored):
    response = _post(client, None)

    assert response.status_code == 401
    assert snapshot() == stored


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer a b", "Basic x", "Bearer fda_short", "Token fda_x_y"],
)
def test_it_rejects_a_malformed_authorization(client, stored, authorization):
    response = _post(client, authorization)

    assert response.status_code == 401
    assert snapshot() == stored


def test_it_rejects_an_unknown_token(client, stored):
    response = _post(client, "Bearer fda_0badc0de_" + "x" * 43)

    assert response.status_code == 401
    assert snapshot() == stored


def test_it_rejects_a_wrong_secret_for_a_real_prefix(client, agent_token, stored):
    kind, prefix, _ = agent_token.split("_", 2)
    response = _post(client, f"Bearer {kind}_{prefix}_{'x' * 43}")

    assert response.status_code == 401
    assert snapshot() == stored


def test_it_rejects_a_revoked_token(client, agent_token, stored):
    Token.authenticate(agent_token).revoke()

    response = _post(client, f"Bearer {agent_token}")

    assert response.status_code == 401
    assert snapshot() == stored


def test_it_refuses_a_user_token(client, alice, stored):
    _, secret = Token.issue(user=alice)

    response = _post(client, f"Bearer {secret}")

    assert response.status_code == 403
    assert "agent token" in response.json()["detail"]
    assert snapshot() == stored


def test_it_refuses_a_signed_in_user(client, alice, stored):
    client.force_login(alice)

    response = _post(client, None)

    assert response.status_code == 403
    assert "agent token" in response.json()["detail"]
    assert snapshot() == stored


def test_it_refuses_a_batch_touching_another_agents_run(
    ingest, agent_token, other_agent_token, stored
):
    theirs = [event(1, "workflow.started", workflow_id="wf-billing", run_id="run-b")]
    assert ingest(other_agent_token, theirs).status_code == 200
    theirs_before = snapshot("wf-billing", "run-b")

    response = ingest(
        agent_token,
        [
            event(4),  # the token's own run
            event(1, "workflow.started", workflow_id="wf-new", run_id="run-new"),  # a new run
            event(2, workflow_id="wf-billing", run_id="run-b"),  # the other agent's
        ],
    )

    assert response.status_code == 403
    assert "nothing in this batch was stored" in response.json()["detail"]
    assert snapshot() == stored
    assert snapshot("wf-billing", "run-b") == theirs_before
    assert not Run.objects.filter(workflow_id="wf-new").exists()


def test_a_foreign_agent_with_the_same_ids_gets_its_own_run(
    ingest, agent_token, foreign_agent_token, stored
):
    response = ingest(foreign_agent_token, history(2, closed=False))

    assert response.status_code == 200
    assert Run.objects.filter(workflow_id="wf-1", run_id="run-1").count() == 2
    assert the_run().agent.name == "support-bot"
    assert snapshot() == stored


# --- good batches ---------------------------------------------------------------------------


def test_it_answers_200_with_counts_and_runs(ingest, agent_token):
    response = ingest(agent_token, history(4))

    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"stored", "duplicates", "conflicts", "invalid", "runs"}
    assert (answer["stored"], answer["duplicates"], answer["conflicts"], answer["invalid"]) == (
        4, 0, 0, 0,
    )
    run = the_run()
    assert answer["runs"] == [
        {
            "uuid": str(run.uuid),
            "workflow_id": "wf-1",
            "run_id": "run-1",
            "status": "completed",
            "last_event_id": 4,
            "contiguous_through": 4,
            "head_hash": run.head_hash,
        }
    ]


def test_it_lists_every_run_a_batch_touches(ingest, agent_token):
    response = ingest(agent_token, history(2, run_id="a") + history(3, run_id="b"))

    assert response.status_code == 200
    runs = {item["run_id"]: item for item in response.json()["runs"]}
    assert set(runs) == {"a", "b"}
    assert runs["a"]["last_event_id"] == 2
    assert runs["b"]["last_event_id"] == 3


def test_it_stores_events_exactly_as_sent(ingest, agent_token):
    sent = event(1, "workflow.started", identity="svc-support", refs={"parent": 1},
                 attributes={"b": [1, 2.5, None], "a": "é"})

    assert ingest(agent_token, [sent]).status_code == 200

    stored = Event.objects.get(run=the_run(), event_id=1)
    assert stored.time_text == sent["time"]
    assert stored.time == BASE_TIME + timedelta(seconds=1)
    assert stored.identity == "svc-support"
    assert stored.refs == {"parent": 1}
    assert stored.attributes == '{"a":"é","b":[1,2.5,null]}'
    assert stored.received_seq == 1


def _recomputed_head(run: Run) -> str:
    previous = chain.GENESIS
    for header, chain_hash in run.events.order_by("event_id").values_list("header", "chain_hash"):
        previous = chain.link(previous, header.encode())
        assert chain_hash == previous
    return previous


def test_it_tracks_a_gap_until_it_is_filled(ingest, agent_token):
    events = history(5)

    first = ingest(agent_token, [events[0], events[1], events[4]])

    assert first.status_code == 200
    assert first.json()["runs"][0]["contiguous_through"] == 2
    run = the_run()
    assert (run.contiguous_through, run.last_event_id, run.has_gaps) == (2, 5, True)
    assert run.missing_ranges() == [(3, 4)]
    assert Event.objects.get(run=run, event_id=5).chain_hash == ""
    assert verify_run(run) == []

    second = ingest(agent_token, [events[3], events[2]])

    assert second.status_code == 200
    assert second.json()["runs"][0]["contiguous_through"] == 5
    run.refresh_from_db()
    assert (run.contiguous_through, run.has_gaps, run.event_count) == (5, False, 5)
    assert run.head_hash == _recomputed_head(run)
    assert second.json()["runs"][0]["head_hash"] == run.head_hash
    assert verify_run(run) == []


def test_it_numbers_arrivals_in_order_of_receipt(ingest, agent_token):
    events = history(4)
    ingest(agent_token, [events[3]])
    ingest(agent_token, [events[0], events[2]])
    ingest(agent_token, [events[1]])

    by_id = dict(the_run().events.values_list("event_id", "received_seq"))

    assert by_id == {4: 1, 1: 2, 3: 3, 2: 4}


def test_it_derives_the_run_from_its_events(ingest, agent_token):
    ingest(agent_token, history(4))

    run = the_run()
    assert run.status == "completed"
    assert run.started_at == BASE_TIME + timedelta(seconds=1)
    assert run.closed_at == BASE_TIME + timedelta(seconds=4)
    assert run.workflow_type == "support"
    assert run.labels == {"team": "support"}
    assert run.event_count == 4


def test_it_derives_the_same_run_when_completion_arrives_first(ingest, agent_token):
    events = history(4)

    ingest(agent_token, [events[3]])

    run = the_run()
    assert run.status == "completed"
    assert run.started_at == BASE_TIME + timedelta(seconds=4)
    assert run.closed_at == BASE_TIME + timedelta(seconds=4)
    assert run.workflow_type == ""

    ingest(agent_token, events[:3])

    run.refresh_from_db()
    assert run.status == "completed"
    assert run.started_at == BASE_TIME + timedelta(seconds=1)
    assert run.closed_at == BASE_TIME + timedelta(seconds=4)
    assert run.workflow_type == "support"
    assert run.labels == {"team": "support"}


def test_it_takes_the_earliest_time_as_the_start_until_workflow_started_arrives(
    ingest, agent_token
):
    ingest(agent_token, [event(3)])
    ingest(agent_token, [event(2)])

    assert the_run().started_at == BASE_TIME + timedelta(seconds=2)


def test_the_workflow_started_time_wins_over_an_earlier_event(ingest, agent_token):
    ingest(agent_token, [event(2, time=at(-60))])
    ingest(agent_token, [event(1, "workflow.started", time=at(0))])
    ingest(agent_token, [event(3, time=at(-120))])

    assert the_run().started_at == BASE_TIME


def test_the_status_follows_the_highest_status_event(ingest, agent_token):
    ingest(agent_token, [event(1, "workflow.started"), event(3, "workflow.resumed")])
    ingest(agent_token, [event(2, "workflow.paused")])

    run = the_run()
    assert run.status == "running"
    assert run.closed_at is None


def test_a_paused_run_is_not_closed(ingest, agent_token):
    ingest(agent_token, [event(1, "workflow.started"), event(2, "workflow.paused")])

    run = the_run()
    assert run.status == "paused"
    assert run.closed_at is None


def test_it_marks_the_agent_and_the_token_as_seen(ingest, agent_token, support_agent):
    ingest(agent_token, [event(1, "workflow.started")])

    support_agent.refresh_from_db()
    assert support_agent.last_seen_at is not None
    assert Token.objects.get(agent=support_agent).last_used_at is not None


def test_it_records_the_token_that_sent_each_event(ingest, agent_token, support_agent):
    ingest(agent_token, [event(1, "workflow.started")])

    token = Token.objects.get(agent=support_agent)
    assert Event.objects.get(run=the_run()).token_id == token.pk
    assert the_run().agent == support_agent


def test_it_stores_a_continued_history_across_batches(ingest, agent_token):
    events = history(10)
    for start in range(0, 10, 3):
        assert ingest(agent_token, events[start:start + 3]).status_code == 200

    run = the_run()
    assert (run.event_count, run.contiguous_through, run.status) == (10, 10, "completed")
    assert run.head_hash == _recomputed_head(run)
    assert verify_run(run) == []


# --- secrets at ingest ----------------------------------------------------------------------


@pytest.fixture
def secret_run(ingest, agent_token) -> Run:
    """A run whose workflow.started carries an AWS key id in a label and in its input."""
    started = event(
        1,
        "workflow.started",
        attributes={"labels": {"deploy": AWS_KEY}, "input": {"aws_key_id": AWS_KEY}},
    )
    step = event(2, attributes={"note": f"used {AWS_KEY} to deploy", "plain": "nothing here"})
    response = ingest(agent_token, [started, step, event(3)])
    assert response.status_code == 200, response.content
    return the_run()


def test_it_records_secret_findings_without_the_secret(secret_run):
    stored = Event.objects.get(run=secret_run, event_id=2)

    assert stored.secret_findings == [{"rule": "aws_access_key_id", "path": "/note"}]
    assert AWS_KEY not in json.dumps(stored.secret_findings)


def test_it_stores_a_masked_copy_beside_the_raw_attributes(secret_run):
    stored = Event.objects.get(run=secret_run, event_id=2)

    assert AWS_KEY in stored.attributes
    assert AWS_KEY not in stored.masked_attributes
    assert orjson.loads(stored.masked_attributes)["plain"] == "nothing here"


def test_it_stores_no_masked_copy_for_an_event_without_secrets(secret_run):
    stored = Event.objects.get(run=secret_run, event_id=3)

    assert stored.masked_attributes is None
    assert stored.secret_findings is None


def test_it_counts_the_events_with_secrets(secret_run):
    assert secret_run.events_with_secrets == 2


def test_masking_leaves_the_chain_over_the_raw_attributes(secret_run):
    assert verify_run(secret_run) == []


def test_a_viewer_gets_masked_events(client, bob, secret_run):
    client.force_login(bob)

    response = client.get(f"/api/v1/runs/{secret_run.uuid}/events")

    assert response.status_code == 200
    assert AWS_KEY not in response.content.decode()
    events = response.json()["events"]
    assert events[1]["masked"] is True
    assert events[1]["secret_findings"] == [{"rule": "aws_access_key_id", "path": "/note"}]
    assert events[2]["masked"] is False


def test_a_viewer_never_sees_a_secret_in_the_run_detail(client, bob, secret_run):
    client.force_login(bob)

    response = client.get(f"/api/v1/runs/{secret_run.uuid}")

    assert response.status_code == 200
    assert AWS_KEY not in response.content.decode()


def test_a_viewer_never_sees_a_secret_in_the_run_list(client, bob, secret_run):
    client.force_login(bob)

    response = client.get("/api/v1/runs")

    assert response.status_code == 200
    assert response.json()["results"][0]["uuid"] == str(secret_run.uuid)
    assert AWS_KEY not in response.content.decode()


def test_a_viewer_may_not_ask_for_raw_events(client, bob, secret_run):
    client.force_login(bob)

    response = client.get(f"/api/v1/runs/{secret_run.uuid}/events?raw=true")

    assert response.status_code == 403
    assert AWS_KEY not in response.content.decode()


def test_an_investigator_gets_raw_events_when_asking(client, ivy, secret_run):
    client.force_login(ivy)

    masked = client.get(f"/api/v1/runs/{secret_run.uuid}/events")
    raw = client.get(f"/api/v1/runs/{secret_run.uuid}/events?raw=true")

    assert AWS_KEY not in masked.content.decode()
    assert raw.status_code == 200
    assert raw.json()["events"][1]["attributes"]["note"] == f"used {AWS_KEY} to deploy"
    assert raw.json()["events"][1]["masked"] is False


def test_an_admin_gets_raw_events_when_asking(client, alice, secret_run):
    client.force_login(alice)

    response = client.get(f"/api/v1/runs/{secret_run.uuid}/events?raw=true")

    assert response.status_code == 200
    assert AWS_KEY in response.content.decode()


def test_the_agent_gets_its_own_raw_events(client, agent_token, secret_run):
    response = client.get(
        f"/api/v1/runs/{secret_run.uuid}/events?raw=true",
        headers={"Authorization": f"Bearer {agent_token}"},
    )

    assert response.status_code == 200
    assert AWS_KEY in response.content.decode()


def test_another_agent_of_the_namespace_cannot_read_the_run(
    client, other_agent_token, secret_run
):
    response = client.get(
        f"/api/v1/runs/{secret_run.uuid}/events?raw=true",
        headers={"Authorization": f"Bearer {other_agent_token}"},
    )

    assert response.status_code == 404


def test_the_agent_gets_masked_events_unless_it_asks_for_raw(client, agent_token, secret_run):
    response = client.get(
        f"/api/v1/runs/{secret_run.uuid}/events",
        headers={"Authorization": f"Bearer {agent_token}"},
    )

    assert response.status_code == 200
    assert AWS_KEY not in response.content.decode()
