"""Unit tests of the tamper-evidence scheme in history/chain.py, and an independent
re-implementation of it (hashlib and json only) checked against an ingested run."""

from __future__ import annotations

import hashlib
import json
import math

import orjson
import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from access.models import Token
from history import chain
from history.ingest import STORED, ingest_batch
from history.models import Run
from tests.builders import event

ENVELOPE = {
    "workflow_id": "wf-1",
    "run_id": "run-1",
    "event_id": 7,
    "type": "activity.completed",
    "time": "2026-11-01T09:00:07.000000123Z",
    "workflow_type": None,
    "identity": "worker@host",
    "refs": {"scheduled": 5},
}


# --- canonical ----------------------------------------------------------------------------


def test_canonical_sorts_keys_at_every_level():
    value = {"b": 1, "a": {"z": [{"y": 1, "x": 2}], "c": 3}, "B": 0}
    assert chain.canonical(value) == b'{"B":0,"a":{"c":3,"z":[{"x":2,"y":1}]},"b":1}'


def test_canonical_has_no_insignificant_white_space():
    value = {"list": [1, 2, {"k": None}], "flag": True, "text": "a b\tc"}
    assert chain.canonical(value) == b'{"flag":true,"list":[1,2,{"k":null}],"text":"a b\\tc"}'


def test_canonical_writes_utf8_and_does_not_escape_non_ascii():
    text = "héllo \u2013 日本語 🚀 \u2028"
    encoded = chain.canonical({"k": text})
    assert encoded == ('{"k":"' + text + '"}').encode("utf-8")
    assert b"\\u" not in encoded


def test_canonical_escapes_quotes_backslashes_and_control_characters():
    assert chain.canonical({"k": 'say "hi" \\ \n \x01'}) == b'{"k":"say \\"hi\\" \\\\ \\n \\u0001"}'


@pytest.mark.parametrize("number", [2**64 - 1, -(2**63), 0, 2**53 + 1])
def test_canonical_keeps_integers_within_64_bits_exactly(number):
    assert chain.canonical({"n": number}) == b'{"n":%d}' % number
    assert orjson.loads(chain.canonical({"n": number}))["n"] == number


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**30, -(10**30)])
def test_canonical_rejects_integers_beyond_64_bits(number):
    with pytest.raises((TypeError, orjson.JSONEncodeError)):
        chain.canonical({"nested": {"n": number}})


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_canonical_rejects_floats_json_cannot_carry(number):
    # JSON has no NaN or infinity; writing them as null would store (and hash) a value other
    # than the one given, which canonical() promises never to do.
    with pytest.raises((TypeError, ValueError, orjson.JSONEncodeError)):
        chain.canonical({"score": number})


# --- digests, headers, links --------------------------------------------------------------


def test_new_salt_is_16_random_bytes_in_hex():
    salts = {chain.new_salt() for _ in range(50)}
    assert len(salts) == 50
    for salt in salts:
        assert len(bytes.fromhex(salt)) == chain.SALT_BYTES == 16


def test_attributes_digest_is_sha256_of_salt_then_attributes():
    salt = "00112233445566778899aabbccddeeff"
    data = chain.canonical({"q": "weather"})
    expected = hashlib.sha256(bytes.fromhex(salt) + data).hexdigest()
    assert chain.attributes_digest(salt, data) == expected


def test_attributes_digest_depends_on_the_salt():
    data = chain.canonical({"q": "weather"})
    first, second = chain.new_salt(), chain.new_salt()
    assert chain.attributes_digest(first, data) != chain.attributes_digest(second, data)
    assert chain.attributes_digest(first, data) == chain.attributes_digest(first, data)


def test_attributes_digest_depends_on_the_attributes():
    salt = chain.new_salt()
    assert chain.attributes_digest(salt, b'{"a":1}') != chain.attributes_digest(salt, b'{"a":2}')


def test_header_bytes_holds_every_header_field_and_the_digest_and_nothing_else():
    envelope = {**ENVELOPE, "attributes": {"not": "in the header"}}
    header = chain.header_bytes(envelope, "ab" * 32)
    fields = orjson.loads(header)
    assert set(fields) == {*chain.HEADER_FIELDS, "attributes_digest"}
    assert fields["attributes_digest"] == "ab" * 32
    for name in chain.HEADER_FIELDS:
        assert fields[name] == ENVELOPE[name]
    assert header == chain.canonical(fields)


def test_header_bytes_writes_absent_optional_fields_as_null():
    header = orjson.loads(chain.header_bytes(ENVELOPE, "00" * 32))
    assert header["workflow_type"] is None
    assert b'"workflow_type":null' in chain.header_bytes(ENVELOPE, "00" * 32)


def test_header_bytes_requires_every_header_field():
    for name in chain.HEADER_FIELDS:
        envelope = {key: value for key, value in ENVELOPE.items() if key != name}
        with pytest.raises(KeyError):
            chain.header_bytes(envelope, "00" * 32)


def test_header_bytes_differs_for_each_header_field():
    base = chain.header_bytes(ENVELOPE, "00" * 32)
    changed = {
        "workflow_id": "wf-2", "run_id": "run-2", "event_id": 8, "type": "activity.failed",
        "time": "2026-11-01T09:00:07Z", "workflow_type": "support", "identity": None,
        "refs": {"scheduled": 6},
    }
    assert set(changed) == set(chain.HEADER_FIELDS)
    for name, value in changed.items():
        assert chain.header_bytes({**ENVELOPE, name: value}, "00" * 32) != base, name
    assert chain.header_bytes(ENVELOPE, "01" * 32) != base


