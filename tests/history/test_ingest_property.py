"""Properties of ingest: arrival order, batching and duplicates never change what is stored,
and a gap holds the chain back until it is filled."""

from __future__ import annotations

import copy
import itertools
from datetime import timedelta, timezone

import orjson
import pytest
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from access.models import Token
from history import chain
from history.ingest import DUPLICATE, INVALID, STORED, ingest_batch
from history.models import Event, Run
from history.verification import verify_run
from history.vocabulary import CLOSED_STATUSES, STATUS_EVENTS
from tests.builders import BASE_TIME

pytestmark = pytest.mark.django_db

PROPERTY_SETTINGS = hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# Each example writes runs of its own: examples share one test's database.
_example_ids = itertools.count(1)

RUN_FIELDS = (
    "status", "status_event_id", "started_at", "start_event_id", "closed_at",
    "event_count", "last_event_id", "contiguous_through", "received_seq", "workflow_type",
    "labels", "events_with_secrets",
)
CLOSING_TYPES = (
    "workflow.completed", "workflow.failed", "workflow.cancelled", "workflow.terminated",
    "workflow.timed_out", "workflow.continued_as_new",
)
MIDDLE_TYPES = (
    "decision.made", "activity.scheduled", "activity.started", "activity.completed",
    "activity.failed",
)
# A key and a value the secret scanner flags (a credential-named key with a random value).
SECRET = ("api_key", "Zx9Qw3Er7Ty1Ui5Op2As")

# --- strategies ---------------------------------------------------------------------------

# Any Unicode text UTF-8 can carry; NUL is left to a test of its own (PostgreSQL text cannot
# hold it).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=16)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
ATTRIBUTES = st.dictionaries(TEXT, VALUES, max_size=4)
ZONES = {"Z": 0, "z": 0, "+00:00": 0, "-07:00": -7 * 60, "+05:30": 5 * 60 + 30, "+14:00": 840}


@st.composite
def times(draw) -> str:
    """An RFC 3339 time within a year of BASE_TIME, in various spellings."""
    moment = BASE_TIME + timedelta(
        seconds=draw(st.integers(-366 * 86400, 366 * 86400)),
        microseconds=draw(st.integers(0, 999_999)),
    )
    zone = draw(st.sampled_from(sorted(ZONES)))
    local = moment.astimezone(timezone(timedelta(minutes=ZONES[zone])))
    digits = f"{local.microsecond:06d}{draw(st.integers(0, 999)):03d}"[: draw(st.integers(0, 9))]
    separator = draw(st.sampled_from("Tt "))
    text = local.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    return text + (f".{digits}" if digits else "") + zone


@st.composite
def histories(draw, *, min_size: int = 1, max_size: int = 60) -> list[dict]:
    """A valid history without workflow_id and run_id: workflow.started first, then core event
    types, perhaps a pause and a resume, perhaps a closing event; times in no order."""
    length = draw(st.integers(min_size, max_size))
    closing = draw(st.none() | st.sampled_from(CLOSING_TYPES)) if length > 1 else None
    middle = st.sampled_from(MIDDLE_TYPES)
    if draw(st.booleans()):
        middle = middle | st.sampled_from(("workflow.paused", "workflow.resumed"))
    events = []
    for event_id in range(1, length + 1):
        if event_id == 1:
            kind = "workflow.started"
        elif event_id == length and closing:
            kind = closing
        else:
            kind = draw(middle)
        item: dict = {"event_id": event_id, "type": kind, "time": draw(times())}
        if kind == "workflow.started":
            item["workflow_type"] = draw(st.sampled_from(("support", "billing", "research")))
        elif draw(st.integers(0, 9)) == 0:
            item["workflow_type"] = draw(st.sampled_from(("support", "other")))
        attributes = draw(ATTRIBUTES)
        attributes.pop("labels", None)  # only workflow.started's labels, and valid ones
        if kind == "workflow.started" and draw(st.booleans()):
            attributes["labels"] = draw(st.dictionaries(TEXT, TEXT, max_size=3))
        if draw(st.integers(0, 4)) == 0:
            attributes[SECRET[0]] = SECRET[1]
        if attributes or draw(st.booleans()):
            item["attributes"] = attributes
        if draw(st.booleans()):
            item["identity"] = draw(st.none() | TEXT)
        if event_id > 1 and draw(st.booleans()):
            item["refs"] = draw(
                st.dictionaries(
                    st.sampled_from(("scheduled", "started", "parent", "caused_by")),
                    st.integers(1, length),
                    min_size=1,
                    max_size=2,
                )
            )
        events.append(item)
    return events


