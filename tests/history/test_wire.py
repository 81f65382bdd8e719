"""history/wire.py: `parse_mapped_event`, the lighter check for items an importer built, gives
the same answer as `parse_event` on every such item, good or bad."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from history.wire import InvalidEvent, parse_event, parse_mapped_event

LIMIT = 2048

# JSON values as a file may hold them, and what an importer could pass on: any text (escapes,
# NUL, astral characters), integers around the 64-bit limits, floats including NaN and the
# infinities, and nesting deeper than can be stored.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
NUMBERS = (st.integers(-(2**64), 2**64) | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63)])
           | st.floats(allow_nan=True, allow_infinity=True))
LEAVES = st.none() | st.booleans() | NUMBERS | TEXT


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"a": value}
    return value


ATTRIBUTES = (
    st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(TEXT, inner, max_size=3), max_leaves=10)
    .map(lambda value: {"value": value})
    | st.dictionaries(st.sampled_from(["labels"]), st.dictionaries(TEXT, LEAVES, max_size=3))
    | st.sampled_from([deep(300), {"big": "x" * (LIMIT + 1)}, {}])
)
TIMES = st.sampled_from(["2026-01-31T12:00:00Z", "2026-01-31T12:00:00.123456789+05:30",
                         "2026-02-30T12:00:00Z", "2026-01-31T12:00:00+24:00", "yesterday",
                         "0001-01-01T00:00:00+01:00", "x" * 41]) | TEXT
NAMES = st.none() | TEXT | st.sampled_from(["x" * 256, "worker\x00", 5])
TYPES = st.sampled_from(["workflow.started", "activity.scheduled", "temporal.unknown",
                         "Activity", "", "a." + "b" * 100]) | TEXT


@settings(max_examples=400, deadline=None)
@given(TYPES, TIMES, NAMES, NAMES, ATTRIBUTES)
def test_a_built_item_gets_the_answer_parse_event_gives(event_type, time, workflow_type,
                                                         identity, attributes):
    item = {"workflow_id": "wf", "run_id": "run", "event_id": 7, "type": event_type,
            "time": time, "attributes": attributes, "refs": {"scheduled": 5}}
    for name, value in (("workflow_type", workflow_type), ("identity", identity)):
        if value is not None:
            item[name] = value
    try:
        expected = parse_event(0, item, max_attributes_bytes=LIMIT)
    except InvalidEvent as exc:
        try:
            parse_mapped_event(item, max_attributes_bytes=LIMIT)
        except InvalidEvent as lighter:
            assert str(lighter) == str(exc)
        else:
            raise AssertionError(f"parse_mapped_event accepted what parse_event refused: {exc}")
        return
    got = parse_mapped_event(item, max_attributes_bytes=LIMIT)
    assert got.envelope == expected.envelope
    assert got.attributes_bytes == expected.attributes_bytes
    assert (got.time, got.time_text) == (expected.time, expected.time_text)
    assert got.header_with_salt("00" * 16) == expected.header_with_salt("00" * 16)
