"""The msgspec fast path against `check`, the reference, on the validation corpus.

`decode` must give exactly `from_checked(check(...))` for every message: the same Event when
valid, the same InvalidEvent message when not. The fast path must also really be taken for
ordinary deliveries and acks, or the hot path would quietly run at `check`'s cost.
"""

from __future__ import annotations

import random

import msgspec
import orjson
import pytest

from herald.model.event import Event, from_checked
from herald.streams import decode as fast
from herald.streams.validate import InvalidEvent, check
from tests.test_validate import INVALID, MODELS, ODD_VALUES, VALID, raw

EDGE_CASES: list[tuple[str, bytes]] = [
    ("deliveries", b'{"tenant_id":"a","tenant_id":"b"' + raw("deliveries")[1:]),
    ("deliveries", raw("deliveries")[:-1] + b',"tenant_id":"other"}'),
    ("deliveries", raw("deliveries", tenant_id="acme\n")),
    ("deliveries", raw("deliveries", attempt=True)),
    ("deliveries", raw("deliveries", attempt=2**63)),
    ("deliveries", raw("deliveries", attempt=None, latency_ms=None, retryable=None)),
    ("deliveries", raw("deliveries", type="delivered", latency_ms=7)),
    ("deliveries", raw("deliveries", type="failed", retryable=False, error_code="E")),
    ("deliveries", raw("deliveries", occurred_at="2026-02-30T10:00:00Z")),
    ("deliveries", raw("deliveries", occurred_at="2026-11-23T10:00:00z")),
    ("deliveries", raw("deliveries", occurred_at="2026-11-23T10:00:00Z\n")),
    ("deliveries", raw("deliveries", schema_version=1.0)),
    ("deliveries", raw("deliveries", region="é" * 32)),
    ("deliveries", raw("deliveries", region="é" * 33)),
    ("acks", raw("acks", action_id=None)),
    ("acks", raw("acks", type="clicked", action_id="b1", extra={"x": 1})),
    ("acks", b"[]"),
    ("acks", raw("acks")[:-1] + b',"x\xee":1}'),
    ("acks", raw("acks")[:-1] + b',"x":"\xed\xa0\x80"}'),
    ("acks", raw("acks")[:-1] + b',"x":"\\ud800"}'),
    ("acks", raw("acks", user_id="\\ud800")),
    ("acks", raw("acks", user_id="\u00e9\u00e8")),
    ("acks", b"\xff\xfe"),
    # Numbers past a double's range: ignored where unknown, refused where known.
    ("acks", raw("acks")[:-1] + b',"x":1e400}'),
    ("acks", raw("acks")[:-1] + b',"x":[-1e400]}'),
    ("acks", raw("acks")[:-1] + b',"x":1e400,"y":"\\ud800"}'),
    ("acks", raw("acks")[:-1] + b',"x":1e400,"y":NaN}'),
    ("deliveries", raw("deliveries", type="delivered")[:-1] + b',"latency_ms":1e400}'),
    ("deliveries", raw("deliveries")[:-1] + b',"attempt":1e400}'),
    ("broadcasts", raw("broadcasts", type="created")[:-1] + b',"target_count":1e400}'),
    ("deliveries", None),
]


def _verdict(topic: str, message: bytes | None) -> Event | str:
    try:
        return fast.decode(topic, message)
    except InvalidEvent as e:
        return f"invalid: {e}"


def _reference(topic: str, message: bytes | None) -> Event | str:
    try:
        return from_checked(check(topic, message))
    except InvalidEvent as e:
        return f"invalid: {e}"


def _mutations() -> list[tuple[str, bytes]]:
    out = []
    for topic, message in VALID:
        original = orjson.loads(message)
        for field in [*original, *MODELS[topic].model_fields]:
            out += [(topic, orjson.dumps({**original, field: v})) for v in ODD_VALUES]
    return out


def _damaged() -> list[tuple[str, bytes]]:
    rng = random.Random(11)
    out = []
    for _ in range(3000):
        topic, message = rng.choice(VALID)
        damaged = bytearray(message)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
        out.append((topic, bytes(damaged)))
    return out


@pytest.mark.parametrize(
    "source",
    ["valid", "invalid", "edge cases", "odd values", "damaged"],
)
def test_decode_agrees_with_check(source: str) -> None:
    corpus = {
        "valid": VALID,
        "invalid": [(t, m) for t, m, _ in INVALID],
        "edge cases": EDGE_CASES,
        "odd values": _mutations(),
        "damaged": _damaged(),
    }[source]
    disagreements = [
        (t, m, got, want)
        for t, m in corpus
        if (got := _verdict(t, m)) != (want := _reference(t, m))
    ]
    assert not disagreements, disagreements[:3]


def test_ordinary_deliveries_and_acks_take_the_fast_path() -> None:
    ordinary = [(t, m) for t, m in VALID if t != "broadcasts" and b"null" not in m]
    assert len(ordinary) > 20
    for topic, message in ordinary:
        decoder = fast._DELIVERY if topic == "deliveries" else fast._ACK
        decoder.decode(message)  # raises if only `check` would have taken it


def test_events_round_trip_as_json_arrays() -> None:
    event = fast.decode("deliveries", raw("deliveries", type="delivered", latency_ms=5))
    encoded = msgspec.json.encode(event)
    assert encoded.startswith(b'["deliveries","delivered","e-1","acme","b-1",')
    assert msgspec.json.decode(encoded, type=Event) == event


def test_broadcast_fields_travel_in_the_payload() -> None:
    event = fast.decode("broadcasts", raw("broadcasts", type="sent", priority="high", title="T"))
    assert event.user_id is None and event.payload is not None
    assert event.payload["priority"] == "high" and event.payload["title"] == "T"
    assert "occurred_at" not in event.payload  # it is `ts`