def for_run(events: list[dict], workflow_id: str, run_id: str) -> list[dict]:
    return [{**copy.deepcopy(item), "workflow_id": workflow_id, "run_id": run_id}
            for item in events]


def split(data, items: list) -> list[list]:
    """Cut `items` into consecutive non-empty batches at random places."""
    if len(items) <= 1:
        return [items] if items else []
    cuts = sorted(data.draw(st.sets(st.integers(1, len(items) - 1), max_size=len(items) - 1)))
    bounds = [0, *cuts, len(items)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture
def acme_token(agent_token) -> Token:
    return Token.authenticate(agent_token)


@pytest.fixture
def globex_token(foreign_agent_token) -> Token:
    return Token.authenticate(foreign_agent_token)


def store(token: Token, batch: list[dict]) -> list[str]:
    outcome = ingest_batch(token, batch, max_attributes_bytes=settings.INGEST_MAX_ATTRIBUTES_BYTES)
    return [result.status for result in outcome.results]


def post(ingest, token: Token, secret: str, batch: list[dict]) -> list[str]:
    """The batch through POST /api/v1/ingest; the status of each item."""
    response = ingest(secret, batch)
    assert response.status_code in (200, 207), response.content
    body = response.json()
    if response.status_code == 200:
        return [STORED] * body["stored"] + [DUPLICATE] * body["duplicates"]
    return [result["status"] for result in body["results"]]


def chain_over(events: list[Event]) -> list[str]:
    """Chain hashes recomputed from stored headers, in the given order."""
    hashes, previous = [], chain.GENESIS
    for stored in events:
        previous = chain.link(previous, stored.header.encode())
        hashes.append(previous)
    return hashes


def header_without_digest(stored: Event) -> dict:
    fields = orjson.loads(stored.header)
    digest = fields.pop("attributes_digest")
    assert digest == chain.attributes_digest(stored.salt, stored.attributes.encode())
    return fields


def expected_status(events: list[dict]) -> tuple[str, int]:
    status_events = [item for item in events if item["type"] in STATUS_EVENTS]
    last = max(status_events, key=lambda item: item["event_id"])
    return STATUS_EVENTS[last["type"]], last["event_id"]


def assert_same_history(shuffled: Run, in_order: Run, sent: list[dict]) -> None:
    a = {e.event_id: e for e in shuffled.events.order_by("event_id")}
    b = {e.event_id: e for e in in_order.events.order_by("event_id")}
    assert list(a) == list(b) == sorted(item["event_id"] for item in sent)
    by_id = {item["event_id"]: item for item in sent}
    for event_id, x in a.items():
        y = b[event_id]
        assert x.attributes == y.attributes, event_id
        assert x.attributes == chain.canonical(by_id[event_id].get("attributes") or {}).decode()
        assert x.type == y.type == by_id[event_id]["type"]
        assert x.time_text == y.time_text == by_id[event_id]["time"]
        assert x.time == y.time
        assert x.identity == y.identity == (by_id[event_id].get("identity") or "")
        assert x.refs == y.refs == (by_id[event_id].get("refs") or {})
        assert x.masked_attributes == y.masked_attributes
        assert x.secret_findings == y.secret_findings
        assert header_without_digest(x) == header_without_digest(y), event_id
    # The headers differ by their salted digests, so the chains differ: check A's on its own.
    ordered = list(a.values())
    recomputed = chain_over(ordered)
    assert [e.chain_hash for e in ordered] == recomputed
    assert shuffled.head_hash == recomputed[-1]
    assert in_order.head_hash == chain_over(list(b.values()))[-1]
    assert sorted(e.received_seq for e in ordered) == list(range(1, len(ordered) + 1))
    assert verify_run(shuffled) == []
    assert verify_run(in_order) == []
    for name in RUN_FIELDS:
        assert getattr(shuffled, name) == getattr(in_order, name), name
    status, status_event_id = expected_status(sent)
    assert (shuffled.status, shuffled.status_event_id) == (status, status_event_id)
    last = by_id[max(by_id)]
    assert shuffled.closed_at == (
        in_order.events.get(event_id=status_event_id).time if status in CLOSED_STATUSES else None
    )
    assert shuffled.workflow_type == by_id[1]["workflow_type"]
    # Labels are copied from workflow.started's attributes, masked where a secret was found.
    started = in_order.events.get(event_id=1).attributes_for(raw=False)
    assert shuffled.labels == started.get("labels", {})
    assert shuffled.started_at == in_order.events.get(event_id=1).time
    assert shuffled.event_count == shuffled.last_event_id == shuffled.contiguous_through
    assert shuffled.last_event_id == last["event_id"]
    assert shuffled.events_with_secrets == sum(bool(e.secret_findings) for e in ordered)
    assert shuffled.events_with_secrets >= sum(
        (item.get("attributes") or {}).get(SECRET[0]) == SECRET[1] for item in sent
    )


# --- properties ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(data=st.data())
def test_shuffled_duplicated_batched_ingest_stores_what_in_order_ingest_stores(
    data, ingest, acme_token, globex_token, agent_token
):
    """Run A (with run C mixed into its batches) arrives shuffled, with identical copies, in
    random batches, some through HTTP; runs of the same ids in another namespace get the same
    events in order, in one batch each."""
    workflow_id = f"prop-{next(_example_ids)}"
    first = data.draw(histories(), label="history A")
    second = data.draw(histories(max_size=20), label="history C")
    run_a = for_run(first, workflow_id, "a")
    run_c = for_run(second, workflow_id, "c")
    stream = run_a + run_c
    copies = data.draw(st.lists(st.sampled_from(stream), max_size=len(stream)), label="copies")
    stream = data.draw(st.permutations(stream + [copy.deepcopy(item) for item in copies]))
    statuses = []
    for batch in split(data, stream):
        if data.draw(st.booleans(), label="over HTTP"):
            statuses += post(ingest, acme_token, agent_token, batch)
        else:
            statuses += store(acme_token, batch)
    assert sorted(statuses) == sorted([STORED] * len(run_a + run_c) + [DUPLICATE] * len(copies))

    assert store(globex_token, for_run(first, workflow_id, "a")) == [STORED] * len(first)
    assert store(globex_token, for_run(second, workflow_id, "c")) == [STORED] * len(second)

    for run_id, sent in (("a", run_a), ("c", run_c)):
        shuffled = Run.objects.get(namespace__slug="acme", workflow_id=workflow_id, run_id=run_id)
        in_order = Run.objects.get(
            namespace__slug="globex", workflow_id=workflow_id, run_id=run_id
        )
        assert_same_history(shuffled, in_order, sent)


def assert_chained_up_to_the_gap(run: Run, length: int, missing: set[int]) -> None:
    run.refresh_from_db()
    stored = list(run.events.order_by("event_id"))
    assert [e.event_id for e in stored] == [i for i in range(1, length + 1) if i not in missing]
    contiguous = min(missing) - 1 if missing else length
    assert run.contiguous_through == contiguous
    assert run.last_event_id == length
    assert run.event_count == len(stored)
    assert run.has_gaps == bool(missing)
    prefix = [e for e in stored if e.event_id <= contiguous]
    recomputed = chain_over(prefix)
    assert [e.chain_hash for e in prefix] == recomputed
    assert run.head_hash == (recomputed[-1] if recomputed else "")
    assert [e.chain_hash for e in stored if e.event_id > contiguous] == [""] * (
        len(stored) - len(prefix)
    )
    ranges = []
    for event_id in sorted(missing):
        if ranges and ranges[-1][1] == event_id - 1:
            ranges[-1] = (ranges[-1][0], event_id)
        else:
            ranges.append((event_id, event_id))
    assert run.missing_ranges() == ranges
    assert sorted(e.received_seq for e in stored) == list(range(1, len(stored) + 1))
    assert verify_run(run) == []


@PROPERTY_SETTINGS
@given(data=st.data())
def test_a_gap_holds_the_chain_back_until_it_is_filled(data, acme_token):
    workflow_id = f"gap-{next(_example_ids)}"
    events = for_run(data.draw(histories(min_size=2, max_size=40)), workflow_id, "run")
    length = len(events)
    missing = data.draw(
        st.sets(st.integers(1, length - 1), min_size=1, max_size=length - 1), label="missing"
    )
    present = data.draw(
        st.permutations([item for item in events if item["event_id"] not in missing])
    )
    for batch in split(data, present):
        assert store(acme_token, batch) == [STORED] * len(batch)
    run = Run.objects.get(workflow_id=workflow_id)
    assert_chained_up_to_the_gap(run, length, missing)

    # Fill the gap an event at a time, in any order, each with a copy of a stored event.
    still_missing = set(missing)
    for event_id in data.draw(st.permutations(sorted(missing)), label="filling order"):
        duplicate = copy.deepcopy(data.draw(st.sampled_from(present)))
        assert store(acme_token, [events[event_id - 1], duplicate]) == [STORED, DUPLICATE]
        still_missing.discard(event_id)
        assert_chained_up_to_the_gap(run, length, still_missing)
    assert run.contiguous_through == run.event_count == length


# --- what the wire accepts can be stored and read back --------------------------------------


def _plain(event_id: int, kind: str = "decision.made", **fields) -> dict:
    item = {
        "workflow_id": "wf-edge", "run_id": "run-edge", "event_id": event_id, "type": kind,
        "time": "2026-11-01T09:00:00Z",
    }
    if kind == "workflow.started":
        item["workflow_type"] = "support"
    item.update(fields)
    return item


EARLIEST = "0001-01-01T00:30:00+01:00"  # 0000-12-31T23:30Z: before datetime.min in UTC
LATEST = "9999-12-31T23:30:00-01:00"  # 10000-01-01T00:30Z: after datetime.max in UTC

# Batches, sent one after another.
EDGE_CASES = {
    "nul in identity": [[_plain(1, identity="worker\x00one")]],
    "nul in workflow_id": [[_plain(1, workflow_id="wf\x00edge")]],
    "nul in a label": [[_plain(1, "workflow.started", attributes={"labels": {"team": "a\x00"}})]],
    "nul in a ref name": [[_plain(2, refs={"sched\x00uled": 1})]],
    "nul in a secret's key": [[_plain(1, attributes={"api_key\x00": SECRET[1]})]],
    "earliest time in a new run": [[_plain(1, time=EARLIEST)]],
    "earliest time in a run without workflow.started": [[_plain(2)], [_plain(3, time=EARLIEST)]],
    "latest time in a new run": [[_plain(1, time=LATEST)]],
    "latest time closing a run": [
        [_plain(1, "workflow.started")], [_plain(2, "workflow.completed", time=LATEST)]
    ],
}


@pytest.mark.parametrize("batches", list(EDGE_CASES.values()), ids=list(EDGE_CASES))
def test_an_event_the_wire_accepts_is_stored_and_read_back_or_reported_invalid(
    ingest, agent_token, client, batches
):
    sent = {}
    for batch in batches:
        response = ingest(agent_token, batch)
        assert response.status_code in (200, 207), response.content
        if response.status_code == 207:
            statuses = [r["status"] for r in response.json()["results"]]
            assert statuses == [INVALID] * len(batch)
        else:
            sent.update({item["event_id"]: item for item in batch})
    auth = {"Authorization": f"Bearer {agent_token}"}
    listing = client.get("/api/v1/runs", headers=auth)
    assert listing.status_code == 200
    runs = listing.json()["results"]
    assert len(runs) == (1 if sent else 0)
    for run in runs:
        detail = client.get(f"/api/v1/runs/{run['uuid']}", headers=auth)
        assert detail.status_code == 200
        page = client.get(f"/api/v1/runs/{run['uuid']}/events?raw=1", headers=auth)
        assert page.status_code == 200
        shown = {item["event_id"]: item for item in page.json()["events"]}
        assert set(shown) == set(sent)
        for event_id, item in sent.items():
            assert shown[event_id]["time"] == item["time"]
            assert shown[event_id]["identity"] == (item.get("identity") or "")
            assert shown[event_id]["refs"] == item.get("refs", {})
            assert shown[event_id]["attributes"] == item.get("attributes", {})
            assert detail.json()["workflow_id"] == item["workflow_id"]
        assert verify_run(Run.objects.get(uuid=run["uuid"])) == []


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**30])
def test_an_integer_beyond_64_bits_over_http_is_reported_invalid_not_rounded(
    ingest, agent_token, number
):
    # orjson alone would read such an integer as a float (2**64 as 1.8446744073709552e+19):
    # the stored value would not be the value sent.
    item = _plain(1, attributes={"deep": {"n": 0}})
    body = orjson.dumps({"events": [item]}).replace(b'"n":0', b'"n":%d' % number)
    response = ingest(agent_token, body)
    assert not Event.objects.filter(run__workflow_id="wf-edge").exists()
    assert response.status_code == 207, response.content
    (result,) = response.json()["results"]
    assert result["status"] == INVALID
    assert result["error"].startswith("events[0].attributes:")