def test_genesis_is_32_zero_bytes_in_hex():
    assert bytes.fromhex(chain.GENESIS) == bytes(32)


def test_link_from_genesis_hashes_32_zero_bytes_then_the_header():
    header = chain.header_bytes(ENVELOPE, "00" * 32)
    assert chain.link(chain.GENESIS, header) == hashlib.sha256(bytes(32) + header).hexdigest()


def test_link_hashes_the_previous_hash_bytes_not_its_hex_text():
    header = b'{"event_id":2}'
    first = chain.link(chain.GENESIS, b'{"event_id":1}')
    assert chain.link(first, header) == hashlib.sha256(bytes.fromhex(first) + header).hexdigest()
    assert chain.link(first, header) != hashlib.sha256(first.encode() + header).hexdigest()


def test_link_depends_on_the_previous_hash_and_on_the_header():
    a = chain.link(chain.GENESIS, b"{}")
    assert chain.link(a, b"{}") != chain.link(chain.GENESIS, b"{}")
    assert chain.link(a, b"{}") != chain.link(a, b"[]")


# --- the scheme as docs/event-schema.md states it -------------------------------------------


def json_canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def independent_chain(sent: list[dict], salts: dict[int, str]) -> dict[int, tuple]:
    """(attributes, header, chain hash) per event id, from the events as sent and the stored
    salts, with hashlib and json only."""
    result = {}
    previous = bytes(32)
    for item in sorted(sent, key=lambda item: item["event_id"]):
        attributes = json_canonical(item.get("attributes") or {})
        digest = hashlib.sha256(bytes.fromhex(salts[item["event_id"]]) + attributes).hexdigest()
        header = json_canonical(
            {
                "workflow_id": item["workflow_id"],
                "run_id": item["run_id"],
                "event_id": item["event_id"],
                "type": item["type"],
                "time": item["time"],
                "workflow_type": item.get("workflow_type"),
                "identity": item.get("identity"),
                "refs": item.get("refs") or {},
                "attributes_digest": digest,
            }
        )
        chain_hash = hashlib.sha256(previous + header).hexdigest()
        previous = bytes.fromhex(chain_hash)
        result[item["event_id"]] = (attributes.decode(), header.decode(), chain_hash)
    return result


PLAIN_HISTORY = [
    event(1, "workflow.started", workflow_type="support",
          attributes={"labels": {"team": "support", "tier": "gold"}, "input": {"q": "Grüße"}}),
    event(2, "activity.scheduled", identity="worker-1@host",
          attributes={"activity_type": "search", "args": ["a", 1, {"deep": {"er": "日本"}}]}),
    event(3, "activity.started", refs={"scheduled": 2},
          attributes={"attempt": 1, "max": 2**63 - 1, "min": -(2**63), "big": 2**64 - 1}),
    event(4, "activity.completed", refs={"started": 3, "scheduled": 2},
          attributes={"result": {"hits": 3, "top": "\"quoted\" \\ back\nslash", "ok": True,
                                 "none": None, "tab\tkey": "é"}}),
    event(5, "decision.made", attributes={}),
    event(6, "workflow.completed", identity="",
          attributes={"output": {"answer": "🚀 done", "z": 1, "a": 2}}),
]


def test_an_independent_implementation_agrees_with_the_stored_chain(ingest, agent_token):
    response = ingest(agent_token, PLAIN_HISTORY)
    assert response.status_code == 200, response.content
    run = Run.objects.get(workflow_id="wf-1", run_id="run-1")
    stored = {e.event_id: e for e in run.events.all()}
    expected = independent_chain(PLAIN_HISTORY, {i: e.salt for i, e in stored.items()})
    assert set(expected) == set(stored)
    for event_id, (attributes, header, chain_hash) in expected.items():
        assert stored[event_id].attributes == attributes, event_id
        assert stored[event_id].header == header, event_id
        assert stored[event_id].chain_hash == chain_hash, event_id
    assert run.head_hash == expected[6][2]


def test_an_independent_implementation_agrees_across_batches_in_any_order(agent_token):
    token = Token.authenticate(agent_token)
    sent = [dict(item, run_id="run-shuffled") for item in PLAIN_HISTORY]
    for batch in ([sent[4], sent[1]], [sent[5]], [sent[0], sent[3]], [sent[2]]):
        outcome = ingest_batch(
            token, batch, max_attributes_bytes=settings.INGEST_MAX_ATTRIBUTES_BYTES
        )
        assert [r.status for r in outcome.results] == [STORED] * len(batch)
    run = Run.objects.get(run_id="run-shuffled")
    stored = {e.event_id: e for e in run.events.all()}
    expected = independent_chain(sent, {i: e.salt for i, e in stored.items()})
    assert {i: (e.attributes, e.header, e.chain_hash) for i, e in stored.items()} == expected
    assert run.head_hash == expected[6][2]


# Strings without lone surrogates (UTF-8 cannot carry them), integers within 64 bits, and the
# other plain JSON values; floats are left out (the two libraries spell some differently).
PLAIN_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
PLAIN_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | PLAIN_TEXT,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(PLAIN_TEXT, children, max_size=4),
    max_leaves=20,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(PLAIN_TEXT, PLAIN_VALUES, max_size=6))
def test_canonical_equals_sorted_compact_json_for_plain_values(value):
    assert chain.canonical(value) == json_canonical(value)
