"""Values over the attribute limit are stored aside by digest, size and preview, never refused,
and come back whole from the local blob store."""

from __future__ import annotations

import hashlib
import json

import pytest
from flightdeck_sdk.encoding import canonical
from flightdeck_sdk.errors import FlightdeckError
from flightdeck_sdk.large_values import ATTRIBUTES_LIMIT, MARKER, BlobStore, expand, fit


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def test_attributes_under_the_limit_are_left_alone(store):
    attributes = {"output": "x" * 1000, "activity_type": "search"}
    assert fit(attributes, store) is attributes
    assert not store.directory.exists()


def test_a_large_output_becomes_a_reference_and_the_blob_keeps_it_whole(store):
    pages = ["é" * 1000 for _ in range(400)]
    attributes = {"activity_type": "crawl", "output": {"pages": pages, "site": "kb"}}
    fitted = fit(attributes, store)
    assert len(canonical(fitted)) < ATTRIBUTES_LIMIT
    assert fitted["activity_type"] == "crawl" and fitted["output"]["site"] == "kb"
    details = fitted["output"]["pages"][MARKER]
    assert details["sha256"] == hashlib.sha256(canonical(pages)).hexdigest()
    assert details["size"] == len(canonical(pages))
    assert details["preview"].startswith('["ééé') and len(details["preview"]) == 1024
    assert expand(fitted, store) == attributes


def test_only_the_big_part_of_a_structure_is_stored_aside(store):
    attributes = {"output": {"summary": "short", "raw": "y" * 300_000, "count": 3}}
    fitted = fit(attributes, store)
    assert fitted["output"]["summary"] == "short" and fitted["output"]["count"] == 3
    assert fitted["output"]["raw"][MARKER]["preview"] == "y" * 1024
    assert expand(fitted, store) == attributes


def test_many_small_values_are_stored_aside_together(store):
    attributes = {"activity_type": "bulk", **{f"field_{n}": "z" * 200 for n in range(2000)}}
    fitted = fit(attributes, store)
    assert len(canonical(fitted)) < ATTRIBUTES_LIMIT
    assert fitted["activity_type"] == "bulk"
    rest = expand(fitted["$flightdeck_rest"], store)
    assert rest == {key: value for key, value in attributes.items() if key != "activity_type"}


def test_a_reference_is_never_larger_than_the_value_it_replaces(store):
    value = "w" * 300
    attributes = {f"k{n}": {"v": value} for n in range(1000)}
    fitted = fit(attributes, store)
    assert len(canonical(fitted)) < ATTRIBUTES_LIMIT
    assert expand(fitted, store) == attributes


def test_a_missing_blob_is_a_clear_error_not_a_wrong_value(store, tmp_path):
    fitted = fit({"output": "v" * 300_000}, store)
    empty = BlobStore(tmp_path / "elsewhere")
    with pytest.raises(FlightdeckError, match="not in this machine's blob store"):
        expand(fitted, empty)


def test_a_corrupted_blob_is_not_returned(store):
    fitted = fit({"output": "v" * 300_000}, store)
    sha = fitted["output"][MARKER]["sha256"]
    (store.directory / sha).write_bytes(json.dumps("tampered").encode())
    with pytest.raises(FlightdeckError):
        expand(fitted, store)


def test_a_stored_value_holding_a_reference_comes_back_whole(store):
    # `fit` can store a parent whose child an earlier pass stored already.
    from flightdeck_sdk.large_values import reference

    inner = "x" * 5000
    outer = {"child": reference(inner, store), "sibling": "y" * 300}

    assert expand({"value": reference(outer, store)}, store) == {
        "value": {"child": inner, "sibling": "y" * 300}
    }
