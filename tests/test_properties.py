"""Property tests (hypothesis) over decoding and validation, through ingest's Router, the
code that turns an input message into a counted event or an invalid record.

For any bytes, and for structured mutations of valid events (a field missing, of another
type, out of range, huge, odd unicode, a duplicate key), exactly one of these happens: one
event goes to a shard, or one invalid record is written whose error names the field (or says
the message is not JSON, not an object, or empty). Nothing else is ever raised. The fast
path (msgspec, herald.streams.decode) and the reference (`check`) agree on every message,
and `check` agrees with the pydantic models on the verdict and the field.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.model.contracts import MODELS, TYPES
from herald.model.packing import unpack
from herald.streams.ingest import Router
from herald.streams.validate import reason
from tests.test_decode import _reference, _verdict
from tests.test_validate import VALID, _model_error_fields, _named_field

EXAMPLES = 3000
TOPICS = sorted(TYPES)
# The error of a message that is no event at all names no field.
NO_FIELD = {"not_json", "no_value", "not_object"}
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

json_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "push", "DE", "created", "2026-11-23T10:00:00Z", "acme", "é" * 33]),
)  # fmt: skip
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
# The standard library writes what orjson refuses: integers past 64 bits, escaped non-ASCII.
json_texts = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
)
# Raw JSON text orjson would not write: escapes of lone surrogates, control characters,
# numbers past 64 bits, a huge string.
raw_values = st.one_of(
    st.sampled_from([b'"\\ud800"', b'"\\udfff x"', b'"a\\u0000b"', b'"\\n"', b"1e400",
                     b"-0", b"18446744073709551616", b"1.0", b'"\xf0\x9f\x92\xa9"']),
    st.integers(min_value=129, max_value=20_000).map(lambda n: b'"' + b"x" * n + b'"'),
)  # fmt: skip


def record(topic: str, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, 0, 0, 0, None, value, None, 0, len(value or b""), ())


def outcome(topic: str, value: bytes | None) -> tuple[int, list[dict[str, Any]]]:
    """How many events the Router sent to shards, and the invalid records it wrote."""
    packed, invalid = Router(shards=4).route(topic, 0, [record(topic, value)])
    return sum(len(unpack(message)[1]) for _, message in packed), invalid


def assert_one_outcome(topic: str, value: bytes | None) -> str | None:
    """Exactly one event or one invalid record naming why; the error (None when valid)."""
    events, invalid = outcome(topic, value)
    assert (events, len(invalid)) in ((1, 0), (0, 1)), (value, events, invalid)
    assert _verdict(topic, value) == _reference(topic, value), value
    if events:
        return None
    error = str(invalid[0]["error"])
    why = reason(error)
    assert why != "other", error
    assert why in NO_FIELD or why == "from_the_future" or _named_field(error), error
    return error


def members(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"{" + b",".join(b'"' + k + b'":' + v for k, v in fields) + b"}"


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid event with one field missing, replaced, or given twice."""
    topic, message = draw(st.sampled_from(VALID))
    original = orjson.loads(message)
    fields = [(k.encode(), orjson.dumps(v)) for k, v in original.items()]
    name = draw(st.sampled_from(sorted({*original, *MODELS[topic].model_fields}))).encode()
    value = draw(st.one_of(json_texts, raw_values))
    how = draw(st.sampled_from(["drop", "replace", "duplicate first", "duplicate last"]))
    kept = [(k, v) for k, v in fields if k != name]
    if how == "drop":
        return topic, members(kept)
    if how == "replace":
        return topic, members([*kept, (name, value)])
    if how == "duplicate first":
        return topic, members([(name, value), *fields])
    return topic, members([*fields, (name, value)])


@PROPERTY
@given(st.sampled_from(TOPICS), st.binary(max_size=300))
def test_any_bytes_give_one_event_or_one_invalid_record(topic: str, value: bytes) -> None:
    assert_one_outcome(topic, value)


@PROPERTY
@given(st.sampled_from(VALID), st.data())
def test_damaged_valid_events_give_one_outcome(
    case: tuple[str, bytes], data: st.DataObject
) -> None:
    topic, message = case
    damaged = bytearray(message)
    for at in data.draw(st.lists(st.integers(0, len(message) - 1), min_size=1, max_size=4)):
        damaged[at] = data.draw(st.integers(0, 255))
    assert_one_outcome(topic, bytes(damaged))


@PROPERTY
@given(mutated())
def test_mutated_events_agree_with_the_models(case: tuple[str, bytes]) -> None:
    topic, message = case
    error = assert_one_outcome(topic, message)
    model_fields = _model_error_fields(topic, message)
    if error is None or reason(error) == "from_the_future":  # the Router's rule, not SPEC §2
        assert model_fields is None, (message, model_fields)
        return
    assert model_fields is not None, (message, error)
    named = _named_field(error)
    if named is not None:
        assert named in model_fields, (message, error, model_fields)


def test_a_record_without_value_is_one_invalid_record() -> None:
    assert assert_one_outcome("deliveries", None) == "message has no value"
